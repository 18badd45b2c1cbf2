"""Every lesson besides part 2 (test_notebooks.py covers it) in a real Jupyter kernel: the solution
notebook passes every test cell, and the untouched release, run from a copy of its own folder,
fails every graded cell with one clear "not implemented" line."""

from __future__ import annotations

import os
import shutil

import nbformat
import pytest

from grader import paths
from grader.lesson.execute import execute_notebook
from test_notebooks import graded_cells, output_text

pytestmark = pytest.mark.slow  # kernels

LESSONS = [name for name in paths.LESSONS if name != paths.ASSIGNMENT]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    done: dict[tuple[str, str], nbformat.NotebookNode] = {}

    def get(assignment: str, which: str) -> nbformat.NotebookNode:
        if (assignment, which) not in done:
            lesson = paths.lesson(assignment)
            if which == "solution":
                done[assignment, which] = execute_notebook(paths.REPO / lesson.source_dir / lesson.notebook).notebook
            else:  # as a student who downloaded notebooks/<assignment>/ would run it: no project paths
                folder = tmp_path_factory.mktemp("student") / assignment
                shutil.copytree(paths.REPO / lesson.release_dir, folder)
                saved = os.environ.pop("PYTHONPATH", None)
                try:
                    done[assignment, which] = execute_notebook(folder / lesson.notebook, workdir=folder,
                                                               allow_errors=True).notebook
                finally:
                    if saved is not None:
                        os.environ["PYTHONPATH"] = saved
        return done[assignment, which]

    return get


@pytest.mark.parametrize("assignment", LESSONS)
def test_the_solution_passes_every_test_cell_and_raises_nowhere(runs, assignment):
    nb = runs(assignment, "solution")
    cells = graded_cells(nb)
    assert len(cells) >= 2
    for cell in cells:
        assert "PASS" in output_text(cell), f"{cell.metadata['nbgrader']['grade_id']}:\n{output_text(cell)}"
    errors = [(c.id, o.get("ename"), o.get("evalue")) for c in nb.cells for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors, errors


@pytest.mark.parametrize("assignment", LESSONS)
def test_the_release_fails_every_graded_cell_as_not_implemented(runs, assignment):
    nb = runs(assignment, "release")
    imports = next(c for c in nb.cells if c.cell_type == "code" and "import w3d4_test" in c.source)
    assert not any(o.output_type == "error" for o in imports.outputs), output_text(imports)
    for cell in graded_cells(nb):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        assert errors, f"{grade_id} passed on an untouched stub"
        assert errors[0].ename == "TestFailed", f"{grade_id}: {errors[0].ename}: {errors[0].evalue}"
        assert "not implemented" in errors[0].evalue, f"{grade_id}: {errors[0].evalue}"
        assert errors[0].traceback == [f"FAIL {errors[0].evalue}"], errors[0].traceback
