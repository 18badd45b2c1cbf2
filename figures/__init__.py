"""Every figure of the lesson, rendered by code: `python -m figures` from the repository root.

`python -m figures --check` renders into a temporary folder and fails if a committed figure is
missing or differs, byte for byte, from what the code draws now.

Two kinds: matplotlib drawings (DRAWINGS), and block diagrams that mermaid draws in Chromium
(DIAGRAMS, see figures/diagrams.py). The diagrams are skipped, with the reason, on a machine
without Chromium or the mermaid library (`diagrams.unavailable()`).
"""

import tempfile
from pathlib import Path
from typing import Callable

from matplotlib.figure import Figure

from figures import architecture, diagrams, groupnorm, plots, style, trans_conv

FOLDER = Path(__file__).resolve().parent

# File name -> function drawing it. The lesson refers to these names.
DRAWINGS: dict[str, Callable[[], Figure]] = {
    "w3d4_unet_architecture.svg": architecture.draw,
    "w3d4_unet_trans_conv.png": trans_conv.draw,
    "w3d4_unet_groupnorm.png": groupnorm.draw,
    **plots.DRAWINGS,
}
# File name -> mermaid text.
DIAGRAMS: dict[str, str] = diagrams.DIAGRAMS
ALL: list[str] = [*DRAWINGS, *DIAGRAMS]


def render_all(folder: Path = FOLDER, with_diagrams: bool = True) -> list[Path]:
    """Draw every figure into folder and return the paths written.

    The diagrams are drawn when with_diagrams is true and this machine can draw them.
    """
    folder = Path(folder)
    paths = []
    with style.house_style():
        for name, drawing in DRAWINGS.items():
            style.save(drawing(), folder / name)
            paths.append(folder / name)
    if with_diagrams and diagrams.unavailable() is None:
        paths += diagrams.render(folder)
    return paths


def check(folder: Path = FOLDER, with_diagrams: bool = True,
          fresh: Path | None = None) -> tuple[list[str], list[str]]:
    """(problems, notes) about the figures in folder, compared with a fresh rendering.

    A problem is a figure that is missing or differs from what the code draws now. Where the
    diagrams cannot be drawn, each one's file is still checked against its mermaid text. A note is
    a diagram that differs only because another version of Chromium drew the committed file.
    fresh: a folder that already holds a fresh rendering (render_all's), to save drawing again.
    """
    folder = Path(folder)
    problems, notes = [], []
    with tempfile.TemporaryDirectory() as scratch:
        if fresh is None:
            drawn = render_all(Path(scratch), with_diagrams)
        else:
            names = ALL if with_diagrams else DRAWINGS
            drawn = [Path(fresh) / name for name in names if (Path(fresh) / name).exists()]
        for path in drawn:
            committed = folder / path.name
            if not committed.exists():
                problems.append(f"{path.name} (missing)")
            elif committed.read_bytes() != path.read_bytes():
                browser = path.name in DIAGRAMS and diagrams.only_the_browser_differs(committed, path)
                if browser:
                    notes.append(f"{path.name} ({browser})")
                else:
                    problems.append(f"{path.name} (stale)")
    if with_diagrams and not any(path.name in DIAGRAMS for path in drawn):  # not drawable here
        for name in DIAGRAMS:
            if not (folder / name).exists():
                problems.append(f"{name} (missing)")
            elif diagrams.drawn_from_other_text(folder / name):
                problems.append(f"{name} (stale: drawn from other mermaid text)")
    return problems, notes


def stale(folder: Path = FOLDER, with_diagrams: bool = True) -> list[str]:
    """Names of figures in folder that are missing or differ from a fresh rendering."""
    return check(folder, with_diagrams)[0]
