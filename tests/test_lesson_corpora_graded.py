"""Parts 1 and 3's corpora as notebooks, graded by the real command: every correct variant earns
every point with no integrity flag, and each mutant graded scores nothing on its test, with its
diagnosis. (The in-process tests, tests/test_part1_checks.py and tests/test_part3_checks.py, run
every variant and mutant on many seeds; this shows the same verdicts come out of the sandbox.)"""

from __future__ import annotations

import copy
import csv
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader import paths
from grader.course.commands import tool_env
from grader.course.workspace import Workspace
from grader.grading.verdicts import Verdict
from grader.lesson.samples import _solution_answers
from mutants import BEGIN, END

pytestmark = pytest.mark.slow  # sandboxes


def _lesson_notebooks(assignment: str) -> tuple[nbformat.NotebookNode, dict[str, str]]:
    lesson = paths.lesson(assignment)
    source = nbformat.read(paths.REPO / lesson.source_dir / lesson.notebook, as_version=4)
    return nbformat.read(lesson.release_notebook(), as_version=4), _solution_answers(source)


def _filled(release: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        if cell.metadata["nbgrader"]["solution"] and grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def _without_future(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("from __future__"))


def _unmarked(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if line.strip() not in (BEGIN, END))


def _mutated(answers: dict[str, str], edits) -> dict[str, str]:
    """The solution's answers with a mutant's edits, each applied in the one answer cell holding it
    (answers are written without the solution markers, so the edits are read without them too)."""
    edited = dict(answers)
    for old, new in ((_unmarked(old), _unmarked(new)) for old, new in edits):
        holders = [g for g, text in edited.items() if old in text]
        assert len(holders) == 1, (old, holders)
        edited[holders[0]] = edited[holders[0]].replace(old, new)
    return edited


def part1_class() -> tuple[dict[str, nbformat.NotebookNode], dict[str, tuple[str, str]]]:
    import part1
    from part1.mistakes import MISTAKES

    release, answers = _lesson_notebooks("w3d4_part1")
    notebooks = {}
    last = list(answers)[-1]
    for name in part1.VARIANTS:
        # The variant answers every exercise at once, so it goes in the last answer cell (the earlier ones
        # keep their stubs, and their demos fail as they would for a student who answers at the end).
        # It imports the lesson's given classes from part 1's module, which the notebook defines itself.
        code = _without_future((part1.HERE / "variants" / f"{name}.py").read_text(encoding="utf-8"))
        code = "\n".join(line for line in code.splitlines() if not line.startswith("from w3d4_part1_"))
        notebooks[f"correct_{name}"] = _filled(release, {last: code})
    chosen = {m.test: m for m in MISTAKES}  # one mistake per exercise
    for mistake in chosen.values():
        notebooks[f"mutant_{mistake.name}"] = _filled(release, _mutated(answers, mistake.edits))
    return notebooks, {f"mutant_{m.name}": (m.test, m.message) for m in chosen.values()}


def part3_class() -> tuple[dict[str, nbformat.NotebookNode], dict[str, tuple[str, str]]]:
    from part3.corpus import PART3_MUTANTS
    from part3 import variants

    release, answers = _lesson_notebooks("w3d4_part3")
    library = _without_future(Path(variants.__file__).read_text(encoding="utf-8"))
    notebooks = {}
    for name in variants.VARIANTS:
        notebooks[f"correct_{name}"] = _filled(release, {
            "frechet_distance": f"{library}\n\nfrechet_distance = VARIANTS[{name!r}][0]",
            "classifier_score": f"{library}\n\nclassifier_score = VARIANTS[{name!r}][1]",
        })
    chosen = PART3_MUTANTS[::5]  # a spread of both exercises' mistakes
    for mutant in chosen:
        notebooks[f"mutant_{mutant.name}"] = _filled(release, _mutated(answers, mutant.edits))
    return notebooks, {f"mutant_{m.name}": (m.test, m.message) for m in chosen}


CLASSES = {"w3d4_part1": part1_class, "w3d4_part3": part3_class}


@pytest.mark.parametrize("assignment", list(CLASSES))
def test_correct_variants_earn_every_point_and_mutants_lose_theirs(tmp_path: Path, assignment: str):
    notebooks, mutants = CLASSES[assignment]()
    folder = tmp_path / "class"
    folder.mkdir()
    for name, nb in notebooks.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "grader", "grade", str(folder), "--assignment", assignment,
                             "--out", str(out), "--jobs", "2"], cwd=paths.REPO, env=tool_env(),
                            capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows: dict[str, dict[str, tuple[float, float, str]]] = {}
    with open(out / assignment / "grades_by_test.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["student_id"], {})[row["test"]] = (float(row["final_score"]), float(row["max_score"]),
                                                                   row["diagnostic"])
    assert set(rows) == set(notebooks)
    lost = [f"{s} {t}: {score:g}/{most:g} {d}" for s, tests in rows.items() if s.startswith("correct_")
            for t, (score, most, d) in tests.items() if score != most]
    assert not lost, "correct code lost points:\n" + "\n".join(lost)
    workspace = Workspace(out, assignment=assignment)
    flagged = {s: Verdict.load(workspace.verdict(s)).flags for s in rows if s.startswith("correct_")}
    assert {s: f for s, f in flagged.items() if f} == {}
    for student, (test, message) in mutants.items():  # (a later test built on the mistaken one may fail too)
        score, _, diagnostic = rows[student][f"test_{test}"]
        assert score == 0 and message in diagnostic, (student, diagnostic)
