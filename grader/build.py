"""Build the lesson: one jupytext source in, the nbgrader source notebook and the student release out.

    solutions/w3d4_part2_unet_solution.py          (edit this)
        -> grader/source/w3d4_part2/               nbgrader source notebook + the files it needs
        -> notebooks/w3d4_part2/                   `nbgrader generate_assignment`'s release

Cell roles are written in the lesson source as nbgrader metadata in the jupytext cell header, kept
to the parts a person decides; the build fills in the rest of nbgrader's schema:

    # %% nbgrader={"grade_id": "groupnorm"}                 a cell with ### BEGIN/END SOLUTION
    # %% nbgrader={"grade_id": "test_groupnorm", "points": 2}   a graded, read-only test cell

Every other cell (prose, given code, ungraded checks) becomes a locked, read-only cell. Cell tags
are kept: `# %% tags=["skip-when-grading"]` marks code the grader does not run (the closing demo).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat

from . import paths

NBGRADER_SCHEMA = 3
SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"
MANIFEST = Path("grader") / "build_manifest.json"
GENERATED_DIRS = (paths.SOURCE_DIR, paths.RELEASE_DIR, paths.SAMPLE_DIR)
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


def source_notebook(source: Path = paths.LESSON_SOURCE) -> nbformat.NotebookNode:
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


def referenced_images(nb: nbformat.NotebookNode) -> list[str]:
    """Local image files that the markdown cells show, in order of first use."""
    found: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found += [m for m in IMAGE_REF.findall(cell.source) if m not in found]
    return found


def _copy_with_header(src: Path, dst: Path) -> None:
    note = GENERATED_NOTE.format(source=_rel(src))
    dst.write_text(f"# {note}\n{src.read_text(encoding='utf-8')}", encoding="utf-8")


def write_source_dir(out_root: Path, source: Path = paths.LESSON_SOURCE) -> Path:
    """Write grader/source/w3d4_part2/ under out_root: the notebook and every file it needs."""
    nb = source_notebook(source)
    target = out_root / paths.SOURCE_DIR
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in referenced_images(nb):
        figure = paths.FIGURES / name
        if not figure.is_file():
            raise BuildError(f"the lesson shows {name!r}, but {_rel(figure)} does not exist (run `python -m figures`)")
        shutil.copyfile(figure, target / name)
    _copy_with_header(paths.TESTS_MODULE, target / paths.TESTS_MODULE.name)
    _copy_with_header(paths.PART1_MODULE, target / paths.PART1_MODULE.name)
    _copy_with_header(paths.DIGITS_MODULE, target / paths.DIGITS_MODULE.name)
    # The checkpoint and its digest are data: copied byte for byte (w3d4_digits checks the digest).
    for data in (paths.DIGITS_CHECKPOINT, paths.DIGITS_CHECKPOINT.with_name(paths.DIGITS_CHECKPOINT.name + ".sha256")):
        if not data.is_file():
            raise BuildError(f"the lesson loads {data.name}, but {_rel(data)} does not exist (run `python -m training`)")
        shutil.copyfile(data, target / data.name)
    with open(target / paths.NOTEBOOK_NAME, "w", encoding="utf-8", newline="\n") as f:
        nbformat.write(nb, f)
    return target


def tool_env() -> dict[str, str]:
    """The environment for nbgrader subprocesses: nbgrader runs `alembic` from PATH, so the folder of
    this Python's scripts must come first even when the virtual environment is not activated."""
    scripts = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}


def generate_release(source_dir: Path, release_dir: Path) -> None:
    """Run the real `nbgrader generate_assignment` in a scratch course and copy out the release."""
    with tempfile.TemporaryDirectory(prefix="w3d4-course-") as scratch:
        course = Path(scratch)
        shutil.copyfile(paths.GRADER / "nbgrader_config.py", course / "nbgrader_config.py")
        shutil.copytree(source_dir, course / "source" / paths.ASSIGNMENT)
        result = subprocess.run(
            [sys.executable, "-m", "nbgrader", "generate_assignment", paths.ASSIGNMENT, "--force", "--log-level=WARN"],
            cwd=course,
            env=tool_env(),
            capture_output=True,
            text=True,
        )
        produced = course / "release" / paths.ASSIGNMENT
        if result.returncode != 0 or not (produced / paths.NOTEBOOK_NAME).is_file():
            raise BuildError(f"nbgrader generate_assignment failed:\n{result.stdout}\n{result.stderr}")
        if release_dir.exists():
            shutil.rmtree(release_dir)
        shutil.copytree(produced, release_dir)


def generated_files(out_root: Path) -> dict[str, str]:
    """sha256 of every generated file under out_root, keyed by its path relative to out_root."""
    digests = {}
    for folder in GENERATED_DIRS:
        for path in sorted((out_root / folder).rglob("*")):
            if path.is_file():
                digests[path.relative_to(out_root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def build_into(out_root: Path) -> dict[str, str]:
    """Build everything under out_root and return the digests of what was written."""
    from .samples import write_samples

    source_dir = write_source_dir(out_root)
    generate_release(source_dir, out_root / paths.RELEASE_DIR)
    write_samples(out_root)
    return generated_files(out_root)


def _back_up_edited(root: Path, fresh: dict[str, str]) -> list[str]:
    """Copy files that someone edited since the last build to out/build-backups/, before overwriting.

    A file counts as edited when its bytes match neither the last build (the manifest) nor this one,
    for example a student who worked in notebooks/w3d4_part2/ and then rebuilt.
    """
    manifest_path = root / MANIFEST
    last = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    current = generated_files(root)
    edited = [rel for rel, digest in current.items() if digest not in (last.get(rel), fresh.get(rel))]
    if not edited:
        return []
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backup = Path("out") / "build-backups" / stamp
    for rel in edited:
        (root / backup / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, root / backup / rel)
    return [(backup / rel).as_posix() for rel in edited]


def build(root: Path = paths.REPO) -> list[str]:
    """Build into `root` (the repository). Returns the backups made of hand-edited generated files.

    Everything is built in a scratch folder first, so a failed build leaves the old files alone.
    """
    with tempfile.TemporaryDirectory(prefix="w3d4-build-") as scratch:
        fresh = build_into(Path(scratch))
        backups = _back_up_edited(root, fresh)
        for folder in GENERATED_DIRS:
            if (root / folder).exists():
                shutil.rmtree(root / folder)
            shutil.copytree(Path(scratch) / folder, root / folder)
    (root / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).write_text(json.dumps(fresh, indent=1, sort_keys=True) + "\n")
    return backups


def stale_files() -> list[str]:
    """Generated files that differ from a fresh build (or are missing, or should not be there)."""
    with tempfile.TemporaryDirectory(prefix="w3d4-check-") as scratch:
        fresh = build_into(Path(scratch))
    current = generated_files(paths.REPO)
    stale = sorted(rel for rel in fresh.keys() | current.keys() if fresh.get(rel) != current.get(rel))
    manifest_path = paths.REPO / MANIFEST
    if not manifest_path.is_file() or json.loads(manifest_path.read_text()) != fresh:
        stale.append(MANIFEST.as_posix())
    return stale
