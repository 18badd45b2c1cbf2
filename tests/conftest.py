"""Fixtures shared by several test modules."""

from __future__ import annotations

import copy
import stat
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader import paths


@pytest.fixture(scope="module")
def one_thread():
    """For modules that run many checks on tiny tensors: with two intra-op threads on a busy
    machine, OpenMP's waiting costs up to a hundred times the work (measured: 20 s instead of 0.15 s
    per corpus variant and seed)."""
    import torch  # here, not at the top: the unit tests that never touch torch start in a second

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# Student notebooks made from the release, for the intake and checks tests
# ---------------------------------------------------------------------------------------------


class Notebooks:
    """Copies of the release notebook to damage as a student would. The release itself is shared
    by every test, so it is never handed out, only copies of it."""

    def __init__(self, release: nbformat.NotebookNode):
        self._release = release

    @property
    def release(self) -> nbformat.NotebookNode:
        return copy.deepcopy(self._release)

    @staticmethod
    def grade_id(cell) -> str | None:
        return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")

    def grade_ids(self, nb=None) -> list[str | None]:
        return [self.grade_id(c) for c in (nb or self._release).cells]

    def answer_ids(self) -> list[str]:
        return [self.grade_id(c) for c in self._release.cells if c.metadata["nbgrader"].get("solution")]

    def test_ids(self) -> list[str]:
        return [self.grade_id(c) for c in self._release.cells if c.metadata["nbgrader"].get("grade")]

    def imports_id(self) -> str:
        """The grade_id of the lesson's imports cell (the first locked code cell that imports)."""
        return next(self.grade_id(c) for c in self._release.cells
                    if c.cell_type == "code" and c.metadata["nbgrader"].get("locked") and "import " in c.source)

    def index(self, nb, grade_id: str) -> int:
        """Position of the (first) cell with this grade_id."""
        return self.grade_ids(nb).index(grade_id)

    def cell(self, nb, grade_id: str):
        return nb.cells[self.index(nb, grade_id)]

    def student(self, **answers: str) -> nbformat.NotebookNode:
        """The release with every answer cell written (`# answer <grade_id>` plus the stub, so each
        answer can be recognised), or with the given source for the answers named."""
        nb = self.release
        for cell in nb.cells:
            grade_id = self.grade_id(cell)
            if cell.metadata["nbgrader"].get("solution"):
                cell.source = answers.get(grade_id, f"# answer {grade_id}\n{cell.source}")
        return nb

    @staticmethod
    def code_cell(source: str, cell_id: str | None = None, **nbgrader) -> nbformat.NotebookNode:
        cell = nbformat.v4.new_code_cell(source)
        if cell_id:
            cell.id = cell_id
        if nbgrader:
            cell.metadata["nbgrader"] = nbgrader
        return cell

    @staticmethod
    def to_bytes(nb) -> bytes:
        return nbformat.writes(nb).encode()


@pytest.fixture(scope="session")
def release_path() -> Path:
    return paths.REPO / paths.RELEASE_DIR / paths.NOTEBOOK_NAME


@pytest.fixture(scope="session")
def notebook_name() -> str:
    """The assignment notebook's file name, the one a student's folder is expected to hold."""
    return paths.NOTEBOOK_NAME


@pytest.fixture(scope="session")
def notebooks(release_path) -> Notebooks:
    return Notebooks(nbformat.read(release_path, as_version=4))


@pytest.fixture
def release(notebooks) -> nbformat.NotebookNode:
    """A fresh copy of the release notebook, free to change."""
    return notebooks.release


# ---------------------------------------------------------------------------------------------
# Class folders and zips, for the submissions tests
# ---------------------------------------------------------------------------------------------


def write_zip(path: Path, files: dict[str, bytes | str] | None = None, links: dict[str, str] | None = None) -> Path:
    """A zip with `files` (member name -> content, names taken as they are, `../` included) and
    `links` (member name -> target: Unix symbolic links, as `zip --symlinks` stores them)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in (files or {}).items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix, so that the mode bits below are read
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def write_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    """A folder with `files` (relative path -> content)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return root


@pytest.fixture
def make_zip():
    return write_zip


@pytest.fixture
def make_tree():
    return write_tree


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Debian's, with a fresh profile) for one test module."""
    from browser_support import chromium  # Playwright only where a browser test asks for it

    with chromium() as browser:
        yield browser
