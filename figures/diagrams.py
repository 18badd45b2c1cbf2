"""The block diagrams of the lesson: mermaid text, drawn to SVG files by mermaid itself.

JupyterLab 4 and Notebook 7 draw ```mermaid blocks offline, but nbconvert's HTML export loads
mermaid from a CDN and hides every diagram when that fails (offline students, air-gapped
machines), and git hosts' notebook viewers and nbviewer show the raw text. No markup shows a
fallback only where mermaid fails (JupyterLab keeps inline styles, git hosts drop them, nbconvert
keeps everything), so the lesson shows each diagram as the SVG file drawn here: one picture, the
same in every viewer. The mermaid text below is the source of each picture.

Drawing needs Debian's Chromium (/usr/bin/chromium), Playwright's Python package and the mermaid
library (`npm ci --prefix figures/mermaid`, the version that JupyterLab 4.6.6 bundles). Labels are
measured with matplotlib's copy of DejaVu Sans, loaded as a web font, so the layout does not depend
on the fonts installed on the machine, and ids are fixed: drawing twice with the same Chromium gives
the same bytes. Each file's first comment names the Chromium that drew it and a digest of its
mermaid text (`stamp`). Whether a file is up to date is decided from its recorded inputs
(figures/inputs.py), which needs no browser.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

import matplotlib

FOLDER = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
MERMAID_JS = FOLDER / "mermaid" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
MERMAID_LOCK = FOLDER / "mermaid" / "package-lock.json"
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic",
]
# Viewers without DejaVu Sans use Verdana or Arial, of similar or narrower width (checked with
# Liberation Sans, metric-compatible with Arial): labels still fit their boxes.
FONT_FAMILY = '"DejaVu Sans", Verdana, Arial, sans-serif'
MERMAID_CONFIG = {
    "startOnLoad": False,
    "theme": "default",
    "securityLevel": "strict",
    "deterministicIds": True,
    "deterministicIDSeed": "w3d4",
    "fontFamily": FONT_FAMILY,
    # Labels as SVG text, not HTML in <foreignObject>, which some SVG viewers do not draw.
    "htmlLabels": False,
    "flowchart": {"htmlLabels": False},
}

# Mermaid draws 16 px text; the files are sized to show it at 12 px, next to 14 px prose.
SCALE = 0.75

# File name -> mermaid text. The lesson refers to these names; `C` is the channel count after the
# first convolution and `H` the input height; labels on image arrows read `channels, height`.
# `direction TB` in each subgraph: a subgraph linked to nothing outside it ignores `graph TD` and
# is laid out left to right (the overview then came out 3119 px wide, 5 px text once fitted to a
# notebook column, as JupyterLab draws the same text).
DIAGRAMS: dict[str, str] = {
    "w3d4_diagram_ddpm.svg": """
graph TD
    subgraph Overview
        direction TB
        Steps[Number of noise steps] --> TimeMLP[Sinusoidal embedding<br/>Linear: steps -> 4C<br/>GELU<br/>Linear: 4C -> 4C]
        TimeMLP -->|emb| DownBlock0 & DownBlock1 & DownBlock2 & MidBlock & UpBlock0 & UpBlock1 & OutBlock
        Image -->|3, H| InConv[7x7 Conv<br/>padding 3] -->|C, H| DownBlock0 -->|C, H/2| DownBlock1 -->|2C, H/4| DownBlock2 -->|4C, H/4| MidBlock -->|4C, H/4| UpBlock0 -->|2C, H/2| UpBlock1 -->|C, H| OutBlock[Residual Block] -->|C, H| FinalConv[1x1 Conv] -->|3, H| Output
        DownBlock2 -->|skip: 4C, H/4| UpBlock0
        DownBlock1 -->|skip: 2C, H/2| UpBlock1
    end
""",
    "w3d4_diagram_downblock.svg": """
graph TD
    subgraph DownBlock
        direction TB
        Steps[Step embedding] -->|emb| Res1 & Res2
        In[Input] -->|c_in, h| Res1[Residual Block 1] -->|c_out, h| Res2[Residual Block 2] -->|c_out, h| Attn[Attention Block] -->|c_out, h| Down[4x4 Conv<br/>stride 2<br/>padding 1] -->|c_out, h/2| Out[Output]
        Attn -->|c_out, h| Skip[Skip to<br/>UpBlock]
    end
""",
    "w3d4_diagram_midblock.svg": """
graph TD
    subgraph MidBlock
        direction TB
        Steps[Step embedding] -->|emb| Res1 & Res2
        In[Input] -->|c_mid, h| Res1[Residual Block 1] -->|c_mid, h| Attn[Attention Block] -->|c_mid, h| Res2[Residual Block 2] -->|c_mid, h| Out[Output]
    end
""",
    "w3d4_diagram_upblock.svg": """
graph TD
    subgraph UpBlock
        direction TB
        Steps[Step embedding] -->|emb| Res1 & Res2
        Skip[Skip from<br/>DownBlock] -->|c_out, h| Cat[Concatenate]
        In[Input] -->|c_out, h| Cat -->|2 c_out, h| Res1[Residual Block 1] -->|c_in, h| Res2[Residual Block 2] -->|c_in, h| Attn[Attention Block] -->|c_in, h| Up[4x4 Transposed Conv<br/>stride 2<br/>padding 1] -->|c_in, 2h| Out[Output]
    end
""",
    "w3d4_diagram_residualblock.svg": """
graph TD
    subgraph ResidualBlock
        direction TB
        In[Input] -->|c_in, h| Short[1x1 Conv<br/>only if c_in differs from c_out] -->|c_out, h| Sum[Add]
        In -->|c_in, h| Main1[3x3 Conv, padding 1<br/>GroupNorm<br/>SiLU] -->|c_out, h| AddEmb[Add] -->|c_out, h| Main2[3x3 Conv, padding 1<br/>GroupNorm<br/>SiLU] -->|c_out, h| Sum
        Steps[Step embedding] -->|emb| TimeLayer[SiLU<br/>Linear] -->|c_out| AddEmb
        Sum --> Out[Output]
    end
""",
    "w3d4_diagram_attentionblock.svg": """
graph TD
    subgraph AttentionBlock
        direction TB
        In[Input] --> Norm[GroupNorm<br/>1 group] --> Attn[Self-Attention<br/>4 heads] --> Sum[Add]
        In --> Sum
        Sum --> Out[Output]
    end
""",
}

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>
@font-face {{ font-family: "DejaVu Sans"; src: url(data:font/ttf;base64,{font}) format("truetype"); }}
body {{ margin: 0; font-family: {family}; }}
</style></head><body></body></html>"""

_RENDER = """async ([config, diagrams]) => {
    await document.fonts.load('16px "DejaVu Sans"');
    mermaid.initialize(config);
    const svgs = [];
    for (const [id, text] of diagrams) {
        try {
            svgs.push({svg: (await mermaid.render(id, text)).svg});
        } catch (error) {
            svgs.push({error: String(error && error.message || error)});
        }
    }
    return svgs;
}"""


def unavailable() -> str | None:
    """Why the diagrams cannot be drawn on this machine, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (install Debian's chromium package)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is missing (pip install -r requirements.txt)"
    if not MERMAID_JS.exists():
        return "the mermaid library is missing (run `npm ci --prefix figures/mermaid`)"
    if mermaid_version() != locked_mermaid_version():
        return (f"mermaid {mermaid_version()} is installed but package-lock.json asks for "
                f"{locked_mermaid_version()} (run `npm ci --prefix figures/mermaid`)")
    return None


def svg_id(name: str) -> str:
    """The id of a diagram's <svg> element: every id inside it starts with this."""
    return Path(name).stem.replace("_", "-")


def source_digest(name: str) -> str:
    """A digest of everything that decides a diagram's drawing except the browser."""
    inputs = [DIAGRAMS[name].strip(), MERMAID_CONFIG, FONT_FAMILY, SCALE]
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def mermaid_version() -> str:
    """The version of the installed mermaid library."""
    return json.loads((MERMAID_JS.parents[1] / "package.json").read_text())["version"]


def locked_mermaid_version() -> str:
    """The version of mermaid that figures/mermaid/package-lock.json installs; known without it."""
    return json.loads(MERMAID_LOCK.read_text())["packages"]["node_modules/mermaid"]["version"]


def chromium_version() -> str | None:
    """This machine's Chromium version ("156.0.8078.114"), read from `chromium --version` without
    starting a browser, or None where there is none."""
    return _version_of(str(CHROMIUM))


@lru_cache(maxsize=None)
def _version_of(chromium: str) -> str | None:
    if not Path(chromium).exists():
        return None
    try:
        out = subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\b(\d+\.\d+\.\d+\.\d+)\b", out)
    return found[1] if found else None


STAMP = re.compile(
    r"<!-- Drawn by figures/diagrams.py \(python -m figures\): edit the mermaid text there\. "
    r"source (?P<source>\w+), mermaid (?P<mermaid>[\w.]+), Chromium (?P<chromium>[\w.]+) -->"
)


def stamp(path: Path) -> dict[str, str] | None:
    """What a diagram file says it was drawn from: source digest, mermaid and Chromium versions."""
    found = STAMP.search(Path(path).read_text(encoding="utf-8")[:600])
    return found.groupdict() if found else None


def tidy(svg: str, name: str, chromium: str) -> str:
    """Mermaid's SVG as a standalone file: XML declaration, stamp, a size in pixels, well-formed."""
    viewbox = re.search(r'viewBox="([-\d. ]+)"', svg)
    if not viewbox:
        raise ValueError(f"{name}: mermaid drew no viewBox")
    _, _, width, height = (float(v) * SCALE for v in viewbox[1].split())
    # Mermaid sizes its picture to the page (width="100%", a max-width style); a file shown in
    # an <img> needs its own size, or browsers fall back to 300 x 150 pixels.
    size = f'width="{round(width)}" height="{round(height)}"'
    svg, found = re.subn(r'^<svg([^>]*?) width="100%"', rf"<svg\1 {size}", svg, count=1)
    if not found:
        raise ValueError(f"{name}: mermaid's <svg> has no width=\"100%\" to replace")
    svg = re.sub(r' style="max-width: [\d.]+px;"', "", svg, count=1)
    svg = re.sub(r"<br\s*>", "<br/>", svg)
    ET.fromstring(svg)  # raises on anything that is not well-formed XML
    note = (f"<!-- Drawn by figures/diagrams.py (python -m figures): edit the mermaid text there. "
            f"source {source_digest(name)}, mermaid {mermaid_version()}, Chromium {chromium} -->")
    assert STAMP.fullmatch(note), note
    return f'<?xml version="1.0" encoding="utf-8" standalone="no"?>\n{note}\n{svg}\n'


def render(folder: Path = FOLDER, names: list[str] | None = None) -> list[Path]:
    """Draw the diagrams (all of them, or those named) into folder; return the paths written."""
    from playwright.sync_api import sync_playwright

    reason = unavailable()
    if reason:
        raise RuntimeError(f"cannot draw the block diagrams: {reason}")
    names = list(DIAGRAMS) if names is None else names
    page_html = _PAGE.format(font=base64.b64encode(FONT.read_bytes()).decode(), family=FONT_FAMILY)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_content(page_html)
            page.add_script_tag(path=str(MERMAID_JS))
            jobs = [[svg_id(name), DIAGRAMS[name].strip()] for name in names]
            svgs = page.evaluate(_RENDER, [MERMAID_CONFIG, jobs])
            chromium = browser.version
        finally:
            browser.close()
    paths = []
    for name, drawn in zip(names, svgs):
        if "error" in drawn:
            raise ValueError(f"mermaid cannot draw {name}: {drawn['error']}")
        path = Path(folder) / name
        path.write_text(tidy(drawn["svg"], name, chromium), encoding="utf-8", newline="\n")
        paths.append(path)
    return paths
