"""The W3D4 part 2 course tools: build the lesson, run notebooks, and grade a class securely.

`python -m grader --help` lists the commands.
"""
