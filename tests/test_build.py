"""The build: reproducible, fresh, complete, and never leaking a solution into the release."""

from __future__ import annotations

import dataclasses

import re
from pathlib import Path

import nbformat
import pytest

from grader import paths
from grader.lesson import build, generated, links, module

RELEASE_NOTEBOOK = paths.REPO / paths.RELEASE_DIR / paths.NOTEBOOK_NAME
SOURCE_NOTEBOOK = paths.REPO / paths.SOURCE_DIR / paths.NOTEBOOK_NAME
# Every name the seed lesson defines for students to implement, with its exact signature line.
STUBS = {
    "GroupNorm": "class GroupNorm(nn.Module):",
    "SinusoidalPositionEmbeddings": "class SinusoidalPositionEmbeddings(nn.Module):",
    "swish": "def swish(x: t.Tensor) -> t.Tensor:",
    "SiLU": "class SiLU(nn.Module):",
    "SelfAttention": "def __init__(self, channels: int, num_heads: int = 4):",
    "ConvTranspose2d": "ConvTranspose2d = nn.ConvTranspose2d",
    "ConvTranspose2dFromScratch": "class ConvTranspose2dFromScratch(nn.Module):",
    "AttentionBlock": "class AttentionBlock(nn.Module):",
    "ResidualBlock": "def __init__(self, input_channels: int, output_channels: int, step_dim: int, groups: int):",
    "DownBlock": "def __init__(self, channels_in: int, channels_out: int, time_emb_dim: int, groups: int, downsample: bool):",
    "UpBlock": "def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int, groups: int, upsample: bool):",
    "MidBlock": "def __init__(self, mid_dim: int, time_emb_dim: int, groups: int):",
    "Unet": "class Unet(DiffusionModel):",
}


def solution_only_lines(source: str) -> set[str]:
    """Stripped code lines that occur inside solution regions and nowhere else in the source.

    Lines under 10 characters (`else:`, `)`, `return h`) are too generic to count as leaks.
    """
    inside, outside, in_solution = set(), set(), False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == build.SOLUTION_BEGIN:
            in_solution = True
        elif stripped == build.SOLUTION_END:
            in_solution = False
        elif len(stripped) >= 10 and not stripped.startswith("#"):
            (inside if in_solution else outside).add(stripped)
    return inside - outside


def release_text() -> str:
    """Everything a student reads in the notebook. (The tests module beside it computes references
    with torch built-ins and is checked for solutions by its own tests.)"""
    return "\n".join(cell.source for cell in nbformat.read(RELEASE_NOTEBOOK, as_version=4).cells)


def test_generated_files_are_fresh():
    """Rebuilding from the committed source reproduces every generated file byte for byte."""
    assert generated.stale_files() == [], "generated files are stale: run `python -m grader build` and commit"


def test_no_solution_line_leaks_into_the_release():
    secret = solution_only_lines(paths.LESSON_SOURCE.read_text(encoding="utf-8"))
    assert len(secret) > 50, "the solution regions should hold the lesson's answers"
    release_lines = {line.strip() for line in release_text().splitlines()}
    leaked = sorted(secret & release_lines)
    assert not leaked, f"solution lines found in the student release: {leaked[:5]}"


def test_leak_check_catches_a_leak():
    """The leak check itself can fail: a solution line pasted outside the markers is found."""
    source = "x = 1\n### BEGIN SOLUTION\nsecret_answer = 42\n### END SOLUTION\n"
    assert solution_only_lines(source) == {"secret_answer = 42"}
    assert solution_only_lines(source + "secret_answer = 42\n") == set()


def test_release_has_every_stub_and_no_outputs():
    nb = nbformat.read(RELEASE_NOTEBOOK, as_version=4)
    text = "\n".join(cell.source for cell in nb.cells)
    missing = [name for name, signature in STUBS.items() if signature not in text]
    assert not missing, f"stubs missing from the release: {missing}"
    solution_cells = [c for c in nb.cells if c.metadata["nbgrader"]["solution"]]
    assert solution_cells and all("raise NotImplementedError()" in c.source for c in solution_cells)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    # The seed's bug: the attention block's test must receive AttentionBlock.
    assert "w3d4_test.test_attention_block(AttentionBlock)" in text


def test_nbgrader_metadata_is_complete():
    nb = nbformat.read(SOURCE_NOTEBOOK, as_version=4)
    metas = [cell.metadata["nbgrader"] for cell in nb.cells]
    ids = [m["grade_id"] for m in metas]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    graded = [m for m in metas if m["grade"]]
    assert {m["grade_id"] for m in graded} >= {
        "test_groupnorm", "test_sinusoidal_embeddings", "test_swish", "test_self_attention", "test_attention_block",
        "test_residual_block", "test_down_block", "test_up_block", "test_mid_block", "test_unet",
    }
    assert all(m["locked"] and m["points"] > 0 and not m["solution"] for m in graded)
    assert all(not m["locked"] for m in metas if m["solution"])
    assert all(m["locked"] for m in metas if not m["solution"]), "everything but answers is read-only"
    first = nb.cells[0].source.splitlines()[0]
    assert "Generated from solutions/w3d4_part2_unet_solution.py" in first


def test_generated_python_files_name_their_source():
    for folder in (paths.SOURCE_DIR, paths.RELEASE_DIR):
        for path in (paths.REPO / folder).rglob("*.py"):
            assert path.read_text(encoding="utf-8").startswith("# Generated from "), path


@pytest.mark.parametrize(
    "cell, message",
    [
        ('# %% nbgrader={"grade_id": "a"}\nx = 1\n### BEGIN SOLUTION\ny = 2\n', "unbalanced"),
        ("# %%\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\n", "needs nbgrader"),
        ('# %% nbgrader={"points": 1}\nassert True\n', "needs nbgrader"),
        ('# %% nbgrader={"grade_id": "a", "points": 0}\nassert True\n', "points must be a positive number"),
        ('# %% nbgrader={"grade_id": "a", "locked": false}\nx = 1\n', "unsupported nbgrader keys"),
        ('# %% nbgrader={"grade_id": "a"}\nx = 1\n\n# %% nbgrader={"grade_id": "a", "points": 1}\nx\n', "already used"),
    ],
)
def test_bad_sources_get_a_clear_error(tmp_path: Path, cell: str, message: str):
    source = tmp_path / "lesson.py"
    source.write_text(f"# %% [markdown]\n# # Title\n\n{cell}")
    with pytest.raises(build.BuildError, match=message):
        build.source_notebook(source)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('"grade_id": "test_groupnorm", "points": 2', '"grade_id": "test_groupnorm", "points": 3',
         r"'test_groupnorm' gives 3 points, the checks' registry 2"),
        ('"grade_id": "test_mid_block"', '"grade_id": "test_midblock"', "needs cells 'mid_block' and 'test_mid_block'"),
        ('"grade_id": "test_swish", "points": 1', '"grade_id": "test_swish", "points": 1}\nx = 1\n\n'
         '# %% nbgrader={"grade_id": "test_extra", "points": 1', r"\['test_extra'\] have no exercise"),
    ],
)
def test_lesson_and_checks_registry_must_agree(tmp_path: Path, old: str, new: str, message: str):
    """One registry: the lesson's exercises and points are those of checks/w3d4_checks/exercises.py."""
    text = paths.LESSON_SOURCE.read_text(encoding="utf-8")
    assert text.count(old) == 1
    source = tmp_path / "lesson.py"
    source.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(build.BuildError, match=message):
        build.write_source_dir(tmp_path / "out", dataclasses.replace(paths.LESSONS[paths.ASSIGNMENT], source=source))


def _lesson_with(tmp_path: Path, markdown: str) -> Path:
    """A lesson source: a title cell, then one markdown cell per paragraph of markdown."""
    cells = "".join(f"# %% [markdown]\n# {text}\n\n" for text in markdown.split("\n\n"))
    source = tmp_path / "lesson.py"
    source.write_text(f"# %% [markdown]\n# # Title\n\n{cells}")
    return source


@pytest.mark.parametrize(
    "markdown",
    [
        "See [the U-Net](#The-U-Net).\n\n## The U-Net",
        "[Does it work?](#Does-it-work?) and [the bonus](#Bonus:-from-scratch)\n\n## Does it work?\n\n## Bonus: from scratch",
        "[Back up](#Title)",
        'An explicit anchor: [here](#here)\n\n<a id="here"></a>Some text',
    ],
    ids=["heading", "punctuation", "title", "explicit-anchor"],
)
def test_internal_links_to_the_anchors_the_viewers_generate_build(tmp_path: Path, markdown: str):
    nb = build.source_notebook(_lesson_with(tmp_path, markdown))
    assert all(len(link["targets"]) == 1 for link in links.internal_links(nb))


@pytest.mark.parametrize(
    "markdown, message",
    [
        # GitHub-style lowercase anchors, as the lesson first had them: no viewer generates them.
        ("See [the U-Net](#the-u-net).\n\n## The U-Net", r"\[the U-Net\]\(#the-u-net\) points at no heading.*Did you mean #The-U-Net\?"),
        ("[Does it work?](#Does-it-work)\n\n## Does it work?", r"#Does-it-work\) points at no heading.*Did you mean #Does-it-work\?\?"),
        # A heading renamed after the link was written.
        ("[The U-Net](#The-U-Net)\n\n## The whole U-Net", r"points at no heading.*renamed"),
        ("[The block](#The-block)\n\n### The block\n\n### The block", r"ambiguous: cells \[2, 3\]"),
        # The export percent-encodes what a URL fragment may not hold; JupyterLab keeps the text.
        ("[Über](#Über)\n\n## Über", r"the HTML export gives it #%C3%9Cber"),
    ],
    ids=["lowercase", "punctuation-dropped", "renamed-heading", "duplicate-heading", "export-disagrees"],
)
def test_a_broken_internal_link_fails_the_build(tmp_path: Path, markdown: str, message: str):
    with pytest.raises(build.BuildError, match=message):
        build.source_notebook(_lesson_with(tmp_path, markdown))


def test_every_link_of_the_lesson_leads_to_one_heading():
    found = links.internal_links(build.source_notebook(paths.LESSON_SOURCE))
    assert len(found) >= 12, "the contents list and the cross-references"
    assert [link for link in found if len(link["targets"]) != 1] == []


def test_missing_source_and_missing_figure_are_reported(tmp_path: Path, monkeypatch):
    with pytest.raises(build.BuildError, match="lesson source not found"):
        build.source_notebook(tmp_path / "nope.py")
    monkeypatch.setattr(paths, "FIGURES", tmp_path)
    with pytest.raises(build.BuildError, match=r"w3d4_unet_architecture\.svg.*does not exist"):
        build.write_source_dir(tmp_path / "out", paths.LESSONS[paths.ASSIGNMENT])


@pytest.mark.slow  # three whole builds
def test_rebuild_keeps_a_copy_of_hand_edited_files(tmp_path: Path):
    """A student who worked inside notebooks/w3d4_part2/ and rebuilt loses nothing."""
    generated.build(root=tmp_path)
    notebook = tmp_path / paths.RELEASE_DIR / paths.NOTEBOOK_NAME
    edited = notebook.read_text(encoding="utf-8").replace("# YOUR CODE HERE", "# my own work", 1)
    notebook.write_text(edited, encoding="utf-8")
    backups = generated.build(root=tmp_path)
    assert len(backups) == 1 and backups[0].endswith(f"{paths.RELEASE_DIR.as_posix()}/{paths.NOTEBOOK_NAME}")
    assert (tmp_path / backups[0]).read_text(encoding="utf-8") == edited
    assert "# my own work" not in notebook.read_text(encoding="utf-8")
    assert generated.build(root=tmp_path) == [], "an unedited tree needs no backup"


def test_generated_notebooks_are_valid_nbformat():
    for path in (SOURCE_NOTEBOOK, RELEASE_NOTEBOOK):
        nbformat.validate(nbformat.read(path, as_version=4))
        assert re.fullmatch(r"[\w-]+", nbformat.read(path, as_version=4).cells[1].id)


SMALL_LESSON = '''# %% [markdown]
# # A lesson

# %%
import math

MAIN = __name__ == "__main__"

# %% nbgrader={"grade_id": "double"}
def double(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION

# %% nbgrader={"grade_id": "test_double", "points": 1}
if MAIN:
    w3d4_test.test_double(double)

# %%
if MAIN:
    print("a demo", double(math.pi))

# %% tags=["skip-when-grading"]
trained = double(1)
'''


def test_the_generated_module_keeps_definitions_and_drops_tests_demos_and_markers(tmp_path: Path):
    source = tmp_path / "lesson.py"
    source.write_text(SMALL_LESSON, encoding="utf-8")
    text = module.module_text(source, "w3d4_partX")
    assert text.startswith("# Generated from ")
    assert "### BEGIN SOLUTION" not in text and "return 2 * x" in text
    assert "w3d4_test" not in text and "a demo" not in text and "trained" not in text
    namespace: dict = {}
    exec(compile(text, "generated", "exec", dont_inherit=True), namespace)
    assert namespace["double"](3) == 6 and "MAIN" in namespace


def test_a_generated_module_that_does_not_compile_fails_the_build(tmp_path: Path):
    source = tmp_path / "lesson.py"
    source.write_text(SMALL_LESSON.replace("import math", "import math\nif True:\n    pass\nelse"), encoding="utf-8")
    with pytest.raises(build.BuildError, match="does not"):
        module.module_text(source, "w3d4_partX")


def test_part1_module_is_generated_from_the_part1_lesson():
    """Parts 2 and 3 import part 1's definitions from a module the build writes from part 1's source."""
    exporters = [lesson for lesson in paths.LESSONS.values() if lesson.exports]
    assert [lesson.exports for lesson in exporters] in ([], [paths.PART1_MODULE])
    for lesson in exporters:
        text = lesson.exports.read_text(encoding="utf-8")
        assert text == module.module_text(lesson.source, lesson.title), "stale: run `python -m grader build`"
        namespace: dict = {"__name__": "w3d4_part1_module"}
        exec(compile(text, str(lesson.exports), "exec", dont_inherit=True), namespace)
        for name in ("DiffusionModel", "NoiseSchedule", "TrainConfig", "TrainLog", "noise_img", "reconstruct",
                     "train", "sample", "show_images"):
            assert name in namespace, f"part 1's module lacks {name}"


def test_every_exercise_belongs_to_a_lesson_of_the_course():
    """An exercise whose `assignment` names no lesson would never be built or graded."""
    from w3d4_checks import EXERCISES

    assert {exercise.assignment for exercise in EXERCISES.values()} == set(paths.LESSONS)
    for assignment in paths.LESSONS:
        assert build._exercises(assignment), f"{assignment} has no exercise"
