"""Find the submissions in a folder or a zip: `STUDENT.ipynb` files or `STUDENT/` folders.

Zips are extracted safely (no absolute paths, no `..`, no links, bounded size); an unsafe entry is
skipped but reported, and a skipped notebook still gets a row. A folder or zip
that holds a single folder (as LMS downloads often do) is looked into. Student ids are made
safe for file names and nbgrader (`../x` cannot escape the course), and every change to a name
is reported.
"""

from __future__ import annotations

import re
import shutil
import stat
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import paths

MAX_ZIP_BYTES = 2 * 2**30
MAX_ZIP_FILES = 20_000
# Junk that archivers and file managers add. Other hidden names are skipped too, except notebooks:
# a student whose file is called `.alice.ipynb` or `..alice.ipynb` still gets a row.
JUNK = re.compile(r"^(__MACOSX|Thumbs\.db|\.DS_Store|\._.*|\.ipynb_checkpoints)$")


@dataclass
class Submission:
    student_id: str
    original_name: str
    notebook: Path | None  # None when the folder held no notebook
    notes: list[str] = field(default_factory=list)


class SubmissionError(Exception):
    """The submissions argument itself cannot be used (missing, not a folder or zip)."""


def safe_id(name: str) -> str:
    """A student id made of letters, digits, '.', '_' and '-', never '.', '..' or empty."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", ascii_name).strip("._-")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    return cleaned[:64] or "student"


def extract_zip(archive: Path, target: Path) -> list[str]:
    """Extract members that are plain files inside `target`; return the names of unsafe members
    (absolute, with `..`, links), which are skipped."""
    skipped = []
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise SubmissionError(f"{archive} is not a readable zip file ({error})") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_FILES or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise SubmissionError(f"{archive} is too large to extract safely")
        for member in members:
            name = PurePosixPath(member.filename.replace("\\", "/"))
            is_link = stat.S_ISLNK(member.external_attr >> 16)
            if member.is_dir() or is_link or name.is_absolute() or ".." in name.parts or not name.parts:
                if not member.is_dir():
                    skipped.append(member.filename)
                continue
            destination = target.joinpath(*name.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(destination, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return skipped


def _visible(folder: Path) -> list[Path]:
    def wanted(p: Path) -> bool:
        if JUNK.match(p.name) or p.is_symlink():
            return False
        return not p.name.startswith(".") or (p.is_file() and p.suffix == ".ipynb")

    return sorted(p for p in folder.iterdir() if wanted(p))


def _is_wrapper(folder: Path) -> bool:
    """Is this lone top-level folder a wrapper around the class (as LMS downloads are), rather than
    one student's folder? A student's folder holds the assignment's notebook, or a single notebook
    and nothing else; a wrapper holds several students' notebooks or folders."""
    inside = _visible(folder)
    notebooks = [p for p in inside if p.is_file() and p.suffix == ".ipynb"]
    folders = [p for p in inside if p.is_dir()]
    if any(p.name == paths.NOTEBOOK_NAME for p in notebooks) or (len(notebooks) == 1 and not folders):
        return False
    return bool(notebooks or folders)


def _pick_notebook(folder: Path) -> tuple[Path | None, list[str]]:
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and p.is_file())
    if not notebooks:
        return None, ["No notebook was found in the submitted folder: graded as unanswered."]
    preferred = [p for p in notebooks if p.name == paths.NOTEBOOK_NAME]
    chosen = (preferred or notebooks)[0]
    notes = []
    if len(notebooks) > 1:
        notes.append(f"The folder held {len(notebooks)} notebooks; {chosen.relative_to(folder).as_posix()} was graded.")
    return chosen, notes


def _unique(student_id: str, taken: set[str]) -> str:
    base, n = student_id, 2
    while student_id in taken:
        student_id, n = f"{base}-{n}", n + 1
    taken.add(student_id)
    return student_id


def find_submissions(folder: Path) -> list[Submission]:
    """One Submission per student in `folder` (already extracted)."""
    entries = _visible(folder)
    # An LMS zip often wraps everything in one folder: look inside it. (This used to stop at any
    # folder holding a notebook, so a wrapper of student files was graded as one student.)
    while len(entries) == 1 and entries[0].is_dir() and _is_wrapper(entries[0]):
        folder = entries[0]
        entries = _visible(folder)
    found: list[Submission] = []
    taken: set[str] = set()
    for entry in entries:
        if entry.is_file() and entry.suffix != ".ipynb":
            continue
        original = entry.stem if entry.is_file() else entry.name
        student_id = _unique(safe_id(original), taken)
        notes = [] if student_id == original else [f"The name {original!r} was recorded as student id {student_id!r}."]
        if entry.is_file():
            found.append(Submission(student_id, original, entry, notes))
        else:
            notebook, more = _pick_notebook(entry)
            found.append(Submission(student_id, original, notebook, notes + more))
    return found


def _skipped_rows(skipped: list[str], found: list[Submission]) -> list[Submission]:
    """Unsafe zip members are never extracted, but no one may vanish without a word: the note goes
    to the student of the same name, and a notebook of nobody else's becomes a row of its own,
    graded as unanswered."""
    extra: list[Submission] = []
    by_name = {s.original_name: s for s in found}
    taken = {s.student_id for s in found}
    for member in skipped:
        note = f"The zip entry {member!r} was not extracted: its path is unsafe (absolute, with '..', or a link)."
        stem = PurePosixPath(member.replace("\\", "/")).name.removesuffix(".ipynb")
        if stem in by_name:
            by_name[stem].notes.append(note)
        elif member.endswith(".ipynb"):
            student_id = _unique(safe_id(stem), taken)
            by_name[stem] = Submission(student_id, stem, None, [note + " Graded as unanswered."])
            extra.append(by_name[stem])
    return extra


def collect(source: Path, scratch: Path) -> list[Submission]:
    """Submissions from a folder or a zip (extracted into `scratch`)."""
    if not source.exists():
        raise SubmissionError(f"{source} does not exist")
    if source.is_dir():
        return find_submissions(source)
    if zipfile.is_zipfile(source):
        target = scratch / "unzipped"
        target.mkdir(parents=True, exist_ok=True)
        skipped = extract_zip(source, target)
        found = find_submissions(target)
        return found + _skipped_rows(skipped, found)
    if source.suffix == ".ipynb":
        return [Submission(safe_id(source.stem), source.stem, source)]
    raise SubmissionError(f"{source} is neither a folder, a zip file nor a notebook")
