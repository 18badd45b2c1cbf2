"""How long each lesson's solution notebook takes top to bottom in a real kernel (goal: under 60 s on 2 cores).

    .venv/bin/python benchmarks/solution_notebook_time.py [--repeat N] [--assignment NAME]

Kernel start-up is included, as a student pressing "Run all" would experience it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from grader import paths  # noqa: E402
from grader.lesson.execute import execute_notebook  # noqa: E402

GOAL_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--assignment", choices=list(paths.LESSONS), help="only this lesson (default: every one)")
    args = parser.parse_args()
    for lesson in [paths.lesson(args.assignment)] if args.assignment else paths.LESSONS.values():
        notebook = paths.REPO / lesson.source_dir / lesson.notebook
        times = [execute_notebook(notebook).seconds for _ in range(args.repeat)]
        median = statistics.median(times)
        print(f"{lesson.assignment} solution notebook, {args.repeat} runs on {os.cpu_count()} CPUs: "
              f"median {median:.1f} s, min {min(times):.1f} s, max {max(times):.1f} s; goal under {GOAL_S:.0f} s -> "
              f"{'met' if median < GOAL_S else 'NOT met'} ({median / GOAL_S:.2f} of the budget)")


if __name__ == "__main__":
    main()
