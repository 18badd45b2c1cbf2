"""Intake of files that are hard to read: empty, broken, old, damaged or odd; and the notes it writes.

No kernel and no sandbox: each test hands intake the bytes of a notebook made from the release
(see `Notebooks` in conftest.py) and reads the rebuilt notebook and its notes.
"""

from __future__ import annotations

import json

import nbformat
import pytest

from grader.grading import intake
from intake_support import UNREADABLE, minimal, normalise


# ---------------------------------------------------------------------------------------------
# parse: bytes to a notebook, or a reason
# ---------------------------------------------------------------------------------------------


def test_parse_reads_the_release_without_notes(notebooks):
    nb, notes = intake.parse(notebooks.to_bytes(notebooks.release))
    assert notes == []
    assert notebooks.grade_ids(nb) == notebooks.grade_ids()


@pytest.mark.parametrize("raw", [b"", b"   \n\t  "])
def test_parse_empty_file(raw):
    nb, notes = intake.parse(raw)
    assert nb is None
    assert notes == ["The submitted file is empty: graded as an unanswered notebook."]


def test_parse_oversized_file():
    nb, notes = intake.parse(b"x" * (intake.MAX_NOTEBOOK_BYTES + 1))
    assert nb is None
    assert notes == ["The submitted file is larger than 20 MB: graded as unanswered."]


def test_parse_accepts_a_file_of_exactly_the_limit(notebooks):
    text = notebooks.to_bytes(notebooks.release)
    padded = text + b" " * (intake.MAX_NOTEBOOK_BYTES - len(text))
    assert len(padded) == intake.MAX_NOTEBOOK_BYTES
    nb, notes = intake.parse(padded)
    assert nb is not None and notes == []


def test_parse_byte_order_mark_is_no_problem(notebooks):
    nb, notes = intake.parse(b"\xef\xbb\xbf" + notebooks.to_bytes(notebooks.release))
    assert nb is not None and notes == []


def test_parse_replaces_bytes_that_are_not_utf8(notebooks):
    nb = notebooks.student(swish="# caf\u00e9\ndef swish(x): return x")
    raw = notebooks.to_bytes(nb).replace("caf\u00e9".encode(), b"caf\xe9")  # Latin-1, as an old editor saves it
    parsed, notes = intake.parse(raw)
    offset = raw.index(b"\xe9")
    assert notes == [f"The file is not valid UTF-8 (byte {offset}); undecodable bytes were replaced."]
    assert "caf\ufffd" in notebooks.cell(parsed, "swish").source


def test_parse_broken_json_says_where():
    nb, notes = intake.parse(b'{\n  "cells": [}')
    assert nb is None
    assert notes == [
        "The file is not a valid notebook (JSON error at line 2, column 13): graded as an unanswered notebook. "
        "Open it in Jupyter to see the damage."
    ]


def test_parse_keeps_the_utf8_note_when_json_is_broken_too():
    nb, notes = intake.parse(b'{"cells": "\xff"')
    assert nb is None
    assert [n.split(" (")[0] for n in notes] == ["The file is not valid UTF-8", "The file is not a valid notebook"]


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"a notebook"', b"42", b"null"])
def test_parse_json_that_is_not_a_notebook(raw):
    nb, notes = intake.parse(raw)
    assert nb is None
    assert notes == ["The file is JSON but not a notebook: graded as an unanswered notebook."]


def test_parse_converts_nbformat_3():
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": [
        {"cell_type": "code", "input": "x = 1", "language": "python", "outputs": [], "metadata": {}}]}]}
    nb, notes = intake.parse(json.dumps(v3).encode())
    assert notes == ["The notebook used the old format nbformat 3; it was converted."]
    assert nb.nbformat == 4 and [c.source for c in nb.cells] == ["x = 1"]


@pytest.mark.parametrize(
    "data, error",
    [
        (minimal([{"cell_type": "code", "source": "a = 1", "metadata": {}}, 1, "two"]), "TypeError"),
        (minimal([{"cell_type": "code", "source": "a = 1", "metadata": {}}], nbformat=5), "NBFormatError"),
        (minimal([{"cell_type": "code", "source": "a = 1", "metadata": {}}], nbformat="4"), "NBFormatError"),
    ],
    ids=["cells-that-are-not-dicts", "nbformat-5", "nbformat-a-string"],
)
def test_parse_damaged_structure_keeps_the_cells(data, error):
    nb, notes = intake.parse(json.dumps(data).encode())
    assert notes == [f"The notebook's structure is damaged ({error}); its cells were read as is."]
    assert nb == {"cells": [{"cell_type": "code", "source": "a = 1", "metadata": {}}]}


@pytest.mark.parametrize("cells", [{"0": "a = 1"}, "a = 1", None], ids=["dict", "string", "null"])
def test_parse_damaged_structure_without_a_cell_list(cells):
    nb, notes = intake.parse(json.dumps(minimal(cells, nbformat=5)).encode())
    assert nb is None
    assert notes == ["The file is not a notebook this grader can read: graded as an unanswered notebook."]


def test_parse_deeply_nested_json_is_a_note():
    nb, notes = intake.parse(b"[" * 100_000)
    assert nb is None
    assert notes == ["The file is not a valid notebook (its JSON is nested too deeply to be read): graded as an "
                     "unanswered notebook. Open it in Jupyter to see the damage."]


def test_parse_huge_integer_is_a_note(notebooks):
    raw = notebooks.to_bytes(notebooks.release).replace(b'"nbformat": 4', b'"nbformat": 4, "x": 1' + b"0" * 5000, 1)
    nb, notes = intake.parse(raw)
    assert nb is not None
    assert notes == ["The file holds a number too long to read (5001 digits); it was kept as text."]


def test_a_huge_integer_loses_no_answer(notebooks):
    raw = notebooks.to_bytes(notebooks.student())
    raw = raw.replace(b'"execution_count": null', b'"execution_count": 9' + b"9" * 5000, 1)
    result = normalise(notebooks, raw)
    assert result.answered == notebooks.answer_ids()
    assert "The file holds a number too long to read (5001 digits); it was kept as text." in result.notes


def test_a_lone_surrogate_is_replaced_so_the_notebook_can_be_saved(notebooks):
    """JSON may spell half of a UTF-16 pair; such text cannot be written as UTF-8."""
    data = json.loads(notebooks.to_bytes(notebooks.student()))
    next(c for c in data["cells"] if c["id"] == "swish")["source"] = "# \ud800 \ud83d\ude00\ndef swish(x): return x"
    result = normalise(notebooks, data)
    assert result.notes == ["The file holds text that is not valid Unicode (a lone surrogate); it was replaced."]
    assert notebooks.cell(result.notebook, "swish").source == "# \ufffd \U0001f600\ndef swish(x): return x"
    nbformat.writes(result.notebook).encode("utf-8")  # a pair that is whole stays as it was; nothing raises


# ---------------------------------------------------------------------------------------------
# normalise: files that cannot be read at all
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[]"], ids=["empty", "broken-json", "not-a-notebook"])
def test_unreadable_file_is_the_release_with_one_note(notebooks, raw):
    result = normalise(notebooks, raw)
    assert len(result.notes) == 1 and UNREADABLE in result.notes[0]  # no note per missing cell
    assert result.answered == []
    assert [c.source for c in result.notebook.cells] == [c.source for c in notebooks.release.cells]


def test_normalise_uses_the_release_notebook_by_default(notebooks):
    raw = notebooks.to_bytes(notebooks.student())
    assert intake.normalise(raw).notebook == intake.normalise(raw, notebooks.release).notebook


def test_release_notebook_is_the_shipped_one(notebooks):
    assert notebooks.grade_ids(intake.release_notebook()) == notebooks.grade_ids()


# ---------------------------------------------------------------------------------------------
# notes_cell and read_submission
# ---------------------------------------------------------------------------------------------


def test_notes_cell_lists_the_notes_and_the_isolation():
    cell = intake.notes_cell(["First.", "Second."], "bubblewrap")
    assert cell.cell_type == "markdown" and cell.id == intake.NOTES_CELL_ID
    assert cell.source.splitlines() == [
        "**Notes from the grader**",
        "",
        "- First.",
        "- Second.",
        "- Your code ran in a sandbox (isolation: bubblewrap); tests ran on inputs chosen at grading time.",
    ]


def test_notes_cell_without_notes():
    assert "- Your notebook was read without problems." in intake.notes_cell([], "none").source


@pytest.mark.parametrize(
    "note, shown",
    [
        ("The name '<img src=x onerror=alert(1)>' was changed.",
         "The name '&lt;img src=x onerror=alert(1)&gt;' was changed."),
        ("See ![](http://evil.example/x.png)", "See !\\[\\](http://evil.example/x.png)"),
        ("a & b", "a &amp; b"),
    ],
    ids=["html", "remote-image", "ampersand"],
)
def test_notes_cell_escapes_what_the_student_chose(note, shown):
    assert f"- {shown}" in intake.notes_cell([note], "none").source.splitlines()


def test_read_submission_reads_the_file(notebooks, tmp_path):
    path = tmp_path / "alice.ipynb"
    path.write_bytes(notebooks.to_bytes(notebooks.student()))
    result = intake.read_submission(path)
    assert result.notes == [] and result.answered == notebooks.answer_ids()


@pytest.mark.parametrize("kind, reason", [("missing", "No such file or directory"), ("folder", "Is a directory")])
def test_read_submission_that_cannot_be_read(notebooks, tmp_path, kind, reason):
    path = tmp_path / "alice.ipynb"
    if kind == "folder":
        path.mkdir()
    result = intake.read_submission(path)
    assert result.notes == [f"The submission could not be read ({reason}): graded as unanswered."]
    assert result.answered == []
    assert notebooks.grade_ids(result.notebook) == notebooks.grade_ids()


# ---------------------------------------------------------------------------------------------
# grade.intake_all: a class, one submission at a time
# ---------------------------------------------------------------------------------------------


def written_notes(path) -> list[str]:
    return nbformat.read(path, as_version=4).metadata[intake.METADATA_KEY]["notes"]


def test_one_submission_that_breaks_the_intake_does_not_stop_the_class(notebooks, tmp_path, monkeypatch):
    from grader.course import grade
    from grader.course.workspace import Workspace
    from grader.grading.submissions import Submission

    for name in ("alice", "bob", "carl"):
        (tmp_path / f"{name}.ipynb").write_bytes(notebooks.to_bytes(notebooks.student()))
    read = intake.read_submission

    def read_submission(path, assignment):
        if path.stem == "bob":
            raise RuntimeError("something no test foresaw.")
        return read(path)

    monkeypatch.setattr(intake, "read_submission", read_submission)
    workspace = Workspace(tmp_path / "out")
    subs = [Submission(n, n, tmp_path / f"{n}.ipynb", [f"note for {n}"]) for n in ("alice", "bob", "carl")]
    written = grade.intake_all(workspace, subs)
    assert list(written) == ["alice", "bob", "carl"]
    assert written_notes(written["bob"]) == [
        "note for bob",
        "The grader could not read this notebook: RuntimeError: something no test foresaw. It was graded as "
        "unanswered; please tell your instructor."]
    bob = nbformat.read(written["bob"], as_version=4)
    assert [c.source for c in bob.cells] == [c.source for c in notebooks.release.cells]  # nothing of bob's: 0 points
    assert (workspace.out / "originals" / "bob" / "bob.ipynb").read_bytes() == (tmp_path / "bob.ipynb").read_bytes()
    for name in ("alice", "carl"):
        assert written_notes(written[name]) == [f"note for {name}"]
        assert notebooks.cell(nbformat.read(written[name], as_version=4), "swish").source.startswith("# answer swish")


def test_a_file_name_that_is_not_utf8_is_written(notebooks, tmp_path):
    import os

    from grader.course import grade
    from grader.course.workspace import Workspace
    from grader.grading.submissions import Submission

    path = tmp_path / os.fsdecode(b"al\xefce.ipynb")  # a Latin-1 name on a UTF-8 file system
    path.write_bytes(notebooks.to_bytes(notebooks.student()))
    sub = Submission("alce", path.stem, path, [f"The name {path.stem!r} was recorded as student id 'alce'."])
    written = grade.intake_all(Workspace(tmp_path / "out"), [sub])
    meta = nbformat.read(written["alce"], as_version=4).metadata[intake.METADATA_KEY]
    assert meta["original_name"] == "al?ce"
    assert meta["notes"] == ["The name 'al\\udcefce' was recorded as student id 'alce'."]
