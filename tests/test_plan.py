"""What is checked for each graded cell, and the per-student seeds.

`checks_for` reads the `w3d4_test.test_x(...)` calls in the release's graded cells; `seed_for`
derives each check's seed from the course secret. Neither needs a kernel.
"""

from __future__ import annotations

import dataclasses
import re

import nbformat
import pytest

from grader.grading import plan as checks

SECRET = b"course secret for the tests"


def one_graded_cell(source: str, grade_id: str = "test_x", cell_type: str = "code", grade: bool = True):
    """A notebook with a single cell: graded (or not), of the given type."""
    cell = nbformat.v4.new_code_cell(source) if cell_type == "code" else nbformat.v4.new_markdown_cell(source)
    cell.metadata["nbgrader"] = {"grade": grade, "grade_id": grade_id, "locked": True, "solution": False, "points": 1}
    nb = nbformat.v4.new_notebook()
    nb.cells = [cell]
    return nb


def visible(found):
    return [(c.check_id, c.test, c.args, c.kwargs) for c in found if not c.hidden]


# ---------------------------------------------------------------------------------------------
# checks_for on the release notebook
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def release_checks(notebooks):
    return checks.checks_for(notebooks.release)


def test_every_graded_cell_has_checks(release_checks, notebooks):
    assert list(dict.fromkeys(c.grade_id for c in release_checks)) == notebooks.test_ids()


def test_the_release_checks(release_checks):
    assert visible(release_checks)[:4] == [
        ("test_groupnorm-1", "groupnorm", ("GroupNorm",), {"affine": False}),
        ("test_groupnorm-2", "groupnorm", ("GroupNorm",), {"affine": True}),
        ("test_sinusoidal_embeddings-1", "sinusoidal_embeddings", ("SinusoidalPositionEmbeddings",), {}),
        ("test_swish-1", "swish", ("swish", "SiLU"), {}),
    ]
    assert [c.check_id for c in release_checks if c.grade_id == "test_groupnorm"] == [
        "test_groupnorm-1", "test_groupnorm-2", "test_groupnorm-hidden-1", "test_groupnorm-hidden-2"]


def test_each_visible_check_is_repeated_hidden(release_checks):
    shown = [(c.grade_id, c.test, c.args, c.kwargs) for c in release_checks if not c.hidden]
    hidden = [(c.grade_id, c.test, c.args, c.kwargs) for c in release_checks if c.hidden]
    assert shown == hidden and len(shown) > 0


def test_check_ids_are_unique_and_file_name_safe(release_checks):
    ids = [c.check_id for c in release_checks]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", i) for i in ids)


def test_an_ungraded_test_cell_has_no_checks(release_checks, notebooks):
    graded = set(notebooks.test_ids())
    ungraded_tests = [notebooks.grade_id(c) for c in notebooks.release.cells
                      if "w3d4_test.test_" in c.source and notebooks.grade_id(c) not in graded]
    assert ungraded_tests, "the lesson has an ungraded test cell (the bonus)"
    assert not {c.grade_id for c in release_checks} & set(ungraded_tests)


# ---------------------------------------------------------------------------------------------
# checks_for on cells written for the test
# ---------------------------------------------------------------------------------------------


def test_calls_are_read_anywhere_in_the_cell():
    source = "if MAIN:\n    for _ in range(1):\n        w3d4_test.test_a(A)\n        w3d4_test.test_b(B, C)"
    assert visible(checks.checks_for(one_graded_cell(source))) == [
        ("test_x-1", "a", ("A",), {}), ("test_x-2", "b", ("B", "C"), {})]


def test_calls_are_numbered_in_source_order():
    source = "if MAIN:\n    w3d4_test.test_a(A)\nw3d4_test.test_b(B)\nif MAIN:\n    for _ in (1,):\n        w3d4_test.test_c(C)"
    found = checks.checks_for(one_graded_cell(source))
    assert [(check_id, test) for check_id, test, _, _ in visible(found)] == [
        ("test_x-1", "a"), ("test_x-2", "b"), ("test_x-3", "c")]
    assert [c.test for c in found if c.hidden] == ["a", "b", "c"]


def test_keyword_arguments_are_literals():
    source = "w3d4_test.test_a(A, n=3, scale=0.5, name='x', shape=(1, 2), flags=[True, None], opts={'k': -1})"
    [(_, _, _, kwargs)] = visible(checks.checks_for(one_graded_cell(source)))
    assert kwargs == {"n": 3, "scale": 0.5, "name": "x", "shape": (1, 2), "flags": [True, None], "opts": {"k": -1}}


def test_other_calls_are_not_checks():
    source = "\n".join([
        "w3d4_test.test_a(A)",
        "other.test_b(B)",  # not the tests module
        "w3d4_test.helper(C)",  # not a test
        "test_c(D)",  # a bare name
        "w3d4_test.sub.test_d(E)",  # an attribute of an attribute
        "f = w3d4_test.test_e",  # named, not called
    ])
    assert [test for _, test, _, _ in visible(checks.checks_for(one_graded_cell(source)))] == ["a"]


def test_double_star_keywords_are_left_out():
    [(_, _, _, kwargs)] = visible(checks.checks_for(one_graded_cell("w3d4_test.test_a(A, k=1, **extra)")))
    assert kwargs == {"k": 1}


@pytest.mark.parametrize("argument", ["True", "nn.Module", "*blocks", "make()"])
def test_a_positional_argument_that_is_not_a_name_is_refused_not_dropped(argument):
    """The probe looks each positional argument up by name in the student's kernel: anything else
    would be checked as a different test than the notebook runs."""
    with pytest.raises(ValueError, match=re.escape(f"graded cell 'test_x': in `w3d4_test.test_down_block(DownBlock, "
                                                   f"{argument})`, the positional argument `{argument}` is not a plain "
                                                   "name")):
        checks.checks_for(one_graded_cell(f"w3d4_test.test_down_block(DownBlock, {argument})"))


def test_a_graded_cell_without_a_call_is_an_error():
    with pytest.raises(ValueError, match="graded cell 'test_x' calls no w3d4_test test"):
        checks.checks_for(one_graded_cell("assert True"))


def test_a_keyword_that_is_not_a_literal_is_an_error():
    with pytest.raises(ValueError):
        checks.checks_for(one_graded_cell("w3d4_test.test_a(A, k=make())"))


def test_a_graded_cell_that_does_not_parse_is_an_error():
    with pytest.raises(SyntaxError):
        checks.checks_for(one_graded_cell("w3d4_test.test_a(A"))


@pytest.mark.parametrize("cell_type, grade", [("markdown", True), ("code", False)])
def test_cells_that_are_not_graded_code_are_skipped(cell_type, grade):
    assert checks.checks_for(one_graded_cell("w3d4_test.test_a(A)", cell_type=cell_type, grade=grade)) == []


def test_cells_without_nbgrader_metadata_are_skipped():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("w3d4_test.test_a(A)")]
    assert checks.checks_for(nb) == []


# ---------------------------------------------------------------------------------------------
# Check
# ---------------------------------------------------------------------------------------------


def test_describe():
    check = checks.Check("g-1", "g", "groupnorm", ("GroupNorm",), {"affine": False, "name": "x"})
    assert check.describe() == "test_groupnorm(GroupNorm, affine=False, name='x')"
    assert dataclasses.replace(check, hidden=True).describe() == "hidden check"
    assert checks.Check("s-1", "s", "swish", ("swish", "SiLU")).describe() == "test_swish(swish, SiLU)"


def test_probe_request():
    check = checks.Check("g-hidden-1", "g", "groupnorm", ("GroupNorm",), {"affine": True}, hidden=True)
    assert check.probe_request(1234) == {"check_id": "g-hidden-1", "grade_id": "g", "test": "groupnorm",
                                         "args": ["GroupNorm"], "kwargs": {"affine": True}, "hidden": True,
                                         "seed": 1234}


def test_checks_are_frozen_and_hashable():
    check = checks.Check("g-1", "g", "groupnorm", ("GroupNorm",), {"affine": False})
    with pytest.raises(dataclasses.FrozenInstanceError):
        check.test = "other"
    same = checks.Check("g-1", "g", "groupnorm", ("GroupNorm",), {"affine": False})
    assert hash(check) == hash(same) and {check, same} == {check}


# ---------------------------------------------------------------------------------------------
# seed_for
# ---------------------------------------------------------------------------------------------

CHECK = checks.Check("test_groupnorm-1", "test_groupnorm", "groupnorm", ("GroupNorm",), {"affine": False})


def test_seed_is_deterministic():
    assert checks.seed_for(SECRET, "alice", CHECK) == checks.seed_for(SECRET, "alice", CHECK)
    same_check = checks.Check(CHECK.check_id, CHECK.grade_id, CHECK.test, CHECK.args, dict(CHECK.kwargs))
    assert checks.seed_for(SECRET, "alice", same_check) == checks.seed_for(SECRET, "alice", CHECK)


def test_seed_is_pinned():
    """A changed derivation changes every student's inputs: cached verdicts and regrades would
    disagree. Change this number only on purpose."""
    assert checks.seed_for(b"secret", "alice", CHECK) == 1739314582


def test_seed_differs_per_student():
    seeds = {checks.seed_for(SECRET, f"student{i}", CHECK) for i in range(200)}
    assert len(seeds) == 200


def test_seed_differs_per_check(release_checks):
    seeds = [checks.seed_for(SECRET, "alice", c) for c in release_checks]
    assert len(set(seeds)) == len(seeds)


def test_hidden_and_visible_checks_get_different_seeds(release_checks):
    by_id = {c.check_id: checks.seed_for(SECRET, "alice", c) for c in release_checks}
    assert by_id["test_groupnorm-1"] != by_id["test_groupnorm-hidden-1"]


def test_seed_differs_per_secret():
    seeds = {checks.seed_for(secret, "alice", CHECK) for secret in (b"a", b"b", SECRET, SECRET + b"!", b"")}
    assert len(seeds) == 5


def test_student_and_check_do_not_run_together():
    """'ab' + check 'c' and 'a' + check 'bc' are different inputs (a separator keeps them apart)."""
    one = checks.seed_for(SECRET, "ab", dataclasses.replace(CHECK, check_id="c"))
    other = checks.seed_for(SECRET, "a", dataclasses.replace(CHECK, check_id="bc"))
    assert one != other


def test_seed_depends_on_the_check_id_only():
    """The seed follows the check's id (its graded cell and position), not its arguments."""
    renamed = dataclasses.replace(CHECK, kwargs={"affine": True}, args=("Other",))
    assert checks.seed_for(SECRET, "alice", renamed) == checks.seed_for(SECRET, "alice", CHECK)


def test_seeds_are_in_range(release_checks):
    seeds = [checks.seed_for(SECRET + bytes([i]), f"s{i}", c) for i in range(50) for c in release_checks]
    assert all(isinstance(s, int) and 0 <= s < 2**31 for s in seeds)
    assert max(seeds) > 2**30 and min(seeds) < 2**30  # the whole range is used, not a corner of it
