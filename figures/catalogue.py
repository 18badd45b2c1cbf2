"""Every figure of the lesson by file name: matplotlib drawings and mermaid block diagrams."""

from typing import Callable

from matplotlib.figure import Figure

from figures import architecture, diagrams, groupnorm, plots, trans_conv

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
