"""The class in nbgrader's gradebook in bulk (grader/course/gradebook.py).

Fast: a real SQLite gradebook made with nbgrader's own API; what `save_class` stores, that a score or
comment set by hand survives a regrade, that the number of SQL statements does not grow with the
class, and that `export_csv` writes what `nbgrader export` writes.

Slow: the sample class through `finish` and then through nbgrader's own `autograde`,
`generate_feedback` and `export` on the same verdicts: the gradebook, the autograded notebooks,
the feedback pages and grades.csv come out the same.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Comment, Grade, Gradebook
from sqlalchemy import event
from sqlalchemy.engine import Engine

from grader import paths
from grader.course import gradebook, grade
from grader.course.commands import tool_env
from grader.course.feedback import shared_images
from grader.course.gradebook import AutoGrades
from grader.course.reports import COURSE_ID, NOTEBOOK_ID
from grader.course.workspace import Workspace

TESTS = {"test_a": 2.0, "test_b": 3.0}
ANSWERS = ["answer_a", "answer_b"]
A = paths.ASSIGNMENT


@pytest.fixture
def db(tmp_path, monkeypatch) -> str:
    """An empty class: the assignment, its notebook, two graded cells and two answer cells."""
    monkeypatch.setenv("PATH", tool_env()["PATH"])  # nbgrader runs `alembic` to create a gradebook
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url, COURSE_ID) as gb:
        gb.add_assignment(A)
        gb.add_notebook(NOTEBOOK_ID, A)
        for name, points in TESTS.items():
            gb.add_grade_cell(name, NOTEBOOK_ID, A, max_score=points, cell_type="code")
        for name in ANSWERS:
            gb.add_solution_cell(name, NOTEBOOK_ID, A)
    return url


def graded(student: str, a: float | None = 2.0, b: float | None = 0.0, untouched_b: bool = True) -> AutoGrades:
    return AutoGrades(student, {"test_a": a, "test_b": b}, {"answer_a": False, "answer_b": untouched_b})


def save(url: str, *entries: AutoGrades) -> None:
    gradebook.save_class(url, COURSE_ID, A, NOTEBOOK_ID, list(entries))


def read(url: str, *students: str) -> dict:
    return gradebook.read_class(url, COURSE_ID, A, NOTEBOOK_ID, students)


def test_a_class_is_stored_as_nbgrader_stores_it(db):
    save(db, graded("ada"), graded("bo", a=None, b=1.5, untouched_b=False))
    grades = read(db, "ada", "bo", "nobody")
    assert sorted(grades) == ["ada", "bo"], "a student without a submission is left out"
    ada, bo = grades["ada"], grades["bo"]
    assert (ada.score, ada.max_score, bo.score) == (2.0, 5.0, 1.5)
    assert ada.cells["answer_b"].comment == "No response." and ada.cells["answer_a"].comment is None
    assert bo.cells["answer_b"].comment is None
    with Gradebook(db, COURSE_ID) as gb:  # read back through nbgrader's own API, as the formgrader does
        assert gb.find_submission(A, "ada").score == 2.0
        assert gb.find_grade("test_a", NOTEBOOK_ID, A, "bo").needs_manual_grade, "no auto score: a person grades it"
        assert not gb.find_grade("test_b", NOTEBOOK_ID, A, "bo").needs_manual_grade
        assert gb.find_comment("answer_b", NOTEBOOK_ID, A, "ada").comment == "No response."
        assert len(gb.students) == 2


def test_a_regrade_updates_in_place_and_keeps_what_was_set_by_hand(db):
    save(db, graded("ada"))
    with Gradebook(db, COURSE_ID) as gb:
        gb.find_grade("test_b", NOTEBOOK_ID, A, "ada").manual_score = 2.5
        gb.find_comment("answer_a", NOTEBOOK_ID, A, "ada").manual_comment = "nice"
        gb.db.commit()
    save(db, graded("ada", a=1.0, b=3.0, untouched_b=False), graded("cy"))
    ada = read(db, "ada")["ada"]
    assert (ada.cells["test_a"].auto_score, ada.cells["test_b"].auto_score) == (1.0, 3.0)
    assert ada.cells["test_b"].score == 2.5, "the hand-set score wins"
    assert ada.cells["answer_a"].comment == "nice" and ada.cells["answer_b"].comment is None
    with Gradebook(db, COURSE_ID) as gb:
        assert gb.find_grade("test_b", NOTEBOOK_ID, A, "ada").needs_manual_grade, "nbgrader flags a hand-set score"
        assert gb.db.query(Grade).count() == 2 * len(TESTS) and gb.db.query(Comment).count() == 2 * len(ANSWERS)


def test_a_late_submission_gets_the_penalty_the_course_chooses(db, tmp_path):
    """nbgrader's AssignLatePenalties: the plugin named in the course's config decides the penalty of
    a submission past the due date; one on time, or with no timestamp, has none."""
    with Gradebook(db, COURSE_ID) as gb:
        gb.update_or_create_assignment(A, duedate="2026-11-30 12:00:00")
    on_time, late = datetime(2026, 11, 30, 11, 0), datetime(2026, 11, 30, 13, 0)
    config = tmp_path / "nbgrader_config.py"
    config.write_text("c = get_config()\nc.LateSubmissionPlugin.penalty_method = 'zero'\n")
    entries = [AutoGrades("ada", {"test_a": 2.0, "test_b": 3.0}, {}, late),
               AutoGrades("bo", {"test_a": 2.0, "test_b": 3.0}, {}, on_time), graded("cy")]
    save(db, *entries)  # without a plugin: nbgrader's default, no penalty
    assert [g.late_penalty for g in read(db, "ada", "bo", "cy").values()] == [0.0, 0.0, 0.0]
    gradebook.save_class(db, COURSE_ID, A, NOTEBOOK_ID, entries, gradebook.late_plugin(config))
    grades = read(db, "ada", "bo", "cy")
    assert (grades["ada"].late_penalty, grades["bo"].late_penalty, grades["cy"].late_penalty) == (5.0, 0.0, 0.0)
    with Gradebook(db, COURSE_ID) as gb:
        assert gb.find_submission(A, "ada").late_submission_penalty == 5.0
        assert gb.find_submission_notebook(NOTEBOOK_ID, A, "bo").late_submission_penalty is None


def statements(url: str, run) -> int:
    count = []
    listener = lambda *args: count.append(1)  # noqa: E731
    event.listen(Engine, "before_cursor_execute", listener)
    try:
        run()
    finally:
        event.remove(Engine, "before_cursor_execute", listener)
    return len(count)


def test_the_number_of_statements_does_not_grow_with_the_class(db):
    """The serial step's cost, counted instead of timed: writing and reading 10 or 400 students takes
    the same number of SQL statements (each one does more rows at a time)."""
    def cost(prefix: str, n: int) -> tuple[int, int]:
        students = [graded(f"{prefix}{i:03d}") for i in range(n)]
        first = statements(db, lambda: save(db, *students))
        again = statements(db, lambda: save(db, *[graded(s.student_id, a=1.0) for s in students]))
        return first, again

    small, large = cost("s", 10), cost("l", 400)
    assert large == small, f"10 students: {small} statements (new, regrade); 400: {large}"
    ids = [f"l{i:03d}" for i in range(400)]
    assert statements(db, lambda: read(db, *ids)) == statements(db, lambda: read(db, *ids[:10]))


def nbgrader_export(course: Path, db_url: str, to: Path) -> str:
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.course_id = {COURSE_ID!r}\nc.CourseDirectory.db_url = {db_url!r}\n")
    subprocess.run([sys.executable, "-m", "nbgrader", "export", f"--CsvExportPlugin.to={to}"], cwd=course,
                   env=tool_env(), check=True, capture_output=True, timeout=300)
    return to.read_text()


@pytest.mark.slow
def test_export_writes_what_nbgrader_export_writes(db, tmp_path):
    save(db, graded("ada"), graded("bo", a=None, b=1.5))
    with Gradebook(db, COURSE_ID) as gb:
        gb.add_student("zed", first_name="Zed", last_name="Zeta", email="z@example.org")  # submitted nothing
        gb.update_or_create_student("ada", first_name="Ada", last_name="Lovelace")
        gb.find_grade("test_b", NOTEBOOK_ID, A, "ada").extra_credit = 0.5
        gb.db.commit()
    ours = tmp_path / "ours.csv"
    rows = gradebook.export_csv(db, COURSE_ID, ours)
    theirs = nbgrader_export(tmp_path, db, tmp_path / "theirs.csv")
    assert rows == 3
    assert sorted(ours.read_text().splitlines()) == sorted(theirs.splitlines())


# The whole class, both ways ------------------------------------------------------------------


def snapshot(workspace: Workspace, students: list[str]) -> dict:
    """Every number and comment in the gradebook, and each student's autograded notebook and page."""
    out = {}
    with Gradebook(workspace.db_url, COURSE_ID) as gb:
        for sid in students:
            notebook = gb.find_submission_notebook(NOTEBOOK_ID, A, sid)
            out[sid, "grades"] = sorted((g.name, g.auto_score, g.manual_score, g.needs_manual_grade, g.score)
                                        for g in notebook.grades)
            out[sid, "comments"] = sorted((c.name, c.auto_comment, c.manual_comment) for c in notebook.comments)
    for sid in students:
        autograded = workspace.root / "autograded" / sid / A
        out[sid, "notebook"] = nbformat.read(autograded / paths.NOTEBOOK_NAME, as_version=4)
        out[sid, "files"] = sorted(p.relative_to(autograded).as_posix() for p in autograded.rglob("*") if p.is_file())
        page = workspace.root / "feedback" / sid / A / paths.NOTEBOOK_NAME.replace(".ipynb", ".html")
        # nbgrader's page names the figures beside it; ours, the one shared copy
        out[sid, "page"] = shared_images(page.read_text(encoding="utf-8"), paths.REPO / paths.RELEASE_DIR)
    return out


@pytest.mark.slow
def test_the_bulk_path_makes_what_nbgrader_makes(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", tool_env()["PATH"])
    students = ["ada_complete", "ben_untouched", "cleo_first_half", "hana_skips_bonus"]
    workspace = Workspace(tmp_path / "out")
    workspace.setup()
    found = [s for s in grade.collect(grade.SAMPLE_CLASS, tmp_path / "scratch") if s.student_id in students]
    notebooks = grade.intake_all(workspace, found)
    grade.judge_all(workspace, notebooks, 2, workspace.limits)
    grade.finish(workspace, students, 2)
    with Gradebook(workspace.db_url, COURSE_ID) as gb:  # an instructor's hand score, kept by both
        gb.find_grade("test_groupnorm", NOTEBOOK_ID, A, "cleo_first_half").manual_score = 1.5
        gb.db.commit()
    grade.finish(workspace, students, 2)
    ours, our_csv = snapshot(workspace, students), (workspace.out / "grades.csv").read_text()

    workspace.nbgrader("autograde", A, "--force")
    workspace.nbgrader("generate_feedback", A, "--force")
    workspace.nbgrader("export", f"--CsvExportPlugin.to={tmp_path / 'theirs.csv'}")
    theirs = snapshot(workspace, students)
    for key in ours:
        assert ours[key] == theirs[key], f"{key[0]}'s {key[1]} differs from nbgrader's"
    assert sorted(our_csv.splitlines()) == sorted((tmp_path / "theirs.csv").read_text().splitlines())
    cleo = {name: score for name, _, _, _, score in ours["cleo_first_half", "grades"]}
    assert cleo["test_groupnorm"] == 1.5
