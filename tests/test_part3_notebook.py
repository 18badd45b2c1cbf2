"""Part 3's lesson runs as a notebook, the way the autograder runs it (cells tagged skip-when-grading
left out), in a folder holding only what the lesson imports: the solution passes both tests, and
the release (every solution region a stub) fails each with "not implemented yet"."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from part3 import SOURCE_PATH
from mutants import solution_regions

REPO = Path(__file__).resolve().parents[1]
# What the part 3 folder ships beside the notebook (the build copies the same files).
NEIGHBOURS = [
    "checks/w3d4_test.py", "checks/w3d4_checks", "solutions/w3d4_part1_diffusion_training_solution.py",
    "training/w3d4_digits.py", "training/w3d4_pairing.py", "training/builtin_unet.py", "training/w3d4_classifier.py",
    "training/w3d4_my_unet.py", "training/w3d4_fashion.py", "training/w3d4_unet_digits.safetensors",
    "training/w3d4_unet_digits.safetensors.sha256", "training/w3d4_digits_classifier.safetensors",
    "training/w3d4_digits_classifier.safetensors.sha256",
]
GRADING_BUDGET_S = 60


def stubbed_source() -> str:
    lines = SOURCE_PATH.read_text().splitlines()
    for _, start, end in reversed(solution_regions("\n".join(lines))):
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        lines[start : end + 1] = [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
    return "\n".join(lines) + "\n"


def run_as_grader(source: str, folder: Path) -> tuple[dict[str, str], float]:
    """Execute the lesson without its skip-when-grading cells; grade_id of each test cell -> its output."""
    lesson = folder / "w3d4_part3"
    lesson.mkdir()
    for name in NEIGHBOURS:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, lesson / Path(name).name)
    notebook = jupytext.reads(source, fmt="py:percent")
    notebook.cells = [c for c in notebook.cells if "skip-when-grading" not in c.metadata.get("tags", [])]
    start = time.perf_counter()
    NotebookClient(notebook, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(lesson)}}).execute()
    seconds = time.perf_counter() - start
    outputs = {}
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        text = "".join(o.get("text", "") or f"{o.get('ename')}: {o.get('evalue')}" for o in cell.get("outputs", []))
        if grade_id.startswith("test_"):
            outputs[grade_id] = text
        elif cell.cell_type == "code":
            assert not any(o.get("output_type") == "error" for o in cell.get("outputs", [])) or "NotImplementedError" in text, text
    return outputs, seconds


@pytest.mark.slow
def test_solution_notebook_passes_within_the_grading_budget(tmp_path):
    outputs, seconds = run_as_grader(SOURCE_PATH.read_text(), tmp_path)
    assert set(outputs) == {"test_frechet_distance", "test_classifier_score"}
    assert all(text.startswith("PASS") for text in outputs.values()), outputs
    assert seconds < GRADING_BUDGET_S


@pytest.mark.slow
def test_release_notebook_fails_each_test_as_not_implemented(tmp_path):
    outputs, _ = run_as_grader(stubbed_source(), tmp_path)
    for grade_id, text in outputs.items():
        name = grade_id.removeprefix("test_")
        assert f"{name} is not implemented yet" in text, text


def test_stubs_keep_signatures_and_docstrings():
    source = stubbed_source()
    assert source.count("raise NotImplementedError()") == 2 and "### BEGIN SOLUTION" not in source
    assert '"""The squared Fréchet distance' in source and '"""exp of the mean KL divergence' in source
    compile(source, "release", "exec")
    assert nbformat.validate(jupytext.reads(source, fmt="py:percent")) is None
