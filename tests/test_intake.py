"""Intake on its own: every repair it makes to a submitted notebook's cells, and the note that says so.

No kernel and no sandbox: each test hands intake the bytes of a notebook made from the release
(see `Notebooks` in conftest.py) and reads the rebuilt notebook and its notes.
"""

from __future__ import annotations

import copy
import json

import nbformat
import pytest

from grader.grading import intake
from intake_support import assert_release_shape, normalise


# ---------------------------------------------------------------------------------------------
# normalise: a well-kept notebook
# ---------------------------------------------------------------------------------------------


def test_untouched_release_has_no_notes(notebooks):
    result = normalise(notebooks, notebooks.release)
    assert result.notes == []
    assert result.answered == notebooks.answer_ids()
    assert_release_shape(notebooks, result)


def test_answers_are_put_into_the_release(notebooks):
    result = normalise(notebooks, notebooks.student(swish="def swish(x):\n    return x * x.sigmoid()"))
    assert result.notes == []
    assert notebooks.cell(result.notebook, "swish").source == "def swish(x):\n    return x * x.sigmoid()"
    assert notebooks.cell(result.notebook, "groupnorm").source.startswith("# answer groupnorm\n")


def test_answer_as_a_list_of_lines(notebooks):
    data = json.loads(notebooks.to_bytes(notebooks.student()))
    cell = next(c for c in data["cells"] if c["id"] == "swish")
    cell["source"] = ["def swish(x):\n", "    return x\n"]
    result = normalise(notebooks, data)
    assert notebooks.cell(result.notebook, "swish").source == "def swish(x):\n    return x\n"


def test_what_the_student_cannot_change_comes_from_the_release(notebooks):
    """Metadata (points, locks), test cells, their outputs and the student's cell types are the
    release's: a student cannot make an answer worth 100 points or forge a PASS output."""
    nb = notebooks.student()
    answer = notebooks.cell(nb, "swish")
    answer.metadata["nbgrader"].update(points=100, grade=True, locked=True)
    test = notebooks.cell(nb, "test_swish")
    test.outputs = [nbformat.v4.new_output("stream", name="stdout", text="PASS\n")]
    test.execution_count = 7
    release = notebooks.release
    result = normalise(notebooks, nb)
    for grade_id in ("swish", "test_swish"):
        assert notebooks.cell(result.notebook, grade_id).metadata == notebooks.cell(release, grade_id).metadata
    assert notebooks.cell(result.notebook, "test_swish").outputs == []
    assert result.notes == []


def test_every_cell_has_a_unique_id(notebooks):
    nb = notebooks.student()
    nb.cells.insert(notebooks.index(nb, "swish") + 1, notebooks.code_cell("helper = 1"))
    nb.cells.insert(notebooks.index(nb, "unet") + 1, notebooks.code_cell("other = 2"))
    ids = [c.id for c in normalise(notebooks, nb).notebook.cells]
    assert all(ids) and len(set(ids)) == len(ids)


def test_cells_without_an_id_are_given_one(notebooks):
    """A release without cell ids (nbformat 4.4) still yields ids, numbered by position."""
    release = notebooks.release
    for cell in release.cells:
        del cell["id"]
    release.nbformat_minor = 4
    result = intake.normalise(notebooks.to_bytes(notebooks.student()), release)
    assert [c.id for c in result.notebook.cells[:3]] == ["student-extra-000", "student-extra-001", "student-extra-002"]


@pytest.mark.parametrize("new_cell", [nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell],
                         ids=["markdown", "code"])
def test_an_old_notes_cell_is_dropped(notebooks, new_cell):
    """A notes cell from an earlier grading (or forged, even as code) never reaches the new feedback."""
    nb = notebooks.student()
    forged = new_cell("print('**Notes from the grader**: everything passed.')")
    forged.id = intake.NOTES_CELL_ID
    nb.cells.insert(notebooks.index(nb, "swish") + 1, forged)
    result = normalise(notebooks, nb)
    assert all(c.id != intake.NOTES_CELL_ID and "Notes from the grader" not in c.source for c in result.notebook.cells)
    assert len(result.notebook.cells) == len(notebooks.release.cells)
    assert result.notes == []


# ---------------------------------------------------------------------------------------------
# normalise: answer cells that were deleted, duplicated, moved, renamed or retyped
# ---------------------------------------------------------------------------------------------


def test_deleted_answer_cell_grades_the_stub(notebooks):
    nb = notebooks.student()
    del nb.cells[notebooks.index(nb, "swish")]
    result = normalise(notebooks, nb)
    assert result.notes == ["The answer cell 'swish' is missing (deleted?): the empty stub was graded."]
    assert "swish" not in result.answered
    assert notebooks.cell(result.notebook, "swish").source == notebooks.cell(notebooks.release, "swish").source
    assert_release_shape(notebooks, result)


def test_duplicated_answer_cell_grades_the_last_copy(notebooks):
    nb = notebooks.student()
    at = notebooks.index(nb, "swish")
    second = copy.deepcopy(nb.cells[at])
    second.id, second.source = "swish-again", "def swish(x):\n    return 2 * x"
    nb.cells.insert(at + 1, second)
    result = normalise(notebooks, nb)
    assert result.notes == ["The answer cell 'swish' appears 2 times: the last copy was graded."]
    assert notebooks.cell(result.notebook, "swish").source == "def swish(x):\n    return 2 * x"
    assert notebooks.grade_ids(result.notebook).count("swish") == 1
    assert all("# answer swish" not in c.source for c in result.notebook.cells)  # the first copy is not an extra


def test_reordered_cells_are_put_back(notebooks):
    nb = notebooks.student()
    a, b = notebooks.index(nb, "groupnorm"), notebooks.index(nb, "swish")
    nb.cells[a], nb.cells[b] = nb.cells[b], nb.cells[a]
    result = normalise(notebooks, nb)
    assert result.notes == ["The cells were not in the release notebook's order; they were put back in order "
                            "(cells you added stay after the cell they followed)."]
    assert_release_shape(notebooks, result)
    assert notebooks.cell(result.notebook, "swish").source.startswith("# answer swish")


def test_a_moved_test_cell_counts_as_reordering(notebooks):
    nb = notebooks.student()
    test = nb.cells.pop(notebooks.index(nb, "test_unet"))
    nb.cells.insert(0, test)
    assert any("not in the release notebook's order" in n for n in normalise(notebooks, nb).notes)


def test_an_early_duplicate_counts_as_reordering(notebooks):
    """Only the first copy of a duplicated cell decides the order (the copy graded is the last)."""
    nb = notebooks.student()
    early = copy.deepcopy(notebooks.cell(nb, "unet"))
    early.id = "unet-early"
    nb.cells.insert(0, early)
    notes = normalise(notebooks, nb).notes
    assert "The answer cell 'unet' appears 2 times: the last copy was graded." in notes
    assert any("not in the release notebook's order" in n for n in notes)


def test_answer_without_grading_metadata_is_found_by_cell_id(notebooks):
    nb = notebooks.student()
    del notebooks.cell(nb, "swish").metadata["nbgrader"]  # index() needs the grade_id: look it up first
    result = normalise(notebooks, nb)
    assert result.notes == ["The answer cell 'swish' had lost its grading metadata; it was found by its cell id."]
    assert notebooks.cell(result.notebook, "swish").source.startswith("# answer swish")


def test_answer_with_a_changed_grade_id_is_found_by_cell_id(notebooks):
    nb = notebooks.student()
    notebooks.cell(nb, "swish").metadata["nbgrader"]["grade_id"] = "my-swish"
    result = normalise(notebooks, nb)
    assert result.notes == ["The answer cell 'swish' had lost its grading metadata; it was found by its cell id."]
    assert "swish" in result.answered


def test_answer_without_metadata_or_id_is_found_by_its_first_line(notebooks):
    nb = notebooks.student()
    cell = notebooks.cell(nb, "groupnorm")
    cell.metadata = {}
    cell.id = "renamed"
    result = normalise(notebooks, nb)
    assert result.notes == ["The answer cell 'groupnorm' had lost its grading metadata; it was found by its first line."]
    assert notebooks.cell(result.notebook, "groupnorm").source.startswith("# answer groupnorm")


def test_first_line_match_skips_comments_and_locked_cells(notebooks):
    """The signature is the first line that is neither blank nor a comment; a locked cell (a test
    cell, say) is never taken for an answer."""
    nb = notebooks.student()
    answer = notebooks.cell(nb, "groupnorm")
    answer.metadata, answer.id = {}, "renamed"
    decoy = notebooks.code_cell("\n# mine\nclass GroupNorm(nn.Module):\n    pass", "decoy", locked=True)
    nb.cells.insert(0, decoy)
    result = normalise(notebooks, nb)
    assert notebooks.cell(result.notebook, "groupnorm").source.startswith("# answer groupnorm")
    assert "The answer cell 'groupnorm' had lost its grading metadata; it was found by its first line." in result.notes


@pytest.mark.parametrize("cell_type", ["markdown", "raw"])
def test_answer_turned_into_another_type_is_graded_as_code(notebooks, cell_type):
    nb = notebooks.student()
    at = notebooks.index(nb, "swish")
    old = nb.cells[at]
    new = (nbformat.v4.new_markdown_cell if cell_type == "markdown" else nbformat.v4.new_raw_cell)(old.source)
    new.id, new.metadata = old.id, old.metadata
    nb.cells[at] = new
    result = normalise(notebooks, nb)
    assert result.notes == [f"The answer cell 'swish' had been turned into {cell_type}; it was graded as code."]
    graded = notebooks.cell(result.notebook, "swish")
    assert graded.cell_type == "code" and graded.source.startswith("# answer swish")


def test_answer_with_an_odd_cell_type_is_named_in_the_note(notebooks):
    data = json.loads(notebooks.to_bytes(notebooks.student()))
    next(c for c in data["cells"] if c["id"] == "swish").pop("cell_type")
    notes = normalise(notebooks, data).notes
    assert "The answer cell 'swish' had been turned into another type; it was graded as code." in notes


# ---------------------------------------------------------------------------------------------
# normalise: test cells
# ---------------------------------------------------------------------------------------------


def test_deleted_test_cell_is_restored(notebooks):
    nb = notebooks.student()
    del nb.cells[notebooks.index(nb, "test_swish")]
    result = normalise(notebooks, nb)
    assert result.notes == ["The test cell 'test_swish' was missing; the original was restored and run."]
    original = notebooks.cell(notebooks.release, "test_swish").source
    assert notebooks.cell(result.notebook, "test_swish").source == original


def test_edited_test_cell_is_restored(notebooks):
    nb = notebooks.student()
    notebooks.cell(nb, "test_unet").source = "print('PASS')"
    result = normalise(notebooks, nb)
    assert result.notes == ["The test cell 'test_unet' had been edited; the original was restored and run."]
    assert notebooks.cell(result.notebook, "test_unet").source == notebooks.cell(notebooks.release, "test_unet").source


def test_an_edited_copy_of_a_test_cell_counts_as_an_edit(notebooks):
    nb = notebooks.student()
    copy_ = copy.deepcopy(notebooks.cell(nb, "test_unet"))
    copy_.id, copy_.source = "mine", "pass"
    nb.cells.append(copy_)
    result = normalise(notebooks, nb)
    assert result.notes == ["The test cell 'test_unet' had been edited; the original was restored and run."]
    assert notebooks.grade_ids(result.notebook).count("test_unet") == 1


def test_an_unchanged_copy_of_a_test_cell_is_dropped_quietly(notebooks):
    nb = notebooks.student()
    at = notebooks.index(nb, "test_swish")
    copy_ = copy.deepcopy(nb.cells[at])
    copy_.id = "again"
    nb.cells.insert(at + 1, copy_)
    result = normalise(notebooks, nb)
    assert result.notes == []
    assert notebooks.grade_ids(result.notebook).count("test_swish") == 1


def test_deleted_graded_cells_in_bulk(notebooks):
    """Every answer and test cell deleted: one note each, the release's cells back in place."""
    nb = notebooks.student()
    graded = set(notebooks.answer_ids()) | set(notebooks.test_ids())
    nb.cells = [c for c in nb.cells if notebooks.grade_id(c) not in graded]
    result = normalise(notebooks, nb)
    assert len(result.notes) == len(graded)
    assert result.answered == []
    assert_release_shape(notebooks, result)


# ---------------------------------------------------------------------------------------------
# normalise: cells the student added
# ---------------------------------------------------------------------------------------------


def test_extra_cells_stay_after_the_answer_they_followed(notebooks):
    nb = notebooks.student()
    nb.cells.insert(notebooks.index(nb, "swish") + 1, notebooks.code_cell("print(swish(t.zeros(1)))"))
    nb.cells.insert(notebooks.index(nb, "test_swish") + 1, notebooks.code_cell("helper = 1"))
    result = normalise(notebooks, nb)
    assert result.notes == []
    out = result.notebook.cells
    at = notebooks.index(result.notebook, "swish")
    assert [c.source for c in out[at + 1: at + 3]] == ["print(swish(t.zeros(1)))", "helper = 1"]
    assert notebooks.grade_id(out[at + 3]) == "test_swish"  # after the answer, before its test


def test_the_same_notebook_is_rebuilt_the_same_every_time(notebooks):
    """Extra cells get ids from their place, not random ones: the file written for nbgrader, and
    what is graded, do not change from one run to the next."""
    nb = notebooks.student()
    nb.cells.insert(notebooks.index(nb, "swish") + 1, notebooks.code_cell("print(swish(t.zeros(1)))"))
    raw = notebooks.to_bytes(nb)
    first, second = intake.normalise(raw, notebooks.release), intake.normalise(raw, notebooks.release)
    assert nbformat.writes(first.notebook) == nbformat.writes(second.notebook)
    assert [c.id for c in first.notebook.cells if c.id.startswith("student-extra-")] == [
        f"student-extra-{notebooks.index(first.notebook, 'swish') + 1:03d}"]


def test_a_test_cell_with_a_changed_grade_id_is_found_by_its_cell_id(notebooks):
    nb = notebooks.student()
    test = notebooks.cell(nb, "test_swish")
    test.metadata["nbgrader"]["grade_id"] = "my_test"
    test.source += "\nprint('extra')"
    result = normalise(notebooks, nb)
    assert result.notes == ["The test cell 'test_swish' had been edited; the original was restored and run."]
    assert len(result.notebook.cells) == len(notebooks.release.cells)  # restored, not run as a cell of theirs


def test_extra_cells_before_every_answer_go_first(notebooks):
    nb = notebooks.student()
    nb.cells.insert(0, notebooks.code_cell("EARLY = 1"))
    result = normalise(notebooks, nb)
    assert result.notebook.cells[0].source == "EARLY = 1"
    assert result.notes == []


def test_an_extra_cell_after_the_imports_runs_after_them(notebooks):
    nb = notebooks.student()
    nb.cells.insert(notebooks.index(nb, notebooks.imports_id()) + 1, notebooks.code_cell("device = t.device('cpu')"))
    out = normalise(notebooks, nb).notebook
    sources = [c.source for c in out.cells]
    assert sources.index("device = t.device('cpu')") > notebooks.index(out, notebooks.imports_id())


@pytest.mark.parametrize(
    "extra",
    [
        nbformat.v4.new_markdown_cell("My notes"),
        nbformat.v4.new_code_cell("   \n"),
        nbformat.v4.new_raw_cell("raw text"),
    ],
    ids=["markdown", "blank-code", "raw"],
)
def test_extra_cells_that_are_not_code_are_dropped(notebooks, extra):
    nb = notebooks.student()
    nb.cells.insert(notebooks.index(nb, "swish") + 1, extra)
    result = normalise(notebooks, nb)
    assert len(result.notebook.cells) == len(notebooks.release.cells)


def test_a_copy_of_a_release_cell_is_not_an_extra(notebooks):
    """A locked cell copied without its metadata (its source is the release's) is not run twice."""
    nb = notebooks.student()
    imports = notebooks.cell(nb, notebooks.imports_id())
    nb.cells.append(notebooks.code_cell(imports.source, "my-copy"))
    result = normalise(notebooks, nb)
    assert len(result.notebook.cells) == len(notebooks.release.cells)
    assert result.notes == []


def test_a_helper_cell_with_an_unknown_grade_id_is_kept(notebooks):
    nb = notebooks.student()
    helper = notebooks.code_cell("def helper():\n    return 1", "helper", grade_id="cell-8f2a", grade=False,
                                 solution=False, locked=False)
    nb.cells.insert(notebooks.index(nb, "groupnorm") + 1, helper)
    result = normalise(notebooks, nb)
    assert result.notes == []
    out = result.notebook.cells
    at = notebooks.index(result.notebook, "groupnorm")
    assert out[at + 1].source == "def helper():\n    return 1" and notebooks.grade_id(out[at + 1]) is None


def test_an_extra_cell_after_a_lesson_code_cell_runs_after_it(notebooks):
    """`ConvTranspose2d = nn.ConvTranspose2d` is a locked cell of the lesson: a student's cell written
    after it (here, one that replaces it with their own) must not run before it."""
    nb = notebooks.student()
    lesson = next(c for c in nb.cells if c.source.startswith("ConvTranspose2d = "))
    at = nb.cells.index(lesson)
    nb.cells.insert(at + 1, notebooks.code_cell("ConvTranspose2d = MyConvTranspose2d"))
    result = normalise(notebooks, nb)
    assert result.notes == []
    sources = [c.source for c in result.notebook.cells]
    assert sources.index("ConvTranspose2d = MyConvTranspose2d") == sources.index(lesson.source) + 1


# ---------------------------------------------------------------------------------------------
# normalise: answers matched by their first line, when two answers share it
# ---------------------------------------------------------------------------------------------


def test_deleting_one_plot_answer_leaves_the_other_in_place(notebooks):
    nb = notebooks.student()
    del nb.cells[notebooks.index(nb, "plot_embeddings")]
    result = normalise(notebooks, nb)
    assert notebooks.cell(result.notebook, "plot_silu").source.startswith("# answer plot_silu")
    assert "The answer cell 'plot_embeddings' is missing (deleted?): the empty stub was graded." in result.notes
    assert not any("'plot_silu'" in n for n in result.notes)


def test_notebook_stripped_of_metadata_and_ids(notebooks):
    nb = notebooks.student()
    for cell in nb.cells:
        cell.metadata = {}
        del cell["id"]
    nb.nbformat_minor = 4
    result = intake.normalise(notebooks.to_bytes(nb), notebooks.release)
    for grade_id in notebooks.answer_ids():
        assert notebooks.cell(result.notebook, grade_id).source.startswith(f"# answer {grade_id}")
    assert not any("appears" in n for n in result.notes)
    # The unchanged test cells are recognised by their source: none is called missing.
    assert sorted(result.notes) == sorted(
        f"The answer cell '{grade_id}' had lost its grading metadata; it was found by "
        + ("its first line and its place in the notebook" if grade_id.startswith("plot_") else "its first line")
        + "." for grade_id in notebooks.answer_ids())


def test_a_plot_answer_stripped_of_metadata_is_found_in_its_place(notebooks):
    nb = notebooks.student()
    for grade_id in ("plot_embeddings", "plot_silu"):
        cell = notebooks.cell(nb, grade_id)
        cell.metadata, cell.id = {}, f"renamed-{grade_id}"
    result = normalise(notebooks, nb)
    for grade_id in ("plot_embeddings", "plot_silu"):
        assert notebooks.cell(result.notebook, grade_id).source.startswith(f"# answer {grade_id}")
        assert (f"The answer cell '{grade_id}' had lost its grading metadata; it was found by its first line and "
                "its place in the notebook.") in result.notes
    assert len(result.notes) == 2


def test_a_stripped_plot_answer_moved_elsewhere_is_not_guessed(notebooks):
    """Out of its place, an `if MAIN:` cell cannot be told from the other plot answer: it is kept as
    the student's own cell where it was, and the note says why the stub was graded."""
    nb = notebooks.student()
    cell = nb.cells.pop(notebooks.index(nb, "plot_embeddings"))
    cell.metadata, cell.id = {}, "moved"
    nb.cells.append(cell)
    result = normalise(notebooks, nb)
    assert result.notes == [
        "The answer cell 'plot_embeddings' had lost its grading metadata and is not where the release has it; other "
        "cells start with the same line, so it could not be told which one it is: the empty stub was graded, and "
        "your cells were kept where they were."]
    assert notebooks.cell(result.notebook, "plot_silu").source.startswith("# answer plot_silu")
    assert result.notebook.cells[-1].source == cell.source


# ---------------------------------------------------------------------------------------------
# normalise: notebooks whose structure is damaged
# ---------------------------------------------------------------------------------------------


def test_damaged_notebook_keeps_its_answers(notebooks):
    data = json.loads(notebooks.to_bytes(notebooks.student()))
    data["nbformat"] = 5
    data["cells"].insert(3, "not a cell")
    result = normalise(notebooks, data)
    assert result.notes == ["The notebook's structure is damaged (NBFormatError); its cells were read as is."]
    assert result.answered == notebooks.answer_ids()
    assert notebooks.cell(result.notebook, "swish").source.startswith("# answer swish")


def test_non_utf8_notebook_keeps_its_answers(notebooks):
    raw = notebooks.to_bytes(notebooks.student(swish="# \u00e9\ndef swish(x): return x")).replace(b"\xc3\xa9", b"\xe9")
    result = normalise(notebooks, raw)
    assert len(result.notes) == 1 and result.notes[0].startswith("The file is not valid UTF-8")
    assert notebooks.cell(result.notebook, "swish").source == "# \ufffd\ndef swish(x): return x"


@pytest.mark.parametrize("field, value", [("metadata", "oops"), ("source", [1, 2])])
def test_odd_cell_fields_are_a_note_not_a_crash(notebooks, field, value):
    data = json.loads(notebooks.to_bytes(notebooks.student()))
    next(c for c in data["cells"] if c["id"] == "swish")[field] = value
    result = normalise(notebooks, data)
    assert result.notes[0].startswith("The notebook's structure is damaged")
    if field == "metadata":
        assert "The answer cell 'swish' had lost its grading metadata; it was found by its cell id." in result.notes
        assert notebooks.cell(result.notebook, "swish").source.startswith("# answer swish")
    else:
        assert "The answer cell 'swish' held something other than text as its source; it was read as text." in result.notes
        assert notebooks.cell(result.notebook, "swish").source == "12"
    assert "swish" in result.answered


