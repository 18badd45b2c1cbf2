# Generated from training/w3d4_my_unet.py by `python -m grader build`: edit that file, not this one.
"""Your own Unet from part 2, for part 3 to train: read from your part 2 notebook, or the course's.

    Unet, source = load_my_unet("../w3d4_part2/w3d4_part2_unet.ipynb")

runs the code cells of your part 2 notebook in a fresh module (not the graded test cells, not the
cells tagged skip-when-grading, not IPython's %magic or !shell lines; demo cells stay idle because
their `if MAIN:` is false there), takes its `Unet`, and checks that `Unet(**UNET_CONFIG)` maps a
batch of 8x8 digits to the same shape. When the notebook is missing or its Unet is unfinished or
broken, it says why in one line and returns the course's reference Unet (`builtin_unet.py`, the
same architecture from torch's built-ins) instead, so that the lesson always has a network to train.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Callable, Union

import torch as t

DEFAULT_NOTEBOOK = Path("..") / "w3d4_part2" / "w3d4_part2_unet.ipynb"
SKIP_TAG = "skip-when-grading"
MODULE_NAME = "w3d4_part2_student"  # not "__main__", so the notebook's MAIN is False


class UnetNotUsable(Exception):
    """Why the notebook's Unet cannot be used, in one line."""


def _code_cells(notebook: dict) -> list[str]:
    """The sources of the cells that define things: code cells that are neither graded tests nor skipped."""
    sources = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        metadata = cell.get("metadata", {})
        nbgrader = metadata.get("nbgrader", {})
        if SKIP_TAG in metadata.get("tags", []) or str(nbgrader.get("grade_id", "")).startswith("test_"):
            continue
        if nbgrader.get("grade") and not nbgrader.get("solution"):
            continue  # a graded test cell whatever its name
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        # IPython syntax (%matplotlib, !pip) is not Python: leave those lines out.
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        sources.append("\n".join(lines))
    return sources


def unet_from_notebook(path: Union[str, Path]) -> Callable[..., t.nn.Module]:
    """The `Unet` class defined by the notebook at `path`, checked on a digits batch; UnetNotUsable if not."""
    from w3d4_digits import UNET_CONFIG

    path = Path(path)
    if not path.is_file():
        raise UnetNotUsable(f"no notebook at {path}")
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UnetNotUsable(f"{path.name} is not a readable notebook ({error})") from None
    module = types.ModuleType(MODULE_NAME)
    sys.modules[MODULE_NAME] = module  # as for an import: dataclasses and pickle look classes up there
    for number, source in enumerate(_code_cells(notebook), start=1):
        try:
            exec(compile(source, f"<{path.name}, code cell {number}>", "exec"), module.__dict__)
        except NotImplementedError:
            continue  # an unfinished bonus: the Unet check below tells whether it matters
        except BaseException as error:  # a cell that fails in a fresh kernel fails here too
            raise UnetNotUsable(f"code cell {number} of {path.name} raised {type(error).__name__}: {error}") from None
    unet_class = getattr(module, "Unet", None)
    if unet_class is None:
        raise UnetNotUsable(f"{path.name} defines no Unet")
    try:
        generator = t.Generator().manual_seed(0)
        model = unet_class(**UNET_CONFIG)
        images = t.randn((4, *UNET_CONFIG["image_shape"]), generator=generator)
        steps = t.randint(1, UNET_CONFIG["max_steps"] + 1, (4,), generator=generator)
        with t.no_grad():
            out = model(images, steps)
    except NotImplementedError:
        raise UnetNotUsable(f"the Unet of {path.name} is not finished (a part raises NotImplementedError)") from None
    except Exception as error:
        raise UnetNotUsable(f"the Unet of {path.name} raised {type(error).__name__}: {error}") from None
    if not isinstance(out, t.Tensor) or out.shape != images.shape:
        got = tuple(out.shape) if isinstance(out, t.Tensor) else type(out).__name__
        raise UnetNotUsable(f"the Unet of {path.name} maps {tuple(images.shape)} to {got}, not the same shape")
    return unet_class


def load_my_unet(path: Union[str, Path] = DEFAULT_NOTEBOOK) -> tuple[Callable[..., t.nn.Module], str]:
    """(Unet class, where it came from): yours from the notebook at `path`, else the course's with the reason printed."""
    try:
        unet_class = unet_from_notebook(path)
    except UnetNotUsable as reason:
        from builtin_unet import BuiltinUnet

        print(f"Using the course's Unet instead of yours: {reason}.")
        return BuiltinUnet, "the course's reference Unet (builtin_unet.py)"
    print(f"Using your Unet from {path}.")
    return unet_class, f"your Unet from {Path(path).name}"
