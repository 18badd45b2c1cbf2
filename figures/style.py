"""Shared look and file output for every figure.

All settings are written out here instead of read from the user's matplotlibrc, so that the same
tree renders the same bytes on any machine with the same library versions.
"""

import contextlib
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

# Figures are drawn at their display width in inches / 100, so 1 pt of font is about 1.4 px on the
# page whatever the format; PNGs are rasterised at twice that for sharp text on dense screens.
PNG_DPI = 200

GREY = "#b9bec6"
EDGE = "#4a4f57"
TEXT = "#222222"
BLUE = "#4f86c6"
LIGHT_BLUE = "#cfe0f3"

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "text.color": TEXT,
    "axes.labelcolor": TEXT,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "lines.linewidth": 1.8,
    "figure.dpi": 100,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.dpi": PNG_DPI,
    "savefig.bbox": None,
    "savefig.pad_inches": 0.05,
    "path.simplify": True,
    "image.interpolation": "nearest",
    "image.resample": False,
    # Text as outlines: the SVG then looks the same in every browser, with or without the font.
    "svg.fonttype": "path",
    "svg.hashsalt": "w3d4-figures",
    "svg.image_inline": True,
    "svg.id": "w3d4",
}


@contextlib.contextmanager
def house_style():
    """Matplotlib's built-in defaults plus RC, whatever the local configuration says."""
    with mpl.rc_context():
        mpl.rcdefaults()
        mpl.rcParams.update(RC)
        yield


def save(fig: Figure, path: Path) -> None:
    """Write fig without the date or software version, which would change the bytes."""
    path = Path(path)
    if path.suffix == ".svg":
        fig.savefig(path, format="svg", metadata={"Date": None, "Creator": None})
    elif path.suffix == ".png":
        fig.savefig(path, format="png", metadata={"Software": None})
    else:
        raise ValueError(f"unsupported figure format: {path.name}")
