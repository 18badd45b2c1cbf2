"""Smaller feedback: a student's feedback folder holds their HTML pages, not a copy of the assignment.

`nbgrader generate_feedback` copies every file of the autograded folder next to each page (the
checkpoint, the tests module, the checks library, the figures): about 1.2 MB per student.
`slim_feedback` leaves only the pages and keeps one shared copy of the figures they show.

The page itself is made small by the course's feedback template (one small stylesheet) and by
`highlight_code` below, which course/nbgrader_config.py gives the feedback exporter.
"""

from __future__ import annotations

import filecmp
import re
import shutil
from pathlib import Path

from pygments import highlight
from pygments.filter import simplefilter
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import Name, Operator, Punctuation, Text
from pygments.util import ClassNotFound

# nbgrader's release_feedback reads these two beside each page: they must stay.
NBGRADER_FILES = {"timestamp.txt", "submission_secret.txt"}
IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=)(["\'])([^"\'<>]*)\2', re.IGNORECASE)
COLOURED_NAMES = (Name.Builtin, Name.Function, Name.Class, Name.Decorator, Name.Exception)


@simplefilter
def _fewer_spans(self, lexer, stream, options):
    """Plain names, operators and punctuation as plain text: keywords, strings, numbers, comments
    and definitions keep their colours, and the HTML of the code shrinks to about a third."""
    for token, value in stream:
        plain = (token in Name and not any(token in kind for kind in COLOURED_NAMES)) or token in Operator
        yield (Text if plain or token in Punctuation else token), value


def highlight_code(source: str, language: str | None = None, metadata=None) -> str:
    """nbconvert's `highlight_code` filter (same call, same `highlight` markup and CSS classes) with
    fewer coloured tokens. Without a language it highlights IPython 3, the course's kernel."""
    try:
        lexer = get_lexer_by_name(language or "ipython3")
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    lexer.add_filter(_fewer_spans())
    return highlight(source or " ", lexer, HtmlFormatter(cssclass=f"highlight hl-{language or 'ipython3'}"))


def _shared_name(src: str, assignment: Path) -> str | None:
    """The file of the assignment that `src` names, or None. Only a bare file name counts: not a
    path (`../../NAME` is one, so a second run leaves it alone), a URL or a data: URL."""
    if not src or any(ch in src for ch in "/\\:?#") or src in (".", ".."):
        return None
    return src if (assignment / src).is_file() else None


def _rewrite_page(page: Path, assignment: Path, feedback_root: Path) -> None:
    text = page.read_text(encoding="utf-8")
    names: set[str] = set()

    def shared(match: re.Match) -> str:
        name = _shared_name(match.group(3), assignment)
        if name is None:
            return match.group(0)
        names.add(name)
        return f"{match.group(1)}{match.group(2)}../../{name}{match.group(2)}"

    # Why `../../NAME` works for both readers: nbgrader's fetch_feedback puts a student's page at
    # `ASSIGNMENT/feedback/TIMESTAMP/NB.html`, so `../../NAME` is the figure in the student's own
    # assignment folder; the instructor's `feedback/STUDENT/ASSIGNMENT/NB.html` finds the single
    # shared copy in `feedback/`.
    rewritten = IMG_SRC.sub(shared, text)
    for name in sorted(names):
        source, target = assignment / name, feedback_root / name
        if not (target.is_file() and filecmp.cmp(source, target, shallow=False)):
            shutil.copyfile(source, target)
    if rewritten != text:
        page.write_text(rewritten, encoding="utf-8")


def slim_feedback(feedback_root: Path, release_dir: Path) -> None:
    """Reduce every `feedback_root/STUDENT/ASSIGNMENT/` folder to its pages, figures shared.

    feedback_root: nbgrader's feedback folder (`COURSE/feedback`), one `STUDENT/ASSIGNMENT/` folder
        per graded submission, as `nbgrader generate_feedback` writes it.
    release_dir: nbgrader's release folder (`COURSE/release`), one `ASSIGNMENT/` folder with the
        files students were given.

    In each `STUDENT/ASSIGNMENT/` folder whose ASSIGNMENT is in `release_dir`, only the top-level
    `*.html` pages (and nbgrader's `timestamp.txt` and `submission_secret.txt`, which
    `release_feedback` reads) are kept: every other file and subfolder is deleted. In each page, an
    `<img src="NAME">` whose NAME is a file directly in `release_dir/ASSIGNMENT/` becomes
    `<img src="../../NAME">`, and that file is copied once to `feedback_root/NAME` (one set of
    figures per class). Running it again changes nothing.
    """
    if not feedback_root.is_dir():
        return
    for folder in sorted(feedback_root.glob("*/*")):
        assignment = release_dir / folder.name
        if not folder.is_dir() or folder.is_symlink() or not assignment.is_dir():
            continue  # a shared figure, or no release to take figures from: left as it is
        for entry in sorted(folder.iterdir()):
            keep = entry.is_file() and not entry.is_symlink() and (
                entry.suffix == ".html" or entry.name in NBGRADER_FILES)
            if not keep:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            elif entry.suffix == ".html":
                _rewrite_page(entry, assignment, feedback_root)
