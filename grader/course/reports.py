"""The class's reports, all read from nbgrader's gradebook: one source of truth for every score.

    grades.csv            nbgrader's export layout (gradebook.export_csv)
    grades_by_test.csv    student, test, auto, manual, extra credit, final and maximum score, diagnosis
    summary.json          per student: final total, autograded total, hand-graded tests, notes, flags
    score_histogram.png   the final totals
    grades_canvas.csv     with `--export canvas`: Canvas's gradebook import layout

A score an instructor set by hand in the formgrader is in the gradebook, so after a regrade every
report shows it; the autograder's own numbers stay beside it in the `auto_score` column.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


from .. import paths
from ..grading import intake
from ..grading.verdicts import Verdict, clean_message
from . import database
from .commands import NbgraderError
from .gradebook import CellGrade, StudentGrades, read_class

NOTEBOOK_ID = paths.NOTEBOOK_NAME.removesuffix(".ipynb")
COURSE_ID = "w3d4"  # c.CourseDirectory.course_id in course/nbgrader_config.py
CANVAS_COLUMN = "W3D4 part 2: the DDPM U-Net"


@dataclass
class TestScore:
    test: str
    auto_score: float
    manual_score: float | None  # set by hand in the formgrader, else None
    extra_credit: float
    final_score: float  # what counts: manual if set, else auto; plus extra credit
    max_score: float
    diagnostic: str


@dataclass
class Row:
    student_id: str
    original_name: str
    score: float  # the gradebook's total, late penalty deducted, as in grades.csv
    max_score: float
    auto_score: float  # what the autograder alone gave
    hand_graded: list[str] = field(default_factory=list)  # tests with a score set by hand
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    tests: list[TestScore] = field(default_factory=list)
    first_name: str | None = None
    last_name: str | None = None


def graded_cells(assignment: str = paths.ASSIGNMENT) -> list[tuple[str, float]]:
    """(grade_id, points) of every graded cell, in the release's order."""
    release = intake.release_notebook(assignment)
    return [
        (c.metadata["nbgrader"]["grade_id"], float(c.metadata["nbgrader"]["points"]))
        for c in release.cells if c.metadata["nbgrader"].get("grade")
    ]


def diagnostic(verdict: Verdict, grade_id: str) -> str:
    """One line per distinct failure message, naming the checks that gave it; never cut short
    (each message was bounded when it was judged)."""
    by_message: dict[str, list[str]] = {}
    for check in verdict.checks:
        if check.grade_id == grade_id and not check.passed:
            by_message.setdefault(check.message, []).append(check.label)
    return clean_message(" | ".join(f"{', '.join(dict.fromkeys(labels))}: {message}"
                                    for message, labels in by_message.items()), limit=None)


def read_rows(db_url: str, students: dict[str, str], verdicts: dict[str, Verdict],
              grades: dict[str, StudentGrades] | None = None, assignment: str = paths.ASSIGNMENT) -> list[Row]:
    """Every student's scores from the gradebook, with the verdict's diagnoses, notes and flags.

    `students`: student id -> the name the submission was handed in under. `grades`: what
    `gradebook.read_class` read for them, when the caller has it already."""
    if grades is None:
        grades = read_class(db_url, COURSE_ID, assignment, paths.lesson(assignment).notebook_id, students)
    cells = graded_cells(assignment)
    rows = []
    for sid in sorted(students):
        verdict, mine = verdicts[sid], grades.get(sid)
        if mine is None:  # the run stopped before the gradebook was written, or another run removed the student
            raise NbgraderError(f"the gradebook {database.describe(db_url)} has no graded notebook for {sid}; "
                                "run the same command again")
        tests = [_test_score(grade_id, mine.cells[grade_id], points, diagnostic(verdict, grade_id))
                 for grade_id, points in cells if grade_id in mine.cells]
        rows.append(Row(
            student_id=sid, original_name=students[sid],
            score=round(mine.score - mine.late_penalty, 2), max_score=mine.max_score,
            auto_score=round(sum(t.auto_score for t in tests), 2),
            hand_graded=[t.test for t in tests if t.manual_score is not None],
            notes=list(verdict.notes), flags=list(verdict.flags), tests=tests,
            first_name=mine.first_name, last_name=mine.last_name,
        ))
    return rows


def _test_score(grade_id: str, grade: CellGrade, points: float, diagnosis: str) -> TestScore:
    return TestScore(
        test=grade_id, auto_score=grade.auto_score or 0.0, manual_score=grade.manual_score,
        extra_credit=grade.extra_credit or 0.0, final_score=round(grade.score or 0.0, 2), max_score=points,
        diagnostic=diagnosis,
    )


def write_by_test(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "test", "auto_score", "manual_score", "extra_credit", "final_score",
                         "max_score", "diagnostic"])
        for row in rows:
            for t in row.tests:
                writer.writerow([row.student_id, t.test, t.auto_score, "" if t.manual_score is None else t.manual_score,
                                 t.extra_credit, t.final_score, t.max_score, t.diagnostic])


def write_summary(rows: list[Row], path: Path) -> None:
    summary = [{k: v for k, v in asdict(row).items() if k not in ("tests", "first_name", "last_name")}
               for row in rows]
    path.write_text(json.dumps(summary, indent=1))


def write_canvas(rows: list[Row], path: Path) -> None:
    """Canvas's gradebook import: the five identity columns, then one column for this assignment,
    and a "Points Possible" row. Canvas matches rows on SIS Login ID, so nbgrader's student ids
    must be the students' Canvas logins; a new column name makes a new assignment in Canvas."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", CANVAS_COLUMN])
        writer.writerow(["Points Possible", "", "", "", "", f"{rows[0].max_score:g}" if rows else ""])
        for row in rows:
            name = ", ".join(n for n in (row.last_name, row.first_name) if n) or row.student_id
            writer.writerow([clean_message(name, limit=None), "", "", clean_message(row.student_id, limit=None), "",
                             f"{row.score:g}"])


def print_summary(rows: list[Row], isolation: str) -> None:
    width = max([len(r.student_id) for r in rows] + [7])
    print(f"\n{'student':<{width}}  {'score':>11}  notes")
    for r in rows:
        lines = [f"FLAG: {flag}" for flag in r.flags] + r.notes
        if r.hand_graded:
            lines.insert(0, f"set by hand: {', '.join(r.hand_graded)} (autograder alone: {r.auto_score:g})")
        note = (lines[0] if lines else "")[:90] + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "")
        print(f"{r.student_id:<{width}}  {r.score:>5g} / {r.max_score:<4g}  {note}")
    print(f"\n{len(rows)} submissions graded; sandbox isolation: {isolation}")
    hand = [r.student_id for r in rows if r.hand_graded]
    if hand:
        print(f"Scores set by hand in the formgrader are kept for {len(hand)} student(s): {', '.join(hand)}")
    flagged = [r.student_id for r in rows if r.flags]
    if flagged:
        print(f"Integrity flags for {len(flagged)} student(s): {', '.join(flagged)} (see summary.json or the "
              "formgrader's notes)")


def save_histogram(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    max_score = rows[0].max_score if rows else 1
    ax.hist([r.score for r in rows], bins=[x - 0.5 for x in range(int(max_score) + 2)], color="#4c72b0",
            edgecolor="white")
    ax.set(xlabel=f"score (out of {max_score:g})", ylabel="students", title="W3D4 part 2: score distribution")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
