"""Command line: `python -m grader build | run-solution | grade | formgrader`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import paths


def cmd_build(args: argparse.Namespace) -> int:
    from .lesson.build import BuildError
    from .lesson.generated import build, stale_files

    try:
        if args.check:
            stale = stale_files()
            if stale:
                print("Stale generated files (run `python -m grader build`):", *stale, sep="\n  ")
                return 1
            print("All generated files are up to date.")
            return 0
        backups = build()
    except BuildError as error:
        print(f"build failed: {error}", file=sys.stderr)
        return 2
    for backup in backups:
        print(f"note: a generated file had been edited by hand; your version is saved as {backup}")
    for lesson in paths.LESSONS.values():
        print(f"Built {lesson.source_dir.as_posix()}/ and {lesson.release_dir.as_posix()}/")
    return 0


def cmd_run_solution(args: argparse.Namespace) -> int:
    import nbformat
    from nbclient.exceptions import CellExecutionError

    from .lesson.execute import execute_notebook

    for lesson in [paths.lesson(args.assignment)] if args.assignment else paths.LESSONS.values():
        notebook = paths.REPO / lesson.source_dir / lesson.notebook
        if not notebook.is_file():
            print(f"{notebook.relative_to(paths.REPO)} is missing: run `python -m grader build` first", file=sys.stderr)
            return 2
        try:
            run = execute_notebook(notebook)
        except CellExecutionError as error:
            print(f"The solution notebook of {lesson.assignment} failed:\n{error}", file=sys.stderr)
            return 1
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        saved = out / f"{lesson.notebook_id}_solution.ipynb"
        nbformat.write(run.notebook, saved)
        images = sum("image/png" in o.get("data", {}) for c in run.notebook.cells for o in c.get("outputs", []))
        print(f"Executed the solution notebook of {lesson.assignment} in {run.seconds:.1f} s ({images} plots); saved {saved}")
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from .course.commands import NbgraderError
    from .course.database import DatabaseError
    from .course.grade import grade
    from .grading.cluster import ClusterError
    from .grading.sandbox import Limits, isolation_available
    from .grading.submissions import SubmissionError

    if not args.scheduler and not isolation_available():  # a cluster's workers are asked on connecting
        print("WARNING: bubblewrap namespaces are not available here; grading in the WEAKER fallback mode "
              "(no filesystem or network isolation; verdicts are still computed outside the kernel).", file=sys.stderr)
    limits = Limits(cell_timeout_s=args.cell_timeout, notebook_timeout_s=args.notebook_timeout)
    # Submissions are of one assignment (part 2 unless named); with none given, every assignment's sample class.
    if args.submissions is None and args.assignment is None:
        assignments = list(paths.LESSONS)
    else:
        assignments = [args.assignment or paths.ASSIGNMENT]
    try:
        for assignment in assignments:
            grade(args.submissions, Path(args.out), jobs=args.jobs, student=args.student, db_url=args.db,
                  limits=limits, export=args.export, scheduler=args.scheduler, assignment=assignment)
    except (SubmissionError, NbgraderError, DatabaseError, ClusterError) as error:
        print(f"grading stopped: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_formgrader(args: argparse.Namespace) -> int:
    from .course.formgrader import FormgraderError, serve

    try:
        return serve(Path(args.out), args.port)
    except FormgraderError as error:
        print(f"formgrader: {error}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="turn the lesson source into the nbgrader source and the student release")
    build.add_argument("--check", action="store_true", help="only report generated files that are out of date")
    build.set_defaults(func=cmd_build)
    run = sub.add_parser("run-solution", help="execute the solution notebooks in a real kernel, keeping their outputs")
    run.add_argument("--assignment", choices=list(paths.LESSONS), help="only this lesson (default: every one)")
    run.add_argument("--out", default=str(paths.REPO / "out"), help="folder for the executed notebook (default: out/)")
    run.set_defaults(func=cmd_run_solution)
    grade = sub.add_parser("grade", help="autograde a class safely: sandboxed runs, nbgrader gradebook, feedback, CSVs")
    grade.add_argument("submissions", nargs="?", type=Path, default=None,
                       help="a folder or zip of STUDENT.ipynb files or STUDENT/ folders (default: the bundled sample classes)")
    grade.add_argument("--assignment", choices=list(paths.LESSONS),
                       help=f"the assignment the submissions are of (default: {paths.ASSIGNMENT}; with no SUBMISSIONS, "
                            "every assignment's sample class)")
    grade.add_argument("--jobs", type=int, default=2, help="submissions run in parallel (default: 2)")
    grade.add_argument("--out", default=str(paths.REPO / "out" / "grading"), help="workspace and reports (default: out/grading)")
    grade.add_argument("--student", help="regrade only this student (the others keep their cached verdicts)")
    grade.add_argument("--db", help="gradebook database URL, e.g. postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
                                    "(the database must exist; default: SQLite in the workspace)")
    grade.add_argument("--cell-timeout", type=int, default=60, help="seconds one cell may run (default: 60)")
    grade.add_argument("--notebook-timeout", type=int, default=600, help="seconds one notebook may run (default: 600)")
    grade.add_argument("--export", action="append", choices=["canvas"], default=[],
                       help="also write grades_canvas.csv, in the layout Canvas's gradebook import expects")
    grade.add_argument("--scheduler", metavar="URL",
                       help="run the sandboxes on the Dask cluster of this scheduler, e.g. tcp://HOST:8786; start each "
                            "worker with `PYTHONPATH=CHECKOUT dask worker URL` (default: on this machine, --jobs at a time)")
    grade.set_defaults(func=cmd_grade)
    formgrader = sub.add_parser("formgrader", help="serve nbgrader's formgrader on a graded class (127.0.0.1)")
    formgrader.add_argument("--out", default=str(paths.REPO / "out" / "grading"),
                            help="the folder `grade --out` wrote (default: out/grading)")
    formgrader.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    formgrader.set_defaults(func=cmd_formgrader)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
