"""Feedback pages: rendered as `nbgrader generate_feedback` renders them, smaller, and fast.

`render_page` uses the exporter nbgrader's GenerateFeedback would make under the course's
configuration (course/nbgrader_config.py: the `w3d4_feedback` template, MathML maths, the filters
below), with the scores taken from the gradebook as nbgrader's GetGrades takes them.

Smaller: a student's feedback folder holds their page, not a copy of the assignment (nbgrader copies
every file of the autograded folder beside each page: about 1.2 MB per student). The figures a page
shows are one shared copy in `feedback/` (`share_figures`). The page itself is made small by the
template (one small stylesheet) and by `highlight_code`, which colours fewer tokens.

Fast: the release's cells are the same on every student's page, so their highlighted and sanitised
HTML is computed once per process (`highlight_code` and `clean_html` are cached).
"""

from __future__ import annotations

import filecmp
import re
import shutil
from functools import cache, lru_cache
from pathlib import Path

from nbconvert.filters.strings import clean_html as _nbconvert_clean_html
from pygments import highlight
from pygments.filter import simplefilter
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import Name, Operator, Punctuation, Text
from pygments.util import ClassNotFound

from .. import paths

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
    return _highlighted(source, language)


CACHED_CELLS = 4096  # more than a notebook's cells: a process renders many pages of one release


@lru_cache(maxsize=CACHED_CELLS)
def _highlighted(source: str, language: str | None) -> str:
    try:
        lexer = get_lexer_by_name(language or "ipython3")
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    lexer.add_filter(_fewer_spans())
    return highlight(source or " ", lexer, HtmlFormatter(cssclass=f"highlight hl-{language or 'ipython3'}"))



@lru_cache(maxsize=CACHED_CELLS)
def clean_html(html: str) -> str:
    """nbconvert's `clean_html` filter (bleach), remembered: it parses every code cell's HTML."""
    return _nbconvert_clean_html(html)


@cache
def _exporter():
    """The HTML exporter nbgrader's GenerateFeedback makes under the course's configuration (its
    preprocessors include the CSSHTMLHeaderPreprocessor that inlines the pygments CSS). One per
    process. nbgrader's GetGrades is left out: `render_page` writes the gradebook's scores itself."""
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader(paths.NBGRADER_CONFIG.name, path=str(paths.NBGRADER_CONFIG.parent)).load_config()
    converter = GenerateFeedback(coursedir=CourseDirectory(config=config), config=config)
    return converter.exporter_class(parent=converter, config=converter.config)


def render_page(nb, grades, student_id: str, assignment: str = paths.ASSIGNMENT) -> str:
    """One student's feedback page. nb: their autograded notebook; grades: their StudentGrades from
    the gradebook (gradebook.read_class), as nbgrader's GetGrades writes them into the notebook."""
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        grade = grades.cells.get(meta.get("grade_id"))
        if grade is None:
            continue
        if meta.get("grade") or meta.get("task"):
            meta["score"], meta["points"] = grade.score, grade.max_score
        if meta.get("solution") or meta.get("task"):
            meta["comment"] = grade.comment
    lesson = paths.lesson(assignment)
    notebook_id = lesson.notebook_id
    resources = {"unique_key": notebook_id, "output_files_dir": f"{notebook_id}_files", "nbgrader": {
        "student": student_id, "assignment": assignment, "notebook": notebook_id,
        "score": grades.score - grades.late_penalty, "max_score": grades.max_score,
        "late_penalty": grades.late_penalty}}
    html, _ = _exporter().from_notebook_node(nb, resources=resources)
    return shared_images(html, paths.REPO / lesson.release_dir)


def _shared_name(src: str, assignment: Path) -> str | None:
    """The file of the assignment that `src` names, or None. Only a bare file name counts: not a
    path (`../../NAME` is one, so a second pass leaves it alone), a URL or a data: URL."""
    if not src or any(ch in src for ch in "/\\:?#") or src in (".", ".."):
        return None
    return src if (assignment / src).is_file() else None


def shared_images(html: str, assignment: Path) -> str:
    """Each `<img src="NAME">` whose NAME is a file directly in `assignment` becomes
    `<img src="../../NAME">`: the one copy `share_figures` puts in `feedback/`.

    Why `../../NAME` works for both readers: nbgrader's fetch_feedback puts a student's page at
    `ASSIGNMENT/feedback/TIMESTAMP/NB.html`, so `../../NAME` is the figure in the student's own
    assignment folder; the instructor's `feedback/STUDENT/ASSIGNMENT/NB.html` finds the single
    shared copy in `feedback/`."""
    def shared(match: re.Match) -> str:
        name = _shared_name(match.group(3), assignment)
        return match.group(0) if name is None else f"{match.group(1)}{match.group(2)}../../{name}{match.group(2)}"

    return IMG_SRC.sub(shared, html)


FIGURE_SUFFIXES = {".png", ".svg", ".jpg", ".jpeg", ".gif"}


def share_figures(assignment: Path, feedback_root: Path) -> None:
    """One copy of the assignment's figures in `feedback_root`, for every student's page."""
    feedback_root.mkdir(parents=True, exist_ok=True)
    for source in sorted(assignment.iterdir()):
        target = feedback_root / source.name
        if source.is_file() and source.suffix.lower() in FIGURE_SUFFIXES and not (
                target.is_file() and filecmp.cmp(source, target, shallow=False)):
            shutil.copyfile(source, target)
