"""The U-Net drawn as its tensors, with the sizes read off a real `Unet`.

Each grey rectangle is one tensor of the forward pass: its height is proportional to the spatial
size and its width to the number of channels. Rows hold one resolution each, the way down runs along
the left and the way up along the right, and arrows show the operation that made each tensor.
"""

from dataclasses import dataclass
from typing import Optional

import torch as t
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from torch import nn

from figures import lesson, style

# The overview diagram of the lesson: three down blocks, the last one without downsampling.
IMAGE_SHAPE = (3, 32, 32)
UNET_KWARGS = {"channels": 16, "dim_mults": (1, 2, 4)}

ARROWS = {  # kind -> (colour, legend text)
    "conv": ("#3b6fb6", "conv: 7x7 conv, or residual block"),
    "down": ("#d1495b", "downsample: 4x4 conv, stride 2"),
    "up": ("#2a9d6f", "upsample: 4x4 transposed conv, stride 2"),
    "skip": ("#8a8f98", "skip: copy and concatenate"),
    "1x1": ("#8e5cb8", "1x1 conv"),
}

# Lengths in pixels of the page, where the figure is shown 720 px wide.
PAGE_WIDTH = 720
PX_PER_PIXEL = 4.0  # box height per unit of spatial size
PX_PER_CHANNEL = 0.4  # box width per channel
MARGIN = 14
ROW_GAP = 34  # between the label band of one row and the top of the next
LABEL_BAND = 26
SKIP_RISE = 13  # how far above the boxes a skip arrow runs
TITLE_BAND = 20  # above the first row, for the names of input and output
LABEL_SIZE = 8.5
HEIGHT_COLOUR = "#6b7079"


@dataclass
class Tensor:
    """One tensor of the forward pass, as drawn.

    kind: the operation that produced it ("input", "conv", "down", "up", "1x1"), or "concat" for
        the concatenation of the previous tensor with an earlier one, `skip_of`.
    """

    kind: str
    channels: int
    height: int
    skip_of: Optional[int] = None


def build_unet() -> nn.Module:
    t.manual_seed(0)
    return lesson.solution().Unet(IMAGE_SHAPE, **UNET_KWARGS)


def trace(unet: nn.Module) -> list[Tensor]:
    """Run one image through `unet` and list the tensors it makes, in order.

    Hooks sit on module types, not attribute names: convolutions, residual blocks (drawn as one
    step, so the convolutions inside them are ignored), attention blocks (which keep the shape and
    are not drawn) and up blocks (whose inputs reveal the concatenation with the skip).
    """
    sol = lesson.solution()
    transposed = (nn.ConvTranspose2d, sol.ConvTranspose2d)
    opaque = (sol.ResidualBlock, sol.AttentionBlock)
    tensors: list[Tensor] = []
    seen: list[tuple[t.Tensor, int]] = []  # every output so far, to recognise a skip by identity
    inside = [0]  # depth of opaque blocks we are in

    def add(kind: str, out: t.Tensor, skip_of: Optional[int] = None) -> None:
        tensors.append(Tensor(kind, out.shape[1], out.shape[2], skip_of))
        seen.append((out, len(tensors) - 1))

    def enter(module, args):
        inside[0] += isinstance(module, opaque)

    def leave(module, args, out):
        if isinstance(module, opaque):
            inside[0] -= 1
        if inside[0]:
            return
        if isinstance(module, sol.AttentionBlock):
            seen.append((out, len(tensors) - 1))  # same tensor as far as the drawing goes
        elif isinstance(module, sol.ResidualBlock):
            add("conv", out)
        elif isinstance(module, transposed):
            add("up", out)
        elif isinstance(module, nn.Conv2d):
            if module.stride[0] > 1:
                add("down", out)
            else:
                add("1x1" if module.kernel_size[0] == 1 else "conv", out)

    def concat(module, args, kwargs):
        x, skip = args[0], kwargs["skip"] if "skip" in kwargs else args[2]
        (source,) = [i for tensor, i in seen if tensor is skip]
        tensors.append(Tensor("concat", x.shape[1] + skip.shape[1], x.shape[2], skip_of=source))

    handles = [unet.register_forward_pre_hook(lambda m, args: add("input", args[0]))]
    for module in unet.modules():
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
        if isinstance(module, sol.UpBlock):
            handles.append(module.register_forward_pre_hook(concat, with_kwargs=True))
    try:
        with t.no_grad():
            unet(t.randn(1, *IMAGE_SHAPE), t.tensor([10]))
    finally:
        for handle in handles:
            handle.remove()
    return tensors


@dataclass
class Box:
    """A tensor's rectangle, in page pixels with y growing upwards."""

    index: int  # position in the trace
    x: float  # left edge
    y: float  # vertical centre
    width: float
    height: float
    label: Optional[tuple[int, int]]  # (channels, height) written underneath, if any
    copy: bool = False  # the copied half of a concatenation

    @property
    def top(self) -> float:
        return self.y + self.height / 2


Arrow = tuple[str, list[tuple[float, float]]]  # kind and the corners of its path


def layout(tensors: list[Tensor]) -> tuple[list[Box], list[Arrow]]:
    """Place the boxes and route the arrows.

    Boxes advance left to right in forward order, one row per resolution, and the gaps share out
    whatever width the boxes leave. A concatenation puts the copy right after the tensor it joins
    (the torch.cat([x, skip]) order); its skip arrow runs just above that row, so it never crosses
    another arrow.
    """
    row_top, top = {}, 0.0
    for h in sorted({tensor.height for tensor in tensors}, reverse=True):
        row_top[h] = top
        top -= h * PX_PER_PIXEL + LABEL_BAND + ROW_GAP
    # Each tensor widens the page by its channels, a concatenation only by its copied half.
    widths = [tensor.channels - (before.channels if tensor.kind == "concat" else 0)
              for before, tensor in zip(tensors[:1] + tensors, tensors)]
    n_gaps = sum(tensor.kind != "concat" for tensor in tensors[1:])
    gap = (PAGE_WIDTH - 2 * MARGIN - sum(widths) * PX_PER_CHANNEL) / n_gaps

    boxes: list[Box] = []
    arrows: list[Arrow] = []
    x = MARGIN
    for index, (tensor, width) in enumerate(zip(tensors, widths)):
        width, height = width * PX_PER_CHANNEL, tensor.height * PX_PER_PIXEL
        y = row_top[tensor.height] - height / 2
        label = (tensor.channels, tensor.height)
        if tensor.kind == "concat":
            boxes[-1].label = None  # the pair is labelled once, as the concatenated tensor
            copy = Box(index, x, y, width, height, label, copy=True)
            source = next(box for box in boxes if box.index == tensor.skip_of)
            start_x, end_x = source.x + source.width / 2, copy.x + width / 2
            rail = copy.top + SKIP_RISE
            arrows.append(("skip", [(start_x, source.top), (start_x, rail), (end_x, rail),
                                    (end_x, copy.top)]))
        else:
            if boxes:
                previous = boxes[-1]
                start, end = (previous.x + previous.width, previous.y), (x + gap, y)
                if start[1] == end[1]:
                    arrows.append((tensor.kind, [start, end]))
                else:  # a change of resolution: an elbow through the middle of the gap
                    middle = start[0] + gap / 2
                    arrows.append((tensor.kind, [start, (middle, start[1]), (middle, end[1]), end]))
                x += gap
            copy = None
        boxes.append(copy or Box(index, x, y, width, height, label))
        x += width
    return boxes, arrows


def draw(tensors: Optional[list[Tensor]] = None) -> Figure:
    """The figure; each rectangle has gid "tensor-<i>" or "copy-<i>", i its place in the trace,
    and the labels under it "channels-<i>" and "height-<i>"."""
    tensors = trace(build_unet()) if tensors is None else tensors
    boxes, arrows = layout(tensors)
    top = max(box.top for box in boxes) + TITLE_BAND
    bottom = min(box.y - box.height / 2 for box in boxes) - LABEL_BAND - 2
    fig = Figure(figsize=(PAGE_WIDTH / 100, (top - bottom) / 100))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, PAGE_WIDTH)
    ax.set_ylim(bottom, top)
    ax.set_axis_off()

    for kind, points in arrows:
        _arrow(ax, kind, points)
    for i, box in enumerate(boxes):
        ax.add_patch(Rectangle(
            (box.x, box.y - box.height / 2), box.width, box.height,
            facecolor="white" if box.copy else style.GREY, edgecolor=style.EDGE, linewidth=0.8,
            gid=f"{'copy' if box.copy else 'tensor'}-{box.index}", zorder=3))
        if box.label:
            # A concatenation is labelled under the middle of the pair.
            left = boxes[i - 1].x if box.copy else box.x
            centre, below = (left + box.x + box.width) / 2, box.y - box.height / 2
            channels, height = box.label
            ax.text(centre, below - 2, str(channels), ha="center", va="top", fontsize=LABEL_SIZE,
                    gid=f"channels-{box.index}")
            ax.text(centre, below - 14, str(height), ha="center", va="top",
                    fontsize=LABEL_SIZE - 0.5, color=HEIGHT_COLOUR, gid=f"height-{box.index}")
    # Name the two ends, as the input and output of the model.
    first, last = boxes[0], boxes[-1]
    ax.text(first.x, first.top + 4, "noisy image", ha="left", va="bottom", fontsize=8.5)
    ax.text(last.x + last.width, last.top + 4, "predicted noise", ha="right", va="bottom",
            fontsize=8.5)
    _legend(ax, boxes, first.top)
    return fig


def _arrow(ax, kind: str, points: list[tuple[float, float]]) -> None:
    colour = ARROWS[kind][0]
    for a, b in zip(points[:-2], points[1:-1]):
        ax.plot([a[0], b[0]], [a[1], b[1]], color=colour, linewidth=1.6, solid_capstyle="butt")
    ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>", mutation_scale=9,
                                 color=colour, linewidth=1.6, shrinkA=0, shrinkB=0.5, zorder=2))


def _legend(ax, boxes: list[Box], top: float) -> None:
    """Sample arrows with their meaning, in the empty space between the arms of the U."""
    first_row = [box for box in boxes if box.y == boxes[0].y]
    left_arm_end = max(box.x + box.width for box in first_row if box.x < PAGE_WIDTH / 2)
    x = left_arm_end + 60
    y = top - 12
    for kind, (_, text) in ARROWS.items():
        _arrow(ax, kind, [(x, y), (x + 26, y)])
        ax.text(x + 33, y, text, va="center", fontsize=8.5)
        y -= 17
    config = ", ".join(f"{k}={v}" for k, v in UNET_KWARGS.items())
    ax.text(x, y - 4,
            "Under each tensor: channels and, in grey, height (= width).\n"
            "Not drawn: the attention blocks, which keep the shape,\n"
            "and the step embedding that every block receives.\n"
            f"Sizes from Unet({IMAGE_SHAPE}, {config}).",
            va="top", fontsize=8, linespacing=1.4, color="#555555")
