"""Helpers for the browser tests: a private Jupyter server, headless Chromium, and what a page shows.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright's Python package; nothing is
downloaded. The page is inspected with one script for every viewer (JupyterLab, Notebook 7, the
nbconvert HTML export): they all render markdown into `.jp-RenderedMarkdown` and mermaid into
`.jp-RenderedMermaid`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from figures.diagrams import CHROMIUM, CHROMIUM_ARGS
from grader.lesson.build import IMAGE_REF

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "out" / "screenshots"
MERMAID_BLOCK = re.compile(r"^```mermaid\s*$", re.MULTILINE)

# A figure is drawn smaller than it should be when the page shrinks it below this share of the
# width it asks for (its width attribute, else its own size): text that small is hard to read.
MIN_SCALE = 0.6
MIN_WIDTH_PX = 150
MIN_HEIGHT_PX = 80

# JupyterLab settings for a test: every cell attached to the page (no virtual scrolling), no
# requests to the web for news or updates.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True,
    },
}


@dataclass
class Expected:
    """What the markdown cells of a notebook should show."""

    markdown_cells: int
    images: list[str]  # local image files, in order of appearance
    mermaid_blocks: int


def expected(notebook: Path) -> Expected:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    markdown = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown"]
    images = [name for text in markdown for name in IMAGE_REF.findall(text)]
    mermaid = sum(len(MERMAID_BLOCK.findall(text)) for text in markdown)
    return Expected(len(markdown), images, mermaid)


# Straight to localhost, whatever proxy the environment names.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_process_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group started for process, then SIGKILL whatever is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass
class JupyterServer:
    url: str
    token: str
    log: Path

    def page(self, path: str) -> str:
        """The address of a page of the server, such as `lab/tree/x.ipynb`, with the token."""
        return f"{self.url}/{path}?token={self.token}"


@contextlib.contextmanager
def jupyter_lab(root_dir: Path, home: Path, timeout: float = 60.0) -> Iterator[JupyterServer]:
    """`jupyter lab` on a free localhost port, serving root_dir; its settings and state in home.

    The server also serves Notebook 7 (/notebooks/...). It is stopped, with any kernel it
    started, when the block ends, even on an error.
    """
    port, token = free_port(), "w3d4-browser-test"
    config = home / "config"
    for name, settings in LAB_SETTINGS.items():
        path = config / "lab" / "user-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings), encoding="utf-8")
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "0",
    }
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
        "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
        f"--LabApp.user_settings_dir={config / 'lab' / 'user-settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = home / "jupyter.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = JupyterServer(f"http://127.0.0.1:{port}", token, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with _LOCAL.open(server.page("api/status"), timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not answer in {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield server
    finally:
        # Ask the server to shut down its kernels first; they run in sessions of their own.
        with contextlib.suppress(OSError):
            request = urllib.request.Request(server.page("api/shutdown"), method="POST")
            _LOCAL.open(request, timeout=5).close()
        _stop_process_group(process)


def html_export(notebook: Path, out_dir: Path, *extra: str) -> Path:
    """`jupyter nbconvert --to html` of notebook into out_dir; the path of the HTML file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "nbconvert", "--to", "html", *extra, f"--output-dir={out_dir}", str(notebook)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed:\n{done.stderr[-3000:]}")
    return out_dir / (notebook.stem + ".html")


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Debian's) with a fresh profile, closed at the end of the block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, "--no-proxy-server"]
        )
        try:
            yield browser
        finally:
            browser.close()


def offline_page(browser, width: int = 1280, height: int = 900):
    """A new page that may load files and localhost only, as for a student without internet."""
    context = browser.new_context(viewport={"width": width, "height": height})

    def route(route):
        url = route.request.url
        local = url.startswith(("file:", "data:", "blob:", "http://127.0.0.1", "ws://127.0.0.1"))
        return route.continue_() if local else route.abort("internetdisconnected")

    context.route("**/*", route)
    return context.new_page()


# Everything the checks need, read from the page in one go. Figures are the images of markdown
# cells (a mermaid diagram rendered as an <img> is counted as a diagram, not a figure).
_INSPECT = """() => {
    const markdown = [...document.querySelectorAll('.jp-RenderedMarkdown')];
    const visible = (el) => {
        const style = getComputedStyle(el);
        const box = el.getBoundingClientRect();
        return style.display !== 'none' && style.visibility !== 'hidden' && box.width > 0 && box.height > 0;
    };
    const figures = markdown.flatMap((cell) => [...cell.querySelectorAll('img')]
        .filter((img) => !img.closest('.jp-RenderedMermaid'))
        .map((img) => {
            const box = img.getBoundingClientRect();
            return {
                src: img.getAttribute('src'), complete: img.complete,
                naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
                width: box.width, height: box.height, visible: visible(img),
                widthAttribute: Number(img.getAttribute('width')) || null,
                column: cell.clientWidth,
            };
        }));
    const mermaid = [...document.querySelectorAll('.jp-Mermaid, .jp-RenderedMermaid')].map((el) => {
        const drawing = el.querySelector('svg, img');
        return {
            rendered: el.classList.contains('jp-RenderedMermaid'),
            warning: el.classList.contains('jp-mod-warning') || !!el.querySelector('.jp-mod-warning'),
            visible: visible(el),
            drawn: !!drawing && (drawing.tagName.toLowerCase() === 'svg' || drawing.naturalWidth > 0),
            width: drawing ? drawing.getBoundingClientRect().width : 0,
            text: el.innerText.slice(0, 200),
        };
    });
    return {
        markdownCells: markdown.length, figures, mermaid,
        otherImagesBroken: [...document.querySelectorAll('img[src]')]
            .filter((img) => img.complete && img.naturalWidth === 0).map((img) => img.getAttribute('src').slice(0, 80)),
        errorText: /Syntax error in text|Parse error on line/.test(document.body.innerText),
    };
}"""

_FIGURES = ".jp-RenderedMarkdown img:not(.jp-RenderedMermaid img)"

# Every figure is in the page and done loading (or failing). A server's page (JupyterLab,
# Notebook 7) first inserts the markdown's relative src and then swaps in its own /files/ address,
# so there a figure is only done once its src names the server.
_FIGURES_SETTLED = """([selector, count, server]) => {
    const images = [...document.querySelectorAll(selector)];
    return images.length >= count && images.every((img) => img.complete
        && (!server || (img.getAttribute('src') || '').startsWith(server)
            || (img.getAttribute('src') || '').startsWith('data:')));
}"""


def wait_until_rendered(page, want: Expected, server: str | None = None, timeout_ms: float = 60_000) -> None:
    """Wait for every markdown cell, figure and mermaid diagram (loaded or failed).

    server: the address of the Jupyter server whose page this is, if any.
    """
    page.wait_for_function(
        "(n) => document.querySelectorAll('.jp-RenderedMarkdown').length >= n",
        arg=want.markdown_cells, timeout=timeout_ms,
    )
    page.wait_for_function(
        "([selector, n]) => document.querySelectorAll(selector).length >= n",
        arg=[_FIGURES, len(want.images)], timeout=timeout_ms,
    )
    # Bring every image into view once, in case a viewer loads them lazily.
    for image in page.locator(_FIGURES).all():
        image.scroll_into_view_if_needed()
    page.wait_for_function(_FIGURES_SETTLED, arg=[_FIGURES, len(want.images), server], timeout=timeout_ms)
    if want.mermaid_blocks:
        with contextlib.suppress(Exception):  # a failed diagram is reported by problems()
            page.wait_for_function(
                "(n) => document.querySelectorAll('.jp-RenderedMermaid').length >= n",
                arg=want.mermaid_blocks, timeout=5_000,
            )


def inspect(page) -> dict:
    return page.evaluate(_INSPECT)


def figure_name(src: str) -> str:
    """The file an image shows, or the start of its data: address."""
    return src[:30] + "..." if src.startswith("data:") else Path(src.split("?")[0]).name


def problems(seen: dict, want: Expected) -> list[str]:
    """What a reader would miss on the page, in words; empty when every figure and diagram shows."""
    found = []
    if seen["markdownCells"] != want.markdown_cells:
        found.append(f"{seen['markdownCells']} markdown cells rendered, the notebook has {want.markdown_cells}")
    # An export with --embed-images has data: addresses, which name no file: compare the count.
    shown = [figure_name(figure["src"]) for figure in seen["figures"]]
    files = [Path(name).name for name in want.images]
    if len(shown) != len(files) or any(a != b for a, b in zip(shown, files) if not a.startswith("data:")):
        found.append(f"images shown {shown}, the notebook has {files}")
    for figure, name in zip(seen["figures"], shown):
        if figure["naturalWidth"] == 0:
            found.append(f"{name} did not load")
            continue
        if not figure["visible"]:
            found.append(f"{name} is hidden")
            continue
        asked = figure["widthAttribute"] or figure["naturalWidth"]
        if figure["width"] < MIN_WIDTH_PX or figure["height"] < MIN_HEIGHT_PX:
            found.append(f"{name} is only {figure['width']:.0f} x {figure['height']:.0f} px")
        if figure["width"] < MIN_SCALE * min(asked, figure["column"]):
            found.append(f"{name} is drawn {figure['width']:.0f} px wide, it asks for {asked} px")
        if figure["width"] > figure["column"] + 1:
            found.append(f"{name} ({figure['width']:.0f} px) overflows its {figure['column']} px column")
        natural = figure["naturalWidth"] / figure["naturalHeight"]
        drawn = figure["width"] / figure["height"]
        if abs(drawn / natural - 1) > 0.02:
            found.append(f"{name} is distorted: aspect {drawn:.3f}, the file has {natural:.3f}")
    diagrams = [m for m in seen["mermaid"] if m["rendered"] and m["drawn"] and not m["warning"] and m["visible"]]
    if len(seen["mermaid"]) != want.mermaid_blocks or len(diagrams) != want.mermaid_blocks:
        details = "; ".join(
            f"rendered={m['rendered']} drawn={m['drawn']} warning={m['warning']} visible={m['visible']}"
            f" {m['text'][:60]!r}" for m in seen["mermaid"]
        )
        found.append(f"{len(diagrams)} of {want.mermaid_blocks} mermaid blocks drawn as diagrams ({details})")
    if seen["errorText"]:
        found.append("the page shows a mermaid syntax error")
    if seen["otherImagesBroken"]:
        found.append(f"broken images: {seen['otherImagesBroken']}")
    return found


@contextlib.contextmanager
def whole_notebook_in_view(page, scroller: str | None = None) -> Iterator[None]:
    """Within the block, the whole notebook is on screen at once, for screenshots.

    JupyterLab and Notebook 7 scroll the notebook inside a panel (scroller), which clips tall
    figures and full-page shots, so the window is made as tall as the notebook for a while. A
    document that scrolls by itself (the HTML export) needs nothing.
    """
    if scroller is None:
        yield
        return
    size = page.viewport_size
    extra = page.evaluate("(el) => el.scrollHeight - el.clientHeight", page.locator(scroller).first.element_handle())
    page.set_viewport_size({"width": size["width"], "height": size["height"] + extra})
    try:
        page.wait_for_timeout(300)  # let the layout follow the new size
        yield
    finally:
        page.set_viewport_size(size)


def save_screenshots(page, folder: Path, scroller: str | None = None) -> list[Path]:
    """The whole notebook (notebook.png), and each figure and mermaid diagram on its own."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    paths = [folder / "notebook.png"]
    with whole_notebook_in_view(page, scroller):
        page.screenshot(path=paths[0], full_page=True)
        figures = page.locator(_FIGURES)
        for i, image in enumerate(figures.all(), start=1):
            src = image.get_attribute("src") or ""
            name = "embedded" if src.startswith("data:") else Path(src.split("?")[0]).stem
            paths.append(folder / f"figure_{i:02d}_{name[:60]}.png")
            image.screenshot(path=paths[-1])
        for i, diagram in enumerate(page.locator(".jp-RenderedMermaid").all(), start=1):
            paths.append(folder / f"mermaid_{i:02d}.png")
            diagram.screenshot(path=paths[-1])
    return paths


# Internal links. The heading a link means is found by its text, compared loosely (case, spaces
# and punctuation ignored), so the check does not trust the anchors under test: a link whose
# anchor matches no heading in a viewer still names the heading it was meant for, and fails.
_LINK_SETUP = """
    const internalLinks = () => [...document.querySelectorAll('.jp-RenderedMarkdown a[href^="#"]')]
        .filter((a) => !a.matches('.anchor-link, .jp-InternalAnchorLink'));
    const loose = (text) => text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
    const headingText = (h) => {
        const copy = h.cloneNode(true);
        copy.querySelectorAll('.anchor-link, .jp-InternalAnchorLink').forEach((a) => a.remove());
        return copy.textContent.trim();
    };
    // The part of the window where the notebook shows: its scrolling panel in JupyterLab and
    // Notebook 7, the window itself for the HTML export.
    const scrollerOf = (el) => el.closest('.jp-WindowedPanel-outer') || document.scrollingElement;
    const inView = (el) => {
        const scroller = scrollerOf(el);
        const frame = scroller === document.scrollingElement
            ? {top: 0, bottom: innerHeight} : scroller.getBoundingClientRect();
        const box = el.getBoundingClientRect();
        const top = Math.max(frame.top, 0), bottom = Math.min(frame.bottom, innerHeight);
        return box.height > 0 && box.top >= top - 2 && box.bottom <= bottom + 2;
    };
"""

# Mark link number i and the heading it means, and scroll so that the link shows and the heading
# does not: the link at the bottom edge when its heading is further down, at the top edge when up.
_PLACE_LINK = "([i]) => {" + _LINK_SETUP + """
    document.querySelectorAll('[data-link-under-test], [data-link-target]').forEach((el) => {
        el.removeAttribute('data-link-under-test'); el.removeAttribute('data-link-target');
    });
    const link = internalLinks()[i];
    const href = link.getAttribute('href');
    let wanted = href.slice(1);
    try { wanted = decodeURIComponent(wanted); } catch (error) {}
    const matches = [...document.querySelectorAll('.jp-RenderedMarkdown :is(h1, h2, h3, h4, h5, h6)')]
        .filter((h) => loose(headingText(h)) === loose(wanted));
    const result = {href, text: link.textContent.trim(), headings: matches.map(headingText)};
    if (matches.length !== 1) return result;
    const target = matches[0];
    link.setAttribute('data-link-under-test', '');
    target.setAttribute('data-link-target', '');
    const below = link.compareDocumentPosition(target) & Node.DOCUMENT_POSITION_FOLLOWING;
    link.scrollIntoView({block: below ? 'end' : 'start'});
    return {...result, linkInView: inView(link), targetInView: inView(target)};
}"""

_TARGET_IN_VIEW = "() => {" + _LINK_SETUP + """
    const target = document.querySelector('[data-link-target]');
    return !!target && inView(target);
}"""

_WHERE_IS_TARGET = "() => {" + _LINK_SETUP + """
    const target = document.querySelector('[data-link-target]');
    const scroller = scrollerOf(target);
    return {top: Math.round(target.getBoundingClientRect().top), scrollTop: Math.round(scroller.scrollTop),
            url: location.hash};
}"""


def count_internal_links(page) -> int:
    return page.evaluate("() => {" + _LINK_SETUP + " return internalLinks().length; }")


def follow_internal_links(page, timeout_ms: float = 2_000) -> list[str]:
    """Click every internal link of the rendered notebook, each from a place where the heading it
    means is out of sight; what went wrong, in words (empty when every heading came into view)."""
    found = []
    for i in range(count_internal_links(page)):
        placed = page.evaluate(_PLACE_LINK, [i])
        name = f"[{placed['text']}]({placed['href']})"
        if len(placed["headings"]) != 1:
            found.append(f"{name}: {len(placed['headings'])} headings match it {placed['headings']}")
            continue
        if not placed["linkInView"] or placed["targetInView"]:
            found.append(f"{name}: could not show the link with its heading out of view ({placed})")
            continue
        page.locator("[data-link-under-test]").click()
        try:
            page.wait_for_function(_TARGET_IN_VIEW, timeout=timeout_ms)
        except Exception:  # Playwright's TimeoutError
            where = page.evaluate(_WHERE_IS_TARGET)
            found.append(f"{name}: {placed['headings'][0]!r} is not in view after the click ({where})")
    return found
