"""Write a whole class's autograded scores into nbgrader's gradebook in one transaction.

`nbgrader autograde` opens the gradebook and commits several times per student, copies the
assignment's files for each, and runs nbconvert twice per notebook: about a second per student,
serially. Here the autograded notebooks are already built (`plugin.apply_verdict`), so all that is
left is the database: one session, one commit, whatever the class size. What lands in the database
is what nbgrader's own autograde stores (its `SaveAutoGrades`): the auto score nbgrader reads from
each graded cell's outputs (`nbgrader.utils.determine_grade`), `needs_manual_grade` set as nbgrader
sets it, "No response." on untouched answer cells, and every score an instructor set by hand kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import nbformat
from nbgrader import utils
from nbgrader.api import Assignment, Comment, Grade, Gradebook, Student, SubmittedAssignment, SubmittedNotebook
from sqlalchemy.exc import OperationalError

COMMIT_TRIES = 5  # another grading run may hold the database for a moment (SQLite locks it whole)


@dataclass
class Graded:
    student_id: str
    notebook: nbformat.NotebookNode  # the autograded notebook, outputs in place


def save_class(db_url: str, course_id: str, assignment_id: str, notebook_id: str, graded: list[Graded]) -> None:
    """Create or update each student's submission and its grades and comments, then commit once.
    A concurrent writer that wins the race makes this run again on the updated database."""
    for attempt in range(COMMIT_TRIES):
        with Gradebook(db_url, course_id) as gradebook:
            session = gradebook.db
            try:
                assignment = session.query(Assignment).filter(Assignment.name == assignment_id).one()
                notebook = next(n for n in assignment.notebooks if n.name == notebook_id)
                students = {s.id: s for s in session.query(Student).filter(Student.id.in_([g.student_id for g in graded]))}
                submissions = {
                    s.student.id: s for s in session.query(SubmittedAssignment)
                    .filter(SubmittedAssignment.assignment == assignment)
                    .filter(SubmittedAssignment.student_id.in_([g.student_id for g in graded]))
                }
                for entry in graded:
                    student = students.get(entry.student_id) or Student(id=entry.student_id)
                    submission = submissions.get(entry.student_id) or _new_submission(assignment, student)
                    session.add(submission)
                    _record(submission, notebook, entry.notebook)
                session.commit()
                return
            except OperationalError:
                session.rollback()
                if attempt == COMMIT_TRIES - 1:
                    raise
        time.sleep(0.5 * 2 ** attempt)


def _new_submission(assignment: Assignment, student: Student) -> SubmittedAssignment:
    """The same structure nbgrader's `Gradebook.add_submission` mirrors from the assignment."""
    submission = SubmittedAssignment(assignment=assignment, student=student)
    for notebook in assignment.notebooks:
        submitted = SubmittedNotebook(notebook=notebook, assignment=submission)
        for cell in notebook.grade_cells:
            Grade(cell_id=cell.id, notebook=submitted)
        for cell in notebook.solution_cells:
            Comment(cell_id=cell.id, notebook=submitted)
        for cell in notebook.task_cells:
            Comment(cell_id=cell.id, notebook=submitted)
            Grade(cell_id=cell.id, notebook=submitted)
    return submission


def _record(submission: SubmittedAssignment, notebook, autograded: nbformat.NotebookNode) -> None:
    """Auto scores and comments from the autograded notebook's cells, as SaveAutoGrades sets them."""
    submitted = next(n for n in submission.notebooks if n.notebook.name == notebook.name)
    grades = {g.name: g for g in submitted.grades}
    comments = {c.name: c for c in submitted.comments}
    for cell in autograded.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if utils.is_grade(cell) and grade_id in grades:
            grade = grades[grade_id]
            grade.auto_score, _ = utils.determine_grade(cell)
            grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        if (utils.is_solution(cell) or utils.is_task(cell)) and grade_id in comments:
            untouched = cell.metadata.nbgrader.get("checksum") == utils.compute_checksum(cell)
            comments[grade_id].auto_comment = "No response." if untouched and not utils.is_task(cell) else None
