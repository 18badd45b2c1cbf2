# Generated from training/w3d4_pairing.py by `python -m grader build`: edit that file, not this one.
"""Pair a checkpoint's weights with a Unet's layers, whatever the Unet calls them or the order in
which it creates them: by the order in which its forward pass first uses them.

Shipped beside the notebook with w3d4_digits.py, which loads the digits checkpoint through it.

    mine = layers_in_order_of_use(model, images, steps)
    fits = pairings_to_try(mine, checkpoint_layers(checkpoint), model, checkpoint)  # (reading, pairs)s
    pairs, biases, difference = best_pairing(fits, load, tolerance)  # load(pairs) -> difference in output
    # pairs: [(your parameter, the checkpoint's value for it)]

An attention whose projections lack biases takes the trained attention's weights too: a key bias
never matters, a value bias is folded into the output projection's bias, and a query or output bias
that has no place to go is left out (`missing_biases_note` says so, `EXPECTED_DIFFERENCE` how much).
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Iterable, Iterator, NamedTuple, Optional, Sequence

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


class Reading(NamedTuple):
    """One way a correct Unet may hold the checkpoint's layers, beside other names and another order
    of creation. Its SelfAttention uses queries, keys and values in any `order`, as three layers
    (`fused` None) or as one layer with 3C outputs laid out as the einops pattern `fused` says (all
    queries, then keys, then values; or head by head), and W_O last; its projections have the
    `biases` of "QKVO" (a fused layer has all three of Q, K, V or none); its UpBlock concatenates the
    input then the skip, or the skip first (`skip_first`; the autograder accepts both)."""

    order: tuple[int, ...]
    fused: Optional[str]
    skip_first: bool
    biases: str = "QKVO"

    def bare_layers(self) -> int:
        """How many of one attention's layers have a weight and no bias."""
        return sum(not set(letters) <= set(self.biases) for letters in [*(["QKV"] if self.fused else "QKV"), "O"])


_FUSED_BIASES = ("QKVO", "O", "QKV", "")  # one fused layer holds the biases of Q, K and V, or none
# Every bias set with all biases first, so that a Unet that has them all never gets a reading without.
_BIAS_SETS = ["".join(p for p, keep in zip("QKVO", keeps) if keep) for keeps in itertools.product((True, False), repeat=4)]
READINGS = [Reading(order, fused, skip_first, biases) for biases in _BIAS_SETS for skip_first in (False, True)
            for fused in (None, "(three n e)", "(n three e)") if fused is None or biases in _FUSED_BIASES
            for order in itertools.permutations(range(3))]

# How far the trained network's output (the checkpoint's fingerprint) moves when its attention loses
# these biases (letters of `lost_biases`), measured with the lesson's solution on the CPU in float32
# (tests/test_checkpoint.py checks these numbers). Any Unet that follows the diagrams and lacks the
# same biases differs from the fingerprint by as much.
EXPECTED_DIFFERENCE = {"": 0.0, "Q": 0.07948, "O": 0.28296, "VO": 0.31933, "QO": 0.28432, "QVO": 0.31579}


def lost_biases(biases: str) -> str:
    """The trained attention's biases that projections with only `biases` cannot hold, as letters
    of "QVO". A key bias is never lost: it adds q . b_K to all of a query's scores, which the softmax
    ignores. A value bias b_V adds b_V to every pixel that attention mixes (each pixel's attention
    weights sum to 1), so W_O b_V to the output: folded into the output's bias when there is one."""
    lost = "" if "Q" in biases else "Q"
    if "O" not in biases:
        lost += "O" if "V" in biases else "VO"
    return lost


def expected_difference(biases: str) -> float:
    """How far the lesson's Unet is from the trained output without the biases that projections with
    only `biases` of "QKVO" cannot hold: 0 when they hold them all."""
    return EXPECTED_DIFFERENCE[lost_biases(biases)]


def _words(letters: str) -> str:
    """'QVO' -> 'query, value and output'"""
    names = [{"Q": "query", "K": "key", "V": "value", "O": "output"}[letter] for letter in letters]
    return ", ".join(names[:-1]) + " and " * (len(names) > 1) + names[-1]


def missing_biases_note(biases: str) -> str:
    """One message for a Unet whose attention projections have only `biases` of "QKVO" ('' if all):
    sentences joined by '. ', without the last full stop."""
    missing, lost = "".join(p for p in "QKVO" if p not in biases), lost_biases(biases)
    if not missing:
        return ""
    sentences = [f"your attention's {_words(missing)} projection{'s have' if len(missing) > 1 else ' has'} no bias, "
                 "unlike the trained network's"]
    if "K" in missing:
        sentences.append("A missing key bias changes nothing: it shifts all of a query's scores equally")
    if "V" in missing and "O" in biases:
        sentences.append("The value bias was folded into your output projection's bias (b_O + W_O b_V, exact)")
    if lost:
        sentences.append(f"The trained {_words(lost)} bias{'es have' if len(lost) > 1 else ' has'} no place in your "
                         f"network and {'were' if len(lost) > 1 else 'was'} left out, so your network only approximates "
                         "the trained one; to get the real thing, train your own with TRAIN_NOW = True")
    return ". ".join(sentences)


def checkpoint_layers(params: list[tuple[str, t.Tensor]]) -> list[Layer]:
    """The checkpoint's (name, tensor)s, in the order the solution creates them, as layers in the
    order the solution's forward pass first uses them."""
    layers: dict[str, list[t.Tensor]] = {}
    for name, tensor in params:
        layers.setdefault(name.rpartition(".")[0], []).append(tensor)
    created = list(layers.items())
    return [created[index] for index in CHECKPOINT_LAYERS_IN_ORDER_OF_USE]


def _attention(projections: list[Layer], biases: str) -> list[Layer]:
    """An attention's W_Q, W_K, W_V, W_O (each weight (C, C), bias (C,)) as projections with only
    `biases` hold them: a missing value bias folded into the output's bias b_O + W_O b_V (computed in
    float32) when that one is kept (see `lost_biases`), every other missing bias left out."""
    (name_o, (w_o, b_o)), b_v = projections[3], projections[2][1][1]
    if "V" not in biases and "O" in biases:
        b_o = b_o.float() + w_o.float() @ b_v.float()
    held = [(name, tensors if letter in biases else tensors[:1]) for letter, (name, tensors) in zip("QKV", projections)]
    return held + [(name_o, [w_o, b_o] if "O" in biases else [w_o])]


def read_layers(layers: list[Layer], order: tuple[int, ...], fused: Optional[str], skip_first: bool,
                biases: str = "QKVO") -> list[Layer]:
    """The checkpoint's layers as a Unet of that reading (see Reading) holds them: each attention's
    W_Q, W_K, W_V (weight (C, C), bias (C,)) with only `biases`, taken in `order`, and fused into one
    layer (weight (3C, C), bias (3C,) when it has them) when `fused` gives the layout; with
    `skip_first`, the two halves of the input channels swapped in the layers that read an up block's
    concatenation."""
    read = []
    for index, (name, tensors) in enumerate(layers):
        attention, _, projection = name.rpartition(".")
        if projection == "W_Q":  # W_Q, W_K, W_V and W_O follow each other in the order of use
            held = _attention(layers[index:index + 4], biases)
            qkv = [held[i] for i in order]
            if fused:
                pattern = f"three (n e) ... -> {fused} ..."
                stacks = zip(*(tensors for _, tensors in qkv))  # (3 weights), (3 biases) if any
                qkv = [(f"{attention}.W_QKV", [rearrange(t.stack(s), pattern, n=ATTENTION_HEADS) for s in stacks])]
            read += [*qkv, held[3]]
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
        "them in. Build the Unet with UNET_CONFIG and follow the diagrams: every layer but the attention's "
        "projections needs a bias (the default of nn.Linear and nn.Conv2d), and the attention may have separate "
        "or fused projections. Or train your own: add a cell with TRAIN_NOW = True."
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


Pairs = list[tuple[t.Tensor, t.Tensor]]  # (your parameter, the checkpoint's value for it)


def pairings_to_try(mine: list[Layer], theirs: list[Layer], model: nn.Module,
                    checkpoint: list[tuple[str, t.Tensor]]) -> Iterator[tuple[Optional[Reading], Pairs]]:
    """Every way the checkpoint fits the model, as (reading, pairs), worked out one at a time: the
    READINGS that `match_layers` accepts, in their order, then the old way (`match_parameters`,
    reading None). `mine`: the model's layers in the order of use; `theirs`: `checkpoint_layers(
    checkpoint)`. When none fits, raises the ArchitectureMismatch of the reading that got furthest
    (the first such, so one with all biases)."""
    bare = sum(len(tensors) == 1 for _, tensors in mine)  # your layers with a weight and no bias
    attentions = sum(name.endswith(".W_Q") for name, _ in theirs)
    refusals, fitted = [], False
    for reading in READINGS:
        # Every other layer of the checkpoint has a bias, so a reading without some attention biases
        # pairs only with as many bare layers. (The readings with all biases always run: their
        # refusal is the one to show a Unet that fits none.)
        if reading.biases != "QKVO" and reading.bare_layers() * attentions != bare:
            continue
        try:
            pairs = match_layers(mine, read_layers(theirs, *reading))
        except ArchitectureMismatch as refusal:
            refusals.append(refusal)
            continue
        fitted = True
        yield reading, pairs
    try:
        pairs = match_parameters(model, checkpoint)
    except ArchitectureMismatch:
        if not fitted:
            raise max(refusals, key=lambda refusal: refusal.position) from None
    else:
        yield None, pairs


def best_pairing(fits: Iterable[tuple[Optional[Reading], Pairs]], load: Callable[[Pairs], float],
                 tolerance: float) -> tuple[Pairs, str, float]:
    """Load `fits` (from `pairings_to_try`) one by one until the model differs from the trained output
    by what its reading's missing biases explain (`expected_difference`: 0 with all biases), give or
    take `tolerance`; else the closest to that. `load(pairs)` copies the pairs into the model and
    returns the largest difference from the trained output. Leaves the chosen pairing loaded;
    returns (its pairs, its attention's biases, its difference)."""
    tried = []  # (gap, pairs, biases, difference)
    for reading, pairs in fits:
        biases = reading.biases if reading else "QKVO"  # the old way pairs only a Unet with all biases
        difference = load(pairs)
        tried.append((abs(difference - expected_difference(biases)), pairs, biases, difference))
        if tried[-1][0] <= tolerance:
            break
    best = min(range(len(tried)), key=lambda i: tried[i][0])
    if best != len(tried) - 1:
        load(tried[best][1])
    return tried[best][1:]
