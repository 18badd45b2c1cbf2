"""The student notebook, as a reader sees it in a real browser: every figure and diagram shows.

Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright, nothing downloaded) opens
the released notebook (notebooks/w3d4_part2/) in JupyterLab, in Notebook 7, and as the HTML that
`jupyter nbconvert --to html` exports, with the internet cut off, as for a student offline. Each
check: every image loaded (natural width > 0) at a sensible size, every ```mermaid block drawn
as a diagram without an error. Screenshots, one per figure and one of the whole notebook, go to
out/screenshots/<viewer>/ (SCREENSHOTS below). And in each viewer, every internal link scrolls to
the heading it names.

Skipped only when /usr/bin/chromium is missing (`make test` installs it on Debian as root).
"""

import shutil
from pathlib import Path

import pytest

import nbformat

from browser_support import (
    SCREENSHOTS, count_internal_links, expected, follow_internal_links, html_export, inspect,
    jupyter_lab, offline_page, problems, save_screenshots, wait_until_rendered,
)
from figures.diagrams import CHROMIUM
from grader import paths
from grader.lesson import links

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: the browser tests need Debian's chromium package"
    ),
    pytest.mark.slow,  # Jupyter servers and a browser: only in `make test`
]

RELEASE = paths.REPO / paths.RELEASE_DIR
NOTEBOOK = paths.NOTEBOOK_NAME


@pytest.fixture(scope="module")
def student_folder(tmp_path_factory) -> Path:
    """A copy of the released assignment folder, as a student receives it."""
    folder = tmp_path_factory.mktemp("student") / "w3d4_part2"
    shutil.copytree(RELEASE, folder)
    return folder


@pytest.fixture(scope="module")
def server(student_folder, tmp_path_factory):
    with jupyter_lab(student_folder, tmp_path_factory.mktemp("jupyter-home")) as server:
        yield server


def check_page(page, notebook: Path, viewer: str, scroller: str | None = None, server=None) -> None:
    """Wait for the notebook to render, save the screenshots, then assert that nothing is missing."""
    want = expected(notebook)
    wait_until_rendered(page, want, server.url if server else None)
    folder = SCREENSHOTS / viewer
    seen = inspect(page)
    save_screenshots(page, folder, scroller)
    found = problems(seen, want)
    assert not found, f"{viewer} (screenshots in {folder}):\n- " + "\n- ".join(found)


@pytest.mark.parametrize("viewer, path", [("jupyterlab", f"lab/tree/{NOTEBOOK}"), ("notebook7", f"notebooks/{NOTEBOOK}")])
def test_the_notebook_viewers_show_every_figure(server, browser, student_folder, viewer, path):
    page = offline_page(browser)
    try:
        page.goto(server.page(path))
        check_page(page, student_folder / NOTEBOOK, viewer, ".jp-WindowedPanel-outer", server)
    finally:
        page.context.close()


@pytest.mark.parametrize("embed", [False, True], ids=["html-next-to-notebook", "html-embedded-images"])
def test_html_export_shows_every_figure(browser, student_folder, tmp_path, embed):
    """The plain export, read next to the notebook's files; and --embed-images, read on its own."""
    if embed:
        html = html_export(student_folder / NOTEBOOK, tmp_path, "--embed-images")
    else:
        html = html_export(student_folder / NOTEBOOK, student_folder)
    page = offline_page(browser)
    try:
        page.goto(html.as_uri(), wait_until="domcontentloaded")
        check_page(page, student_folder / NOTEBOOK, "html-embedded" if embed else "html")
    finally:
        page.context.close()


@pytest.mark.parametrize("viewer", ["jupyterlab", "notebook7", "html"])
def test_every_internal_link_scrolls_to_its_heading(viewer, browser, student_folder, tmp_path, request):
    """Click each internal link (the contents list and the cross-references), starting with the
    heading it means out of sight; afterwards that heading must be in view. The lesson's links are
    checked against the anchors at build time; this checks that the viewers really follow them."""
    notebook = student_folder / NOTEBOOK
    lesson_links = links.internal_links(nbformat.read(notebook, as_version=4))
    assert len(lesson_links) >= 12, f"the lesson should have its contents list and cross-references: {lesson_links}"
    # A low window, so that even the first entry of the contents list can be shown with the top of
    # the section it opens out of sight.
    page = offline_page(browser, height=600)
    try:
        if viewer == "html":
            page.goto(html_export(notebook, tmp_path, "--embed-images").as_uri(), wait_until="domcontentloaded")
            wait_until_rendered(page, expected(notebook))
        else:
            server = request.getfixturevalue("server")
            page.goto(server.page(f"lab/tree/{NOTEBOOK}" if viewer == "jupyterlab" else f"notebooks/{NOTEBOOK}"))
            wait_until_rendered(page, expected(notebook), server.url)
        assert count_internal_links(page) == len(lesson_links), f"{viewer} shows a different number of links"
        found = follow_internal_links(page)
    finally:
        page.context.close()
    assert not found, f"{viewer}: {len(found)} of {len(lesson_links)} internal links fail:\n- " + "\n- ".join(found)


def test_the_checks_catch_a_broken_image_and_a_mermaid_block_that_is_not_drawn(browser, tmp_path):
    """The same checks fail on a notebook with a wrong image path and a ```mermaid block: the
    HTML export cannot draw mermaid offline (nbconvert loads it from a CDN) and hides it."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell('<img src="no_such_figure.svg" width="400"/>'),
        nbformat.v4.new_markdown_cell("```mermaid\ngraph TD\n    A[Input] --> B[Output]\n```"),
    ]
    notebook = tmp_path / "broken.ipynb"
    nbformat.write(nb, notebook)
    page = offline_page(browser)
    try:
        page.goto(html_export(notebook, tmp_path).as_uri(), wait_until="domcontentloaded")
        want = expected(notebook)
        wait_until_rendered(page, want)
        found = problems(inspect(page), want)
    finally:
        page.context.close()
    assert any("no_such_figure.svg did not load" in problem for problem in found), found
    assert any("0 of 1 mermaid blocks drawn" in problem for problem in found), found


# The other lessons of the day: each release folder, side by side as a student keeps them.
OTHER_LESSONS = [name for name in paths.LESSONS if name != paths.ASSIGNMENT]


@pytest.fixture(scope="module")
def day_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("day")
    for name in OTHER_LESSONS:
        shutil.copytree(paths.REPO / paths.lesson(name).release_dir, folder / name)
    return folder


@pytest.fixture(scope="module")
def day_server(day_folder, tmp_path_factory):
    with jupyter_lab(day_folder, tmp_path_factory.mktemp("jupyter-home-day")) as server:
        yield server


@pytest.mark.parametrize("assignment", OTHER_LESSONS)
@pytest.mark.parametrize("viewer", ["jupyterlab", "notebook7", "html"])
def test_the_other_lessons_show_every_figure_and_formula(day_server, browser, day_folder, tmp_path, assignment, viewer):
    notebook = day_folder / assignment / paths.lesson(assignment).notebook
    page = offline_page(browser)
    try:
        if viewer == "html":
            page.goto(html_export(notebook, tmp_path, "--embed-images").as_uri(), wait_until="domcontentloaded")
            check_page(page, notebook, f"html-{assignment}")
        else:
            # JupyterLab reopens the tabs of its last session: a workspace of the lesson's own keeps the
            # other lesson's notebook (and its cells) off the page.
            route = f"lab/workspaces/{assignment}/tree" if viewer == "jupyterlab" else "notebooks"
            page.goto(day_server.page(f"{route}/{assignment}/{notebook.name}"))
            check_page(page, notebook, f"{viewer}-{assignment}", ".jp-WindowedPanel-outer", day_server)
    finally:
        page.context.close()
