"""Grade a class: intake, sandboxed runs in parallel, one nbgrader pass, feedback and reports.

    python -m grader grade [SUBMISSIONS] [--jobs N] [--out DIR] [--student ID] [--db URL] [--export canvas]
                           [--scheduler tcp://HOST:8786]

1. Intake (serial, fast): every submission is normalised and written to nbgrader's `submitted/`.
2. Verdicts (parallel, `--jobs`): each notebook runs in its own sandbox; the judges run here. A
   verdict is cached per notebook, so a killed run resumes where it stopped. With `--scheduler`,
   the sandboxes and judges run on a Dask cluster's workers instead (grading/cluster.py).
3. nbgrader (one process, the only writer to the gradebook): `autograde` with our preprocessors
   picks the cached verdicts up, then `generate_feedback` and `export`. A PostgreSQL gradebook is
   locked while nbgrader writes it, so two runs into one database take turns (database.py).
4. Reports, all read from the gradebook (see reports.py): `grades.csv` (nbgrader's export),
   `grades_by_test.csv`, `summary.json`, a summary table, a histogram, and the exports asked for.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import nbformat
from tqdm import tqdm

from .. import paths
from ..grading import cluster, intake
from ..grading.intake import METADATA_KEY
from ..grading.plan import course_secret, seeds_for
from ..grading.sandbox import Limits
from ..grading.slots import machine_slot
from ..grading.submissions import Submission, SubmissionError, collect
from ..grading.verdicts import Verdict, cached, clean_message, grade_notebook, release_checks, verdict_path
from . import database, reports
from .commands import NbgraderError
from .feedback import slim_feedback
from .reports import Row
from .workspace import Workspace

SAMPLE_CLASS = paths.REPO / paths.SAMPLE_DIR
NOTEBOOK_ID = paths.NOTEBOOK_NAME.removesuffix(".ipynb")


def _intake_one(workspace: Workspace, sub: Submission) -> intake.Intake:
    if sub.notebook is None:
        result = intake.normalise(b"")
        result.notes[:] = sub.notes
        return result
    notes = list(sub.notes)
    original = workspace.out / "originals" / sub.student_id / sub.notebook.name
    try:  # the student's file as they handed it in, kept beside what is graded
        original.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sub.notebook, original)
    except OSError as error:
        notes.append(f"The grader could not keep a copy of the submitted file ({error.strerror}).")
    result = intake.read_submission(sub.notebook)
    result.notes[:0] = notes
    return result


def intake_all(workspace: Workspace, submissions: list[Submission]) -> dict[str, Path]:
    """Normalise each submission into nbgrader's submitted/ folder; keep the original beside it.

    Each submission is read on its own: an error while reading one (a bug, a file no test foresaw)
    gives that student the unanswered notebook with a note saying so, and the class goes on."""
    written = {}
    for sub in submissions:
        try:
            result = _intake_one(workspace, sub)
        except Exception as error:  # noqa: BLE001 - one student's file must not stop everyone's grading
            detail = clean_message(str(error)).rstrip(".")
            result = intake.normalise(b"")
            result.notes[:] = [*sub.notes, f"The grader could not read this notebook: {type(error).__name__}"
                                           f"{': ' + detail if detail else ''}. It was graded as unanswered; please "
                                           "tell your instructor."]
        result.notebook.metadata[METADATA_KEY] = {"normalised": True, "notes": result.notes,
                                                   "original_name": sub.original_name}
        target = workspace.submitted(sub.student_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        # A name from a file system that is not UTF-8 can hold undecodable bytes (as lone surrogates),
        # which UTF-8 cannot write: each becomes "?" instead of stopping the class.
        text = nbformat.writes(result.notebook).encode("utf-8", "replace").decode("utf-8")
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")  # unchanged files keep their timestamps
        written[sub.student_id] = target
    return written


def reusable_verdicts(workspace: Workspace, notebooks: dict[str, Path], limits: Limits) -> dict[str, Verdict]:
    """The saved verdicts that still hold; says how many were dropped because the grading code or
    the limits changed since they were made."""
    verdicts, stale = {}, 0
    for sid, notebook in notebooks.items():
        path = verdict_path(workspace.verdicts, sid, paths.ASSIGNMENT, NOTEBOOK_ID)
        verdict, why = cached(path, nbformat.read(notebook, as_version=4), limits)
        if verdict is not None:
            verdicts[sid] = verdict
        stale += why == "the grading code or limits changed"
    if stale:
        print(f"{stale} saved verdict(s) were made by other grading code or limits: regrading them")
    if verdicts:
        print(f"{len(verdicts)} submissions already judged (resuming); {len(notebooks) - len(verdicts)} to run")
    return verdicts


def _notes(nb: nbformat.NotebookNode) -> list[str]:
    return list(nb.metadata.get(METADATA_KEY, {}).get("notes", []))


def _job(student_id: str, notebook: Path, secret: bytes) -> cluster.Job:
    """What a cluster worker needs to grade one submission: the check seeds in place of the secret."""
    text = notebook.read_text(encoding="utf-8")
    seeds = seeds_for(secret, student_id, list(release_checks()))
    return cluster.Job(student_id, text, seeds, _notes(nbformat.reads(text, as_version=4)))


def _judge_here(todo: list[str], notebooks: dict[str, Path], secret: bytes, workers: int, limits: Limits,
                done: Callable[[Verdict], None]) -> None:
    """Each submission in a sandbox on this machine, `workers` at a time."""
    def run_one(student_id: str) -> Verdict:
        notes = _notes(nbformat.read(notebooks[student_id], as_version=4))
        seeds = seeds_for(secret, student_id, list(release_checks()))
        with machine_slot() as slot:  # one no other grading run on this machine holds
            return grade_notebook(notebooks[student_id], student_id, seeds, notes, limits, slot)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in as_completed([pool.submit(run_one, sid) for sid in todo]):
            done(future.result())


def judge_all(workspace: Workspace, notebooks: dict[str, Path], jobs: int, limits: Limits,
              scheduler: str | None = None) -> dict[str, Verdict]:
    """Run every notebook without a valid saved verdict in the sandbox: here, `jobs` at a time, or
    on the Dask cluster at `scheduler` (cluster.py). Each verdict is saved as it comes in."""
    secret = course_secret(workspace.secret)
    verdicts = reusable_verdicts(workspace, notebooks, limits)
    todo = [sid for sid in notebooks if sid not in verdicts]
    with tqdm(total=len(todo), desc="grading", unit="notebook") as bar:
        def done(verdict: Verdict) -> None:
            verdict.save(verdict_path(workspace.verdicts, verdict.student_id, paths.ASSIGNMENT, NOTEBOOK_ID))
            verdicts[verdict.student_id] = verdict
            bar.update(1)

        if scheduler and todo:
            jobs_sent = [_job(sid, notebooks[sid], secret) for sid in todo]
            cluster.judge(scheduler, jobs_sent, limits, done, lambda line: bar.write(line, file=sys.stderr))
        else:
            _judge_here(todo, notebooks, secret, jobs, limits, done)
    return verdicts


def run_nbgrader(workspace: Workspace, students: list[str], student: str | None) -> None:
    only = [f"--student={student}"] if student else []
    workspace.nbgrader("autograde", paths.ASSIGNMENT, "--force", *only)
    # nbgrader scores a test cell without outputs as full marks: make sure our preprocessor wrote
    # every autograded notebook (its notes cell is the proof), or stop before exporting anything.
    for sid in [student] if student else students:
        graded = workspace.root / "autograded" / sid / paths.ASSIGNMENT / paths.NOTEBOOK_NAME
        cells = nbformat.read(graded, as_version=4).cells if graded.is_file() else []
        if not cells or cells[0].get("id") != intake.NOTES_CELL_ID:
            raise NbgraderError(f"{graded} was not graded by the sandboxed path: check course/nbgrader_config.py")
    workspace.nbgrader("generate_feedback", paths.ASSIGNMENT, "--force", *only)
    slim_feedback(workspace.root / "feedback", workspace.root / "release")
    workspace.nbgrader("export", f"--CsvExportPlugin.to={workspace.out / 'grades.csv'}")


def write_reports(workspace: Workspace, found: list[Submission], verdicts: dict[str, Verdict],
                  export: list[str]) -> list[Row]:
    """Every report from the gradebook (so hand-set scores show everywhere), plus the exports asked for."""
    rows = reports.read_rows(workspace.db_url, {s.student_id: s.original_name for s in found}, verdicts)
    reports.write_by_test(rows, workspace.out / "grades_by_test.csv")
    reports.write_summary(rows, workspace.out / "summary.json")
    reports.save_histogram(rows, workspace.out / "score_histogram.png")
    if "canvas" in export:
        reports.write_canvas(rows, workspace.out / "grades_canvas.csv")
    return rows


def grade(submissions: Path | None, out: Path, jobs: int = 2, student: str | None = None,
          db_url: str | None = None, limits: Limits = Limits(), export: list[str] = (),
          scheduler: str | None = None) -> list[Row]:
    start = time.perf_counter()
    workspace = Workspace(out, db_url, limits)
    with database.write_lock(workspace.db_url):  # generate_assignment writes the gradebook too
        workspace.setup()
    with tempfile.TemporaryDirectory(prefix="w3d4-submissions-") as scratch:
        found = collect(submissions or SAMPLE_CLASS, Path(scratch))
        if student:
            # Regrade one student: forget their verdict; everyone else's cached verdict is reused.
            if student not in {s.student_id for s in found}:
                raise SubmissionError(f"no submission for student {student!r}")
            verdict_path(workspace.verdicts, student, paths.ASSIGNMENT, NOTEBOOK_ID).unlink(missing_ok=True)
        notebooks = intake_all(workspace, found)
    verdicts = judge_all(workspace, notebooks, max(1, jobs), limits, scheduler)
    with database.write_lock(workspace.db_url):
        run_nbgrader(workspace, list(notebooks), student)
        rows = write_reports(workspace, found, verdicts, list(export))
    isolation = ", ".join(sorted({v.isolation for v in verdicts.values()})) or "n/a"
    reports.print_summary(rows, isolation)
    written = ["grades.csv", "grades_by_test.csv", "summary.json", "score_histogram.png"]
    written += ["grades_canvas.csv"] if "canvas" in export else []
    print(f"Wrote {', '.join(written)} in {workspace.out}; feedback in {workspace.root / 'feedback'} "
          f"({time.perf_counter() - start:.1f} s)")
    return rows
