"""python -m figures [--check | --force]: redraw the figures whose inputs changed, or list them.

A figure's inputs are its drawing code, its data and its renderer, recorded in figures/inputs.json
(see figures/inputs.py); a figure whose inputs are unchanged is left alone, file and all.
"""

import argparse
import sys
import time

import figures
from figures import diagrams


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m figures", description=__doc__)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true",
                      help="draw nothing; fail if a figure's recorded inputs differ from now, saying why")
    what.add_argument("--force", action="store_true", help="redraw every figure")
    args = parser.parse_args()
    start = time.perf_counter()
    if diagrams.chromium_version() is None:
        print(f"figures: {diagrams.CHROMIUM} is missing, so the diagrams' Chromium version is not "
              "compared", file=sys.stderr)
    if args.check:
        stale = figures.check()
        for name, reasons in stale.items():
            print(f"figures: {name} is stale: {'; '.join(reasons)}", file=sys.stderr)
        if stale:
            print(f"figures: {len(stale)} of {len(figures.ALL)} stale; run `python -m figures` to "
                  "redraw them", file=sys.stderr)
            return 1
        print(f"figures: all {len(figures.ALL)} up to date ({time.perf_counter() - start:.1f} s)")
        return 0
    done = figures.update(force=args.force)
    for name, reasons in done.redrawn.items():
        print(f"redrew figures/{name}: {'; '.join(reasons)}")
    for name in done.left:
        print(f"left figures/{name}: inputs unchanged")
    for name, reasons in done.cannot.items():
        print(f"figures: cannot redraw figures/{name} ({'; '.join(reasons)}): "
              f"{diagrams.unavailable()}", file=sys.stderr)
    print(f"redrew {len(done.redrawn)}, left {len(done.left)} unchanged"
          + (f", {len(done.cannot)} stale and not drawable here" if done.cannot else "")
          + f" ({time.perf_counter() - start:.1f} s)")
    return 1 if done.cannot else 0


if __name__ == "__main__":
    sys.exit(main())
