"""The hostile class: one `grade()` run over every attack and every kind of broken file.

The corpus (tests/hostile/corpus.py) is one LMS-style zip. It is graded once, two jobs at a time,
with small limits, into a fresh workspace whose course folder holds a planted canary. Then, for
every student: exactly the points it earned, a row in both reports, and a reason it can read; and
for the batch: it completed, the course and the repository are unchanged apart from the expected
records, no sandboxed process survives, and nothing reached the network listener.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader import paths
from grader.course.workspace import Workspace
from grader.course.grade import NOTEBOOK_ID, grade
from grader.grading.verdicts import verdict_path
from grader.grading.sandbox import Limits, isolation_available
from grader.grading.verdicts import Verdict
from hostile.corpus import CORPUS, Context, by_student, write_class_zip
from hostile.observe import Listener, host_ip, sandbox_processes

pytestmark = [
    pytest.mark.skipif(
        not isolation_available(),
        reason="bubblewrap namespaces are not available: the WEAKER mode is not meant to stop these",
    ),
    pytest.mark.slow,
]

LIMITS = Limits(cell_timeout_s=10, notebook_timeout_s=180, memory_bytes=3 * 2**30)
# What grading is expected to write into the course folder; everything else must stay as it was.
RECORDS = {"gradebook.db", "submitted", "autograded", "feedback", "verdicts", ".grader_secret"}
ESCAPES = [Path("/tmp/zipslip_zed.ipynb"), Path("/tmp/absolute_abe.ipynb")]  # where unsafe zip entries would land
CANARY = "the course folder is not the student's to write\n"


def tree_digest(root: Path, skip: set[str] = frozenset()) -> dict[str, str]:
    """Relative path -> sha256 of every file under root, leaving out the top-level names in `skip`."""
    digests = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in skip or not path.is_file() or "__pycache__" in relative.parts:
            continue
        digests[relative.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


REPO_PARTS = ["solutions", "notebooks", paths.SOURCE_DIR.as_posix(), "checks"]


def repo_digest() -> dict[str, str]:
    digests = {}
    for part in REPO_PARTS:
        path = paths.REPO / part
        if path.is_file():
            digests[part] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digests.update({f"{part}/{k}": v for k, v in tree_digest(path).items()})
    return digests


@dataclass
class Graded:
    workspace: Workspace
    rows: list
    seconds: float
    course_before: dict[str, str]
    course_after: dict[str, str]
    repo_before: dict[str, str]
    repo_after: dict[str, str]
    processes_before: list[str]
    processes_after: list[str]
    peers: list
    totals: dict[str, float]  # grades.csv
    by_test: dict[str, dict[str, tuple[float, str]]]  # grades_by_test.csv: student -> test -> (score, diagnostic)

    def verdict(self, student_id: str) -> Verdict:
        return Verdict.load(verdict_path(self.workspace.verdicts, student_id, paths.ASSIGNMENT, NOTEBOOK_ID))

    def feedback(self, student_id: str) -> Path:
        return self.workspace.root / "feedback" / student_id / paths.ASSIGNMENT / f"{NOTEBOOK_ID}.html"

    def told(self, student_id: str) -> str:
        """Everything the student is told: notes and flags (the notes cell), diagnostics, and the
        outputs kept from their cells."""
        verdict = self.verdict(student_id)
        outputs = [json.dumps(o) for cell in verdict.cells for o in cell.get("outputs", [])]
        diagnostics = [d for _, d in self.by_test[student_id].values()]
        return "\n".join(verdict.notes + verdict.flags + diagnostics + [c.message for c in verdict.checks] + outputs)


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Graded:
    return grade_hostile_class(tmp_path_factory.mktemp("hostile"))


def grade_hostile_class(base: Path, scheduler: str | None = None) -> Graded:
    """The corpus graded here, or on the Dask cluster at `scheduler` (test_cluster.py)."""
    out = base / "grading"
    workspace = Workspace(out, limits=LIMITS)  # the same limits as the grading run, hence the same config
    workspace.setup()  # the course exists before the class is graded: plant a canary in it
    (workspace.root / "canary.txt").write_text(CANARY)
    for path in ESCAPES:
        path.unlink(missing_ok=True)
    course_before, repo_before = tree_digest(workspace.root, RECORDS), repo_digest()
    processes_before = sandbox_processes()
    listener = Listener()
    try:
        ctx = Context(course=workspace.root, port=listener.port, host_ip=host_ip())
        archive = write_class_zip(ctx, base / "class_download.zip")
        start = time.perf_counter()
        rows = grade(archive, out, jobs=2, limits=LIMITS, scheduler=scheduler)
        seconds = time.perf_counter() - start
        time.sleep(0.5)  # give a kernel killed last a moment to be reaped
    finally:
        listener.close()
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        totals = {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}
    by_test: dict[str, dict[str, tuple[float, str]]] = {}
    with open(out / paths.ASSIGNMENT / "grades_by_test.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_test.setdefault(row["student_id"], {})[row["test"]] = (float(row["final_score"]), row["diagnostic"])
    print(f"\nhostile class: {len(rows)} submissions graded in {seconds:.0f} s")
    return Graded(workspace, rows, seconds, course_before, tree_digest(workspace.root, RECORDS), repo_before,
                  repo_digest(), processes_before, sandbox_processes(), listener.peers, totals, by_test)


def test_corpus_is_large_and_ids_are_unique():
    assert len([e for e in CORPUS if e.kind == "hostile"]) >= 20
    assert len(CORPUS) >= 40  # with the broken files and odd names
    assert len(by_student()) == len(CORPUS)


def test_the_batch_completes_with_one_row_per_submission(graded):
    expected = set(by_student())
    assert {r.student_id for r in graded.rows} == expected
    assert set(graded.totals) == expected, "grades.csv (nbgrader's export) lacks or adds students"
    assert set(graded.by_test) == expected
    tests = {len(per_test) for per_test in graded.by_test.values()}
    assert tests == {10}, "every student has a row for each of the 10 graded cells"
    missing = [sid for sid in expected if not graded.feedback(sid).is_file()]
    assert not missing, f"no feedback for {missing}"


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: e.student_id)
def test_every_submission_gets_exactly_the_points_it_earned(graded, entry):
    per_test = {test: score for test, (score, _) in graded.by_test[entry.student_id].items()}
    expected = {test: entry.points.get(test, 0.0) for test in per_test}
    assert per_test == expected, f"{entry.student_id}: points per test"
    assert graded.totals[entry.student_id] == sum(entry.points.values()), f"{entry.student_id}: gradebook total"


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: e.student_id)
def test_every_submission_is_told_why(graded, entry):
    assert entry.reason in graded.told(entry.student_id)


# What an instructor is told about each attack that leaves a trace (grader/grading/integrity.py).
FLAGGED = {
    "eq_always_true": "GroupNorm produced an object of type _AlwaysEqual",
    "blanks_later_cells": "Probes never ran",
    "patches_tests_module": "tried to reach files outside its folder: glob /tmp/*/grader/*.py",
    "reads_solutions": "glob /work/*/solutions/*.py",
    "writes_course": "gradebook.db",
    "forges_probe_files": "in a form the grader's probes never write",
    "os_exit": "The kernel was restarted 1 time",
    "ignores_sigterm": "ran past the time limit twice",
}


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: e.student_id)
def test_attacks_are_flagged_and_damaged_files_are_not(graded, entry):
    flags = graded.verdict(entry.student_id).flags
    if entry.student_id in FLAGGED:
        assert any(FLAGGED[entry.student_id] in flag for flag in flags), flags
    elif entry.kind != "hostile":  # an editor's damage, an odd file name: honest
        assert flags == []


def test_every_notebook_ran_in_the_sandbox(graded):
    """No submission may spoil the next one's run (a fork flood once left a slot's user at its
    process limit, and the next student's kernel could not start)."""
    for student_id in by_student():
        verdict = graded.verdict(student_id)
        assert verdict.isolation == "bubblewrap", f"{student_id}: {verdict.notes[-1:]}"


def test_the_course_folder_is_unchanged_apart_from_its_records(graded):
    root = graded.workspace.root
    assert (root / "canary.txt").read_text() == CANARY
    assert graded.course_after == graded.course_before
    assert b"tampered" not in (root / "gradebook.db").read_bytes()
    # feedback/ also holds the one shared copy of the figures that the pages show (feedback.share_figures)
    shared = {p.name for p in (root / "feedback").iterdir() if p.is_file()}
    assert shared <= {p.name for p in (root / "release" / paths.ASSIGNMENT).iterdir()}
    for records in ("submitted", "autograded", "feedback", "verdicts/" + paths.ASSIGNMENT):
        names = {p.name for p in (root / records).iterdir()} - (shared if records == "feedback" else set())
        assert names == set(by_student()), f"{records}/ holds other students"


def test_the_repository_is_unchanged(graded):
    assert graded.repo_after == graded.repo_before


def test_nothing_is_extracted_outside_the_scratch_folder(graded):
    assert not [p for p in ESCAPES if p.exists()]


def test_no_sandboxed_process_survives(graded):
    assert not graded.processes_before, f"left over from an earlier run: {graded.processes_before}"
    assert not graded.processes_after


def test_no_connection_reaches_the_listener(graded):
    assert graded.peers == []


def test_output_floods_are_not_kept(graded):
    size = verdict_path(graded.workspace.verdicts, "output_flood", paths.ASSIGNMENT, NOTEBOOK_ID).stat().st_size
    assert size < 1_000_000
    assert graded.feedback("output_flood").stat().st_size < 2_000_000


def test_student_chosen_names_are_not_html_in_feedback(graded):
    page = graded.feedback("img_src_x_onerror_alert_1").read_text(encoding="utf-8")
    assert "onerror=alert(1)" in page  # the note is there ...
    assert "<img src=x" not in page  # ... as text, not as an element
