"""Part 1's lesson runs as a notebook in a real kernel, from a folder that holds only what a part 1
student receives (the notebook, w3d4_test.py and w3d4_checks/): the solution passes every test cell
in well under a minute without the training demo, the demo runs too, and the release (answers
stubbed as nbgrader does) fails every graded cell as "not implemented yet"."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest

import part1
from grader import paths
from grader.grading.verdicts import SKIP_TAG
from grader.lesson.execute import execute_notebook

pytestmark = pytest.mark.slow  # kernels: only in `make test`

MAX_SECONDS = 60  # the lesson's budget without the demo cells


def _notebook(folder: Path, stubbed: bool, demo: bool) -> Path:
    """The lesson as a notebook in `folder`, beside copies of the tests module and the checks."""
    text = part1.SOURCE_PATH.read_text(encoding="utf-8")
    if stubbed:
        text = re.sub(r"( *)### BEGIN SOLUTION\n.*?### END SOLUTION\n",
                      lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}raise NotImplementedError()\n", text, flags=re.S)
    nb = jupytext.reads(text, fmt="py:percent")
    if not demo:
        nb.cells = [cell for cell in nb.cells if SKIP_TAG not in cell.metadata.get("tags", [])]
    shutil.copy(paths.TESTS_MODULE, folder)
    shutil.copytree(paths.TESTS_MODULE.parent / "w3d4_checks", folder / "w3d4_checks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    path = folder / "w3d4_part1_diffusion.ipynb"
    nbformat.write(nb, path)
    return path


def _run(tmp_path: Path, stubbed: bool = False, demo: bool = False):
    saved = os.environ.pop("PYTHONPATH", None)  # no project paths: the notebook needs only its folder
    try:
        return execute_notebook(_notebook(tmp_path, stubbed, demo), workdir=tmp_path, allow_errors=stubbed)
    finally:
        if saved is not None:
            os.environ["PYTHONPATH"] = saved


def _test_cells(nb) -> dict[str, str]:
    """grade_id -> the text of the cell's outputs, for the graded test cells."""
    cells = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if str(meta.get("grade_id", "")).startswith("test_"):
            cells[meta["grade_id"]] = "\n".join(out.get("text", "") + out.get("evalue", "") for out in cell.get("outputs", []))
    return cells


def test_the_solution_passes_every_test_cell_within_a_minute(tmp_path):
    run = _run(tmp_path)
    cells = _test_cells(run.notebook)
    assert list(cells) == [f"test_{name}" for name in part1.PART1]
    for grade_id, text in cells.items():
        assert text.startswith(f"PASS {grade_id}"), (grade_id, text)
    assert run.seconds < MAX_SECONDS, f"{run.seconds:.0f} s"


def test_the_training_demo_runs_and_samples(tmp_path):
    run = _run(tmp_path, demo=True)
    demos = [cell for cell in run.notebook.cells if SKIP_TAG in cell.metadata.get("tags", [])]
    assert len(demos) == 2
    images = [out for cell in demos for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert len(images) == 3, "the loss curve, the samples and a sample's path"


def test_the_release_fails_every_graded_cell_as_not_implemented(tmp_path):
    run = _run(tmp_path, stubbed=True)
    for grade_id, text in _test_cells(run.notebook).items():
        assert "is not implemented yet" in text, (grade_id, text)


def test_the_nbgrader_metadata_is_valid_json():
    for line in part1.SOURCE_PATH.read_text(encoding="utf-8").splitlines():
        if line.startswith("# %% nbgrader="):
            meta = json.loads(line.removeprefix("# %% nbgrader="))
            assert set(meta) <= {"grade_id", "points"} and meta["grade_id"]
