"""A transposed convolution worked through by hand: every input cell stamps a scaled kernel.

All numbers come from `torch.nn.functional.conv_transpose2d`: each stamp is the transposed
convolution of a one-hot copy of one input cell, and the output is that of the whole input.
"""

import torch as t
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch.nn import functional as F

from figures import style

INPUT = t.tensor([[1.0, 2.0], [3.0, 1.0]])
KERNEL = t.tensor([[2.0, 1.0], [1.0, 3.0]])
STRIDE = 1

# One colour per input cell, repeated on the kernel copy it stamps.
CELL_COLOURS = ["#f6c8a8", "#bcd7ef", "#c9e6bf", "#e3cdec"]
EMPTY = "#f2f3f5"

# Sizes in inches; the figure is shown 560 px wide, 100 px to the inch.
WIDTH, HEIGHT = 5.6, 2.6
BIG, SMALL = 0.42, 0.28  # cell sides: input, kernel and output; stamps
STAMP_GAP = 0.3  # between neighbouring stamps, room for a "+"
CAPTION_GAP = 0.06


def transposed(x: t.Tensor, kernel: t.Tensor = KERNEL) -> t.Tensor:
    """conv_transpose2d of a (height, width) grid with a kernel, one channel in and out."""
    return F.conv_transpose2d(x[None, None], kernel[None, None], stride=STRIDE)[0, 0]


def stamps() -> list[tuple[tuple[int, int], t.Tensor, t.Tensor]]:
    """((row, col), stamp, footprint) for each input cell.

    stamp: the output grid when only that cell is kept; footprint: where its kernel copy lands.
    """
    result = []
    for row in range(INPUT.shape[0]):
        for col in range(INPUT.shape[1]):
            one_hot = t.zeros_like(INPUT)
            one_hot[row, col] = 1.0
            footprint = transposed(one_hot, t.ones_like(KERNEL)) != 0
            result.append(((row, col), transposed(one_hot * INPUT), footprint))
    return result


def _grid(ax, left: float, top: float, values: t.Tensor, colours, name: str, size: float,
          fontsize: float) -> None:
    """Draw values with the top-left corner at (left, top); a colour of None leaves a blank cell."""
    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            colour = colours[r][c]
            x, y = left + c * size, top - (r + 1) * size
            ax.add_patch(Rectangle((x, y), size, size, facecolor=colour or EMPTY,
                                   edgecolor=style.EDGE, linewidth=0.8))
            if colour is not None:
                ax.text(x + size / 2, y + size / 2, f"{values[r, c].item():g}", ha="center",
                        va="center", fontsize=fontsize, gid=f"{name}:{r},{c}")


def _caption(ax, x: float, y: float, text: str) -> None:
    ax.text(x, y + CAPTION_GAP, text, ha="center", va="bottom", fontsize=9.5)


def _symbol(ax, x: float, y: float, text: str) -> None:
    ax.text(x, y, text, ha="center", va="center", fontsize=15, color="#555555")


def draw() -> Figure:
    """Input and kernel on the left, one stamp per input cell in the middle, the sum on the right.

    Each number is drawn as a text with gid "<grid>:<row>,<col>", so tests can read them back.
    """
    out = transposed(INPUT)
    n_in, n_out = INPUT.shape[0], out.shape[0]
    fig = Figure(figsize=(WIDTH, HEIGHT))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.set_axis_off()

    stamp_side = n_out * SMALL
    stamps_width = n_in * stamp_side + (n_in - 1) * STAMP_GAP
    column_gap, equals_gap = 0.4, 0.55
    total = n_in * BIG + column_gap + stamps_width + equals_gap + n_out * BIG
    x = (WIDTH - total) / 2
    top = HEIGHT - 0.37

    # Input over kernel, each input cell in its own colour.
    colours = [[CELL_COLOURS[r * n_in + c] for c in range(n_in)] for r in range(n_in)]
    _caption(ax, x + n_in * BIG / 2, top, "input")
    _grid(ax, x, top, INPUT, colours, "input", BIG, 12)
    kernel_top = top - n_in * BIG - 0.4
    _caption(ax, x + n_in * BIG / 2, kernel_top, f"kernel, stride {STRIDE}")
    _grid(ax, x, kernel_top, KERNEL, [["white"] * n_in] * n_in, "kernel", BIG, 12)
    x += n_in * BIG + column_gap

    # The stamps, laid out like the input cells they come from, with "+" between them.
    _caption(ax, x + stamps_width / 2, top, "input cell \u00d7 kernel, placed at the cell")
    for (row, col), stamp, footprint in stamps():
        colour = CELL_COLOURS[row * n_in + col]
        cells = [[colour if footprint[r, c] else None for c in range(n_out)] for r in range(n_out)]
        _grid(ax, x + col * (stamp_side + STAMP_GAP), top - row * (stamp_side + STAMP_GAP), stamp,
              cells, f"stamp{row}{col}", SMALL, 9.5)
    # A "+" in each gap between the four stamps of the 2x2 input.
    middle_x, middle_y = x + stamp_side + STAMP_GAP / 2, top - stamp_side - STAMP_GAP / 2
    for x_plus, y_plus in [(middle_x, top - stamp_side / 2), (middle_x, middle_y),
                           (middle_x, middle_y - STAMP_GAP / 2 - stamp_side / 2)]:
        _symbol(ax, x_plus, y_plus, "+")
    x += stamps_width + equals_gap

    # Their sum: the transposed convolution of the whole input.
    _symbol(ax, x - equals_gap / 2, middle_y, "=")
    out_top = middle_y + n_out * BIG / 2
    _caption(ax, x + n_out * BIG / 2, out_top, "output = sum")
    _grid(ax, x, out_top, out, [["white"] * n_out] * n_out, "output", BIG, 12)
    return fig
