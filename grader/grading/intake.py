"""Intake: turn whatever a student submitted into a well-formed notebook, and say what happened.

nbgrader rejects a notebook whose cell metadata changed, silently scores a deleted test cell 0, and
stops on a file that is not JSON. Intake rebuilds every submission on the release notebook
instead: the release's cells, in the release's order, with the student's answers put back into
the answer cells, the student's own extra cells kept after the answer they followed, and every test
cell restored from the release. Each repair is written down as a note that ends up in the
feedback, so a student learns why their grade looks the way it does.
"""

from __future__ import annotations

import copy
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .. import paths

NOTES_CELL_ID = "grader-notes"
MAX_NOTEBOOK_BYTES = 20 * 2**20


METADATA_KEY = "w3d4_grader"  # where a normalised notebook keeps its notes, in its metadata


@dataclass
class Intake:
    notebook: nbformat.NotebookNode
    notes: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # grade_ids of answer cells taken from the student


def release_notebook() -> nbformat.NotebookNode:
    return nbformat.read(paths.REPO / paths.RELEASE_DIR / paths.NOTEBOOK_NAME, as_version=4)


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell, dict) else {}
    return meta if isinstance(meta, dict) else {}


def _source(cell) -> str:
    source = cell.get("source", "") if isinstance(cell, dict) else ""
    return "".join(source) if isinstance(source, list) else str(source)


def _signature(cell) -> str:
    """The first line a student cannot usefully change: `class GroupNorm(nn.Module):` and the like."""
    for line in _source(cell).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()
    return ""


def parse(raw: bytes) -> tuple[dict | None, list[str]]:
    """Bytes to a notebook dict, or None with the reason. Never raises."""
    notes: list[str] = []
    if not raw.strip():
        return None, ["The submitted file is empty: graded as an unanswered notebook."]
    if len(raw) > MAX_NOTEBOOK_BYTES:
        return None, [f"The submitted file is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB: graded as unanswered."]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        text = raw.decode("utf-8", errors="replace")
        notes.append(f"The file is not valid UTF-8 (byte {error.start}); undecodable bytes were replaced.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return None, notes + [
            f"The file is not a valid notebook (JSON error at line {error.lineno}, column {error.colno}): "
            "graded as an unanswered notebook. Open it in Jupyter to see the damage."
        ]
    if not isinstance(data, dict):
        return None, notes + ["The file is JSON but not a notebook: graded as an unanswered notebook."]
    try:
        nb = nbformat.reads(json.dumps(data), as_version=4)
        if data.get("nbformat", 4) < 4:
            notes.append(f"The notebook used the old format nbformat {data.get('nbformat')}; it was converted.")
        return nb, notes
    except Exception as error:  # nbformat raises many types on odd input
        cells = data.get("cells")
        if isinstance(cells, list):
            notes.append(f"The notebook's structure is damaged ({type(error).__name__}); its cells were read as is.")
            return {"cells": [c for c in cells if isinstance(c, dict)]}, notes
        return None, notes + ["The file is not a notebook this grader can read: graded as an unanswered notebook."]


def _match_answers(release, student_cells: list) -> tuple[dict[int, int], list[str]]:
    """Map release answer-cell index -> student cell index, by grade_id, then cell id, then content."""
    notes: list[str] = []
    answers = {i: c for i, c in enumerate(release.cells) if c.metadata["nbgrader"].get("solution")}
    by_grade_id: dict[str, list[int]] = {}
    by_cell_id: dict[str, list[int]] = {}
    for j, cell in enumerate(student_cells):
        if _nbgrader(cell).get("grade_id"):
            by_grade_id.setdefault(str(_nbgrader(cell)["grade_id"]), []).append(j)
        if cell.get("id"):
            by_cell_id.setdefault(str(cell.get("id")), []).append(j)
    matched: dict[int, int] = {}
    used: set[int] = set()
    for i, cell in answers.items():
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        candidates = [j for j in by_grade_id.get(grade_id, []) if j not in used]
        how = None
        if not candidates:
            candidates = [j for j in by_cell_id.get(cell.id, []) if j not in used]
            how = "its cell id"
        if not candidates:
            signature = _signature(cell)
            candidates = [
                j for j, c in enumerate(student_cells)
                if j not in used and signature and _signature(c) == signature and not _nbgrader(c).get("locked")
            ]
            how = "its first line"
        if not candidates:
            notes.append(f"The answer cell '{grade_id}' is missing (deleted?): the empty stub was graded.")
            continue
        if len(candidates) > 1:
            notes.append(f"The answer cell '{grade_id}' appears {len(candidates)} times: the last copy was graded.")
        if how:
            notes.append(f"The answer cell '{grade_id}' had lost its grading metadata; it was found by {how}.")
        matched[i] = candidates[-1]
        used.update(candidates)
    return matched, notes


def _reordered(release, student_cells: list, matched: dict[int, int]) -> bool:
    """Do the student's cells that come from the release appear in another order than there?
    Only the first copy of a duplicated cell counts: duplicates get a note of their own."""
    index_of = {c.metadata["nbgrader"]["grade_id"]: i for i, c in enumerate(release.cells)}
    release_of_student = {j: i for i, j in matched.items()}
    order: list[int] = []
    for j, cell in enumerate(student_cells):
        i = release_of_student.get(j, index_of.get(str(_nbgrader(cell).get("grade_id"))))
        if i is not None and i not in order:
            order.append(i)
    return order != sorted(order)


def normalise(raw: bytes, release: nbformat.NotebookNode | None = None) -> Intake:
    """The submission rebuilt on the release notebook, plus notes on every repair."""
    release = release or release_notebook()
    parsed, notes = parse(raw)
    student_cells = [c for c in (parsed or {}).get("cells", []) if isinstance(c, dict)]
    student_cells = [c for c in student_cells if c.get("id") != NOTES_CELL_ID]
    matched, match_notes = _match_answers(release, student_cells)
    # A file that could not be read at all has already been explained in one note; a note per
    # missing cell would bury it.
    notes += match_notes if parsed is not None else []

    release_sources = {_source(c) for c in release.cells}
    release_tests = {c.metadata["nbgrader"]["grade_id"]: c for c in release.cells if c.metadata["nbgrader"].get("grade")}
    for grade_id, test in release_tests.items() if parsed is not None else ():
        theirs = [c for c in student_cells if _nbgrader(c).get("grade_id") == grade_id]
        if not theirs:
            notes.append(f"The test cell '{grade_id}' was missing; the original was restored and run.")
        elif any(_source(c) != _source(test) for c in theirs):
            notes.append(f"The test cell '{grade_id}' had been edited; the original was restored and run.")

    if _reordered(release, student_cells, matched):
        notes.append("The cells were not in the release notebook's order; they were put back in order "
                     "(cells you added stay after the answer they followed).")

    # Extra cells the student added (helpers, experiments) stay, right after the cell they followed.
    claimed = set(matched.values())
    release_of_student = {j: i for i, j in matched.items()}
    extras_after: dict[int, list] = {}
    anchor = -1
    for j, cell in enumerate(student_cells):
        if j in release_of_student:
            anchor = release_of_student[j]
            continue
        if j in claimed or _nbgrader(cell).get("grade_id") or _source(cell) in release_sources:
            continue
        if cell.get("cell_type") == "code" and _source(cell).strip():
            extras_after.setdefault(anchor, []).append(nbformat.v4.new_code_cell(_source(cell)))

    out = copy.deepcopy(release)
    cells = [copy.deepcopy(c) for c in extras_after.get(-1, [])]
    answered = []
    for i, cell in enumerate(out.cells):
        if i in matched:
            theirs = student_cells[matched[i]]
            if theirs.get("cell_type") != "code":
                notes.append(f"The answer cell '{cell.metadata['nbgrader']['grade_id']}' had been turned into "
                             f"{theirs.get('cell_type', 'another type')}; it was graded as code.")
            cell.source = _source(theirs)
            answered.append(cell.metadata["nbgrader"]["grade_id"])
        cells.append(cell)
        cells += extras_after.get(i, [])
    out.cells = cells
    for index, cell in enumerate(out.cells):
        if not cell.get("id"):
            cell.id = f"student-extra-{index:03d}"
    return Intake(out, notes, answered)


def _markdown_text(text: str) -> str:
    """Notes quote file names and messages a student chose: in a markdown cell, `<img onerror=...>`
    would be HTML in the feedback page, and `![](http://...)` an image fetched from elsewhere."""
    return html.escape(text, quote=False).replace("[", "\\[").replace("]", "\\]")


def notes_cell(notes: list[str], isolation: str) -> nbformat.NotebookNode:
    """A markdown cell for the top of the graded notebook: what the grader repaired, and how it ran."""
    lines = ["**Notes from the grader**", ""]
    lines += [f"- {_markdown_text(note)}" for note in notes] or ["- Your notebook was read without problems."]
    lines.append(f"- Your code ran in a sandbox (isolation: {isolation}); tests ran on inputs chosen at grading time.")
    cell = nbformat.v4.new_markdown_cell("\n".join(lines))
    cell.id = NOTES_CELL_ID
    return cell


def read_submission(path: Path) -> Intake:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raw = b""
        intake = normalise(raw)
        intake.notes[:] = [f"The submission could not be read ({error.strerror}): graded as unanswered."]
        return intake
    return normalise(raw)
