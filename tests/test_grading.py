"""Grading the bundled sample class, through `python -m grader grade` and through plain nbgrader.

Every student's points per test are pinned: the cheats (an always-equal tensor, an input
transformer that blanks the rest of the notebook, code that hunts for the solution on disk) get
nothing they did not earn, and honest partial work gets exactly its share.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from grader import paths
from grader.course.commands import tool_env
from grader.grading.plan import checks_for, seed_for
from grader.course.workspace import Workspace
from grader.course.grade import NOTEBOOK_ID
from grader.grading.plan import course_secret
from grader.grading.verdicts import verdict_path
from grader.grading.verdicts import SKIP_TAG, Verdict

# Kernels, sandboxes or nbgrader commands: minutes, so only in `make test`.
pytestmark = pytest.mark.slow

TESTS = ["test_groupnorm", "test_sinusoidal_embeddings", "test_swish", "test_self_attention", "test_attention_block",
         "test_residual_block", "test_down_block", "test_up_block", "test_mid_block", "test_unet"]
FULL = dict(zip(TESTS, [2, 1, 1, 2, 1, 2, 2, 2, 1, 2]))
NOTHING = dict.fromkeys(TESTS, 0)
EXPECTED = {
    "ada_complete": FULL,
    "hana_skips_bonus": FULL,
    "ben_untouched": NOTHING,
    "cleo_first_half": {**NOTHING, "test_groupnorm": 2, "test_sinusoidal_embeddings": 1, "test_swish": 1, "test_self_attention": 2},
    # Unbiased variance, softmax over the queries, mid block in the wrong order; the attention
    # block inherits the broken attention, and the Unet's numbers are wrong with that mid block.
    "dev_classic_mistakes": {**FULL, "test_groupnorm": 0, "test_self_attention": 0, "test_attention_block": 0,
                             "test_mid_block": 0, "test_unet": 0},
    "eve_always_equal": NOTHING,
    # Blanking every later cell also blanks the grader's probes: no data is no points.
    "finn_blanks_cells": NOTHING,
    "gus_reads_solutions": NOTHING,
}
DIAGNOSTICS = {
    ("ben_untouched", "test_unet"): "Unet is not implemented yet",
    ("dev_classic_mistakes", "test_groupnorm"): "unbiased variance",
    ("dev_classic_mistakes", "test_self_attention"): "sum to 1 over the keys",
    ("dev_classic_mistakes", "test_mid_block"): "residual block -> attention block -> residual block",
    ("dev_classic_mistakes", "test_unet"): "This check runs your MidBlock, which fails test_mid_block: fix that first.",
    ("eve_always_equal", "test_groupnorm"): "GroupNorm",
}


# The other lessons' sample classes, graded by the same command: each student's points per test.
PART1 = {"test_normalize_img": 1, "test_linear_schedule": 1, "test_q_eq2": 1, "test_q_eq4": 2, "test_noise_schedule": 2,
         "test_noise_img": 2, "test_reconstruct": 1, "test_tiny_diffuser": 1, "test_train_loop": 2, "test_ddpm_sample": 2}
PART3 = {"test_frechet_distance": 3, "test_classifier_score": 2}


def _class(full: dict[str, int], first_half: list[str], mistaken: list[str]) -> dict[str, dict[str, int]]:
    nothing = dict.fromkeys(full, 0)
    return {
        "ada_complete": full, "ben_untouched": nothing,
        "cleo_first_half": {**nothing, **{t: full[t] for t in first_half}},
        "dev_classic_mistakes": {**full, **dict.fromkeys(mistaken, 0)},
        # The cheat's patches above the first stub leave the stub: nothing passes.
        "eve_always_equal": nothing, "finn_blanks_cells": nothing, "gus_reads_solutions": nothing,
    }


OTHER_EXPECTED = {
    "w3d4_part1": _class(PART1, ["test_normalize_img", "test_linear_schedule", "test_q_eq2", "test_q_eq4",
                                 "test_noise_schedule"], ["test_q_eq2", "test_train_loop", "test_ddpm_sample"]),
    "w3d4_part3": _class(PART3, ["test_frechet_distance"], ["test_frechet_distance", "test_classifier_score"]),
}
OTHER_DIAGNOSTICS = {
    ("w3d4_part1", "test_q_eq2"): "Scale by sqrt(1 - beta_t), not (1 - beta_t)",
    ("w3d4_part1", "test_train_loop"): "compares the prediction with the clean image",
    ("w3d4_part1", "test_ddpm_sample"): "The sign of the noise term is flipped",
    ("w3d4_part3", "test_frechet_distance"): "missing its matrix square root",
    ("w3d4_part3", "test_classifier_score"): "the score is its exponential",
}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=paths.REPO, env=tool_env(),
                          capture_output=True, text=True, timeout=1200)


def by_test(out: Path, assignment: str = paths.ASSIGNMENT) -> dict[str, dict[str, tuple[float, str]]]:
    rows: dict[str, dict[str, tuple[float, str]]] = {}
    with open(out / assignment / "grades_by_test.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["student_id"], {})[row["test"]] = (float(row["final_score"]), row["diagnostic"])
    return rows


def nbgrader_totals(csv_path: Path, assignment: str = paths.ASSIGNMENT) -> dict[str, float]:
    """One assignment's totals from a grades.csv in nbgrader's export layout (a row per student and assignment)."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["assignment"] == assignment]
    students = [r["student_id"] for r in rows]
    assert len(students) == len(set(students)), f"duplicate gradebook rows: {students}"
    return {r["student_id"]: float(r["raw_score"]) for r in rows}


def repo_digest() -> dict[str, str]:
    """Every file of the repository outside out/ and .venv/, by content."""
    skip = {"out", ".venv", ".git", ".pytest_cache"}
    return {
        p.relative_to(paths.REPO).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in paths.REPO.rglob("*")
        if p.is_file() and not skip & set(p.relative_to(paths.REPO).parts) and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grading")
    before = repo_digest()
    result = run_cli("grade", "--out", str(out), "--jobs", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert repo_digest() == before, "grading wrote into the repository"
    return out


def test_cli_gives_exact_points_per_test(graded: Path):
    rows = by_test(graded)
    assert set(rows) == set(EXPECTED)
    for student, expected in EXPECTED.items():
        got = {test: score for test, (score, _) in rows[student].items()}
        assert got == expected, f"{student}: {got}"
    for (student, test), phrase in DIAGNOSTICS.items():
        assert phrase in rows[student][test][1], rows[student][test][1]
    for student, tests in rows.items():
        for test, (score, diag) in tests.items():
            assert (diag == "") == (score == FULL[test]), f"{student} {test}: {score} with diagnostic {diag!r}"


@pytest.mark.parametrize("assignment", list(OTHER_EXPECTED))
def test_the_other_lessons_sample_classes_get_exact_points(graded: Path, assignment: str):
    """`python -m grader grade` with no arguments grades every lesson's sample class into one course."""
    rows = by_test(graded, assignment)
    expected = OTHER_EXPECTED[assignment]
    assert set(rows) == set(expected)
    for student, points in expected.items():
        assert {test: score for test, (score, _) in rows[student].items()} == points, student
        for test, (score, diagnostic) in rows[student].items():
            assert (diagnostic == "") == (score == points[test] == expected["ada_complete"][test]), (student, test)
    for (lesson, test), phrase in OTHER_DIAGNOSTICS.items():
        if lesson == assignment:
            assert phrase in rows["dev_classic_mistakes"][test][1], rows["dev_classic_mistakes"][test][1]
    totals = nbgrader_totals(graded / "grades.csv", assignment)  # nbgrader lists every student of the course
    assert {s: totals[s] for s in expected} == {student: float(sum(points.values())) for student, points in expected.items()}
    assert totals.keys() - expected.keys() == {"hana_skips_bonus"} and totals["hana_skips_bonus"] == 0  # part 2 only


def _flags_line(checks: int) -> dict[str, list[str]]:
    return {
        "eve_always_equal": [
            "GroupNorm produced an object of type _AlwaysEqual (a torch.Tensor subclass defined by the submission, "
            "which redefines __bool__, __eq__, __ne__) where a tensor was due (4 checks)."],
        "finn_blanks_cells": [
            f"Probes never ran: {checks} of {checks} checks got no result, although the notebook ran to the end (cells "
            "were blanked or the grader's code was stopped)."],
    }


def test_exactly_the_cheats_are_flagged_with_their_reasons(graded: Path):
    """An attack and a student who gave up both score 0; the integrity flags tell them apart, and
    no honest student, however wrong, gets one. They show in the notes at the top of the feedback."""
    release = nbformat.read(paths.REPO / paths.RELEASE_DIR / paths.NOTEBOOK_NAME, as_version=4)
    expected = _flags_line(len(checks_for(release)))
    flags = {s: Verdict.load(verdict_path(Workspace(graded).verdicts, s, paths.ASSIGNMENT, NOTEBOOK_ID)).flags
             for s in EXPECTED}
    gus = flags.pop("gus_reads_solutions")
    assert len(gus) == 1 and gus[0].startswith("The notebook's code tried to reach files outside its folder: "), gus
    for reach in ("glob ../../../gradebook.db", "glob /work/*/solutions/*solution*.py", "glob /grader/*"):
        assert reach in gus[0], gus
    assert flags == {s: expected.get(s, []) for s in flags}
    feedback = graded / "course" / "feedback"
    for student in EXPECTED:
        html = (feedback / student / paths.ASSIGNMENT / "w3d4_part2_unet.html").read_text(encoding="utf-8")
        assert ("Integrity flags" in html) == (student in ("eve_always_equal", "finn_blanks_cells", "gus_reads_solutions"))


def test_the_closing_demo_is_not_run_when_grading(graded: Path):
    """The lesson's training demo costs time and earns nothing: grading skips the tagged cells and
    runs every other code cell."""
    release = nbformat.read(paths.REPO / paths.RELEASE_DIR / paths.NOTEBOOK_NAME, as_version=4)
    code = [i for i, c in enumerate(release.cells) if c.cell_type == "code"]
    demo = {i for i in code if SKIP_TAG in release.cells[i].metadata.get("tags", [])}
    graded_cells = {i for i in code if release.cells[i].metadata["nbgrader"]["grade"]}
    assert len(demo) >= 4, "the demo cells are tagged in the lesson source"
    verdict = Verdict.load(verdict_path(Workspace(graded).verdicts, "ada_complete", paths.ASSIGNMENT, NOTEBOOK_ID))
    ran = {cell["index"] for cell in verdict.cells}
    assert ran == set(code) - demo - graded_cells


def test_gradebook_export_matches(graded: Path):
    totals = nbgrader_totals(graded / "grades.csv")
    assert totals == {student: float(sum(points.values())) for student, points in EXPECTED.items()}
    assert (graded / paths.ASSIGNMENT / "score_histogram.png").stat().st_size > 1000


def test_feedback_explains_and_hides_the_grader(graded: Path):
    """Feedback shows the verdicts, never the hidden checks' inputs or the grader's own code."""
    feedback = graded / "course" / "feedback"
    secret = course_secret(graded / "course" / ".grader_secret")
    checks = checks_for(nbformat.read(paths.REPO / paths.RELEASE_DIR / paths.NOTEBOOK_NAME, as_version=4))
    for student in EXPECTED:
        html = (feedback / student / paths.ASSIGNMENT / "w3d4_part2_unet.html").read_text(encoding="utf-8")
        assert "Notes from the grader" in html
        hidden = ["kernel_probe", "run_probe", "_w3d4_grader", "__tensor__", secret.hex()]
        hidden += [f"seed={seed_for(secret, student, check)}" for check in checks]
        for text in hidden:
            assert text not in html, f"{student}'s feedback shows grader internals ({text})"
    dev = (feedback / "dev_classic_mistakes" / paths.ASSIGNMENT / "w3d4_part2_unet.html").read_text(encoding="utf-8")
    assert "unbiased variance" in dev and "hidden check" in dev


def test_plain_nbgrader_autograde_runs_the_secure_path(tmp_path: Path):
    """`nbgrader autograde` with our config, on the raw sample notebooks, gives the same totals."""
    workspace = Workspace(tmp_path)
    workspace.setup()
    for notebook in (paths.REPO / paths.SAMPLE_DIR).glob("*.ipynb"):
        target = workspace.submitted(notebook.stem)
        target.parent.mkdir(parents=True)
        shutil.copyfile(notebook, target)
    workspace.nbgrader("autograde", paths.ASSIGNMENT)
    workspace.nbgrader("export", f"--CsvExportPlugin.to={tmp_path / 'grades.csv'}")
    totals = nbgrader_totals(tmp_path / "grades.csv")
    assert totals == {student: float(sum(points.values())) for student, points in EXPECTED.items()}


def _small_class(folder: Path, students: list[str]) -> Path:
    folder.mkdir()
    for student in students:
        shutil.copyfile(paths.REPO / paths.SAMPLE_DIR / f"{student}.ipynb", folder / f"{student}.ipynb")
    return folder


def _verdicts(out: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime for p in (out / "course" / "verdicts").rglob("*.json")}


def test_killed_run_resumes_and_regrade_touches_one_student(tmp_path: Path):
    students = ["ada_complete", "ben_untouched", "cleo_first_half", "dev_classic_mistakes"]
    submissions = _small_class(tmp_path / "class", students)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "grader", "grade", str(submissions), "--out", str(out), "--jobs", "1"]
    run = subprocess.Popen(command, cwd=paths.REPO, env=tool_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(_verdicts(out)) < 1 and time.time() < deadline and run.poll() is None:
        time.sleep(0.2)
    run.kill()
    run.wait()
    first = _verdicts(out)
    assert 1 <= len(first) < len(students), "the run should have been killed midway"

    resumed = run_cli("grade", str(submissions), "--out", str(out), "--jobs", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(first)} submissions already judged" in resumed.stdout
    second = _verdicts(out)
    assert all(second[s] == first[s] for s in first), "a finished verdict was recomputed"
    assert nbgrader_totals(out / "grades.csv") == {s: float(sum(EXPECTED[s].values())) for s in students}

    # Ben finally does the first exercise: regrade him alone.
    ben = nbformat.read(paths.REPO / paths.SAMPLE_DIR / "ada_complete.ipynb", as_version=4)
    nbformat.write(ben, submissions / "ben_untouched.ipynb")
    regraded = run_cli("grade", str(submissions), "--out", str(out), "--student", "ben_untouched")
    assert regraded.returncode == 0, regraded.stderr
    third = _verdicts(out)
    assert third["ben_untouched"] > second["ben_untouched"]
    assert all(third[s] == second[s] for s in students if s != "ben_untouched")
    totals = nbgrader_totals(out / "grades.csv")
    assert totals["ben_untouched"] == sum(FULL.values()) and len(totals) == len(students)


def test_other_database_url_and_bad_arguments(tmp_path: Path):
    submissions = _small_class(tmp_path / "class", ["cleo_first_half"])
    db = tmp_path / "elsewhere" / "grades.sqlite"
    db.parent.mkdir()
    result = run_cli("grade", str(submissions), "--out", str(tmp_path / "out"), "--db", f"sqlite:///{db}")
    assert result.returncode == 0, result.stderr
    assert db.stat().st_size > 0 and not (tmp_path / "out" / "course" / "gradebook.db").exists()
    assert nbgrader_totals(tmp_path / "out" / "grades.csv") == {"cleo_first_half": 6.0}, by_test(tmp_path / "out")

    missing = run_cli("grade", str(tmp_path / "nope"), "--out", str(tmp_path / "out2"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    unknown = run_cli("grade", str(submissions), "--out", str(tmp_path / "out"), "--student", "zed")
    assert unknown.returncode == 2 and "no submission for student 'zed'" in unknown.stderr


@pytest.mark.slow
def test_same_points_with_fresh_secrets_other_jobs_and_a_busy_core(tmp_path: Path):
    """Three gradings of the sample class, each into a new course (so with a new secret, hence new
    inputs for every check), with one or two jobs, while another process keeps a core busy."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        points = []
        for run, jobs in enumerate(("2", "1", "2")):
            out = tmp_path / f"run{run}"
            result = run_cli("grade", "--assignment", paths.ASSIGNMENT, "--out", str(out), "--jobs", jobs)
            assert result.returncode == 0, result.stdout + result.stderr
            points.append({s: {t: score for t, (score, _) in tests.items()} for s, tests in by_test(out).items()})
    finally:
        busy.kill()
        busy.wait()
    secrets = {(tmp_path / f"run{run}" / "course" / ".grader_secret").read_text() for run in range(3)}
    assert len(secrets) == 3, "each run should have had a secret of its own"
    assert points[0] == points[1] == points[2]
    assert points[0] == {s: {t: float(p) for t, p in e.items()} for s, e in EXPECTED.items()}
