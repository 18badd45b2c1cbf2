"""The W3D4 part 2 course tools: build the lesson, run notebooks, and (soon) grade a class.

`python -m grader --help` lists the commands.
"""
