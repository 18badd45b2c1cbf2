"""The graded cells' outputs (`apply_verdict`), and nbgrader preprocessors that put `nbgrader
autograde` on the same secure path.

`python -m grader grade` writes the autograded notebooks itself, with `apply_verdict` (see
autograded.py). An instructor who runs `nbgrader autograde`, or its button in the formgrader, gets
the same notebooks: `course/nbgrader_config.py` swaps these preprocessors into nbgrader's pipeline:

- `NormaliseSubmission` runs first when nbgrader sanitises a submission: it rebuilds the notebook
  on the release (see `grader.intake`), so that tampered metadata, deleted or duplicated cells
  cannot make nbgrader reject the notebook or silently drop a test.
Both derive from nbgrader's preprocessor base, which is enabled by default: a plain nbconvert
preprocessor would be registered but silently skipped, and every test cell would keep its empty
output, which nbgrader scores as full marks.

- `SandboxedExecute` replaces nbgrader's `Execute`: instead of running hidden tests in the
  student's kernel, it takes the verdict for this exact notebook (computed ahead of time by
  `python -m grader grade`, or right now in the sandbox) and writes each graded cell's result as
  the cell's output, where nbgrader's `SaveAutoGrades` and feedback read it: a stdout line per
  check when all pass, a partial score when some pass, an error when none do. The cell outputs a
  student sees in feedback are those of the sandboxed run, stripped to text and images.
"""

from __future__ import annotations

import json
import tempfile
import textwrap
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer, Unicode

from .. import paths
from ..grading import intake
from ..grading.intake import METADATA_KEY
from ..grading.plan import course_secret, seeds_for
from ..grading.sandbox import Limits
from ..grading.verdicts import Verdict, cached, grade_notebook, release_checks, verdict_path



class NormaliseSubmission(NbGraderPreprocessor):
    def preprocess(self, nb, resources):
        meta = nb.metadata.get(METADATA_KEY, {})
        if meta.get("normalised"):
            return nb, resources
        assignment = resources.get("nbgrader", {}).get("assignment", paths.ASSIGNMENT)
        result = intake.normalise(json.dumps(nb).encode(), intake.release_notebook(assignment))
        result.notebook.metadata[METADATA_KEY] = {"normalised": True, "notes": result.notes}
        return result.notebook, resources


WRAP = 100  # columns: outputs are <pre> blocks in the formgrader and nbconvert, which do not wrap


def _report(grade_id: str, points: float, score: float, mine: list) -> str:
    """The test's name and points first, then one wrapped paragraph per check."""
    passed = sum(c.passed for c in mine)
    checks = f"{passed} of {len(mine)} check{'s' if len(mine) != 1 else ''} passed"
    lines = [f"{grade_id}: {score:g} / {points:g} points ({checks})"]
    for c in mine:
        text = f"{'PASS' if c.passed else 'FAIL'} {c.label}" + ("" if c.passed else f": {c.message}")
        lines.append(textwrap.fill(text, WRAP, subsequent_indent="    ", break_on_hyphens=False))
    return "\n".join(lines) + "\n"


def _summary(verdict: Verdict, grade_id: str, points: float) -> list[nbformat.NotebookNode]:
    """The outputs of one graded cell: what nbgrader scores and what the student reads. nbgrader
    gives full marks to a cell without an error, the number of an execute_result as partial
    credit, and 0 to a cell with an error."""
    mine = [c for c in verdict.checks if c.grade_id == grade_id]
    passed, score = sum(c.passed for c in mine), verdict.score(grade_id, points)
    text = _report(grade_id, points, score, mine)
    if mine and passed == len(mine):
        return [nbformat.v4.new_output("stream", name="stdout", text=text)]
    if passed:
        return [
            nbformat.v4.new_output("stream", name="stdout", text=text),
            nbformat.v4.new_output("execute_result", data={"text/plain": repr(score)}, execution_count=None),
        ]
    first = next((c for c in mine if not c.passed), None)
    return [nbformat.v4.new_output(
        "error", ename="AssertionError", evalue=first.message if first else "no check ran",
        traceback=text.splitlines(),
    )]


class SandboxedExecute(NbGraderPreprocessor):
    verdict_dir = Unicode("verdicts", help="where verdicts are cached, one JSON file per notebook").tag(config=True)
    secret_file = Unicode(".grader_secret", help="the course secret that seeds grading inputs").tag(config=True)
    cell_timeout = Integer(Limits.cell_timeout_s, help="seconds one cell may run").tag(config=True)
    notebook_timeout = Integer(Limits.notebook_timeout_s, help="seconds a whole notebook may run").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        meta = nb.metadata.get(METADATA_KEY, {})
        path = verdict_path(Path(self.verdict_dir), info["student"], info["assignment"], info["notebook"])
        limits = Limits(cell_timeout_s=self.cell_timeout, notebook_timeout_s=self.notebook_timeout)
        verdict, _ = cached(path, nb, limits)
        if verdict is None:
            with tempfile.TemporaryDirectory(prefix="w3d4-autograde-") as scratch:
                submission = Path(scratch) / "submission.ipynb"
                nbformat.write(nb, submission)
                checks = list(release_checks(info["assignment"]))
                seeds = seeds_for(course_secret(Path(self.secret_file)), info["student"], checks)
                verdict = grade_notebook(submission, info["student"], seeds, meta.get("notes", []), limits,
                                         assignment=info["assignment"])
            verdict.save(path)
        return apply_verdict(nb, verdict), resources


def apply_verdict(nb: nbformat.NotebookNode, verdict: Verdict) -> nbformat.NotebookNode:
    """Write the sandbox's outputs and the graded results into the notebook nbgrader will score."""
    ran = {cell["index"]: cell for cell in verdict.cells if isinstance(cell, dict) and "index" in cell}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            cell.outputs = _summary(verdict, meta["grade_id"], float(meta.get("points", 0)))
        else:
            cell.outputs = [_safe_output(o) for o in ran.get(index, {}).get("outputs", [])]
            cell.outputs = [o for o in cell.outputs if o is not None]
    nb.cells.insert(0, intake.notes_cell(verdict.notes, verdict.isolation, verdict.flags))
    return nb


def _safe_output(out: dict) -> nbformat.NotebookNode | None:
    """Only text and PNG from the sandbox; HTML or JavaScript could run in a grader's browser."""
    kind = out.get("output_type")
    if kind == "stream":
        return nbformat.v4.new_output("stream", name="stdout" if out.get("name") == "stdout" else "stderr",
                                      text=str(out.get("text", "")))
    if kind in ("execute_result", "display_data"):
        data = {k: v for k, v in out.get("data", {}).items() if k in ("text/plain", "image/png") and isinstance(v, str)}
        return nbformat.v4.new_output("display_data", data=data) if data else None
    if kind == "error":
        return nbformat.v4.new_output("error", ename=str(out.get("ename", "Error")), evalue=str(out.get("evalue", "")),
                                      traceback=[str(line) for line in out.get("traceback", [])])
    return None
