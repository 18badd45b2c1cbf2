"""python -m figures [--check]: re-render every figure, or check that none is stale."""

import argparse
import sys
import time

import figures
from figures import diagrams


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m figures", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="render into a temporary folder and fail if any figure here differs")
    args = parser.parse_args()
    start = time.perf_counter()
    skipped = diagrams.unavailable()
    if skipped:
        what = "only checked against their mermaid text" if args.check else "not drawn"
        print(f"figures: the {len(figures.DIAGRAMS)} block diagrams are {what}: {skipped}",
              file=sys.stderr)
    count = len(figures.DRAWINGS) + (0 if skipped else len(figures.DIAGRAMS))
    if args.check:
        problems, notes = figures.check()
        for note in notes:
            print(f"figures: note: {note}", file=sys.stderr)
        for problem in problems:
            print(f"figures: {problem}; run `python -m figures` to re-render", file=sys.stderr)
        if not problems:
            print(f"figures: all {count} up to date ({time.perf_counter() - start:.1f} s)")
        return 1 if problems else 0
    for path in figures.render_all():
        print(f"wrote figures/{path.name}")
    print(f"rendered {count} figures in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
