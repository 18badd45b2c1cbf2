"""Build the lessons: one jupytext source in, the nbgrader source notebook and the student release out.

    solutions/w3d4_partN_*_solution.py             (edit this, one per lesson: paths.LESSONS)
        -> course/source/w3d4_partN/               nbgrader source notebook + the files it needs
        -> notebooks/w3d4_partN/                   `nbgrader generate_assignment`'s release

Cell roles are written in the lesson source as nbgrader metadata in the jupytext cell header, kept
to the parts a person decides; the build fills in the rest of nbgrader's schema:

    # %% nbgrader={"grade_id": "groupnorm"}                 a cell with ### BEGIN/END SOLUTION
    # %% nbgrader={"grade_id": "test_groupnorm", "points": 2}   a graded, read-only test cell

Every other cell (prose, given code, ungraded checks) becomes a locked, read-only cell. Cell tags
are kept: `# %% tags=["skip-when-grading"]` marks code the grader does not run (training, demos).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jupytext
import nbformat

from .. import paths
from ..course.commands import nbgrader
from .links import LinkError, check_internal_links

NBGRADER_SCHEMA = 3
SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"
GENERATED_NOTE = "Generated from {source} by `python -m grader build`: edit that file, not this one."
# Markdown image references that point at files next to the notebook (not at the web).
IMAGE_REF = re.compile(r"""(?:<img[^>]*\bsrc=["']|!\[[^\]]*\]\()(?!https?:)([^"')\s]+)""")


class BuildError(Exception):
    """The lesson source cannot be turned into a valid assignment; the message says where."""


def _rel(path: Path) -> str:
    """A path as the repository names it (paths outside it stay absolute)."""
    return path.relative_to(paths.REPO).as_posix() if path.is_relative_to(paths.REPO) else str(path)


def _cell_label(index: int, cell) -> str:
    first = cell.source.strip().splitlines()[0] if cell.source.strip() else "(empty)"
    return f"cell {index} ({first[:60]!r})"


def nbgrader_metadata(index: int, cell) -> dict:
    """Complete the partial nbgrader metadata of one cell (see the module docstring)."""
    given = dict(cell.metadata.get("nbgrader", {}))
    unknown = set(given) - {"grade_id", "points"}
    if unknown:
        raise BuildError(f"{_cell_label(index, cell)}: unsupported nbgrader keys {sorted(unknown)}")
    has_solution = SOLUTION_BEGIN in cell.source
    if has_solution != (SOLUTION_END in cell.source) or cell.source.count(SOLUTION_BEGIN) != cell.source.count(
        SOLUTION_END
    ):
        raise BuildError(f"{_cell_label(index, cell)}: unbalanced {SOLUTION_BEGIN} / {SOLUTION_END} markers")
    if has_solution and cell.cell_type != "code":
        raise BuildError(f"{_cell_label(index, cell)}: solution markers are only supported in code cells")
    if (has_solution or "points" in given) and "grade_id" not in given:
        raise BuildError(f"{_cell_label(index, cell)}: needs nbgrader={{\"grade_id\": ...}} in its header")
    graded = "points" in given
    if graded and has_solution:
        raise BuildError(f"{_cell_label(index, cell)}: keep solutions and graded tests in separate cells")
    if graded and not (isinstance(given["points"], (int, float)) and given["points"] > 0):
        raise BuildError(f"{_cell_label(index, cell)}: points must be a positive number")
    meta = {
        "grade": graded,
        "grade_id": given.get("grade_id", f"{cell.cell_type}-{index:03d}"),
        "locked": not has_solution,
        "schema_version": NBGRADER_SCHEMA,
        "solution": has_solution,
        "task": False,
    }
    if graded:
        meta["points"] = given["points"]
    return meta


def source_notebook(source: Path) -> nbformat.NotebookNode:
    """The instructor's notebook: the lesson with full nbgrader metadata and stable cell ids."""
    try:
        nb = jupytext.read(source, fmt="py:percent")
    except FileNotFoundError:
        raise BuildError(f"lesson source not found: {source}") from None
    seen: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        meta = nbgrader_metadata(index, cell)
        if meta["grade_id"] in seen:
            raise BuildError(
                f"{_cell_label(index, cell)}: grade_id {meta['grade_id']!r} already used by cell {seen[meta['grade_id']]}"
            )
        seen[meta["grade_id"]] = index
        tags = cell.metadata.get("tags", [])
        if not (isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)):
            raise BuildError(f"{_cell_label(index, cell)}: tags must be a list of strings")
        # Only nbgrader's metadata and tags (e.g. the grader's "skip-when-grading") are kept.
        cell.metadata = {"nbgrader": meta, **({"tags": tags} if tags else {})}
        # Stable ids, so that a rebuild of an unchanged source changes no byte.
        cell.id = meta["grade_id"]
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        raise BuildError("the lesson source must start with a markdown cell (the title)")
    try:
        check_internal_links(nb)
    except LinkError as error:
        raise BuildError(str(error)) from None
    note = GENERATED_NOTE.format(source=_rel(source))
    nb.cells[0].source = f"<!-- {note} -->\n{nb.cells[0].source}"
    nb.metadata = nbformat.from_dict(
        {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "w3d4": {"generated_from": _rel(source)},
        }
    )
    nbformat.validate(nb)
    return nb


def _exercises(assignment: str = paths.ASSIGNMENT) -> dict:
    """The checks library's registry for one lesson: exercise name -> points."""
    package = paths.CHECKS_PACKAGE
    spec = importlib.util.spec_from_file_location(
        "_w3d4_build_checks", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its relative imports look it up there
    try:
        spec.loader.exec_module(module)
    finally:
        for key in [k for k in sys.modules if k.startswith(spec.name)]:
            del sys.modules[key]
    return {name: exercise.points for name, exercise in module.exercises_of(assignment).items()}


def check_exercises(nb: nbformat.NotebookNode, exercises: dict[str, float]) -> None:
    """Every exercise of the checks' registry has its answer cell (grade_id = its name) and its test
    cell (grade_id test_<name>, with the registry's points), and the lesson has no other test cell."""
    ids = {cell.metadata["nbgrader"]["grade_id"]: cell.metadata["nbgrader"] for cell in nb.cells}
    for name, points in exercises.items():
        test = ids.get(f"test_{name}")
        if name not in ids or test is None:
            raise BuildError(f"the checks' registry has exercise {name!r}: the lesson needs cells {name!r} and 'test_{name}'")
        if float(test.get("points", 0)) != float(points):
            raise BuildError(f"cell 'test_{name}' gives {test.get('points', 0)} points, the checks' registry {points}")
    unknown = [gid for gid, meta in ids.items() if meta["grade"] and gid.removeprefix("test_") not in exercises]
    if unknown:
        raise BuildError(f"graded cells {unknown} have no exercise of this lesson in the checks' registry "
                         "(checks/w3d4_checks/exercises.py)")


def referenced_images(nb: nbformat.NotebookNode) -> list[str]:
    """Local image files that the markdown cells show, in order of first use."""
    found: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found += [m for m in IMAGE_REF.findall(cell.source) if m not in found]
    return found


def _copy_with_header(src: Path, dst: Path, named: Path | None = None) -> None:
    """Copy a module, first saying which file to edit (`named`, if src is a copy of it)."""
    text = src.read_text(encoding="utf-8")
    note = f"# {GENERATED_NOTE.format(source=_rel(named or src))}\n"
    dst.write_text(text if text.startswith(note) else note + text, encoding="utf-8")


def write_source_dir(out_root: Path, lesson: paths.Lesson) -> Path:
    """Write course/source/<assignment>/ under out_root: the notebook and every file it needs."""
    nb = source_notebook(lesson.source)
    check_exercises(nb, _exercises(lesson.assignment))
    target = out_root / lesson.source_dir
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in referenced_images(nb):
        figure = paths.FIGURES / name
        if not figure.is_file():
            raise BuildError(f"the lesson shows {name!r}, but {_rel(figure)} does not exist (run `python -m figures`)")
        shutil.copyfile(figure, target / name)
    _copy_with_header(paths.TESTS_MODULE, target / paths.TESTS_MODULE.name)
    for module in sorted(paths.CHECKS_PACKAGE.glob("*.py")):
        (target / paths.CHECKS_PACKAGE.name).mkdir(exist_ok=True)
        _copy_with_header(module, target / paths.CHECKS_PACKAGE.name / module.name)
    for module in lesson.modules:
        # Part 1's module may be generated in this same build: read it from there when it is.
        built = out_root / _rel(module)
        _copy_with_header(built if built.is_file() else module, target / module.name, named=module)
    # Checkpoints and their digests are data: copied byte for byte (the lesson checks the digest).
    for data in lesson.data:
        if not data.is_file():
            raise BuildError(f"the lesson loads {data.name}, but {_rel(data)} does not exist (run `python -m training`)")
        shutil.copyfile(data, target / data.name)
    with open(target / lesson.notebook, "w", encoding="utf-8", newline="\n") as f:
        nbformat.write(nb, f)
    return target


def generate_release(source_dirs: dict[paths.Lesson, Path], out_root: Path) -> None:
    """Run the real `nbgrader generate_assignment` for every lesson and copy out the releases. Each
    runs in a scratch course of its own, all at once: the command spends most of its time starting."""
    with ThreadPoolExecutor(max_workers=len(source_dirs) or 1) as pool:
        for done in [pool.submit(_release_one, lesson, source_dir, out_root / lesson.release_dir)
                     for lesson, source_dir in source_dirs.items()]:
            done.result()


def _release_one(lesson: paths.Lesson, source_dir: Path, release_dir: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="w3d4-course-") as scratch:
        course = Path(scratch)
        shutil.copyfile(paths.NBGRADER_CONFIG, course / "nbgrader_config.py")
        shutil.copytree(source_dir, course / "source" / lesson.assignment)
        result = nbgrader(course, "generate_assignment", lesson.assignment, "--force", "--log-level=WARN", check=False)
        produced = course / "release" / lesson.assignment
        if result.returncode != 0 or not (produced / lesson.notebook).is_file():
            raise BuildError(f"nbgrader generate_assignment failed for {lesson.assignment}:\n{result.stdout}\n{result.stderr}")
        if release_dir.exists():
            shutil.rmtree(release_dir)
        shutil.copytree(produced, release_dir)
