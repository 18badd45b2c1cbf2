"""Grade a class: intake, sandboxed runs in parallel, the gradebook in bulk, feedback and reports.

    python -m grader grade [SUBMISSIONS] [--assignment NAME] [--jobs N] [--out DIR] [--student ID] [--db URL]
                           [--export canvas] [--scheduler tcp://HOST:8786]

Every assignment of the course (paths.LESSONS) is graded the same way, into one nbgrader course.

1. Intake (serial, fast): every submission is normalised and written to nbgrader's `submitted/`.
2. Verdicts (parallel, `--jobs`): each notebook runs in its own sandbox; the judges run here. A
   verdict is cached per notebook, so a killed run resumes where it stopped. With `--scheduler`,
   the sandboxes and judges run on a Dask cluster's workers instead (grading/cluster.py).
3. What `nbgrader autograde`, `generate_feedback` and `export` make, with no serial step per
   student (`finish`): the autograded notebooks and the feedback pages are built in parallel
   (autograded.py), the gradebook is written in one transaction and read back in one pass
   (gradebook.py). A PostgreSQL gradebook is locked meanwhile, so two runs into one database take
   turns (database.py).
4. Reports, all read from the gradebook (see reports.py): `grades.csv` (nbgrader's export layout),
   `grades_by_test.csv`, `summary.json`, a summary table, a histogram, and the exports asked for.

The run ends by printing what its serial parts cost per submission (timing.py).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
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
from ..grading.verdicts import Verdict, cached, clean_message, grade_notebook, release_checks
from . import autograded, database, gradebook, reports
from .commands import NbgraderError
from .feedback import share_figures
from .gradebook import StudentGrades
from .reports import COURSE_ID, Row
from .timing import ONCE, Timer
from .workspace import Workspace

SAMPLE_CLASS = paths.REPO / paths.SAMPLE_DIR  # part 2's
NOTEBOOK_ID = paths.NOTEBOOK_NAME.removesuffix(".ipynb")  # part 2's


def _intake_one(workspace: Workspace, sub: Submission) -> intake.Intake:
    if sub.notebook is None:
        result = intake.normalise(b"", intake.release_notebook(workspace.lesson.assignment))
        result.notes[:] = sub.notes
        return result
    notes = list(sub.notes)
    original = workspace.out / "originals" / sub.student_id / sub.notebook.name
    try:  # the student's file as they handed it in, kept beside what is graded
        original.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sub.notebook, original)
    except OSError as error:
        notes.append(f"The grader could not keep a copy of the submitted file ({error.strerror}).")
    result = intake.read_submission(sub.notebook, workspace.lesson.assignment)
    result.notes[:0] = notes
    return result


def intake_all(workspace: Workspace, submissions: list[Submission], jobs: int = 1) -> dict[str, Path]:
    """Normalise each submission into nbgrader's submitted/ folder, `jobs` processes at a time;
    keep the original beside it."""
    written = _parallel(_intake_and_write, [(sub.student_id, (workspace, sub)) for sub in submissions], jobs)
    return {sub.student_id: target for sub, target in zip(submissions, written)}


def _intake_and_write(workspace: Workspace, sub: Submission) -> Path:
    """One submission into submitted/. It is read on its own: an error while reading it (a bug, a
    file no test foresaw) gives that student the unanswered notebook with a note saying so, and the
    class goes on."""
    try:
        result = _intake_one(workspace, sub)
    except Exception as error:  # noqa: BLE001 - one student's file must not stop everyone's grading
        detail = clean_message(str(error)).rstrip(".")
        result = intake.normalise(b"", intake.release_notebook(workspace.lesson.assignment))
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
    return target


def reusable_verdicts(workspace: Workspace, notebooks: dict[str, Path], limits: Limits) -> dict[str, Verdict]:
    """The saved verdicts that still hold; says how many were dropped because the grading code or
    the limits changed since they were made."""
    verdicts, stale = {}, 0
    for sid, notebook in notebooks.items():
        verdict, why = cached(workspace.verdict(sid), nbformat.read(notebook, as_version=4), limits)
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


def _job(student_id: str, notebook: Path, secret: bytes, assignment: str) -> cluster.Job:
    """What a cluster worker needs to grade one submission: the check seeds in place of the secret."""
    text = notebook.read_text(encoding="utf-8")
    seeds = seeds_for(secret, student_id, list(release_checks(assignment)))
    return cluster.Job(student_id, text, seeds, _notes(nbformat.reads(text, as_version=4)), assignment)


def _judge_here(todo: list[str], notebooks: dict[str, Path], secret: bytes, workers: int, limits: Limits,
                done: Callable[[Verdict], None], assignment: str) -> None:
    """Each submission in a sandbox on this machine, `workers` at a time."""
    def run_one(student_id: str) -> Verdict:
        notes = _notes(nbformat.read(notebooks[student_id], as_version=4))
        seeds = seeds_for(secret, student_id, list(release_checks(assignment)))
        with machine_slot() as slot:  # one no other grading run on this machine holds
            return grade_notebook(notebooks[student_id], student_id, seeds, notes, limits, slot, assignment)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in as_completed([pool.submit(run_one, sid) for sid in todo]):
            done(future.result())


def judge_all(workspace: Workspace, notebooks: dict[str, Path], jobs: int, limits: Limits,
              scheduler: str | None = None, timer: Timer | None = None) -> dict[str, Verdict]:
    """Run every notebook without a valid saved verdict in the sandbox: here, `jobs` at a time, or
    on the Dask cluster at `scheduler` (cluster.py). Each verdict is saved as it comes in."""
    timer = timer or Timer()
    secret = course_secret(workspace.secret)
    with timer("verdict cache"):
        verdicts = reusable_verdicts(workspace, notebooks, limits)
    todo = [sid for sid in notebooks if sid not in verdicts]
    with timer("sandboxes", parallel=True), tqdm(total=len(todo), desc="grading", unit="notebook") as bar:
        def done(verdict: Verdict) -> None:
            verdict.save(workspace.verdict(verdict.student_id))
            verdicts[verdict.student_id] = verdict
            bar.update(1)

        if scheduler and todo:
            assignment = workspace.lesson.assignment
            jobs_sent = (_job(sid, notebooks[sid], secret, assignment) for sid in todo)  # made as they are sent
            cluster.judge(scheduler, jobs_sent, limits, done, lambda line: bar.write(line, file=sys.stderr))
        else:
            _judge_here(todo, notebooks, secret, jobs, limits, done, workspace.lesson.assignment)
    return verdicts


def _parallel(function, calls: list[tuple[str, tuple]], jobs: int) -> list:
    """`function(*args)` for each (student id, args) in `calls`, in `jobs` processes (in this one when
    a pool would cost more than it saves), results in order. A call that fails stops the run, after
    the others, naming the students it failed for."""
    if jobs <= 1 or len(calls) <= 1:
        results = [_guarded(function, *call) for call in calls]
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(calls))) as pool:
            chunk = max(1, min(64, len(calls) // (jobs * 4)))
            results = list(pool.map(_guarded, [function] * len(calls), *zip(*calls), chunksize=chunk))
    failed = [r for r in results if isinstance(r, _Failure)]
    if failed:
        shown = "; ".join(f"{f.student_id}: {f.error}" for f in failed[:5])
        raise NbgraderError(f"{len(failed)} notebook(s) could not be written ({shown}); run the same command again")
    return results


@dataclass
class _Failure:
    student_id: str
    error: str


def _guarded(function, student_id: str, args: tuple):
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - reported with the student's id, after the others are done
        return _Failure(student_id, f"{type(error).__name__}: {clean_message(str(error), 300)}")


MAX_PAGE_BYTES = 20 * 2**20  # a feedback page is about 100 KB; one from a worker past this is redone here


def _feedback_on_cluster(scheduler: str, limits: Limits, tasks: list[autograded.Task],
                         grades: dict[str, StudentGrades]) -> None:
    """Each page rendered on a worker and written here; a page that failed there, or came back as
    something other than a page, is rendered here instead."""
    def calls():
        for task in tasks:
            text = task.autograded().read_text(encoding="utf-8")
            yield f"feedback-{task.student_id}", autograded.render_remote, (text, grades[task.student_id],
                                                                            task.student_id, task.assignment), task

    with tqdm(total=len(tasks), desc="feedback", unit="page") as bar:
        def done(task: autograded.Task, html, error: BaseException | None) -> None:
            if error is None and isinstance(html, str) and len(html) <= MAX_PAGE_BYTES:
                autograded.save_feedback(task, html)
            else:
                autograded.write_feedback(task, grades[task.student_id])
            bar.update(1)

        cluster.run_each(scheduler, limits, calls(), done)


def finish(workspace: Workspace, students: list[str], jobs: int, timer: Timer | None = None,
           scheduler: str | None = None) -> dict[str, StudentGrades]:
    """What `nbgrader autograde`, `generate_feedback` and `export` make, without a serial step per
    student: autograded notebooks in parallel, the gradebook in one transaction and one read,
    feedback pages in parallel (on the Dask cluster at `scheduler`, if given), grades.csv from a few
    queries. Returns the gradebook's grades of these students; `timer` learns how long each part
    took."""
    timer = timer or Timer()
    lesson = workspace.lesson
    tasks = [autograded.Task(sid, workspace.submitted(sid), workspace.verdict(sid), workspace.root, lesson.assignment)
             for sid in students]
    with timer("autograded notebooks", parallel=True):
        found = _parallel(autograded.write_autograded, [(t.student_id, (t,)) for t in tasks], jobs)
    with timer("gradebook write"):
        gradebook.save_class(workspace.db_url, COURSE_ID, lesson.assignment, lesson.notebook_id, found,
                             gradebook.late_plugin(workspace.root / "nbgrader_config.py"))
    with timer("gradebook read"):
        grades = gradebook.read_class(workspace.db_url, COURSE_ID, lesson.assignment, lesson.notebook_id, students)
    with timer("feedback pages", parallel=True):
        share_figures(paths.REPO / lesson.release_dir, workspace.root / "feedback")
        if scheduler:
            _feedback_on_cluster(scheduler, workspace.limits, tasks, grades)
        else:
            _parallel(autograded.write_feedback, [(t.student_id, (t, grades[t.student_id])) for t in tasks], jobs)
    with timer("grades.csv"):
        gradebook.export_csv(workspace.db_url, COURSE_ID, workspace.out / "grades.csv")
    return grades


def write_reports(workspace: Workspace, found: list[Submission], verdicts: dict[str, Verdict],
                  export: list[str], grades: dict[str, StudentGrades] | None = None) -> list[Row]:
    """Every report from the gradebook (so hand-set scores show everywhere), plus the exports asked for."""
    rows = reports.read_rows(workspace.db_url, {s.student_id: s.original_name for s in found}, verdicts, grades,
                             workspace.lesson.assignment)
    workspace.reports.mkdir(parents=True, exist_ok=True)
    reports.write_by_test(rows, workspace.reports / "grades_by_test.csv")
    reports.write_summary(rows, workspace.reports / "summary.json")
    if "canvas" in export:
        reports.write_canvas(rows, workspace.reports / "grades_canvas.csv")
    return rows


def grade(submissions: Path | None, out: Path, jobs: int = 2, student: str | None = None,
          db_url: str | None = None, limits: Limits = Limits(), export: list[str] = (),
          scheduler: str | None = None, timer: Timer | None = None, assignment: str = paths.ASSIGNMENT) -> list[Row]:
    """Grade a class's submissions of `assignment` into `out` (default: that assignment's sample
    class): the sandboxes here, `jobs` at a time, or on the Dask cluster at `scheduler`. `timer`
    (optional) learns how long each part took."""
    start, timer = time.perf_counter(), timer or Timer()
    workspace = Workspace(out, db_url, limits, assignment)
    lesson = workspace.lesson
    print(f"Grading {lesson.assignment} ({lesson.notebook})")
    with timer("course set-up", once=True), database.write_lock(workspace.db_url):  # generate_assignment writes the gradebook
        workspace.setup()
    with tempfile.TemporaryDirectory(prefix="w3d4-submissions-") as scratch:
        with timer("reading submissions"):
            found = collect(submissions or paths.REPO / lesson.sample_dir, Path(scratch), lesson.notebook)
        if student:
            # Regrade one student: forget their verdict; everyone else's cached verdict is reused.
            if student not in {s.student_id for s in found}:
                raise SubmissionError(f"no submission for student {student!r}")
            workspace.verdict(student).unlink(missing_ok=True)
        with timer("intake", parallel=True):
            notebooks = intake_all(workspace, found, max(1, jobs))
    verdicts = judge_all(workspace, notebooks, max(1, jobs), limits, scheduler, timer)
    with database.write_lock(workspace.db_url):
        # Regrading one student rebuilds their notebook and page; the reports cover the class.
        grades = finish(workspace, [student] if student else list(notebooks), max(1, jobs), timer, scheduler)
        with timer("reports"):
            rows = write_reports(workspace, found, verdicts, list(export), None if student else grades)
    with timer("histogram", once=True):  # one figure: its cost does not grow with the class
        reports.save_histogram(rows, workspace.reports / "score_histogram.png")
    isolation = ", ".join(sorted({v.isolation for v in verdicts.values()})) or "n/a"
    reports.print_summary(rows, isolation)
    written = ["grades.csv", "grades_by_test.csv", "summary.json", "score_histogram.png"]
    written += ["grades_canvas.csv"] if "canvas" in export else []
    print(f"Wrote grades.csv (the course) in {workspace.out}, {', '.join(written[1:])} in {workspace.reports}; "
          f"feedback in {workspace.root / 'feedback'} "
          f"({time.perf_counter() - start:.1f} s)")
    print(f"Serial work: {1000 * timer.serial() / max(1, len(notebooks)):.1f} ms per submission, plus "
          f"{timer.seconds(ONCE):.2f} s once per run ({timer.describe()})")
    return rows
