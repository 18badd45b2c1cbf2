"""Batch, layer, instance and group normalisation as blocks of activations.

Each block is one batch of shape (N, C, H*W) drawn as a cuboid: examples N run left to right,
channels C run into the page and the pixels H*W run upwards. The cells that share one mean and one
standard deviation are shaded blue.
"""

from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import Polygon

from figures import style

N, C, S = 6, 6, 6  # examples, channels, pixels (H*W) in the drawing
GROUPS = 2  # for group norm
CELL = 0.16  # side of a cell on the front face, in inches
DEPTH = (0.55, 0.42)  # one step into the page, as a fraction of a cell, (right, up)

# The three visible faces: how many cells along (u, v), and where the corner (u, v) of a cell
# sits in (example, channel, pixel) coordinates.
FACES = {
    "front": ((N, S), lambda u, v: (u, 0, v)),  # channel 0
    "top": ((N, C), lambda u, v: (u, v, S)),  # above the last pixel
    "right": ((C, S), lambda u, v: (N, u, v)),  # beside the last example
}
SQUARE = ((0, 0), (1, 0), (1, 1), (0, 1))  # corners of a cell, in order round it

# Each face has its own tint so that the block reads as solid.
PLAIN = {"front": "#ffffff", "top": "#eef0f3", "right": "#d9dde3"}
SHADED = {"front": "#5b8fcf", "top": "#8fb4e0", "right": "#3f6fae"}
LINE = "#3a3f47"


@dataclass
class Norm:
    title: str
    shares: str  # what the shaded set is, in words
    examples: range  # the shaded set is examples x channels x all pixels
    channels: range


# The shaded example is the last one, so that its channels show on the right face too.
LAST = range(N - 1, N)
NORMS = [
    Norm("Batch Norm", "one channel, all examples", range(N), range(1)),
    Norm("Layer Norm", "one example, all channels", LAST, range(C)),
    Norm("Instance Norm", "one example, one channel", LAST, range(1)),
    Norm("Group Norm", f"one example, one of {GROUPS} groups", LAST, range(C // GROUPS)),
]


def _point(n: float, c: float, s: float) -> tuple[float, float]:
    """Oblique projection of (example, channel, pixel) to the page, in cells."""
    return n + c * DEPTH[0], s + c * DEPTH[1]


def _cell(ax, origin, corners, colour) -> None:
    x0, y0 = origin
    ax.add_patch(Polygon([(x0 + CELL * x, y0 + CELL * y) for x, y in corners], closed=True,
                         facecolor=colour, edgecolor=LINE, linewidth=0.5))


def _cuboid(ax, origin: tuple[float, float], norm: Norm) -> None:
    for face, ((n_u, n_v), where) in FACES.items():
        for u in range(n_u):
            for v in range(n_v):
                corners = [_point(*where(u + du, v + dv)) for du, dv in SQUARE]
                example, channel, _ = where(u, v)
                # Every pixel of a shaded (example, channel) pair is shaded.
                shaded = min(example, N - 1) in norm.examples and channel in norm.channels
                _cell(ax, origin, corners, (SHADED if shaded else PLAIN)[face])


def _outline_groups(ax, origin) -> None:
    """Heavier lines where one group of channels ends and the next begins."""
    x0, y0 = origin
    for g in range(1, GROUPS):
        c = g * C // GROUPS
        for a, b in [(_point(0, c, S), _point(N, c, S)), (_point(N, c, S), _point(N, c, 0))]:
            ax.plot([x0 + CELL * a[0], x0 + CELL * b[0]], [y0 + CELL * a[1], y0 + CELL * b[1]],
                    color=LINE, linewidth=1.8, solid_capstyle="round")


def _axis_labels(ax, origin) -> None:
    x0, y0 = origin

    def at(n, c, s):
        x, y = _point(n, c, s)
        return x0 + CELL * x, y0 + CELL * y

    ax.text(*at(N / 2, 0, -0.35), "N", ha="center", va="top", fontsize=9)
    ax.text(*at(-0.3, 0, S / 2), "H, W", ha="center", va="bottom", fontsize=9, rotation=90,
            rotation_mode="anchor")
    x, y = at(N + 0.35, C / 2, -0.1)
    ax.text(x, y, "C", ha="left", va="top", fontsize=9)


def draw() -> Figure:
    width, height = 7.2, 2.3
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()

    block_width = CELL * (N + C * DEPTH[0])
    slot = width / len(NORMS)
    for i, norm in enumerate(NORMS):
        centre = i * slot + slot / 2
        origin = (centre - block_width / 2 + 0.05, 0.72)
        _cuboid(ax, origin, norm)
        if norm.title == "Group Norm":
            _outline_groups(ax, origin)
        _axis_labels(ax, origin)
        ax.text(centre, 0.3, norm.title, ha="center", va="bottom", fontsize=11)
        ax.text(centre, 0.26, norm.shares, ha="center", va="top", fontsize=8,
                color="#555555")
    return fig
