"""Both notebooks run in a real Jupyter kernel: the solution passes every test cell, and the
untouched student release fails every graded cell with a clear "not implemented" message."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest

from grader import paths
from grader.lesson.execute import execute_notebook
from grader.grading.verdicts import SKIP_TAG

# Kernels, sandboxes or nbgrader commands: minutes, so only in `make test`.
pytestmark = pytest.mark.slow


def graded_cells(nb: nbformat.NotebookNode) -> list:
    return [cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade")]


def output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.append(out.get("evalue", ""))
        parts.append("\n".join(out.get("traceback", [])))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def solution_run():
    return execute_notebook(paths.REPO / paths.SOURCE_DIR / paths.NOTEBOOK_NAME)


@pytest.fixture(scope="module")
def release_run(tmp_path_factory):
    """Run the release in a copy of its own folder only, with no project paths in the environment,
    as a student who downloaded notebooks/w3d4_part2/ would."""
    folder = tmp_path_factory.mktemp("student") / paths.ASSIGNMENT
    shutil.copytree(paths.REPO / paths.RELEASE_DIR, folder)
    saved = os.environ.pop("PYTHONPATH", None)
    try:
        return execute_notebook(folder / paths.NOTEBOOK_NAME, workdir=folder, allow_errors=True)
    finally:
        if saved is not None:
            os.environ["PYTHONPATH"] = saved


def test_solution_passes_every_test_cell(solution_run):
    cells = graded_cells(solution_run.notebook)
    assert len(cells) >= 10
    for cell in cells:
        text = output_text(cell)
        assert "PASS" in text, f"{cell.metadata['nbgrader']['grade_id']} printed no PASS line:\n{text}"
        assert not any(o.output_type == "error" for o in cell.outputs)


def test_solution_shows_the_three_plots_and_the_digits_demo(solution_run):
    plots = [o for c in solution_run.notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(plots) == 6, (
        f"expected the SiLU curve, the two embedding plots, and the digits demo's samples, denoising and loss "
        f"curve, got {len(plots)} images"
    )
    demo = "\n".join(output_text(c) for c in digits_demo_cells(solution_run.notebook))
    assert "verified" in demo and "reproduces the trained network's output" in demo, demo
    assert "ratio samples / held-out" in demo, demo


def digits_demo_cells(nb: nbformat.NotebookNode) -> list:
    """The code cells of the closing "Does it work?" section: the cells grading does not run."""
    return [c for c in nb.cells if c.cell_type == "code" and SKIP_TAG in c.metadata.get("tags", [])]


def test_release_imports_resolve_from_its_own_folder(release_run):
    imports = next(c for c in release_run.notebook.cells if c.cell_type == "code" and "import w3d4_test" in c.source)
    assert not any(o.output_type == "error" for o in imports.outputs), output_text(imports)


def test_release_digits_demo_explains_instead_of_failing(release_run):
    """On the untouched release the demo says what to finish first and raises nothing, so "Run all"
    goes on to the bonus."""
    cells = digits_demo_cells(release_run.notebook)
    assert cells and not any(o.output_type == "error" for c in cells for o in c.get("outputs", [])), (
        "\n".join(output_text(c) for c in cells)
    )
    assert "is not implemented yet" in "\n".join(output_text(c) for c in cells)


def test_release_fails_every_graded_cell_as_not_implemented(release_run):
    for cell in graded_cells(release_run.notebook):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        assert errors, f"{grade_id} passed on an untouched stub"
        assert errors[0].ename == "TestFailed", f"{grade_id}: {errors[0].ename}: {errors[0].evalue}"
        assert "not implemented" in errors[0].evalue, f"{grade_id}: {errors[0].evalue}"
        # the diagnosis comes first and alone: no traceback through the checks
        assert errors[0].traceback == [f"FAIL {errors[0].evalue}"], errors[0].traceback
