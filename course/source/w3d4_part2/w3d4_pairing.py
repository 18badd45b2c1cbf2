# Generated from training/w3d4_pairing.py by `python -m grader build`: edit that file, not this one.
"""Pair a checkpoint's weights with a Unet's layers, whatever the Unet calls them or the order in
which it creates them: by the order in which its forward pass first uses them.

Shipped beside the notebook with w3d4_digits.py, which loads the digits checkpoint through it.

    pairs = match_parameters(model, checkpoint)   # [(your parameter, the checkpoint's tensor)]
"""

from __future__ import annotations

import itertools
import math
from typing import Iterable, Iterator, Optional, Sequence

import torch as t
from einops import rearrange
from torch import nn
from torch.overrides import TorchFunctionMode


class CheckpointError(Exception):
    """The checkpoint cannot be loaded into this model; the message says why."""


class ArchitectureMismatch(CheckpointError):
    """The model's parameters do not line up with the checkpoint's."""

    position = 0  # how many of the model's layers found a partner before the misfit


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    """A shape without trailing 1s: nn.Linear(c, c) and a 1x1 nn.Conv2d(c, c, 1) hold the same weights."""
    shape = tuple(shape)
    while len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


# A layer is a module that holds trainable parameters itself (a Linear, a Conv2d, a GroupNorm, ...):
# (its name, its parameters: weight, then bias). Frozen parameters and buffers (an embedding's
# frequencies) are not part of it: they are not trained, your code computes them. A layer's shape is
# that of its tensors without trailing 1s, so that nn.Linear(c, d) and a 1x1 nn.Conv2d(c, d, 1) are
# layers of the same shape: ((d, c), (d,)).
Layer = tuple[str, list[t.Tensor]]


def _shape(layer: Layer, exact: bool = False) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(tensor.shape) if exact else _squeezed(tensor.shape) for tensor in layer[1])


def _describe(layer: Layer) -> str:
    """'downs.0.res1.conv1 (16, 16, 3, 3) + (16,)'"""
    return f"{layer[0]} " + " + ".join(str(tuple(tensor.shape)) for tensor in layer[1])


def _tensors_in(value) -> Iterator[t.Tensor]:
    """The tensors in a value: a tensor, or lists, tuples and dicts of them."""
    if isinstance(value, t.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)


class _FirstUse(TorchFunctionMode):
    """Numbers the torch calls that return tensors, and notes for each of `params` the first call
    that consumes it or an alias of it (`weight.T`, `weight.view(...)`). A call that only makes such
    an alias does not count, nor does reading `.shape` or `.device` (no tensor comes back)."""

    def __init__(self, params: Iterable[t.Tensor]):
        super().__init__()
        self.unused = {id(param) for param in params}
        self.first_call: dict[int, int] = {}  # id of a parameter -> number of the call
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        outputs = list(_tensors_in(result))
        if outputs:
            self.calls += 1
            for tensor in _tensors_in((args, kwargs)):
                param = id(tensor if tensor._base is None else tensor._base)  # weight.T leads to weight
                if param in self.unused and not any(out is tensor or id(out._base) == param for out in outputs):
                    self.unused.remove(param)
                    self.first_call[param] = self.calls
        return result


def layers_in_order_of_use(model: nn.Module, *inputs: t.Tensor) -> list[Layer]:
    """The model's layers in the order one forward pass on `inputs` (for a Unet: images (batch,
    channels, height, width) and steps (batch,)) first uses one of their parameters, and each
    layer's parameters in the order of their first use. Ties (a weight and a bias used by one call)
    keep the order of creation; whatever forward never uses comes last."""
    layers = [(name, [p for p in module.parameters(recurse=False) if p.requires_grad])
              for name, module in model.named_modules()]
    layers = [(name, params) for name, params in layers if params]
    with t.no_grad(), _FirstUse(p for _, params in layers for p in params) as first_use:
        model(*inputs)
    first = lambda param: first_use.first_call.get(id(param), math.inf)
    layers = [(name, sorted(params, key=first)) for name, params in layers]  # sorted() is stable
    return sorted(layers, key=lambda layer: first(layer[1][0]))


# The checkpoint stores the solution's parameters in the order its constructors create them
# ("param.0007.downs.0.res1.conv1.weight"). Numbering its layers in that order, this is the order in
# which the solution's forward pass first uses them: the same, except that each residual block uses
# its step projection before its second convolution. (The course's tests recompute it from the
# solution.)
CHECKPOINT_LAYERS_IN_ORDER_OF_USE = (
    0, 1, 2, 3, 4, 7, 5, 6, 8, 9, 12, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 23, 21, 22, 24,
    25, 26, 29, 27, 28, 30, 31, 32, 33, 34, 35, 36, 39, 37, 38, 40, 41, 42, 43, 44, 45, 46, 49,
    47, 48, 50, 51, 54, 52, 53, 55, 56, 57, 60, 58, 59, 61, 62, 63, 64, 65, 66, 67, 68, 71, 69,
    70, 72,
)

ATTENTION_HEADS = 4
PROJECTIONS = ("W_Q", "W_K", "W_V", "W_O")  # the checkpoint's attention layers, named as in the solution
# Ways a correct Unet may hold the checkpoint's layers, beside other names and another order of
# creation, as (order, fused, skip_first): its SelfAttention uses queries, keys and values in any
# `order`, as three layers (fused None) or as one layer with 3C outputs laid out as the einops pattern
# `fused` says (all queries, then keys, then values; or head by head), and W_O last; its UpBlock
# concatenates the input then the skip, or the skip first (the autograder accepts both).
READINGS = [(order, fused, skip_first) for skip_first in (False, True)
            for fused in (None, "(three n e)", "(n three e)") for order in itertools.permutations(range(3))]


def checkpoint_layers(params: list[tuple[str, t.Tensor]]) -> list[Layer]:
    """The checkpoint's (name, tensor)s, in the order the solution creates them, as layers in the
    order the solution's forward pass first uses them."""
    layers: dict[str, list[t.Tensor]] = {}
    for name, tensor in params:
        layers.setdefault(name.rpartition(".")[0], []).append(tensor)
    created = list(layers.items())
    return [created[index] for index in CHECKPOINT_LAYERS_IN_ORDER_OF_USE]


def read_layers(layers: list[Layer], order: tuple[int, ...], fused: Optional[str], skip_first: bool) -> list[Layer]:
    """The checkpoint's layers as a Unet of that reading (see READINGS) holds them: each attention's
    W_Q, W_K, W_V (weight (C, C), bias (C,)) taken in `order`, and fused into one layer (weight
    (3C, C), bias (3C,)) when `fused` gives the layout; with `skip_first`, the two halves of the
    input channels swapped in the layers that read an up block's concatenation."""
    read = []
    for index, (name, tensors) in enumerate(layers):
        attention, _, projection = name.rpartition(".")
        if projection == "W_Q":  # W_Q, W_K, W_V and W_O follow each other in the order of use
            qkv = [layers[index + i] for i in order]
            if fused:
                pattern = f"three (n e) ... -> {fused} ..."
                stacks = zip(*(tensors for _, tensors in qkv))  # (3 weights), (3 biases)
                qkv = [(f"{attention}.W_QKV", [rearrange(t.stack(s), pattern, n=ATTENTION_HEADS) for s in stacks])]
            read += [*qkv, layers[index + 3]]
        elif projection in PROJECTIONS:
            continue
        elif skip_first and name.startswith("ups.") and name.endswith((".res1.conv1", ".res1.shortcut")):
            weight, bias = tensors  # weight (out, 2C, k, k): C input channels, then C skip channels
            read.append((name, [weight.roll(weight.shape[1] // 2, dims=1), bias]))
        else:
            read.append((name, tensors))
    return read


def _mismatch(mine: list[Layer], theirs: list[Layer], position: int, yours: bool) -> ArchitectureMismatch:
    """The error for the first layer left without a partner: mine[position] (`yours`), or else
    theirs[position], when all of yours found one."""
    layer, others = (mine[position], theirs) if yours else (theirs[position], mine)
    same = sum(_shape(other) == _shape(layer) for other in others)
    shapes = f"{same or 'no'} layer{'' if same == 1 else 's'} of that shape"
    if yours:
        what = f"layer {position + 1} of your forward pass, {_describe(layer)}, has no partner: the checkpoint has {shapes}"
    else:
        what = (f"the checkpoint's layer {position + 1} in the order of use, {_describe(layer)}, has no partner: "
                f"your Unet uses {shapes}")
    rows = [f"  {'':2} {'#':>3}  {'yours':<48} checkpoint"]
    for i in range(max(0, position - 3), position + 4):
        cells = [_describe(layers[i]) if i < len(layers) else "-" for layers in (mine, theirs)]
        rows.append(f"  {'>>' if i == position else '':2} {i + 1:3d}  {cells[0]:<48} {cells[1]}")
    error = ArchitectureMismatch(
        f"Your Unet does not fit the checkpoint: {what}. The layers in the order of use:\n" + "\n".join(rows)
        + "\nThe loader pairs your n-th layer of each shape with the checkpoint's n-th layer of that shape, "
        "both in the order the forward pass first uses them, whatever their names and the order you create "
        "them in. Build the Unet with UNET_CONFIG and follow the diagrams: the trained network's layers all "
        "have biases (the default of nn.Linear and nn.Conv2d), and its attention may have separate or fused "
        "projections. Or train your own: add a cell with TRAIN_NOW = True."
    )
    error.position = position if yours else len(mine)
    return error


def match_layers(mine: list[Layer], theirs: list[Layer]) -> list[tuple[t.Tensor, t.Tensor]]:
    """Pair your n-th layer of each shape with the checkpoint's n-th layer of that shape, both lists
    in the order of first use. Returns (your parameter, the checkpoint's tensor reshaped to it: a
    (d, c) weight becomes (d, c, 1, 1) for a 1x1 convolution) for every tensor; raises
    ArchitectureMismatch at the first layer of either list left without a partner."""
    partners: dict[tuple, list[Layer]] = {}
    for layer in theirs:
        partners.setdefault(_shape(layer), []).append(layer)
    pairs, paired = [], set()
    for position, layer in enumerate(mine):
        candidates = partners.get(_shape(layer))
        if not candidates:
            raise _mismatch(mine, theirs, position, yours=True)
        # the first of that shape; a 1x1 convolution takes the first 1x1 convolution, if any, before
        # a linear layer of the same shape (a shortcut that you compute before the step projection)
        same = [i for i, candidate in enumerate(candidates) if _shape(candidate, exact=True) == _shape(layer, exact=True)]
        partner = candidates.pop(same[0] if same else 0)
        paired.add(id(partner))
        pairs += [(param, value.reshape(param.shape)) for param, value in zip(layer[1], partner[1])]
    left = [position for position, layer in enumerate(theirs) if id(layer) not in paired]
    if left:
        raise _mismatch(mine, theirs, left[0], yours=False)
    return pairs


def match_parameters(model: nn.Module, checkpoint: list[tuple[str, t.Tensor]]) -> list[tuple[nn.Parameter, t.Tensor]]:
    """Pair the model's trainable parameters with the checkpoint's one by one, in the order both were
    created (the old way, kept for a Unet that creates its layers in the solution's order).

    checkpoint: (name, tensor). Shapes must agree up to trailing 1s, else ArchitectureMismatch.
    """
    mine = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    for index, ((name, param), (their_name, value)) in enumerate(zip(mine, checkpoint)):
        if _squeezed(param.shape) != _squeezed(value.shape):
            raise ArchitectureMismatch(f"parameter {index}, {name} {tuple(param.shape)}, does not fit "
                                       f"{their_name} {tuple(value.shape)}")
    if len(mine) != len(checkpoint):
        raise ArchitectureMismatch(f"{len(mine)} parameters, the checkpoint has {len(checkpoint)}")
    return [(param, value.reshape(param.shape)) for (_, param), (_, value) in zip(mine, checkpoint)]
