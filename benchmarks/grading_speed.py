"""Stock nbgrader against our grader on the same 20 submissions, side by side in one run.

    .venv/bin/python benchmarks/grading_speed.py [--students 20] [--jobs 2]

Baseline: stock nbgrader 0.9.6 with its default configuration: `nbgrader autograde` runs each
notebook and its tests in the student's own kernel, one notebook after another, then
`generate_feedback` and `export`. Ours: `python -m grader grade --jobs N`, which runs each notebook
in a bubblewrap sandbox, judges outside it, and writes what nbgrader's autograde, feedback and
export write, in bulk. Both start from an empty course (the assignment is generated in both). The submissions
are honest ones (stock nbgrader would hang on the hostile ones): the sample class's complete,
untouched, half-done and mistaken notebooks, repeated to the requested count.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from grader import paths  # noqa: E402
from grader.course.commands import tool_env  # noqa: E402
from grader.grading.sandbox import isolation_available  # noqa: E402

HONEST = ["ada_complete", "ben_untouched", "cleo_first_half", "dev_classic_mistakes"]
STOCK_CONFIG = 'c = get_config()\nc.CourseDirectory.course_id = "stock"\nc.CourseDirectory.root = {root!r}\n'


def nbgrader(course: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=tool_env(), check=True,
                   capture_output=True)


def stock(submissions: Path, course: Path) -> float:
    start = time.perf_counter()
    course.mkdir()
    (course / "nbgrader_config.py").write_text(STOCK_CONFIG.format(root=str(course)))
    shutil.copytree(paths.REPO / paths.SOURCE_DIR, course / "source" / paths.ASSIGNMENT)
    nbgrader(course, "generate_assignment", paths.ASSIGNMENT)
    for notebook in submissions.glob("*.ipynb"):
        target = course / "submitted" / notebook.stem / paths.ASSIGNMENT / paths.NOTEBOOK_NAME
        target.parent.mkdir(parents=True)
        shutil.copyfile(notebook, target)
    nbgrader(course, "autograde", paths.ASSIGNMENT)
    nbgrader(course, "generate_feedback", paths.ASSIGNMENT)
    nbgrader(course, "export", f"--CsvExportPlugin.to={course / 'grades.csv'}")
    return time.perf_counter() - start


def ours(submissions: Path, out: Path, jobs: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "grader", "grade", str(submissions), "--out", str(out), "--jobs", str(jobs)],
                   cwd=paths.REPO, env=tool_env(), check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="w3d4-bench-") as scratch:
        root = Path(scratch)
        submissions = root / "class"
        submissions.mkdir()
        for i in range(args.students):
            name = HONEST[i % len(HONEST)]
            shutil.copyfile(paths.REPO / paths.SAMPLE_DIR / f"{name}.ipynb", submissions / f"{name}_{i:02d}.ipynb")
        base = stock(submissions, root / "stock")
        mine = ours(submissions, root / "ours", args.jobs)
    n = args.students
    isolation = "bubblewrap" if isolation_available() else "WEAKER fallback (no bubblewrap)"
    print(f"{n} submissions on {os.cpu_count()} CPUs (autograde + feedback + export, from an empty course)")
    print(f"  stock nbgrader, in-kernel, serial : {base:6.1f} s  ({base / n:.2f} s per submission)")
    print(f"  ours, sandboxed ({isolation}), --jobs {args.jobs} : {mine:6.1f} s  ({mine / n:.2f} s per submission)")
    print(f"  speed-up: {base / mine:.2f}x (goal: at least 1.5x)")


if __name__ == "__main__":
    main()
