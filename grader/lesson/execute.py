"""Run a notebook top to bottom in a real Jupyter kernel (nbclient) and keep its outputs."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient


# The lessons train for TRAIN_BUDGET_S seconds, read from this variable when it is set: the course's
# own runs of the solutions (`make solution`, the tests, the benchmark) train for seconds, not minutes.
TRAIN_BUDGET_VARIABLE = "W3D4_TRAIN_BUDGET_S"
SHORT_TRAINING_S = 10


@dataclass
class Execution:
    notebook: nbformat.NotebookNode
    seconds: float


def execute_notebook(
    path: Path, workdir: Path | None = None, allow_errors: bool = False, cell_timeout: int = 600,
    train_budget_s: float | None = SHORT_TRAINING_S,
) -> Execution:
    """Execute the notebook at `path` with its folder's files beside it.

    The notebook runs in a scratch copy of its folder (or in `workdir`), so that nothing it writes
    lands next to the original. With allow_errors, a failing cell records its error and the run goes
    on, which is how a student's "Run all" behaves cell by cell. `train_budget_s` shortens the
    lessons' training cells (None: as long as the lesson says).
    """
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="w3d4-run-") as scratch:
        run_dir = workdir or Path(scratch) / "run"
        if workdir is None:
            shutil.copytree(path.parent, run_dir)
        client = NotebookClient(
            nb,
            timeout=cell_timeout,
            kernel_name="python3",
            allow_errors=allow_errors,
            resources={"metadata": {"path": str(run_dir)}},
        )
        saved = os.environ.get(TRAIN_BUDGET_VARIABLE)
        if train_budget_s is not None:  # the kernel inherits this process's environment
            os.environ[TRAIN_BUDGET_VARIABLE] = str(train_budget_s)
        try:
            start = time.perf_counter()
            client.execute()
            return Execution(nb, time.perf_counter() - start)
        finally:
            if saved is None:
                os.environ.pop(TRAIN_BUDGET_VARIABLE, None)
            else:
                os.environ[TRAIN_BUDGET_VARIABLE] = saved
