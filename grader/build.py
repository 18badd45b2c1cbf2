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
import difflib
import hashlib
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
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


# Internal links ([text](#anchor)) must land where a reader expects in every viewer. JupyterLab 4,
# Notebook 7 and `jupyter nbconvert --to html` all name a heading's anchor after its text, case
# kept and each space turned into "-": `## Does it work?` gets #Does-it-work? (JupyterLab and
# Notebook 7 keep it in a data-jupyter-id attribute and follow such links themselves; the export
# sets the id). Lowercase, GitHub-style anchors such as #does-it-work reach nothing in any of them.
# An explicit <a id="..."></a> in the markdown also works in all three (JupyterLab's sanitizer
# keeps it, moving the id to data-jupyter-id), so it counts as well. Measured with JupyterLab 4.6,
# Notebook 7.6 and nbconvert 7.17; tests/test_browser.py clicks every link of the lesson in each.


class _MarkdownAnchors(html.parser.HTMLParser):
    """The headings, explicit <a id> anchors and internal links of one markdown cell, read from
    the HTML that nbconvert renders for it."""

    HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.headings: list[tuple[str, str | None]] = []  # (text, the export's id or None)
        self.explicit: list[str] = []  # ids of <a id="..."> written in the markdown
        self.links: list[tuple[str, str]] = []  # (anchor without "#", link text)
        self._heading: tuple[str | None, list[str]] | None = None
        self._link: tuple[str, list[str]] | None = None
        self._pilcrow = 0  # inside the export's own "¶" link after a heading's text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag in self.HEADINGS:
            self._heading = (attr.get("id"), [])
        elif tag == "a":
            if "anchor-link" in (attr.get("class") or "").split():
                self._pilcrow += 1
                return
            if attr.get("id"):
                self.explicit.append(attr["id"])
            href = attr.get("href") or ""
            if href.startswith("#"):
                # The renderer percent-encodes what a URL may not hold; compare the text itself.
                self._link = (urllib.parse.unquote(href[1:]), [])

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._pilcrow:
            self._pilcrow -= 1
        elif tag == "a" and self._link is not None:
            self.links.append((self._link[0], "".join(self._link[1]).strip()))
            self._link = None
        elif tag in self.HEADINGS and self._heading is not None:
            self.headings.append(("".join(self._heading[1]), self._heading[0]))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._pilcrow:
            return
        for open_element in (self._heading, self._link):
            if open_element is not None:
                open_element[1].append(data)


def _viewer_anchor(text: str) -> str:
    """The anchor that JupyterLab and Notebook 7 give a heading with this text."""
    return text.replace(" ", "-")


def _anchors_and_links(nb: nbformat.NotebookNode) -> tuple[dict[str, list[int]], dict[str, str], list[dict]]:
    """The anchors every viewer generates (anchor -> cells that carry it), the headings whose
    anchor differs between the notebook viewers and the export (viewer anchor -> export anchor),
    and the internal links (cell index, text, anchor without "#"), in order."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    anchors: dict[str, list[int]] = {}
    disagreeing: dict[str, str] = {}
    links: list[dict] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        parsed = _MarkdownAnchors()
        parsed.feed(markdown2html_mistune(cell.source))
        parsed.close()
        for text, export_id in parsed.headings:
            anchor = _viewer_anchor(text)
            if export_id == anchor:
                anchors.setdefault(anchor, []).append(index)
            else:
                disagreeing[anchor] = export_id or "(none)"
        for anchor in parsed.explicit:
            anchors.setdefault(anchor, []).append(index)
        links += [{"cell": index, "text": text, "anchor": anchor} for anchor, text in parsed.links]
    return anchors, disagreeing, links


def internal_links(nb: nbformat.NotebookNode) -> list[dict]:
    """Every internal link in the markdown cells, in order: cell (index), text, anchor (without
    "#") and targets, the cells whose heading or <a id> carries that anchor in every viewer."""
    anchors, _, links = _anchors_and_links(nb)
    return [{**link, "targets": anchors.get(link["anchor"], [])} for link in links]


def check_internal_links(nb: nbformat.NotebookNode) -> None:
    """Raise BuildError unless every internal link leads to exactly one heading (or <a id>)."""
    anchors, disagreeing, links = _anchors_and_links(nb)
    for link in links:
        anchor, targets = link["anchor"], anchors.get(link["anchor"], [])
        where = f"{_cell_label(link['cell'], nb.cells[link['cell']])}: the link [{link['text']}](#{anchor})"
        if len(targets) > 1:
            raise BuildError(
                f"{where} is ambiguous: cells {targets} all carry that anchor and the viewers jump to the "
                "first; give the target a heading of its own or an explicit <a id=...></a>"
            )
        if targets:
            continue
        if anchor in disagreeing:
            raise BuildError(
                f"{where}: JupyterLab and Notebook 7 give that heading this anchor, but the HTML export gives it "
                f"#{disagreeing[anchor]}; reword the heading or link to an explicit <a id=...></a> instead"
            )
        close = [a for a in anchors if a.lower() == anchor.lower()] or difflib.get_close_matches(
            anchor, list(anchors), n=1, cutoff=0.6
        )
        raise BuildError(
            f"{where} points at no heading. JupyterLab, Notebook 7 and the HTML export name a heading's "
            "anchor after its text with the case kept and every space turned into '-' "
            "(`## The U-Net` -> #The-U-Net), so a renamed heading needs its links renamed too."
            + (f" Did you mean #{close[0]}?" if close else "")
        )


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
    check_internal_links(nb)
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
