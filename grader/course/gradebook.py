"""A whole class in nbgrader's gradebook with a few queries: written in one transaction, read back in
one pass, exported as `nbgrader export` exports it.

`nbgrader autograde` opens the gradebook and commits several times per student, and `nbgrader
export` runs several queries per student: together about half a second per student, one student
after another. Here the autograded notebooks are built in parallel beforehand (`autograded.py`), so
what is left is the database, with a handful of queries whatever the class size (and one more per
late submission, when the course has a due date).

What lands in the database is what nbgrader's autograde stores (its `SaveAutoGrades`): the auto
score nbgrader reads from each graded cell's outputs (`nbgrader.utils.determine_grade`),
`needs_manual_grade` as nbgrader sets it, "No response." on untouched answer cells, the submission's
timestamp when nbgrader's `collect` left one, the late penalty its AssignLatePenalties would give,
and every score or comment an instructor set by hand kept. Tables and names are nbgrader's (`nbgrader.api`), so the formgrader and nbgrader's own
commands read the result as their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from nbgrader.api import (Assignment, BaseCell, Comment, Grade, Gradebook, Notebook, Student, SubmittedAssignment,
                          SubmittedNotebook)
from nbgrader.plugins import LateSubmissionPlugin
from sqlalchemy import func
from sqlalchemy.exc import OperationalError

COMMIT_TRIES = 5  # another grading run may hold an SQLite gradebook for a moment (SQLite locks it whole)
CHUNK = 500  # ids per `IN (...)`: SQLite allows a limited number of parameters in one statement


@dataclass
class AutoGrades:
    """What the autograder found in one student's autograded notebook (plain data, from a worker)."""

    student_id: str
    scores: dict[str, float | None]  # graded cell -> auto score (None: nbgrader leaves it to a person)
    untouched: dict[str, bool]  # answer cell -> the student left the release's stub as it was
    timestamp: datetime | None = None  # when nbgrader's collect says it was submitted


@dataclass
class CellGrade:
    auto_score: float | None
    manual_score: float | None
    extra_credit: float | None
    score: float  # nbgrader's Grade.score: manual if set, else auto, plus extra credit
    max_score: float
    comment: str | None  # nbgrader's Comment.comment: manual if set, else auto (answer cells only)


@dataclass
class StudentGrades:
    student_id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    timestamp: datetime | None
    late_penalty: float
    cells: dict[str, CellGrade] = field(default_factory=dict)  # grade_id -> its grade (and comment)

    @property
    def score(self) -> float:
        """The raw total, as nbgrader's SubmittedAssignment.score (before the late penalty)."""
        return sum(c.score for c in self.cells.values() if c.score is not None)

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.cells.values())


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def _notebook(session, assignment_id: str, notebook_id: str) -> tuple[Assignment, Notebook]:
    assignment = session.query(Assignment).filter(Assignment.name == assignment_id).one()
    notebook = session.query(Notebook).filter(Notebook.assignment == assignment, Notebook.name == notebook_id).one()
    return assignment, notebook


def save_class(db_url: str, course_id: str, assignment_id: str, notebook_id: str, graded: list[AutoGrades],
               late_plugin=None) -> None:
    """Create or update each student's submission, its grades and comments, and its late penalty,
    then commit once. A concurrent writer that wins the race (SQLite) makes this run again on the
    updated database.

    late_plugin: nbgrader's late-submission plugin (`c.AssignLatePenalties.plugin_class`; see
    `late_plugin`); nbgrader's default, which gives no penalty, when None."""
    plugin = late_plugin or LateSubmissionPlugin()
    for attempt in range(COMMIT_TRIES):
        with Gradebook(db_url, course_id) as gradebook:
            session = gradebook.db
            try:
                assignment, notebook = _notebook(session, assignment_id, notebook_id)
                _save(session, assignment, notebook, graded)
                _late_penalties(session, notebook, graded, plugin)
                session.commit()
                return
            except OperationalError:
                session.rollback()
                if attempt == COMMIT_TRIES - 1:
                    raise
        time.sleep(0.5 * 2 ** attempt)


def _save(session, assignment: Assignment, notebook: Notebook, graded: list[AutoGrades]) -> None:
    ids = [g.student_id for g in graded]
    # A cell that is both an answer and graded has two rows (a GradeCell and a SolutionCell): a list.
    cells = session.query(BaseCell).filter(BaseCell.notebook == notebook).all()
    students = {s.id for chunk in _chunks(ids) for s in session.query(Student.id).filter(Student.id.in_(chunk))}
    submissions: dict[str, SubmittedAssignment] = {}
    for chunk in _chunks(ids):
        for submission in session.query(SubmittedAssignment).filter(
                SubmittedAssignment.assignment == assignment, SubmittedAssignment.student_id.in_(chunk)):
            submissions[submission.student_id] = submission
    grades = _by_student_and_cell(session, Grade, notebook, ids)
    comments = _by_student_and_cell(session, Comment, notebook, ids)
    for entry in graded:
        sid = entry.student_id
        if sid not in students:
            session.add(Student(id=sid))
        if sid not in submissions:
            submissions[sid] = _new_submission(session, assignment, notebook, sid, cells, grades, comments)
        if entry.timestamp is not None:
            submissions[sid].timestamp = entry.timestamp
        for name, auto_score in entry.scores.items():
            grade = grades.get((sid, name))
            if grade is not None:
                grade.auto_score = auto_score
                grade.needs_manual_grade = grade.manual_score is not None or auto_score is None
        for name, untouched in entry.untouched.items():
            comment = comments.get((sid, name))
            if comment is not None:
                comment.auto_comment = "No response." if untouched else None


def _late_penalties(session, notebook: Notebook, graded: list[AutoGrades], plugin) -> None:
    """What nbgrader's AssignLatePenalties stores: no penalty, unless the submission is past the due
    date (and its extension), when the plugin decides it from the notebook's score, kept between 0
    and that score."""
    ids = [g.student_id for g in graded]
    session.flush()
    for chunk in _chunks(ids):
        rows = (session.query(SubmittedNotebook, SubmittedAssignment)
                .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
                .filter(SubmittedNotebook.notebook == notebook, SubmittedAssignment.student_id.in_(chunk)))
        for submitted, submission in rows:
            submitted.late_submission_penalty = None
            late = submission.total_seconds_late  # 0 without a due date or a timestamp
            if late > 0:
                score = submitted.score
                penalty = plugin.late_submission_penalty(submission.student_id, score, late)
                if penalty is not None:
                    submitted.late_submission_penalty = min(max(0.0, penalty), score)


def late_plugin(config_file: Path):
    """The late-submission plugin a course's nbgrader_config.py chooses, configured as nbgrader's
    autograde would configure it."""
    from nbgrader.preprocessors import AssignLatePenalties
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()
    assigner = AssignLatePenalties(config=config)
    assigner.init_plugin()
    return assigner.plugin_inst


def _by_student_and_cell(session, kind, notebook: Notebook, ids: list[str]) -> dict:
    """Every Grade (or Comment) of these students in this notebook, by (student id, cell name)."""
    found = {}
    for chunk in _chunks(ids):
        rows = (session.query(kind, SubmittedAssignment.student_id, BaseCell.name)
                .join(SubmittedNotebook, kind.notebook_id == SubmittedNotebook.id)
                .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
                .join(BaseCell, kind.cell_id == BaseCell.id)
                .filter(SubmittedNotebook.notebook_id == notebook.id, SubmittedAssignment.student_id.in_(chunk)))
        for item, sid, name in rows:
            found[sid, name] = item
    return found


def _new_submission(session, assignment: Assignment, notebook: Notebook, student_id: str, cells: list[BaseCell],
                    grades: dict, comments: dict) -> SubmittedAssignment:
    """The rows nbgrader's `Gradebook.add_submission` makes: a submitted notebook with a Grade for
    each graded cell and a Comment for each answer or task cell. nbgrader's relationships do not
    cascade, so every row is added to the session itself."""
    submission = SubmittedAssignment(assignment=assignment, student_id=student_id)
    submitted = SubmittedNotebook(notebook=notebook, assignment=submission)
    rows = [submission, submitted]
    for cell in cells:
        if cell.type in ("GradeCell", "TaskCell"):
            grades[student_id, cell.name] = Grade(cell_id=cell.id, notebook=submitted)
            rows.append(grades[student_id, cell.name])
        if cell.type in ("SolutionCell", "TaskCell"):
            comments[student_id, cell.name] = Comment(cell_id=cell.id, notebook=submitted)
            rows.append(comments[student_id, cell.name])
    session.add_all(rows)
    return submission


def read_class(db_url: str, course_id: str, assignment_id: str, notebook_id: str,
               student_ids: Iterable[str]) -> dict[str, StudentGrades]:
    """Each listed student's grades and comments in this notebook, as the formgrader shows them (a
    score set by hand wins over the autograder's). A student with no submission is left out."""
    ids = list(student_ids)
    out: dict[str, StudentGrades] = {}
    with Gradebook(db_url, course_id) as gradebook:
        session = gradebook.db
        assignment, notebook = _notebook(session, assignment_id, notebook_id)
        for chunk in _chunks(ids):
            rows = (session.query(SubmittedAssignment.student_id, Student.first_name, Student.last_name, Student.email,
                                  SubmittedAssignment.timestamp, SubmittedNotebook.late_submission_penalty)
                    .join(Student, SubmittedAssignment.student_id == Student.id)
                    .join(SubmittedNotebook, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
                    .filter(SubmittedAssignment.assignment == assignment, SubmittedNotebook.notebook == notebook,
                            SubmittedAssignment.student_id.in_(chunk)))
            for sid, first, last, email, stamp, penalty in rows:
                out[sid] = StudentGrades(sid, first, last, email, stamp, penalty or 0.0)
        for chunk in _chunks(ids):
            _read_cells(session, notebook, chunk, out)
    return out


def _read_cells(session, notebook: Notebook, ids: list[str], out: dict[str, StudentGrades]) -> None:
    grades = (session.query(SubmittedAssignment.student_id, BaseCell.name, Grade.auto_score, Grade.manual_score,
                            Grade.extra_credit, Grade.score, Grade.max_score)
              .join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
              .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
              .join(BaseCell, Grade.cell_id == BaseCell.id)
              .filter(SubmittedNotebook.notebook_id == notebook.id, SubmittedAssignment.student_id.in_(ids)))
    for sid, name, auto, manual, extra, score, max_score in grades:
        if sid in out:
            out[sid].cells[name] = CellGrade(auto, manual, extra, score, max_score or 0.0, None)
    comments = (session.query(SubmittedAssignment.student_id, BaseCell.name, Comment.comment)
                .join(SubmittedNotebook, Comment.notebook_id == SubmittedNotebook.id)
                .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
                .join(BaseCell, Comment.cell_id == BaseCell.id)
                .filter(SubmittedNotebook.notebook_id == notebook.id, SubmittedAssignment.student_id.in_(ids)))
    for sid, name, text in comments:
        if sid not in out:
            continue
        cell = out[sid].cells.get(name)
        if cell is None:
            out[sid].cells[name] = CellGrade(None, None, None, None, 0.0, text)
        else:
            cell.comment = text


EXPORT_COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                  "raw_score", "late_submission_penalty", "score", "max_score"]


def export_csv(db_url: str, course_id: str, path: Path) -> int:
    """`nbgrader export`'s grades.csv, with the same rows and the same text in each field (every
    assignment and every student in the gradebook; 0 for a student who submitted nothing), from four
    queries instead of several per student. Returns the number of rows."""
    with Gradebook(db_url, course_id) as gradebook:
        session = gradebook.db
        assignments = session.query(Assignment.id, Assignment.name, Assignment.duedate, Assignment.max_score) \
            .order_by(Assignment.duedate, Assignment.name).all()
        # nbgrader's order (by name), made total with the id: the same gradebook, the same file
        students = session.query(Student.id, Student.last_name, Student.first_name, Student.email) \
            .order_by(Student.last_name, Student.first_name, Student.id).all()
        totals = {(a, s): (stamp, raw) for a, s, stamp, raw in session.query(
            SubmittedAssignment.assignment_id, SubmittedAssignment.student_id, SubmittedAssignment.timestamp,
            func.coalesce(func.sum(Grade.score), 0.0))
            .outerjoin(SubmittedNotebook, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
            .outerjoin(Grade, Grade.notebook_id == SubmittedNotebook.id)
            .group_by(SubmittedAssignment.id)}
        penalties = {(a, s): p for a, s, p in session.query(
            SubmittedAssignment.assignment_id, SubmittedAssignment.student_id,
            func.coalesce(func.sum(SubmittedNotebook.late_submission_penalty), 0.0))
            .outerjoin(SubmittedNotebook, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
            .group_by(SubmittedAssignment.id)}
    with open(path, "w", encoding="utf-8") as f:  # nbgrader writes the lines itself, without csv quoting
        f.write(",".join(EXPORT_COLUMNS) + "\n")
        for assignment_id, name, duedate, max_score in assignments:
            for sid, last, first, email in students:
                if (assignment_id, sid) in totals:
                    stamp, raw = totals[assignment_id, sid]
                    penalty = penalties.get((assignment_id, sid), 0.0)
                    values = [stamp, float(raw), penalty, max(0.0, float(raw) - penalty)]
                else:
                    values = ["", 0.0, 0.0, 0.0]
                row = [name, duedate, values[0], sid, last, first, email, *values[1:], max_score]
                f.write(",".join("" if v is None else str(v) for v in row) + "\n")
    return len(assignments) * len(students)
