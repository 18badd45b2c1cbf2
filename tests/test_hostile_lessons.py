"""The hostile class of every lesson besides part 2 (tests/hostile/lessons.py; part 2 has the full
corpus in test_hostile.py): each graded once, with small limits, into a fresh course holding a
canary. Every student gets exactly the points it earned and a reason; attacks are flagged; the
course and the repository are unchanged; no sandboxed process survives; nothing reaches the network."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from grader import paths
from grader.course.grade import grade
from grader.course.workspace import Workspace
from grader.grading.sandbox import isolation_available
from grader.grading.verdicts import Verdict
from hostile.corpus import Context
from hostile.lessons import ATTACKS, DAMAGED, expected_points, first_exercise, reason, write_class
from hostile.observe import Listener, host_ip, sandbox_processes
from test_hostile import CANARY, LIMITS, RECORDS, repo_digest, tree_digest

pytestmark = [
    pytest.mark.skipif(not isolation_available(),
                       reason="bubblewrap namespaces are not available: the WEAKER mode is not meant to stop these"),
    pytest.mark.slow,
]

LESSONS = [name for name in paths.LESSONS if name != paths.ASSIGNMENT]
STUDENTS = [a.student_id for a in ATTACKS] + list(DAMAGED)


@dataclass
class Graded:
    workspace: Workspace
    first_points: float
    by_test: dict[str, dict[str, float]]
    course_same: bool
    repo_same: bool
    processes: list[str]
    peers: list

    def verdict(self, student_id: str) -> Verdict:
        return Verdict.load(self.workspace.verdict(student_id))

    def told(self, student_id: str) -> str:
        verdict = self.verdict(student_id)
        outputs = [json.dumps(o) for cell in verdict.cells for o in cell.get("outputs", [])]
        return "\n".join(verdict.notes + verdict.flags + [c.message for c in verdict.checks] + outputs)


def _grade(lesson: paths.Lesson, base: Path) -> Graded:
    out = base / "grading"
    workspace = Workspace(out, limits=LIMITS, assignment=lesson.assignment)
    workspace.setup()
    (workspace.root / "canary.txt").write_text(CANARY)
    course_before, repo_before, processes_before = tree_digest(workspace.root, RECORDS), repo_digest(), sandbox_processes()
    assert not processes_before, f"left over from an earlier run: {processes_before}"
    listener = Listener()
    try:
        ctx = Context(course=workspace.root, port=listener.port, host_ip=host_ip())
        folder = write_class(lesson, ctx, base / "class")
        grade(folder, out, jobs=2, limits=LIMITS, assignment=lesson.assignment)
        time.sleep(0.5)  # give a kernel killed last a moment to be reaped
    finally:
        listener.close()
    by_test: dict[str, dict[str, float]] = {}
    with open(workspace.reports / "grades_by_test.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_test.setdefault(row["student_id"], {})[row["test"]] = float(row["final_score"])
    test_cell = f"test_{first_exercise(lesson)[0]}"
    points = float(next(c.metadata["nbgrader"]["points"] for c in nbformat.read(lesson.release_notebook(), as_version=4).cells
                        if c.metadata["nbgrader"]["grade_id"] == test_cell))
    return Graded(workspace, points, by_test, tree_digest(workspace.root, RECORDS) == course_before,
                  repo_digest() == repo_before, sandbox_processes(), listener.peers)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    done: dict[str, Graded] = {}

    def get(assignment: str) -> Graded:
        if assignment not in done:
            done[assignment] = _grade(paths.lesson(assignment), tmp_path_factory.mktemp(assignment))
        return done[assignment]

    return get


@pytest.mark.parametrize("assignment", LESSONS)
def test_every_student_gets_a_row_and_the_points_earned(graded, assignment):
    result = graded(assignment)
    assert set(result.by_test) == set(STUDENTS)
    for student in STUDENTS:
        assert sum(result.by_test[student].values()) == expected_points(paths.lesson(assignment), student,
                                                                       result.first_points), student


@pytest.mark.parametrize("assignment", LESSONS)
@pytest.mark.parametrize("student", STUDENTS)
def test_every_student_is_told_why(graded, assignment, student):
    assert reason(student) in graded(assignment).told(student)


@pytest.mark.parametrize("assignment", LESSONS)
def test_attacks_are_flagged_and_run_in_the_sandbox(graded, assignment):
    result = graded(assignment)
    for attack in ATTACKS:
        verdict = result.verdict(attack.student_id)
        assert verdict.isolation == "bubblewrap", attack.student_id
        if attack.flag:
            assert any(attack.flag in flag for flag in verdict.flags), (attack.student_id, verdict.flags)


@pytest.mark.parametrize("assignment", LESSONS)
def test_the_course_and_repository_are_unchanged_and_nothing_escapes(graded, assignment):
    result = graded(assignment)
    assert (result.workspace.root / "canary.txt").read_text() == CANARY
    assert result.course_same and result.repo_same
    assert not result.processes, result.processes
    assert result.peers == []
