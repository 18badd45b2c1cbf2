"""The HTML that nbgrader makes for this course: maths as MathML with nothing loaded from the web, a
feedback summary that names each test, and feedback folders that hold pages, not the assignment.

The fast tests render the release notebook with nbconvert under the course's nbgrader config (the
feedback exporter as GenerateFeedback makes it, the review page as the formgrader makes it), and
share a made-up assignment's figures. The slow one takes one submission through nbgrader's
exchange, grades it, and hands the feedback back.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from grader import paths
from grader.grading import intake
from grader.course.commands import tool_env
from grader.course.feedback import share_figures, shared_images
from grader.course.grade import finish, judge_all
from grader.course.maths import markdown2html, tex_to_mathml
from grader.course.workspace import Workspace

MATH = re.compile(r"(?<![\\$])\$\$(.+?)\$\$|(?<![\\$])\$(.+?)\$", re.DOTALL)
# A resource the page would fetch from the web: a script, stylesheet, image or frame at http(s).
REMOTE = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", re.I)
SUMMARY = re.compile(r'<ol id="toc">(.*?)</ol>', re.DOTALL)


def course_config() -> Config:
    return PyFileConfigLoader(paths.NBGRADER_CONFIG.name, path=str(paths.NBGRADER_CONFIG.parent)).load_config()


def formulas(nb) -> list[str]:
    return [m.group(0) for c in nb.cells if c.cell_type == "markdown" for m in MATH.finditer(c.source)]


def graded(release) -> nbformat.NotebookNode:
    """The release with scores as nbgrader's GetGrades leaves them: test_groupnorm failed."""
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        meta = cell.metadata["nbgrader"]
        if meta.get("grade"):
            meta["score"] = 0.0 if meta["grade_id"] == "test_groupnorm" else meta["points"]
    return nb


def feedback_exporter(config: Config) -> HTMLExporter:
    """The exporter `nbgrader generate_feedback` makes: a child of GenerateFeedback."""
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory

    converter = GenerateFeedback(coursedir=CourseDirectory(config=config), config=config)
    return converter.exporter_class(parent=converter, config=converter.config)


def render_feedback(config: Config, nb) -> str:
    points = [c.metadata.nbgrader for c in nb.cells if c.metadata["nbgrader"].get("grade")]
    resources = {"nbgrader": {"notebook": "w3d4_part2_unet", "score": sum(p["score"] for p in points),
                              "max_score": sum(p["points"] for p in points), "late_penalty": 0}}
    return feedback_exporter(config).from_notebook_node(nb, resources=resources)[0]


@pytest.fixture(scope="module")
def feedback_html(notebooks) -> str:
    return render_feedback(course_config(), graded(notebooks.release))


# Maths ---------------------------------------------------------------------------------------


def test_release_maths_become_mathml(notebooks):
    """Every formula of the lesson is a <math> element: no TeX is left for a script to typeset."""
    release = notebooks.release
    html, _ = HTMLExporter(config=course_config()).from_notebook_node(release)
    assert len(formulas(release)) >= 15
    assert html.count("<math") == len(formulas(release))
    assert html.count('<math display="block"') == sum(f.startswith("$$") for f in formulas(release))
    assert "$$" not in html and not re.search(r"\$\\", html), "TeX left in the page"
    assert "MathJax.Hub" not in html and "mathjax/" not in html, "the page still loads MathJax"


def test_without_the_course_filter_the_maths_stay_tex(notebooks):
    """The check above can fail: nbconvert's own filter leaves the TeX (and loads MathJax)."""
    html, _ = HTMLExporter().from_notebook_node(notebooks.release)
    assert "<math" not in html and "$$" in html and "MathJax.Hub" in html


def render_filter(filter_, source: str, cell=None) -> str:
    env = jinja2.Environment()
    env.filters["md"] = filter_
    return env.from_string("{{ source | md }}").render(source=source, cell=cell or {}, resources={})


def test_markdown_without_maths_renders_as_nbconvert_renders_it(notebooks):
    """Headings with their anchor links, tables, details, code, images: as nbconvert writes them."""
    cells = [c for c in notebooks.release.cells if c.cell_type == "markdown" and "$" not in c.source]
    assert len(cells) > 10
    stock = HTMLExporter().markdown2html
    for cell in cells:
        assert render_filter(markdown2html, cell.source, cell) == render_filter(stock, cell.source, cell)


@pytest.mark.parametrize("tex, display", [(r"\sigma(x)", False), (r"\frac{1}{2}", True), ("a < b", False)])
def test_a_formula_is_mathml(tex, display):
    out = tex_to_mathml(tex, display)
    assert out.startswith(f'<math display="{"block" if display else "inline"}">') and out.endswith("</math>")
    assert "<code" not in out and "a < b" not in out


@pytest.mark.parametrize("tex", [r"\text{<b onmouseover=alert(1)>x</b>}", r"\left( x", "a & b",
                                 r"\text{<![CDATA[<script>alert(1)</script>]]>}"])
def test_a_formula_that_is_not_plain_mathml_is_shown_as_escaped_tex(tex):
    out = tex_to_mathml(tex, display=False)
    assert out.startswith('<code class="tex">$') and "<b" not in out and "<script" not in out and "<!" not in out


# The formgrader's review page ----------------------------------------------------------------


def formgrade_exporter(course: Path, monkeypatch) -> HTMLExporter:
    """The exporter of the formgrader's review page, configured as the server extension does it in
    a course folder whose config loads the course's (as `python -m grader grade` writes one)."""
    from nbgrader.server_extensions.formgrader.formgrader import FormgradeExtension

    course.mkdir(exist_ok=True)
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nload_subconfig({str(paths.NBGRADER_CONFIG)!r})\nc.CourseDirectory.root = {str(course)!r}\n")
    monkeypatch.chdir(course)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the app puts the folder it starts in on it
    extension = FormgradeExtension()
    extension.initialize([])
    return HTMLExporter(config=extension.config)


def test_the_formgrader_page_keeps_its_template_with_maths_and_nothing_from_the_web(notebooks, tmp_path, monkeypatch):
    exporter = formgrade_exporter(tmp_path / "course", monkeypatch)
    assert exporter.template_name == "formgrade"
    resources = {"assignment_id": paths.ASSIGNMENT, "notebook_id": "w3d4_part2_unet", "submission_id": "s1",
                 "index": 0, "total": 1, "base_url": "/base", "student": "ada", "last_name": None,
                 "first_name": None, "notebook_path": "autograded/ada/w3d4_part2/w3d4_part2_unet.ipynb"}
    html, _ = exporter.from_notebook_node(graded(notebooks.release), resources=resources)
    assert "formgrade.js" in html and "full-credit" in html, "not nbgrader's formgrade page"
    assert html.count("<math") == len(formulas(notebooks.release)) and "$$" not in html
    assert not REMOTE.search(html) and "cdnjs" not in html, REMOTE.search(html)


# The feedback page ---------------------------------------------------------------------------


def test_the_feedback_summary_names_every_test(feedback_html, notebooks):
    summary = SUMMARY.search(feedback_html).group(1)
    assert "Test cell" not in summary
    for grade_id in notebooks.test_ids():
        assert f'<a href="#{grade_id}">{grade_id}</a>' in summary, grade_id
        assert f'<a id="{grade_id}"></a>' in feedback_html, f"no score header for {grade_id}"
    failed = '<li class="failed"><a href="#test_groupnorm">test_groupnorm</a> (test, Score: 0.0 / 2.0)'
    assert failed in summary
    assert re.search(r'<li class="passed"><a href="#test_unet">', summary)
    assert "Score: 14.0 / 16.0" in feedback_html


def test_the_feedback_page_is_self_contained_and_small(feedback_html, notebooks):
    assert not REMOTE.search(feedback_html) and "<script" not in feedback_html
    assert feedback_html.count("<math") == len(formulas(notebooks.release))
    assert "white-space: pre-wrap" in feedback_html and "bootstrap" not in feedback_html.lower()
    assert len(feedback_html.encode()) < 120_000


def test_the_summary_check_can_fail(notebooks):
    """Without the course's feedback template, nbgrader's says "Test cell" ten times."""
    config = course_config()
    del config.GenerateFeedback["HTMLExporter"]
    html = render_feedback(config, graded(notebooks.release))
    assert SUMMARY.search(html) is None and html.count(">Test cell</a>") == len(notebooks.test_ids())


# Feedback folders: pages, and one shared copy of the figures ----------------------------------

PAGE = """<html><body><img alt="a
figure" src="fig.png" width="720"/> <img src='diagram.svg'> <img src="data:image/png;base64,AAAA"/>
<img src="https://example.org/x.png"/> <img src="not_in_the_release.png"/> <img src="../fig.png"/>
<pre>&lt;img src="fig.png"&gt;</pre></body></html>"""


@pytest.fixture
def release(tmp_path, make_tree) -> Path:
    assignment = make_tree(tmp_path / "release" / "hw", {
        "fig.png": b"PNG" * 50, "diagram.svg": "<svg/>", "NB.ipynb": "{}", "model.safetensors": b"0" * 5000,
        "checks/__init__.py": ""})
    # Files outside the assignment that `../fig.png` and `../../fig.png` would reach from it: a path
    # is never taken for a file of the assignment, so a second pass leaves `../../fig.png` alone.
    make_tree(tmp_path, {"release/fig.png": b"elsewhere", "fig.png": b"elsewhere"})
    return assignment


def test_a_page_points_its_figures_at_the_shared_copy(release, tmp_path):
    page = shared_images(PAGE, release)
    srcs = re.findall(r"<img\b[^>]*?\bsrc=[\"']([^\"']*)", page)
    assert srcs == ["../../fig.png", "../../diagram.svg", "data:image/png;base64,AAAA", "https://example.org/x.png",
                    "not_in_the_release.png", "../fig.png"]
    assert '<pre>&lt;img src="fig.png"&gt;</pre>' in page, "text that only looks like an image changed"
    assert shared_images(page, release) == page, "a second pass changed something"
    # The instructor's copy finds the shared figure; a student's fetched copy finds their own.
    feedback = tmp_path / "feedback"
    share_figures(release, feedback)
    assert sorted(p.name for p in feedback.iterdir()) == ["diagram.svg", "fig.png"], "only figures are shared"
    for src in srcs[:2]:
        assert (feedback / "ada" / "hw" / src).resolve().parent == feedback
        assert (feedback / "ada" / "hw" / src).resolve().read_bytes() == (release / src[6:]).read_bytes()
        fetched = release / "feedback" / "2026-01-01 00:00:00" / "NB.html"
        assert (fetched.parent / src).resolve() == (release / src.removeprefix("../../")).resolve()


def test_sharing_figures_again_rewrites_only_what_changed(release, tmp_path):
    feedback = tmp_path / "feedback"
    share_figures(release, feedback)
    (feedback / "fig.png").write_bytes(b"stale")
    stamp = (feedback / "diagram.svg").stat().st_mtime_ns
    share_figures(release, feedback)
    assert (feedback / "fig.png").read_bytes() == (release / "fig.png").read_bytes()
    assert (feedback / "diagram.svg").stat().st_mtime_ns == stamp


# The whole path --------------------------------------------------------------------------------


# The feedback of a whole graded class (sizes, names, maths drawn offline) is checked in
# test_formgrader.py, on the class that test grades anyway.


@pytest.mark.slow
def test_a_student_fetches_feedback_whose_figures_show(tmp_path):
    """Through nbgrader's exchange: release, fetch, submit, collect, grade (pages only), then
    release_feedback and fetch_feedback. The student's page finds the figures in their own folder."""
    workspace, exchange, home = Workspace(tmp_path / "ws"), tmp_path / "exchange", tmp_path / "student"
    workspace.setup()
    exchange.mkdir(mode=0o777)
    home.mkdir()
    flag = [f"--Exchange.root={exchange}", "--course=w3d4"]

    def nbgrader(cwd: Path, *args: str) -> None:
        result = subprocess.run([sys.executable, "-m", "nbgrader", *args, *flag], cwd=cwd, env=tool_env(),
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    nbgrader(workspace.root, "release_assignment", paths.ASSIGNMENT)
    nbgrader(home, "fetch_assignment", paths.ASSIGNMENT)
    answers = paths.REPO / paths.SAMPLE_DIR / "dev_classic_mistakes.ipynb"
    shutil.copyfile(answers, home / paths.ASSIGNMENT / paths.NOTEBOOK_NAME)
    nbgrader(home, "submit", paths.ASSIGNMENT)
    nbgrader(workspace.root, "collect", paths.ASSIGNMENT)
    [student] = [p.name for p in (workspace.root / "submitted").iterdir()]
    collected = workspace.submitted(student)
    collected.write_text(nbformat.writes(intake.read_submission(collected).notebook), encoding="utf-8")
    judge_all(workspace, {student: collected}, 1, workspace.limits)
    finish(workspace, [student], 1)
    assert sorted(p.name for p in (workspace.root / "feedback" / student / paths.ASSIGNMENT).iterdir()) == [
        "submission_secret.txt", "timestamp.txt", "w3d4_part2_unet.html"]
    nbgrader(workspace.root, "release_feedback", paths.ASSIGNMENT)
    nbgrader(home, "fetch_feedback", paths.ASSIGNMENT)
    [page] = (home / paths.ASSIGNMENT / "feedback").glob("*/w3d4_part2_unet.html")
    srcs = re.findall(r'<img[^>]*\bsrc="([^"]+)"', page.read_text(encoding="utf-8"))
    assert srcs and all(src.startswith("../../") for src in srcs)
    for src in srcs:
        assert (page.parent / src).resolve() == (home / paths.ASSIGNMENT / src.removeprefix("../../")).resolve()
        assert (page.parent / src).is_file(), src
