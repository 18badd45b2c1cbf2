"""Find the submissions in a folder or a zip: `STUDENT.ipynb` files or `STUDENT/` folders.

Zips are extracted safely and streamed (no absolute paths, no `..`, no links, no member larger than
MAX_MEMBER_BYTES or inflating absurdly); an unsafe, damaged or oversized entry is skipped but
reported to the student it belongs to, and a skipped notebook of nobody else's still gets a row.
The archive as a whole has no size cap (a class with large outputs is what it is), only the disk
it is extracted to. Links in a class folder are never followed. A folder or zip that holds a single
folder (as LMS downloads often do) is looked into. Student ids are made safe for file names and
nbgrader (`../x` cannot escape the course), and every change to a name is reported.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import paths

# The most one member may inflate to. A notebook is graded only up to intake.MAX_NOTEBOOK_BYTES
# (20 MiB); past that, intake itself says so, so a notebook of 20-256 MiB (many large image
# outputs) is extracted and its student gets intake's own note. 256 MiB also leaves room for the other
# files a student's folder may hold (data, a checkpoint), while no single member, a zip bomb of
# zeros above all, can fill the scratch disk: 3 GiB of zeros deflate to 3 MiB.
MAX_MEMBER_BYTES = 256 * 2**20
# Past its first RATIO_FREE_BYTES, a member may not inflate to more than MAX_RATIO times its
# compressed size. Honest notebooks deflate about 1.3:1 (base64 images) to 4:1 (this lesson's, code and text);
# zeros deflate 1,000:1, and bzip2 or LZMA far more. Nothing intake could grade is ever judged by
# its ratio (RATIO_FREE_BYTES is intake's notebook cap), so the rule only stops bombs early.
MAX_RATIO = 100
RATIO_FREE_BYTES = 20 * 2**20
# A zip's directory is read into memory whole (about half a KiB an entry) and every entry becomes a
# file in scratch: millions of empty entries would take hours and use up the disk's inodes before
# anyone is graded. 200,000 is ten times a class of 1,000 students who each hand in a folder of 20
# files (macOS's `__MACOSX/` copies included); a larger class can be unzipped and passed as a folder.
MAX_ZIP_FILES = 200_000
CHUNK = 2**20  # members are copied this much at a time, never whole
# Junk that archivers and file managers add. Other hidden names are skipped too, except notebooks:
# a student whose file is called `.alice.ipynb` or `..alice.ipynb` still gets a row.
JUNK = re.compile(r"^(__MACOSX|Thumbs\.db|\.DS_Store|\._.*|\.ipynb_checkpoints)$")


@dataclass
class Submission:
    student_id: str
    original_name: str
    notebook: Path | None  # None when the folder held no notebook
    notes: list[str] = field(default_factory=list)
    folder: Path | None = None  # the student's folder, when they submitted one


class SubmissionError(Exception):
    """The submissions argument itself cannot be used (missing, not a folder or zip)."""


def safe_id(name: str) -> str:
    """A student id made of letters, digits, '.', '_' and '-', never '.', '..' or empty."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", ascii_name).strip("._-")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    return cleaned[:64] or "student"


UNSAFE = "was not extracted: its path is unsafe (absolute, with '..', or a link)."


def extract_zip(archive: Path, target: Path) -> list[str]:
    """Extract members that are plain files inside `target`; return the names of the members that
    were skipped: unsafe ones (absolute, with `..`, links), damaged and too large ones (see `extract`)."""
    return list(extract(archive, target))


def extract(archive: Path, target: Path) -> dict[str, str]:
    """Extract members that are plain files inside `target`; return {member name: why it was
    skipped} for the others. A member that cannot be extracted (a bad checksum, a compression or
    encryption zipfile cannot read, a file and a folder of the same name, too large or a zip bomb)
    is skipped and reported like an unsafe one: the rest of the class is still graded. Only an
    archive that cannot be read at all, with more than MAX_ZIP_FILES entries, or that the scratch
    disk cannot hold stops the run (SubmissionError), before anything is written; so does a disk
    that fills up all the same (its half-written file is removed)."""
    skipped: dict[str, str] = {}
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise SubmissionError(f"{archive} is not a readable zip file ({error})") from None
    with zf:
        members = zf.infolist()
        _check_count(archive, len(members))
        _check_disk(archive, target, members)
        for member in members:
            if member.is_dir():
                continue  # folders come from the files inside them
            why = _refusal(member)
            if why is None:
                name = PurePosixPath(member.filename.replace("\\", "/"))
                why = _extract_member(zf, member, target.joinpath(*name.parts), archive)
            if why:
                skipped[member.filename] = f"The zip entry {member.filename!r} {why}."
    return skipped


def _check_count(archive: Path, count: int) -> None:
    """Refuse a zip of more than MAX_ZIP_FILES entries, saying what to do instead."""
    if count > MAX_ZIP_FILES:
        raise SubmissionError(
            f"{archive} holds {count:,} entries, more than the {MAX_ZIP_FILES:,} the grader extracts from one "
            "zip; nothing was extracted. Unzip it yourself and pass the folder, or split the class into "
            "several zips.")


def _size(size: int) -> str:
    """A size in words for a message: 1.2 GiB, 3.4 MiB."""
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def _check_disk(archive: Path, target: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuse, before writing anything, a zip whose members the scratch disk cannot hold. The sizes
    are the ones the zip declares, counted only for members that will be read: no member may write
    more than it declares (see `_extract_member`), so this is the most extracting can take."""
    needed = sum(-(-m.file_size // 4096) * 4096 for m in members if not m.is_dir() and not _refusal(m))
    existing = next(p for p in (target, *target.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise SubmissionError(
            f"extracting {archive} needs about {_size(needed)} in {target}, but only {_size(free)} are free; "
            "nothing was extracted. Free some space, or set TMPDIR to a disk with more room.")


def _refusal(member: zipfile.ZipInfo) -> str | None:
    """Why this member is not extracted without even reading it (unsafe, or declared too large), or None."""
    name = PurePosixPath(member.filename.replace("\\", "/"))
    if stat.S_ISLNK(member.external_attr >> 16) or name.is_absolute() or ".." in name.parts or not name.parts:
        return UNSAFE.removesuffix(".")
    limit, why = _limit(member)
    if member.file_size > limit:
        return f"was not extracted: {why}"
    return None


def _limit(member: zipfile.ZipInfo) -> tuple[int, str]:
    """The most bytes `member` may inflate to, and why it was not read had it declared more."""
    by_ratio = max(RATIO_FREE_BYTES, MAX_RATIO * member.compress_size)
    if by_ratio < MAX_MEMBER_BYTES:
        return by_ratio, (f"it is larger than {RATIO_FREE_BYTES // 2**20} MiB uncompressed and inflates to more "
                          f"than {MAX_RATIO} times its compressed size, as a zip bomb does, so it was not read")
    return MAX_MEMBER_BYTES, (f"it is larger than {MAX_MEMBER_BYTES // 2**20} MiB uncompressed, the most the "
                              "grader reads of one file, so it was not read")


class TooLarge(Exception):
    """A member produced more bytes than it may (see `_copy_capped`)."""


def _copy_capped(src, dst, limit: int) -> None:
    """Copy `src` to `dst` CHUNK bytes at a time; raise TooLarge, having read at most limit + 1
    bytes, when `src` holds more than `limit`. The sizes a zip declares are not trusted here."""
    written = 0
    while chunk := src.read(min(CHUNK, limit + 1 - written)):
        written += len(chunk)
        if written > limit:
            raise TooLarge
        dst.write(chunk)


def _extract_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path, archive: Path) -> str | None:
    """Write one member, streamed; None when it was, else why it could not be (nothing of it is left)."""
    limit, too_large = _limit(member)
    if member.file_size < limit:  # a member may not write more than it declares: the disk check counts on it
        limit = member.file_size
        too_large = "it holds more than the zip declares, as a zip bomb may, so it was not read"
    started = False
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as src:
            with open(destination, "wb") as dst:
                started = True
                _copy_capped(src, dst, limit)
        return None
    except TooLarge:
        why = too_large
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        why = "the zip holds a file and a folder of the same name"
    except OSError as error:
        if error.errno in (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL):
            why = f"its name cannot be a file name here ({error.strerror})"
        elif error.errno is None:  # a decompressor's complaint (bz2 raises OSError): the data is damaged
            why = f"it is damaged ({error})"
        else:  # the disk is full or cannot be written: no later member would fare better
            if started:
                destination.unlink(missing_ok=True)
            raise SubmissionError(f"could not extract {member.filename!r} from {archive}: {error}") from None
    except Exception as error:  # noqa: BLE001 - a bad checksum, an encryption or compression zipfile cannot read
        why = f"it is damaged or cannot be read ({str(error) or type(error).__name__})"
    if started:
        destination.unlink(missing_ok=True)  # half a file is not the student's notebook
    return f"was not extracted: {why}"


def _visible(folder: Path) -> list[Path]:
    def wanted(p: Path) -> bool:
        if JUNK.match(p.name) or p.is_symlink():
            return False
        return not p.name.startswith(".") or (p.is_file() and p.suffix == ".ipynb")

    return sorted(p for p in folder.iterdir() if wanted(p))


def _is_wrapper(folder: Path, notebook: str) -> bool:
    """Is this lone top-level folder a wrapper around the class (as LMS downloads are), rather than
    one student's folder? A student's folder holds the assignment's notebook, or a single notebook
    and nothing else; a wrapper holds several students' notebooks or folders."""
    inside = _visible(folder)
    notebooks = [p for p in inside if p.is_file() and p.suffix == ".ipynb"]
    folders = [p for p in inside if p.is_dir()]
    if any(p.name == notebook for p in notebooks) or (len(notebooks) == 1 and not folders):
        return False
    return bool(notebooks or folders)


def _pick_notebook(folder: Path, notebook: str) -> tuple[Path | None, list[str]]:
    """The notebook to grade in a student's folder. Links are not followed, to files or to folders:
    a link can point at any file the grader may read (the solutions, another student's work), and
    what it points at is not what the student handed in."""
    notebooks: list[Path] = []
    links: list[Path] = []
    for root, dirs, files in os.walk(folder):  # os.walk does not enter linked folders
        here = Path(root)
        dirs[:] = [d for d in dirs if d != ".ipynb_checkpoints"]
        for name in files + dirs:
            path = here / name
            if not name.endswith(".ipynb"):
                continue
            if path.is_symlink():
                links.append(path)
            elif name in files and path.is_file():
                notebooks.append(path)
    notebooks.sort()
    notes = [f"{p.relative_to(folder).as_posix()} is a link, not a file: links are not followed, so it was not graded."
             for p in sorted(links)]
    if not notebooks:
        return None, notes + ["No notebook was found in the submitted folder: graded as unanswered."]
    preferred = [p for p in notebooks if p.name == notebook]
    chosen = (preferred or notebooks)[0]
    if len(notebooks) > 1:
        notes.append(f"The folder held {len(notebooks)} notebooks; {chosen.relative_to(folder).as_posix()} was graded.")
    return chosen, notes


def _unique(student_id: str, taken: set[str]) -> str:
    base, n = student_id, 2
    while student_id in taken:
        student_id, n = f"{base}-{n}", n + 1
    taken.add(student_id)
    return student_id


def _class_root(folder: Path, notebook: str) -> Path:
    """The folder that holds the students' files and folders. An LMS zip often wraps everything in
    one folder: look inside it. (This used to stop at any folder holding a notebook, so a wrapper of
    student files was graded as one student.)"""
    entries = _visible(folder)
    while len(entries) == 1 and entries[0].is_dir() and _is_wrapper(entries[0], notebook):
        folder = entries[0]
        entries = _visible(folder)
    return folder


def find_submissions(folder: Path, notebook: str = paths.NOTEBOOK_NAME) -> list[Submission]:
    """One Submission per student in `folder` (already extracted); `notebook`: the assignment's
    notebook name, which a student's folder may hold beside others."""
    found: list[Submission] = []
    taken: set[str] = set()
    for entry in _visible(_class_root(folder, notebook)):
        if entry.is_file() and entry.suffix != ".ipynb":
            continue
        original = entry.stem if entry.is_file() else entry.name
        student_id = _unique(safe_id(original), taken)
        notes = [] if student_id == original else [f"The name {original!r} was recorded as student id {student_id!r}."]
        if entry.is_file():
            found.append(Submission(student_id, original, entry, notes))
        else:
            picked, more = _pick_notebook(entry, notebook)
            found.append(Submission(student_id, original, picked, notes + more, folder=entry))
    return found


def _landing(member: str) -> tuple[str, ...] | None:
    """Where a member would have been written had it been extracted: its path with `..` taken
    back lexically (never above the zip's top), or None for an absolute path."""
    name = PurePosixPath(member.replace("\\", "/"))
    if name.is_absolute():
        return None
    parts: list[str] = []
    for part in name.parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return tuple(parts)


def _skipped_rows(skipped: dict[str, str], found: list[Submission], top: tuple[str, ...] = ()) -> list[Submission]:
    """Skipped zip members (unsafe or damaged) are never extracted, but no one may vanish without a
    word. `top` is the class folder's path in the zip (a wrapper such as `class/`). A member that
    would have landed inside a student's folder is that student's: the note goes to them, and a
    folder that held nothing else becomes a row of its own. Any other member is matched by its file
    name: the note goes to the student of the same name, and a notebook of nobody else's becomes a
    row of its own. New rows are graded as unanswered; junk (`__MACOSX/`, `._x`) is nobody's."""
    extra: list[Submission] = []
    by_name = {s.original_name: s for s in found}
    by_folder = {s.folder.name: s for s in found if s.folder is not None}
    taken = {s.student_id for s in found}

    def new_row(original: str, note: str) -> Submission:
        row = Submission(_unique(safe_id(original), taken), original, None, [note + " Graded as unanswered."])
        extra.append(row)
        return row

    for member, note in skipped.items():
        landing = _landing(member)
        if landing and any(JUNK.match(part) for part in landing):
            continue
        if landing and len(landing) > len(top) + 1 and landing[: len(top)] == top:
            folder = landing[len(top)]
            if folder in by_folder:
                by_folder[folder].notes.append(note)
            elif not folder.startswith("."):  # hidden folders are not students' (see _visible)
                by_folder[folder] = new_row(folder, note)
            continue
        stem = PurePosixPath(member.replace("\\", "/")).name.removesuffix(".ipynb")
        if stem in by_name:
            by_name[stem].notes.append(note)
        elif member.endswith(".ipynb"):
            by_name[stem] = new_row(stem, note)
    return extra


def collect(source: Path, scratch: Path, notebook: str = paths.NOTEBOOK_NAME) -> list[Submission]:
    """Submissions from a folder or a zip (extracted into `scratch`). A class that cannot be read at
    all (a folder the grader may not list, say) stops with a SubmissionError saying so."""
    try:
        return _collect(source, scratch, notebook)
    except OSError as error:
        raise SubmissionError(f"{source} could not be read ({error})") from None


def _collect(source: Path, scratch: Path, notebook: str) -> list[Submission]:
    if not source.exists():
        raise SubmissionError(f"{source} does not exist")
    if source.is_dir():
        return find_submissions(source, notebook)
    if zipfile.is_zipfile(source):
        target = scratch / "unzipped"
        target.mkdir(parents=True, exist_ok=True)
        skipped = extract(source, target)
        found = find_submissions(target, notebook)
        return found + _skipped_rows(skipped, found, _class_root(target, notebook).relative_to(target).parts)
    if source.suffix == ".ipynb":
        return [Submission(safe_id(source.stem), source.stem, source)]
    raise SubmissionError(f"{source} is neither a folder, a zip file nor a notebook")
