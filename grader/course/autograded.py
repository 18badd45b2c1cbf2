"""Each student's autograded notebook and feedback page, built in parallel, one student per task.

What `nbgrader autograde` and `generate_feedback` make, file for file, without their serial loop:

    autograded/STUDENT/ASSIGNMENT/NB.ipynb   the normalised submission with the verdict written in
                                             (plugin.apply_verdict), outputs limited as nbgrader's
                                             LimitOutput limits them, the assignment's other files
                                             beside it (hard links: the formgrader shows the figures)
    feedback/STUDENT/ASSIGNMENT/NB.html      the course's feedback page, scores from the gradebook;
                                             figures shared from feedback/ (see feedback.py)

nbgrader's `timestamp.txt` and `submission_secret.txt`, which its `collect` leaves beside a
submission and its `release_feedback` reads, travel with the notebook. A task takes and returns
plain data (paths, scores), so it can run in another process.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import nbformat
from nbgrader import utils
from nbgrader.preprocessors import LimitOutput

from .. import paths
from ..grading.verdicts import Verdict
from .feedback import render_page
from .gradebook import AutoGrades, StudentGrades
from .plugin import apply_verdict

NBGRADER_FILES = ("timestamp.txt", "submission_secret.txt")


@dataclass(frozen=True)
class Task:
    student_id: str
    submitted: Path  # submitted/STUDENT/ASSIGNMENT/NB.ipynb, normalised by intake
    verdict: Path  # the saved verdict of that notebook
    course: Path  # the nbgrader course root
    assignment: str = paths.ASSIGNMENT

    @property
    def lesson(self) -> paths.Lesson:
        return paths.lesson(self.assignment)

    def autograded(self) -> Path:
        return self.course / "autograded" / self.student_id / self.assignment / self.lesson.notebook

    def feedback(self) -> Path:
        return self.course / "feedback" / self.student_id / self.assignment / f"{self.lesson.notebook_id}.html"


def _write_atomic(path: Path, text: str) -> None:
    """Whole or not at all: a run killed halfway leaves the old file, never half of a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


@cache
def _files(source: Path) -> tuple[Path, ...]:
    """Every file of `source` but its notebooks; listed once per process, not once per student."""
    return tuple(p for p in sorted(source.rglob("*"))
                 if p.is_file() and p.suffix != ".ipynb" and "__pycache__" not in p.parts)


def _link_tree(source: Path, target: Path) -> None:
    """Every file of `source` but its notebooks, at the same place under `target`: a hard link where
    the file system allows one (no copy per student), else a copy."""
    for path in _files(source):
        dest = target / path.relative_to(source)
        if dest.exists() and dest.samefile(path):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copyfile(path, dest)


def _carry_nbgrader_files(source: Path, target: Path) -> None:
    for name in NBGRADER_FILES:
        if (source / name).is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, target / name)


def auto_grades(student_id: str, nb: nbformat.NotebookNode, timestamp=None) -> AutoGrades:
    """What nbgrader's SaveAutoGrades reads from an autograded notebook: each graded cell's score
    (`determine_grade` on its outputs) and whether each answer cell is the untouched stub."""
    scores, untouched = {}, {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if utils.is_grade(cell):
            scores[meta["grade_id"]], _ = utils.determine_grade(cell)
        if utils.is_solution(cell) or utils.is_task(cell):
            untouched[meta["grade_id"]] = not utils.is_task(cell) and meta.get("checksum") == utils.compute_checksum(cell)
    return AutoGrades(student_id, scores, untouched, timestamp)


def write_autograded(task: Task) -> AutoGrades:
    """Build and write one student's autograded notebook; return its auto scores."""
    verdict = Verdict.load(task.verdict)
    if verdict is None:
        raise FileNotFoundError(f"no readable verdict for {task.student_id} at {task.verdict}")
    nb = nbformat.read(task.submitted, as_version=4)
    for cell in nb.cells:  # nbgrader's ClearOutput: only what the sandbox ran is shown
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb, _ = LimitOutput().preprocess(apply_verdict(nb, verdict), {})
    target = task.autograded()
    _write_atomic(target, nbformat.writes(nb))
    _link_tree(paths.REPO / task.lesson.release_dir, target.parent)
    _carry_nbgrader_files(task.submitted.parent, target.parent)
    stamp = task.submitted.parent / "timestamp.txt"
    timestamp = utils.parse_utc(stamp.read_text().strip()) if stamp.is_file() else None
    return auto_grades(task.student_id, nb, timestamp)


def render_remote(notebook: str, grades: StudentGrades, student_id: str, assignment: str = paths.ASSIGNMENT) -> str:
    """A feedback page from plain data, for a cluster worker: the autograded notebook's text and the
    student's grades in, the page's HTML out."""
    return render_page(nbformat.reads(notebook, as_version=4), grades, student_id, assignment)


def save_feedback(task: Task, html: str) -> int:
    """Write one student's feedback page, beside nbgrader's files; returns its size in bytes."""
    target = task.feedback()
    _write_atomic(target, html)
    _carry_nbgrader_files(task.submitted.parent, target.parent)
    return len(html.encode("utf-8"))


def write_feedback(task: Task, grades: StudentGrades) -> int:
    """Render and write one student's feedback page from their autograded notebook."""
    return save_feedback(task, render_page(nbformat.read(task.autograded(), as_version=4), grades, task.student_id,
                                         task.assignment))
