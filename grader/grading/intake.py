"""Intake: turn whatever a student submitted into a well-formed notebook, and say what happened.

nbgrader rejects a notebook whose cell metadata changed, silently scores a deleted test cell 0, and
stops on a file that is not JSON. Intake rebuilds every submission on the release notebook
instead: the release's cells, in the release's order, with the student's answers put back into
the answer cells, the student's own extra cells kept after the cell they followed, and every test
cell restored from the release. Each repair is written down as a note that ends up in the
feedback, so a student learns why their grade looks the way it does.
"""

from __future__ import annotations

import copy
import html
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .. import paths

NOTES_CELL_ID = "grader-notes"
MAX_NOTEBOOK_BYTES = 20 * 2**20


METADATA_KEY = "w3d4_grader"  # where a normalised notebook keeps its notes, in its metadata
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Intake:
    notebook: nbformat.NotebookNode
    notes: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # grade_ids of answer cells taken from the student


def release_notebook(assignment: str = paths.ASSIGNMENT) -> nbformat.NotebookNode:
    return nbformat.read(paths.lesson(assignment).release_notebook(), as_version=4)


def _metadata(cell) -> dict:
    meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
    return meta if isinstance(meta, dict) else {}


def _nbgrader(cell) -> dict:
    meta = _metadata(cell).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _source(cell) -> str:
    """The cell's source as one string. A source that is not text (a number, or a list holding
    numbers: a broken tool, or a hand-edited file) is read as the text it shows, so that nothing the
    student wrote is lost; `_source_is_text` says whether that happened."""
    source = cell.get("source", "") if isinstance(cell, dict) else ""
    if source is None:
        return ""
    if isinstance(source, list):
        return "".join(part if isinstance(part, str) else str(part) for part in source)
    return str(source)


def _source_is_text(cell) -> bool:
    source = cell.get("source", "") if isinstance(cell, dict) else ""
    return isinstance(source, str) or (isinstance(source, list) and all(isinstance(s, str) for s in source))


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
    long_numbers: list[int] = []

    def parse_int(digits: str) -> int | str:
        # Python refuses to read an integer of more than 4300 digits (a ValueError that would stop
        # the decoder). No grading depends on such a number: it is kept as text, with a note.
        try:
            return int(digits)
        except ValueError:
            long_numbers.append(len(digits))
            return digits

    try:
        data = json.loads(text, parse_int=parse_int)
    except json.JSONDecodeError as error:
        return None, notes + [
            f"The file is not a valid notebook (JSON error at line {error.lineno}, column {error.colno}): "
            "graded as an unanswered notebook. Open it in Jupyter to see the damage."
        ]
    except RecursionError:
        return None, notes + [
            "The file is not a valid notebook (its JSON is nested too deeply to be read): "
            "graded as an unanswered notebook. Open it in Jupyter to see the damage."
        ]
    except ValueError as error:  # no other case is known; a file must never stop the intake
        return None, notes + [
            f"The file is not a valid notebook ({type(error).__name__}): graded as an unanswered notebook. "
            "Open it in Jupyter to see the damage."
        ]
    if long_numbers:
        notes.append(f"The file holds a number too long to read ({max(long_numbers)} digits); it was kept as text.")
    if not isinstance(data, dict):
        return None, notes + ["The file is JSON but not a notebook: graded as an unanswered notebook."]
    try:
        dumped = json.dumps(data, ensure_ascii=False)
    except (RecursionError, ValueError):
        return None, notes + [
            "The file is not a valid notebook (its JSON is nested too deeply to be read): "
            "graded as an unanswered notebook. Open it in Jupyter to see the damage."
        ]
    if _LONE_SURROGATE.search(dumped):
        # JSON can spell half of a UTF-16 pair (`"\ud800"`): such a string cannot be written as
        # UTF-8, so the graded notebook could not be saved. Each one becomes U+FFFD, as a byte
        # that is not UTF-8 does.
        dumped = _LONE_SURROGATE.sub("\ufffd", dumped)
        data = json.loads(dumped)
        notes.append("The file holds text that is not valid Unicode (a lone surrogate); it was replaced.")
    try:
        nb = nbformat.reads(dumped, as_version=4)
        if data.get("nbformat", 4) < 4:
            notes.append(f"The notebook used the old format nbformat {data.get('nbformat')}; it was converted.")
        return nb, notes
    except Exception as error:  # nbformat raises many types on odd input
        cells = data.get("cells")
        if isinstance(cells, list):
            notes.append(f"The notebook's structure is damaged ({type(error).__name__}); its cells were read as is.")
            return {"cells": [c for c in cells if isinstance(c, dict)]}, notes
        return None, notes + ["The file is not a notebook this grader can read: graded as an unanswered notebook."]


def _grade_id(cell) -> str | None:
    grade_id = _nbgrader(cell).get("grade_id")
    return str(grade_id) if grade_id else None


def _cell_id(cell) -> str | None:
    cell_id = cell.get("id")
    return str(cell_id) if cell_id else None


@dataclass
class _Release:
    """The release notebook, indexed for finding its cells in a student's notebook."""

    notebook: nbformat.NotebookNode
    grade_ids: dict[str, int] = field(init=False)  # grade_id -> release index
    cell_ids: dict[str, int] = field(init=False)  # cell id -> release index
    answers: list[int] = field(init=False)  # indices of the answer cells
    tests: set[int] = field(init=False)  # indices of the graded test cells

    def __post_init__(self):
        cells = self.notebook.cells
        self.grade_ids = {c.metadata["nbgrader"]["grade_id"]: i for i, c in enumerate(cells)}
        self.cell_ids = {str(c.id): i for i, c in enumerate(cells) if c.get("id")}
        self.answers = [i for i, c in enumerate(cells) if c.metadata["nbgrader"].get("solution")]
        self.tests = {i for i, c in enumerate(cells) if c.metadata["nbgrader"].get("grade")}

    def owner(self, cell) -> int | None:
        """The release cell a student's cell says it is: by its grade_id, else by its cell id."""
        grade_id = _grade_id(cell)
        if grade_id in self.grade_ids:
            return self.grade_ids[grade_id]
        return self.cell_ids.get(_cell_id(cell))


def _locate(release: _Release, student_cells: list) -> dict[int, int]:
    """Where the release's cells other than answers are in the student's notebook: release index ->
    index of the first student cell that is it, by its grade_id or cell id, else (a tool stripped
    both) by a source identical to it when no other release cell has that source."""
    answers = set(release.answers)
    located: dict[int, int] = {}
    for j, cell in enumerate(student_cells):
        i = release.owner(cell)
        if i is not None and i not in answers:
            located.setdefault(i, j)
    sources = Counter(_source(c) for c in release.notebook.cells)
    unique = {_source(c): i for i, c in enumerate(release.notebook.cells)
              if i not in answers and sources[_source(c)] == 1 and _source(c).strip()}
    taken = set(located.values())
    for j, cell in enumerate(student_cells):
        i = unique.get(_source(cell))
        if i is not None and i not in located and j not in taken and release.owner(cell) is None:
            located[i] = j
            taken.add(j)
    return located


def _match_answers(release: _Release, student_cells: list, located: dict[int, int]) -> tuple[dict[int, int], list[str]]:
    """Map release answer-cell index -> student cell index: by grade_id, then cell id, then first line.

    Each way is tried for every answer before the next way, so that a weaker way never takes a cell
    that a stronger way gives to another answer. The first-line fallback never takes a cell that
    says it is another release cell (its grade_id or id), a locked cell, or an unchanged copy of a
    release cell that is not an answer (a test cell). When other release cells share the answer's
    first line (`if MAIN:` starts both plot answers and every test cell), the first line alone
    cannot tell them apart: the cell is then looked for only between the cells found around it
    (the release cells just before and after it), where the student's notebook had it. If that
    place holds no such cell, the answer is reported missing rather than another cell's code being
    graded, and moved, in its stead."""
    cells = release.notebook.cells
    found: dict[int, tuple[list[int], str | None]] = {}
    used: set[int] = set()
    unplaced: set[int] = set()  # answers whose first line is on cells elsewhere, which could be any of them

    def take(i: int, candidates: list[int], how: str | None) -> None:
        found[i] = (candidates, how)
        used.update(candidates)

    for i in release.answers:
        grade_id = cells[i].metadata["nbgrader"]["grade_id"]
        candidates = [j for j, c in enumerate(student_cells) if j not in used and _grade_id(c) == grade_id]
        if candidates:
            take(i, candidates, None)
    for i in release.answers:
        if i not in found:
            candidates = [j for j, c in enumerate(student_cells)
                          if j not in used and _cell_id(c) == str(cells[i].get("id")) and release.owner(c) == i]
            if candidates:
                take(i, candidates, "its cell id")

    answers = set(release.answers)
    fixed_sources = {_source(c) for i, c in enumerate(cells) if i not in answers}
    signatures = Counter(_signature(c) for c in cells)
    for i in release.answers:
        signature = _signature(cells[i])
        if i in found or not signature:
            continue

        def fits(j: int) -> bool:
            cell = student_cells[j]
            return (j not in used and _signature(cell) == signature and not _nbgrader(cell).get("locked")
                    and release.owner(cell) is None and _source(cell) not in fixed_sources)

        if signatures[signature] == 1:
            candidates = [j for j in range(len(student_cells)) if fits(j)]
            how = "its first line"
        else:
            positions = {**located, **{k: js[-1] for k, (js, _) in found.items()}}
            before = [positions[k] for k in range(i - 1, -1, -1) if k in positions][:1]
            after = [positions[k] for k in range(i + 1, len(cells)) if k in positions][:1]
            low, high = (before or [-1])[0], (after or [len(student_cells)])[0]
            candidates = [j for j in range(low + 1, high) if fits(j)]
            how = "its first line and its place in the notebook"
            if not candidates and any(fits(j) for j in range(len(student_cells))):
                unplaced.add(i)
        if candidates:
            take(i, candidates, how)

    notes: list[str] = []
    for i in release.answers:
        grade_id = cells[i].metadata["nbgrader"]["grade_id"]
        if i in unplaced:
            notes.append(f"The answer cell '{grade_id}' had lost its grading metadata and is not where the release "
                         f"has it; other cells start with the same line, so it could not be told which one it is: "
                         f"the empty stub was graded, and your cells were kept where they were.")
            continue
        if i not in found:
            notes.append(f"The answer cell '{grade_id}' is missing (deleted?): the empty stub was graded.")
            continue
        candidates, how = found[i]
        if len(candidates) > 1:
            notes.append(f"The answer cell '{grade_id}' appears {len(candidates)} times: the last copy was graded.")
        if how:
            notes.append(f"The answer cell '{grade_id}' had lost its grading metadata; it was found by {how}.")
    return {i: js[-1] for i, (js, _) in found.items()}, notes


def _reordered(release: _Release, student_cells: list, matched: dict[int, int], located: dict[int, int]) -> bool:
    """Do the student's cells that come from the release appear in another order than there?
    Only the first copy of a duplicated cell counts: duplicates get a note of their own."""
    release_of_student = {j: i for i, j in matched.items()}
    located_at = {j: i for i, j in located.items()}
    order: list[int] = []
    for j, cell in enumerate(student_cells):
        i = release_of_student.get(j, release.grade_ids.get(_grade_id(cell), located_at.get(j)))
        if i is not None and i not in order:
            order.append(i)
    return order != sorted(order)


def normalise(raw: bytes, release: nbformat.NotebookNode | None = None) -> Intake:
    """The submission rebuilt on the release notebook, plus notes on every repair."""
    release = release or release_notebook()
    index = _Release(release)
    parsed, notes = parse(raw)
    cells_in = (parsed or {}).get("cells", [])
    student_cells = [c for c in (cells_in if isinstance(cells_in, list) else []) if isinstance(c, dict)]
    student_cells = [c for c in student_cells if c.get("id") != NOTES_CELL_ID]
    located = _locate(index, student_cells)
    matched, match_notes = _match_answers(index, student_cells, located)
    # A file that could not be read at all has already been explained in one note; a note per
    # missing cell would bury it.
    notes += match_notes if parsed is not None else []

    release_sources = {_source(c) for c in release.cells}
    for i in sorted(index.tests) if parsed is not None else ():
        test = release.cells[i]
        grade_id = test.metadata["nbgrader"]["grade_id"]
        theirs = [c for c in student_cells if _grade_id(c) == grade_id]
        if not theirs and i in located:  # found by its cell id, or unchanged in a notebook stripped of metadata
            theirs = [student_cells[located[i]]]
        if not theirs:
            notes.append(f"The test cell '{grade_id}' was missing; the original was restored and run.")
        elif any(_source(c) != _source(test) for c in theirs):
            notes.append(f"The test cell '{grade_id}' had been edited; the original was restored and run.")

    if _reordered(index, student_cells, matched, located):
        notes.append("The cells were not in the release notebook's order; they were put back in order "
                     "(cells you added stay after the cell they followed).")

    # Extra cells the student added (helpers, experiments) stay, right after the release cell they
    # followed: an answer, or a cell of the lesson (the imports cell, a markdown cell) that was
    # found in their notebook. Graded test cells are not places: they do not run when grading, and
    # a cell written after a test stays with the answer it tries out. A cell that carries a grade_id
    # the release does not have (nbgrader's toolbar gives new cells one) is the student's own.
    claimed = set(matched.values()) | set(located.values())
    anchors = {j: i for i, j in matched.items()}
    anchors.update({j: i for i, j in located.items() if i not in index.tests})
    extras_after: dict[int, list] = {}
    anchor = -1
    not_text = False
    for j, cell in enumerate(student_cells):
        if j in anchors:
            anchor = anchors[j]
            continue
        if j in claimed or _grade_id(cell) in index.grade_ids or _source(cell) in release_sources:
            continue
        if cell.get("cell_type") == "code" and _source(cell).strip():
            extra = nbformat.v4.new_code_cell(_source(cell))
            del extra["id"]  # a random one: the rebuilt notebook must be the same every time
            extras_after.setdefault(anchor, []).append(extra)
            not_text = not_text or not _source_is_text(cell)
    if not_text:
        notes.append("A cell you added held something other than text as its source; it was read as text.")

    out = copy.deepcopy(release)
    cells = [copy.deepcopy(c) for c in extras_after.get(-1, [])]
    answered = []
    for i, cell in enumerate(out.cells):
        if i in matched:
            theirs = student_cells[matched[i]]
            grade_id = cell.metadata["nbgrader"]["grade_id"]
            if theirs.get("cell_type") != "code":
                kind = theirs.get("cell_type")
                notes.append(f"The answer cell '{grade_id}' had been turned into "
                             f"{kind if isinstance(kind, str) and kind else 'another type'}; it was graded as code.")
            if not _source_is_text(theirs):
                notes.append(f"The answer cell '{grade_id}' held something other than text as its source; "
                             "it was read as text.")
            cell.source = _source(theirs)
            answered.append(grade_id)
        cells.append(cell)
        cells += extras_after.get(i, [])
    out.cells = cells
    for position, cell in enumerate(out.cells):
        if not cell.get("id"):
            cell.id = f"student-extra-{position:03d}"
    return Intake(out, notes, answered)


def _markdown_text(text: str) -> str:
    """Notes quote file names and messages a student chose: in a markdown cell, `<img onerror=...>`
    would be HTML in the feedback page, and `![](http://...)` an image fetched from elsewhere."""
    return html.escape(text, quote=False).replace("[", "\\[").replace("]", "\\]")


def _markdown_literal(text: str) -> str:
    """Text shown as written: paths and names such as `/work/*/solutions/*.py` or `__eq__` would
    otherwise turn into emphasis."""
    return _markdown_text(re.sub(r"([\\`*_~#|])", r"\\\1", text))


def notes_cell(notes: list[str], isolation: str, flags: tuple[str, ...] | list[str] = ()) -> nbformat.NotebookNode:
    """A markdown cell for the top of the graded notebook: what the grader repaired, how it ran, and
    the integrity flags (grader/grading/integrity.py), if any, for the instructor to look at."""
    lines = ["**Notes from the grader**", ""]
    lines += [f"- {_markdown_text(note)}" for note in notes] or ["- Your notebook was read without problems."]
    lines.append(f"- Your code ran in a sandbox (isolation: {isolation}); tests ran on inputs chosen at grading time.")
    if flags:
        lines += ["", "**Integrity flags** (what the grader saw while running this notebook)", ""]
        lines += [f"- {_markdown_literal(flag)}" for flag in flags]
    cell = nbformat.v4.new_markdown_cell("\n".join(lines))
    cell.id = NOTES_CELL_ID
    return cell


def read_submission(path: Path, assignment: str = paths.ASSIGNMENT) -> Intake:
    release = release_notebook(assignment)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raw = b""
        intake = normalise(raw, release)
        intake.notes[:] = [f"The submission could not be read ({error.strerror}): graded as unanswered."]
        return intake
    return normalise(raw, release)
