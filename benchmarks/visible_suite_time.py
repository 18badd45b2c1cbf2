"""Time the visible test suite (every call the notebook makes) on the solution.

    .venv/bin/python benchmarks/visible_suite_time.py [--repeats 5] [--device cpu]

Prints the import time, the time of each test (median over the repeats), and the whole suite's time
for the first (cold) run and the median run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "checks"), str(ROOT / "solutions")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args()

    start = time.perf_counter()
    import w3d4_checks
    import w3d4_part2_unet_solution as solution

    imported = time.perf_counter() - start
    device = args.device or w3d4_checks.default_device()
    per_test: dict[str, list[float]] = {}
    suites = []
    for _ in range(args.repeats):
        suite_start = time.perf_counter()
        for exercise, kwargs in [(e, call) for e in w3d4_checks.EXERCISES.values() for call in e.calls]:
            label = f"test_{exercise.name}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
            subjects = [getattr(solution, subject) for subject in exercise.subjects]
            test_start = time.perf_counter()
            w3d4_checks.run_check(exercise.name, *subjects, device=device, **kwargs)
            per_test.setdefault(label, []).append(time.perf_counter() - test_start)
        suites.append(time.perf_counter() - suite_start)

    print(f"device: {device}, torch threads: {__import__('torch').get_num_threads()}, repeats: {args.repeats}")
    print(f"import of the checks library and the solution: {imported:.2f} s")
    for label, times in per_test.items():
        print(f"  {label:<42} {1000 * statistics.median(times):7.1f} ms")
    print(f"whole visible suite: {suites[0]:.2f} s cold, {statistics.median(suites):.2f} s median")


if __name__ == "__main__":
    main()
