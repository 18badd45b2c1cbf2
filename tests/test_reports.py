"""The class reports, read from a real nbgrader gradebook (SQLite in a temporary folder): hand-set
scores win everywhere, diagnoses are whole, the Canvas file has Canvas's layout. No sandbox, no
kernel: seconds."""

import csv
import json

import pytest
from nbgrader.api import Gradebook

from grader import paths
from grader.course import reports
from grader.course.commands import tool_env
from grader.grading.verdicts import MAX_MESSAGE, CheckResult, Verdict, clean_message

CELLS = reports.graded_cells()


def verdict(student: str, failing: dict[str, str] | None = None, flags=()) -> Verdict:
    checks = [CheckResult(f"{g}/1", g, f"{g}()", False, g not in (failing or {}), (failing or {}).get(g, "passed"))
              for g, _ in CELLS]
    return Verdict(student, "sha", "bubblewrap", 1.0, notes=["a note"], checks=checks, flags=list(flags))


@pytest.fixture
def gradebook(tmp_path, monkeypatch):
    """A gradebook with the assignment's graded cells and two autograded students: ada with full
    marks, bo with no points on the first test."""
    monkeypatch.setenv("PATH", tool_env()["PATH"])  # nbgrader runs `alembic` to create a gradebook
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    notebook = reports.NOTEBOOK_ID
    with Gradebook(url, reports.COURSE_ID) as gb:
        gb.add_assignment(paths.ASSIGNMENT)
        gb.add_notebook(notebook, paths.ASSIGNMENT)
        for grade_id, points in CELLS:
            gb.add_grade_cell(grade_id, notebook, paths.ASSIGNMENT, max_score=points, cell_type="code")
        for student in ("ada", "bo"):
            gb.add_student(student, first_name=student.title(), last_name="Lovelace" if student == "ada" else None)
            gb.add_submission(paths.ASSIGNMENT, student)
            for grade_id, points in CELLS:
                grade = gb.find_grade(grade_id, notebook, paths.ASSIGNMENT, student)
                grade.auto_score = 0.0 if (student, grade_id) == ("bo", CELLS[0][0]) else points
                grade.needs_manual_grade = False
        gb.db.commit()
    return url


def set_by_hand(url: str, student: str, grade_id: str, score: float) -> None:
    with Gradebook(url, reports.COURSE_ID) as gb:
        gb.find_grade(grade_id, reports.NOTEBOOK_ID, paths.ASSIGNMENT, student).manual_score = score
        gb.db.commit()


def test_totals_come_from_the_gradebook_and_a_hand_score_wins(gradebook):
    first, points = CELLS[0]
    full = sum(p for _, p in CELLS)
    verdicts = {"ada": verdict("ada"), "bo": verdict("bo", {first: "wrong numbers"}, flags=["Probes never ran."])}
    rows = {r.student_id: r for r in reports.read_rows(gradebook, {"ada": "ada.ipynb", "bo": "bo.ipynb"}, verdicts)}
    assert (rows["ada"].score, rows["bo"].score) == (full, full - points)
    assert rows["bo"].hand_graded == [] and rows["bo"].flags == ["Probes never ran."]

    set_by_hand(gradebook, "bo", first, points / 2)
    rows = {r.student_id: r for r in reports.read_rows(gradebook, {"ada": "a", "bo": "b"}, verdicts)}
    bo = rows["bo"]
    assert bo.score == full - points / 2 and bo.auto_score == full - points and bo.hand_graded == [first]
    test = bo.tests[0]
    assert (test.auto_score, test.manual_score, test.final_score) == (0.0, points / 2, points / 2)
    assert test.diagnostic == f"{first}(): wrong numbers"


def test_by_test_summary_and_canvas_files(gradebook, tmp_path):
    first, points = CELLS[0]
    set_by_hand(gradebook, "bo", first, 0.5)
    verdicts = {"ada": verdict("ada"), "bo": verdict("bo", {first: "=cmd|' /C calc'!A0 " + "x" * 2000})}
    rows = reports.read_rows(gradebook, {"ada": "a", "bo": "b"}, verdicts)
    reports.write_by_test(rows, tmp_path / "by_test.csv")
    reports.write_summary(rows, tmp_path / "summary.json")
    reports.write_canvas(rows, tmp_path / "canvas.csv")

    with open(tmp_path / "by_test.csv", newline="", encoding="utf-8") as f:
        by_test = list(csv.DictReader(f))
    assert len(by_test) == 2 * len(CELLS)
    bo_first = next(r for r in by_test if (r["student_id"], r["test"]) == ("bo", first))
    assert (bo_first["auto_score"], bo_first["manual_score"], bo_first["final_score"]) == ("0.0", "0.5", "0.5")
    assert len(bo_first["diagnostic"]) > MAX_MESSAGE and not bo_first["diagnostic"].endswith("...")
    assert bo_first["diagnostic"][0] not in "=+-@", "a spreadsheet would run it as a formula"
    assert all(r["manual_score"] == "" for r in by_test if r is not bo_first)

    summary = {r["student_id"]: r for r in json.loads((tmp_path / "summary.json").read_text())}
    assert summary["bo"]["score"] == sum(p for _, p in CELLS) - points + 0.5
    assert summary["bo"]["hand_graded"] == [first] and summary["ada"]["notes"] == ["a note"]

    with open(tmp_path / "canvas.csv", newline="", encoding="utf-8") as f:
        canvas = list(csv.reader(f))
    assert canvas[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", reports.CANVAS_COLUMN]
    assert canvas[1][0] == "Points Possible" and float(canvas[1][5]) == sum(p for _, p in CELLS)
    assert canvas[2][0] == "Lovelace, Ada" and canvas[2][3] == "ada" and canvas[3][:4] == ["Bo", "", "", "bo"]
    assert [float(r[5]) for r in canvas[2:]] == [summary["ada"]["score"], summary["bo"]["score"]]


def test_clean_message_is_whole_only_when_asked():
    text = "y" * (MAX_MESSAGE * 2)
    assert len(clean_message(text)) == MAX_MESSAGE and clean_message(text).endswith("...")
    assert clean_message(text, limit=None) == text
    assert clean_message("-1 points\x1b[31m", limit=None) == "'-1 points"
