# Generated from grader/w3d4_test.py by `python -m grader build`: edit that file, not this one.
"""Visible tests for W3D4 part 2, the DDPM U-Net.

The notebook calls one function per exercise, for example `test_groupnorm(GroupNorm, affine=True)`.
Each prints one line starting with PASS, or raises an AssertionError whose message names the most
likely mistake and how to fix it. No test needs a reference solution: numbers are compared with
torch built-ins (`F.group_norm`, `F.scaled_dot_product_attention`, `F.conv_transpose2d`) where the
lesson fixes the function, and otherwise with behaviour that every correct block has (the step
embedding changes the output, the skip is concatenated, parameter counts follow the diagrams).

Probe and judge
---------------
Every test is two functions, registered in `TESTS[name] = (probe, judge)`:

    data = probe_groupnorm(GroupNorm, seed=SEED, affine=True)   # runs the student's code
    summary = judge_groupnorm(data, seed=SEED, affine=True)      # decides; raises AssertionError

- A probe takes the notebook objects named in `SUBJECTS[name]` (in that order), a `seed` and the
  test's keyword arguments, plus an optional `device` (CUDA when available, else CPU). It builds
  the objects, feeds them inputs that are a deterministic function of the seed, and returns a dict
  of plain data only: dict (string keys), list, str, int, float, bool, None and CPU torch tensors.
  It never raises for errors in student code: it records them under "error". It restores the
  caller's random state and TF32 flags.
- A judge is a pure function of that dict, the same seed and keyword arguments. It regenerates
  every input, and every parameter the probe set, from the seed; it reads from the dict only the
  student's outputs and measured facts (parameter counts, returned shapes, gradient flags, call
  order). It returns the summary for the PASS line or raises AssertionError.
- `test_x(...)` runs both in one process; an autograder can run the probe in a sandbox and the judge
  elsewhere with the same seed. `NOTEBOOK_CALLS` lists the (name, kwargs) pairs that the notebook
  runs, and `run_test(name, *subjects, seed=..., **kwargs)` runs one of them without printing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import linecache
import math
import os
import sysconfig
import traceback
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn
from torch.overrides import TorchFunctionMode

SEED = 0
TOL = 1e-4  # absolute and relative tolerance of float32 results against float64 references
# What the PASS line of a composite block adds: its visible test checks shapes, counts and behaviour,
# not the numbers, which only a copy of the solution could check.
NUMBERS_CHECKED = "; the autograder also checks its numbers with weights of its own"
SILU_MIN = -0.27846454  # the minimum of x * sigmoid(x), reached at x = -1.2785
PROJECTIONS = ("W_Q", "W_K", "W_V", "W_O")  # how the grader's own attention values are named
BONUS_CLASS = "ConvTranspose2dFromScratch"  # the bonus exercise's class
ATTENTION_KINDS = ("attention_block", "attention")  # units whose channels are those of their input


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------
# Seeded inputs, shared by probes and judges
# ---------------------------------------------------------------------------------------------


def _stream(seed: int, tag: str) -> torch.Generator:
    """A CPU generator for one named input, so that each input depends only on (seed, tag)."""
    digest = hashlib.sha256(f"{seed}/{tag}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _randn(seed: int, tag: str, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=_stream(seed, tag))


def _uniform(seed: int, tag: str, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=_stream(seed, tag))


def _randint(seed: int, tag: str, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=_stream(seed, tag))


def _affine_params(seed: int, tag: str, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A per-channel weight near 1 and bias near 0, both (channels,)."""
    return 1 + 0.5 * _randn(seed, tag + "/weight", (channels,)), 0.5 * _randn(seed, tag + "/bias", (channels,))


def _projection_params(seed: int, tag: str, channels: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """name -> (weight (channels, channels), bias (channels,)) for W_Q, W_K, W_V and W_O.

    The gain makes the attention weights clearly non-uniform, so wrong scalings show up."""
    return {
        name: (
            1.5 * _randn(seed, f"{tag}/{name}/weight", (channels, channels)) / channels**0.5,
            0.3 * _randn(seed, f"{tag}/{name}/bias", (channels,)),
        )
        for name in PROJECTIONS
    }


def _loss_weights(seed: int, tag: str, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """Random weights for the backward pass: a plain sum would vanish after a normalisation."""
    return [_randn(seed, f"{tag}/grad{i}", shape) for i, shape in enumerate(shapes)]


# ---------------------------------------------------------------------------------------------
# Probe machinery
# ---------------------------------------------------------------------------------------------

_LIBRARY_DIRS = tuple(
    os.path.realpath(path)
    for path in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], os.path.dirname(torch.__file__)}
)


def _is_student_frame(frame) -> bool:
    filename = frame.f_code.co_filename
    if filename.startswith("<") and "frozen" not in filename:
        return True  # code built from a string: a notebook cell or exec
    path = os.path.realpath(filename)
    return path != os.path.realpath(__file__) and not path.startswith(_LIBRARY_DIRS) and "-packages" not in path


def _owner(qualname: str) -> str:
    """'GroupNorm.forward' -> 'GroupNorm'; 'swish' -> 'swish'; '<locals>' parts are skipped."""
    parts = [part for part in qualname.split(".") if part != "<locals>"]
    return parts[-2] if len(parts) >= 2 else parts[-1]


def _short_qualname(qualname: str) -> str:
    """'make.<locals>.GroupNorm.forward' -> 'GroupNorm.forward'."""
    return ".".join([part for part in qualname.split(".") if part != "<locals>"][-2:])


def _describe_error(exc: Exception) -> dict[str, str]:
    """Plain description of an exception: its type, message, and the student code that raised it."""
    frames = [(frame, line) for frame, line in traceback.walk_tb(exc.__traceback__) if _is_student_frame(frame)]
    origin = function = code = ""
    if frames:
        frame, line = frames[-1]
        origin, function = _owner(frame.f_code.co_qualname), _short_qualname(frame.f_code.co_qualname)
        code = linecache.getline(frame.f_code.co_filename, line).strip()
    return {"type": type(exc).__name__, "message": str(exc)[:600], "origin": origin, "function": function, "code": code}


@contextlib.contextmanager
def _controlled_state(seed: int) -> Iterator[None]:
    """Seed torch for the student's initialisers; afterwards restore the caller's random state and
    TF32 flags. TF32 is off so that CUDA results are as exact as CPU ones."""
    cuda = torch.cuda.is_available()
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        torch.manual_seed(int.from_bytes(hashlib.sha256(f"{seed}/init".encode()).digest()[:4], "little"))
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def _probe(run: Callable[[dict, str], None], seed: int, device: Optional[str]) -> dict:
    """Run one probe body; an exception from student code ends it and is recorded as plain data.

    `run(data, device)` fills `data`, setting data["stage"] before each call into student code."""
    data: dict[str, Any] = {"stage": "starting"}
    with _controlled_state(seed):
        try:
            run(data, str(device or default_device()))
        except Exception as exc:  # student code may raise anything; the judge explains it
            data["error"] = _describe_error(exc)
    return data


def _plain(value: Any) -> Any:
    """A returned tensor as a detached CPU tensor, anything else as a short description."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").as_subclass(torch.Tensor).clone()
    return f"a {type(value).__name__}"


def _count(module: nn.Module) -> int:
    """Trainable parameters: a frozen table (a buffer kept as a Parameter) is no layer."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _param_shapes(module: nn.Module) -> list[list]:
    """[name, shape] of every parameter."""
    return [[name, list(p.shape)] for name, p in module.named_parameters() if p.requires_grad]


def _backward(
    module: nn.Module, outputs: list[torch.Tensor], seed: int, tag: str, used: Optional[set] = None
) -> list[str]:
    """Backpropagate a seeded weighted sum of the outputs; return the parameters left without grad
    (of those whose ids are in `used`, when given: a layer that forward never calls is no mistake)."""
    module.zero_grad(set_to_none=True)
    weights = _loss_weights(seed, tag, [tuple(out.shape) for out in outputs])
    loss = sum((out * w.to(out.device)).sum() for out, w in zip(outputs, weights))
    loss.backward()
    return [
        name
        for name, p in module.named_parameters()
        if p.requires_grad and p.grad is None and (used is None or id(p) in used)
    ]


def _is_a(module: nn.Module, class_name: str) -> bool:
    """Whether the module is an instance of the lesson's class of that name (or of a subclass)."""
    return any(cls.__name__ == class_name for cls in type(module).__mro__)


def _is_attention(module: nn.Module) -> bool:
    """A self-attention, recognised by the lesson's class name (whatever its projections are called)."""
    return _is_a(module, "SelfAttention")


# ---------------------------------------------------------------------------------------------
# Grader weights: a whole block's numbers, for the autograder's own reference
# ---------------------------------------------------------------------------------------------
#
# The block tests below check facts that every correct block has. An autograder also checks the
# numbers: the probe overwrites every layer with seeded values and records the block's output, and
# the grader recomputes that output from the same values with its own copy of the lesson's wiring
# (not part of this module). Layers are found by what they are (Conv2d, ConvTranspose2d, Linear,
# GroupNorm, or a SelfAttention with W_Q, W_K, W_V and W_O), never by attribute name. The n-th layer
# of one kind and shape, in the order in which the forward pass first uses them, gets
# `unit_values(seed, tag, kind, shape, n)`. Two layers of the same kind and shape are used in the
# same order by every correct block, because one consumes the other's output (conv1 before conv2,
# down block 1 before down block 2), so the grader's reference hands out the same values in the
# lesson's order.


def _unit_kind(module: nn.Module) -> Optional[str]:
    if _is_a(module, "AttentionBlock"):  # first: it may also be a SelfAttention subclass
        return "attention_block"
    if _is_attention(module):
        return "attention"
    if isinstance(module, nn.ConvTranspose2d) or _is_a(module, "ConvTranspose2d") or _is_a(module, BONUS_CLASS):
        return "conv_transpose"
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.GroupNorm) or _is_a(module, "GroupNorm"):
        return "norm"
    return None


def _unit_shape(kind: str, module: nn.Module) -> tuple[int, ...]:
    """The weight's shape; (channels,) for a norm, whatever its parameters are called or shaped;
    (channels,) for an attention whose input was not seen, read from the smaller of the first two
    sides of its largest matrix (a fused Linear(C, 3C) has a (3C, C) weight)."""
    if kind in ATTENTION_KINDS:
        matrices = sorted((p for p in module.parameters() if p.dim() >= 2), key=lambda p: -p.numel())
        return (min(int(n) for n in matrices[0].shape[:2]),) if matrices else ()
    if kind == "norm":
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        return (own[0].numel(),) if own else ()
    weight = getattr(module, "weight", None)
    return tuple(int(n) for n in weight.shape) if isinstance(weight, torch.Tensor) else ()


def unit_key(kind: str, shape: tuple[int, ...]) -> str:
    """'conv', (8, 4, 3, 3) -> 'conv 8x4x3x3'."""
    return f"{kind} {'x'.join(str(n) for n in shape)}"


def describe_unit(key: str) -> str:
    """'conv 8x4x3x3' -> 'Conv2d(4, 8, 3x3)', for messages."""
    kind, _, dims = key.partition(" ")
    shape = [int(n) for n in dims.split("x")] if dims else []
    if kind == "conv" and len(shape) == 4:
        return f"Conv2d({shape[1]}, {shape[0]}, {shape[2]}x{shape[3]})"
    if kind == "conv_transpose" and len(shape) == 4:
        return f"ConvTranspose2d({shape[0]}, {shape[1]}, {shape[2]}x{shape[3]})"
    if kind == "linear" and len(shape) == 2:
        return f"Linear({shape[1]}, {shape[0]})"
    if kind == "norm" and len(shape) == 1:
        return f"GroupNorm with {shape[0]} channels"
    if kind == "attention" and len(shape) == 1:
        return f"SelfAttention({shape[0]})"
    return key


def unit_values(seed: int, tag: str, kind: str, shape: tuple[int, ...], index: int) -> dict:
    """The seeded parameters of the index-th layer of this kind and shape, float32 on the CPU.

    attention: {"W_Q": (weight, bias), ...}; otherwise {"weight": ..., "bias": ...}."""
    name = f"weights/{tag}/{unit_key(kind, shape)}/{index}"
    if kind == "attention":
        return _projection_params(seed, name, shape[0])
    if kind == "norm":
        weight, bias = _affine_params(seed, name, shape[0])
        return {"weight": weight, "bias": bias}
    # fan-in scaling keeps activations near unit size through a whole Unet; with stride 2 each
    # output pixel of a transposed conv (in, out, k, k) sees a quarter of its k*k kernel positions
    if kind == "conv":  # (out, in, k, k)
        fan_in = math.prod(shape[1:])
    elif kind == "conv_transpose":  # (in, out, k, k)
        fan_in = shape[0] * shape[2] * shape[3] // 4
    else:  # linear: (out, in)
        fan_in = shape[-1]
    outputs = shape[1] if kind == "conv_transpose" else shape[0]
    return {
        "weight": _randn(seed, name + "/weight", shape) / max(fan_in, 1) ** 0.5,
        "bias": 0.3 * _randn(seed, name + "/bias", (outputs,)),
    }


def _load_unit(module: nn.Module, kind: str, values: dict) -> str:
    """Copy seeded values into one layer; "" on success, else why it could not be done."""
    if kind == "attention":
        return ""  # the weights run computes attention from `values` itself (see _trusted_forward)
    targets = {name: getattr(module, name, None) for name in values}
    for name, target in targets.items():
        if not isinstance(target, torch.Tensor) or tuple(target.shape) != tuple(values[name].shape):
            return f"{type(module).__name__} has no {name} of shape {_fmt(values[name].shape)}"
    with torch.no_grad():
        for name, target in targets.items():
            target.copy_(values[name])
    return ""


def _units(model: nn.Module) -> list[nn.Module]:
    """The layers the grader sets: known kinds, and any other module that holds parameters itself.
    What is inside an AttentionBlock or a SelfAttention belongs to it."""
    inside = {
        id(sub)
        for m in model.modules()
        if _unit_kind(m) in ATTENTION_KINDS
        for sub in m.modules()
        if sub is not m
    }
    return [
        m
        for m in model.modules()
        if id(m) not in inside and (_unit_kind(m) or any(p.requires_grad for p in m.parameters(recurse=False)))
    ]


def _tensors_in(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)


class _FirstUse(TorchFunctionMode):
    """Notes the layers in the order in which a torch operation that computes a tensor first uses one
    of their parameters, so that a layer counts whether it is called as a module or its weight goes
    to F.conv2d (reading `.shape` or `.device` is no use). With `capture` (a parameter), also keeps
    the first other tensor of the first operation that uses it or a view of it (`weight.T`): the
    input of that layer."""

    def __init__(self, units: list, capture: Optional[torch.Tensor] = None):
        super().__init__()
        self.owner = {id(p): unit for unit in units for p in unit.parameters() if p.requires_grad}
        self.order: list = []
        self._seen: set[int] = set()
        self.capture, self.captured = capture, None
        self._aliases: list[torch.Tensor] = [] if capture is None else [capture]  # kept alive: ids stay theirs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if not any(True for _ in _tensors_in(result)):
            return result
        tensors = list(_tensors_in((args, kwargs)))
        for tensor in tensors:
            unit = self.owner.get(id(tensor))
            if unit is not None and id(unit) not in self._seen:
                self._seen.add(id(unit))
                self.order.append(unit)
        if self.captured is None and any(any(t is a for a in self._aliases) for t in tensors):
            others = [t for t in tensors if not isinstance(t, nn.Parameter) and not any(t is a for a in self._aliases)]
            if others:
                self.captured = others[0]
            elif isinstance(result, torch.Tensor):
                self._aliases.append(result)
        return result


def _first_int(value: Any) -> int:
    """nn.ConvTranspose2d keeps (2, 2) where the lesson's class keeps 2."""
    return int(value[0] if isinstance(value, (tuple, list)) else value)


def _trusted_attention(values: dict) -> Callable:
    """Multi-head attention (the lesson's 4 heads) with the grader's projections `values`. The
    student's own projections are not used: how they are laid out is the SelfAttention exercise's
    business, and test_self_attention checks it."""
    return lambda x: _attention_reference(x, {k: (w.to(x.device), b.to(x.device)) for k, (w, b) in values.items()}, 4)


def _trusted_norm(values: dict, groups: int, eps: float) -> Callable:
    return lambda x: F.group_norm(x, groups, values["weight"].to(x.device), values["bias"].to(x.device), eps)


def _trusted_attention_block(values: dict) -> Callable:
    """x + attention(GroupNorm(1 group)(x)), the formula that test_attention_block states, with the
    grader's values for the norm and the attention: what the block holds inside plays no part."""
    normalise, attend = _trusted_norm(values["norm"], 1, GN_DEFAULT_EPS), _trusted_attention(values["attention"])
    return lambda x: x + attend(normalise(x))


def _trusted_forward(module: nn.Module, embedding_size: int, grader_values: dict) -> Optional[Callable]:
    """A stand-in for a part that is an exercise of its own (GroupNorm, SiLU, SelfAttention,
    AttentionBlock, ConvTranspose2d, the step embedding), computed with torch built-ins from the
    grader's values for it (`grader_values`, by module id) or the part's own parameters. The grader's
    weights run uses them, so a mistake in one of those exercises is not counted again in every
    block that uses it."""
    kind = _unit_kind(module)
    values = grader_values.get(id(module))
    if kind == "norm" and values is not None and isinstance(getattr(module, "num_groups", None), int):
        eps = getattr(module, "eps", GN_DEFAULT_EPS)
        return _trusted_norm(values, module.num_groups, float(eps) if isinstance(eps, (int, float)) else GN_DEFAULT_EPS)
    if kind == "attention" and values is not None:
        return _trusted_attention(values)
    if kind == "attention_block" and values is not None:
        return _trusted_attention_block(values)
    if kind == "conv_transpose" and isinstance(getattr(module, "bias", None), torch.Tensor):
        stride, padding = (_first_int(getattr(module, key, default)) for key, default in (("stride", 2), ("padding", 1)))
        return lambda x: F.conv_transpose2d(x, module.weight, module.bias, stride=stride, padding=padding)
    if isinstance(module, nn.SiLU) or _is_a(module, "SiLU"):
        return F.silu
    if _is_a(module, "SinusoidalPositionEmbeddings") and embedding_size:
        frequencies = _frequency_conventions(embedding_size)["1/10000^(2k/d)"]
        return lambda steps: _sin_cos(steps.cpu(), frequencies).float().to(steps.device)
    return None


@contextlib.contextmanager
def _trusted_parts(model: nn.Module, embedding_size: int = 0, grader_values: Optional[dict] = None) -> Iterator[None]:
    """Swap in `_trusted_forward` for every part that has one, and F.silu for a `swish` function that
    the blocks call directly, for the duration of the block."""
    swapped = []
    namespaces = {id(g): g for m in model.modules() if isinstance(g := getattr(type(m).forward, "__globals__", None), dict)}
    own_swish = {key: g["swish"] for key, g in namespaces.items() if callable(g.get("swish")) and g["swish"] is not F.silu}
    try:
        for module in model.modules():
            forward = _trusted_forward(module, embedding_size, grader_values or {})
            if forward is not None:
                swapped.append((module, module.__dict__.get("forward")))
                module.forward = forward
        for key in own_swish:
            namespaces[key]["swish"] = F.silu
        yield
    finally:
        for module, own in swapped:
            if own is None:
                del module.forward
            else:
                module.forward = own
        for key, swish in own_swish.items():
            namespaces[key]["swish"] = swish


def _load_grader_weights(
    order: list[nn.Module], seed: int, tag: str, input_channels: dict
) -> tuple[list[str], list[str], dict]:
    """Give the n-th layer of each kind and shape its seeded values; returns (layer keys, problems,
    {id of a module: its values}) for the stand-ins of `_trusted_forward`. An AttentionBlock takes
    the values of a GroupNorm and then of an attention, as the lesson's wiring uses them.
    `input_channels`: id of an attention or attention block -> the channels of its input, where seen."""
    counts: dict[str, int] = {}
    keys, problems, grader_values = [], [], {}

    def take(kind: str, shape: tuple[int, ...]) -> dict:
        key = unit_key(kind, shape)
        keys.append(key)
        counts[key] = counts.get(key, 0) + 1
        return unit_values(seed, tag, kind, shape, counts[key] - 1)

    for module in order:
        kind = _unit_kind(module)
        if kind is None:
            keys.append(f"other {type(module).__name__}")
            problems.append(f"{type(module).__name__} holds parameters but is not a layer the grader knows")
            continue
        seen = input_channels.get(id(module))
        shape = (seen,) if kind in ATTENTION_KINDS and seen else _unit_shape(kind, module)
        if not shape:
            keys.append(unit_key(kind, shape))
            problems.append(f"{type(module).__name__} has no weight")
        elif kind == "attention_block":
            grader_values[id(module)] = {"norm": take("norm", shape), "attention": take("attention", shape)}
        else:
            values = grader_values[id(module)] = take(kind, shape)
            problem = _load_unit(module, kind, values)
            # a GroupNorm that keeps its parameters under other names is fine when its stand-in can run
            if problem and not (kind == "norm" and isinstance(getattr(module, "num_groups", None), int)):
                problems.append(problem)
    return keys, problems, grader_values


def _probe_grader_weights(
    data: dict, prefix: str, model: nn.Module, forward: Callable[[], Any], seed: int, tag: str, capture: str = ""
) -> None:
    """Set every layer of `model` to the grader's values and record `forward()` with them, with the
    parts that are exercises of their own replaced by `_trusted_forward`.

    Records under `prefix`: weights_units (layer keys in order of first use), weights_problems,
    weights_uncalled (layers whose parameters forward never used), weights_out, and with
    `capture` (a layer key) the input of the first layer with that key, weights_captured."""
    units = _units(model)
    # an attention's channels are those of its input, whatever shape its parameters have
    channels: dict[int, int] = {}
    def note_channels(module: nn.Module, args: tuple, kwargs: dict) -> None:  # returning a value would replace args
        images = [t for t in _tensors_in((args, kwargs)) if t.dim() == 4]
        if images:
            channels.setdefault(id(module), int(images[0].shape[1]))

    hooks = [
        m.register_forward_pre_hook(note_channels, with_kwargs=True) for m in units if _unit_kind(m) in ATTENTION_KINDS
    ]
    try:
        with torch.no_grad(), _FirstUse(units) as first_use:
            forward()
    finally:
        for hook in hooks:
            hook.remove()
    order = first_use.order
    keys, problems, grader_values = _load_grader_weights(order, seed, tag, channels)
    data[prefix + "weights_units"] = keys
    data[prefix + "weights_problems"] = problems
    used = {id(module) for module in order}
    data[prefix + "weights_uncalled"] = [
        type(m).__name__ for m in units if id(m) not in used and next(m.parameters(), None) is not None
    ]
    target = next((module for module, key in zip(order, keys) if key == capture), None)
    # the step embedding has the size of the step MLP's first Linear: max_steps
    embedding_size = target.weight.shape[1] if target is not None and capture.startswith("linear") else 0
    with torch.no_grad(), _trusted_parts(model, embedding_size, grader_values), _FirstUse(
        [], capture=None if target is None else target.weight
    ) as run:
        out = forward()
    data[prefix + "weights_out"] = _pair(out) if isinstance(out, (tuple, list)) else _plain(out)
    if capture:
        data[prefix + "weights_captured"] = "nothing" if run.captured is None else _plain(run.captured)


# ---------------------------------------------------------------------------------------------
# Judge machinery
# ---------------------------------------------------------------------------------------------


def _judge(judge: Callable[..., str]) -> Callable[..., str]:
    """Turn a malformed probe result (missing keys, wrong types) into an AssertionError."""

    @functools.wraps(judge)
    def checked(data: dict, **kwargs) -> str:
        if not isinstance(data, dict):
            raise AssertionError(f"the probe returned a {type(data).__name__}, not a dict")
        try:
            return judge(data, **kwargs)
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError(
                f"the probe's result is incomplete or malformed ({type(exc).__name__}: {exc})"
            ) from None

    return checked


_HINTS = {
    "AssertionError": "One of your own asserts failed.",
    "AttributeError": "Check that every attribute you use is set in __init__, with the same name.",
    "TypeError": "Check the arguments of your calls against the signatures in the docstrings.",
}
_SHAPE_HINT = "Print the shape of each intermediate tensor and compare it with the docstrings."
_DTYPE_HINT = (
    "A tensor has an unexpected dtype. The steps arrive as integers (int64): convert them with .float() "
    "before combining them with float tensors."
)


def _raise_probe_error(data: dict, subject: str) -> None:
    """If the probe recorded an exception, explain it (a stub says it is not implemented yet)."""
    error = data.get("error")
    if error is None:
        return
    kind, origin = str(error["type"]), str(error["origin"])
    if kind == "NotImplementedError":
        who = origin or subject
        used_by = "" if who == subject else f" ({subject} uses it)"
        raise AssertionError(
            f"{who} is not implemented yet{used_by}: write its code in place of `raise NotImplementedError()`."
        )
    message = str(error["message"])
    hint = _HINTS.get(kind, _SHAPE_HINT)
    if "Long" in message or "dtype" in message or "scalar type" in message:
        hint = _DTYPE_HINT
    where = f" in {error['function']}" if error["function"] else ""
    code = f"\n    {error['code']}" if error["code"] else ""
    raise AssertionError(f"{subject} raised {kind}{where} while {data['stage']}:{code}\n{message}\n{hint}")


def _fmt(shape) -> str:
    """A shape as Python writes a tuple: (2, 8) or (8,)."""
    return str(tuple(int(n) for n in shape))


def _tensor(data: dict, key: str, what: str, shape: Optional[tuple[int, ...]] = None) -> torch.Tensor:
    """A student output from the probe, as float64 on the CPU, checked for shape and finiteness."""
    return _as_tensor(data[key], what, shape)


def _as_tensor(value: Any, what: str, shape: Optional[tuple[int, ...]] = None) -> torch.Tensor:
    if isinstance(value, str):
        raise AssertionError(f"{what} is {value}, not a tensor. Did you forget to return it?")
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} is a {type(value).__name__}")
    value = value.detach().to("cpu", torch.float64)
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise AssertionError(f"{what} has shape {_fmt(value.shape)}, expected {_fmt(shape)}.")
    if not torch.isfinite(value).all():
        raise AssertionError(f"{what} contains NaN or inf.")
    return value


def _close(actual: torch.Tensor, expected: torch.Tensor, tol: float = TOL) -> bool:
    return actual.shape == expected.shape and bool(((actual - expected).abs() <= tol * (1 + expected.abs())).all())


def _max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual - expected).abs().max().item()


def _first_match_in_any(actual: torch.Tensor, readings: list, mistakes: Callable[[dict], list]) -> Optional[str]:
    """The first known mistake that `actual` matches under any reading of the projections.
    `mistakes(weights)` lists (compute, message) for one reading's weights, in order of priority."""
    catalogues = [mistakes(weights) for _, weights in readings]
    for position in range(len(catalogues[0]) if catalogues else 0):
        for catalogue in catalogues:
            compute, message = catalogue[position]
            if _close(actual, compute()):
                return message
    return None


def _first_match(actual: torch.Tensor, candidates, tol: float = TOL) -> Optional[str]:
    """The message of the first known mistake, given as (compute, message), that `actual` matches."""
    for compute, message in candidates:
        if _close(actual, compute(), tol):
            return message
    return None


def _module_names(parameter_names: list, limit: int = 6) -> str:
    """'attention.norm.weight', 'attention.norm.bias' -> 'attention.norm', at most `limit` of them."""
    modules = list(dict.fromkeys(str(name).rpartition(".")[0] or str(name) for name in parameter_names))
    more = f" and {len(modules) - limit} more" if len(modules) > limit else ""
    return ", ".join(modules[:limit]) + more


def _check_no_missing_grads(data: dict, key: str, subject: str) -> None:
    missing = list(data[key])
    if missing:
        raise AssertionError(
            f"No gradient reaches the parameters of {_module_names(missing)} in {subject}: these layers are "
            "created but never used in forward."
        )


def _format_params(shapes: list, limit: int = 24) -> str:
    """One line per parameter, or per top-level module (with its parameter count) when there are many."""
    if len(shapes) <= limit:
        return "\n    ".join(f"{name} {_fmt(shape)}" for name, shape in shapes)
    totals: dict[str, int] = {}
    for name, shape in shapes:
        totals[str(name).split(".")[0]] = totals.get(str(name).split(".")[0], 0) + math.prod(shape)
    return "\n    ".join(f"{name}: {total:,}" for name, total in totals.items())


def _bias_free_savings(attention_channels: tuple[int, ...]) -> set[int]:
    """The parameter counts that attention projections without biases save: each attention of C
    channels may leave out 0 to 4 biases of C (a fused projection's bias counts as 3)."""
    savings = {0}
    for channels in attention_channels:
        savings = {total + biases * channels for total in savings for biases in range(5)}
    return savings


def _check_param_count(
    found: int, expected: int, subject: str, shapes: list, known: dict[int, str], attention: tuple[int, ...] = ()
) -> None:
    """Compare parameter counts; `known` maps a difference (found - expected) to its likely cause.
    `attention`: the channels of each attention in the block, whose projections may have no bias."""
    if expected - found in _bias_free_savings(attention):
        return
    diff = found - expected
    cause = known.get(diff, "Compare your layers with the diagram (nn.Conv2d and nn.Linear keep their default bias).")
    raise AssertionError(
        f"{subject} has {found:,} parameters, the diagram implies {expected:,} ({diff:+,}). {cause}\n"
        f"Your parameters:\n    {_format_params(shapes)}"
    )


def _changes(a: torch.Tensor, b: torch.Tensor, threshold: float = 1e-4) -> bool:
    return _max_error(a, b) > threshold


# Parameter counts implied by the diagrams (convolutions and linear layers with bias).


def _conv_params(c_in: int, c_out: int, kernel: int) -> int:
    return c_out * c_in * kernel * kernel + c_out


def _linear_params(n_in: int, n_out: int) -> int:
    return n_out * n_in + n_out


def _shortcut_params(c_in: int, c_out: int) -> int:
    return _conv_params(c_in, c_out, 1) if c_in != c_out else 0


def _residual_params(c_in: int, c_out: int, emb: int) -> int:
    norms = 2 * 2 * c_out
    return (
        _conv_params(c_in, c_out, 3)
        + _conv_params(c_out, c_out, 3)
        + norms
        + _linear_params(emb, c_out)
        + _shortcut_params(c_in, c_out)
    )


def _attention_block_params(channels: int) -> int:
    return 4 * _linear_params(channels, channels) + 2 * channels


def _down_params(c_in: int, c_out: int, emb: int, downsample: bool) -> int:
    down = _conv_params(c_out, c_out, 4) if downsample else 0
    return (
        _residual_params(c_in, c_out, emb) + _residual_params(c_out, c_out, emb) + _attention_block_params(c_out) + down
    )


def _up_params(dim_in: int, dim_out: int, emb: int, upsample: bool) -> int:
    up = _conv_params(dim_in, dim_in, 4) if upsample else 0
    return (
        _residual_params(2 * dim_out, dim_in, emb)
        + _residual_params(dim_in, dim_in, emb)
        + _attention_block_params(dim_in)
        + up
    )


def _mid_params(channels: int, emb: int) -> int:
    return 2 * _residual_params(channels, channels, emb) + _attention_block_params(channels)


# ---------------------------------------------------------------------------------------------
# GroupNorm
# ---------------------------------------------------------------------------------------------

GN_SHAPE = (3, 8, 4, 6)  # batch, channels, height != width
GN_GROUPS = (1, 2, 8)  # one group, some, one per channel
GN_DEFAULT_EPS = 1e-5
GN_EPS_SHAPE = (2, 4, 2, 3)
GN_EPS_GROUPS = 2
GN_EPS = 1e-3  # comparable to the variance of the eps input, so where eps goes matters


def _groupnorm_input(seed: int, groups: int) -> torch.Tensor:
    """(3, 8, 4, 6) with a different scale and offset per channel, so channel grouping matters."""
    channels = GN_SHAPE[1]
    scale = _uniform(seed, f"groupnorm/scale{groups}", (1, channels, 1, 1), 0.5, 3.0)
    shift = 2 * _randn(seed, f"groupnorm/shift{groups}", (1, channels, 1, 1))
    return _randn(seed, f"groupnorm/x{groups}", GN_SHAPE) * scale + shift


def _groupnorm_eps_input(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x = mean + std * (+1/-1 pattern, half of each per group), so each (example, group) has exactly
    this mean and biased std. Returns x, mean, std, all (2, 4, 2, 3); std is 0.02 to 0.05."""
    batch, channels, height, width = GN_EPS_SHAPE
    groups, per_group = GN_EPS_GROUPS, channels // GN_EPS_GROUPS
    size = per_group * height * width
    signs = torch.tensor([1.0, -1.0]).repeat_interleave(size // 2)
    order = torch.argsort(torch.rand(batch * groups, size, generator=_stream(seed, "groupnorm/eps/order")), dim=-1)
    pattern = rearrange(signs[order], "(b g) (c h w) -> b (g c) h w", b=batch, c=per_group, h=height)
    spread = lambda v: repeat(v, "b g -> b (g c) h w", c=per_group, h=height, w=width)
    mean = spread(_uniform(seed, "groupnorm/eps/mean", (batch, groups), -1.0, 1.0))
    std = spread(_uniform(seed, "groupnorm/eps/std", (batch, groups), 0.02, 0.05))
    return mean + std * pattern, mean, std


def _groupnorm_affine(seed: int, tag: str, affine: bool):
    return _affine_params(seed, f"groupnorm/{tag}", GN_SHAPE[1]) if affine else (None, None)


def _set_affine(norm: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> bool:
    params = (getattr(norm, "weight", None), getattr(norm, "bias", None))
    if not all(isinstance(p, nn.Parameter) and tuple(p.shape) == tuple(weight.shape) for p in params):
        return False
    with torch.no_grad():
        params[0].copy_(weight)
        params[1].copy_(bias)
    return True


def probe_groupnorm(GroupNorm, seed: int = SEED, affine: bool = True, device: Optional[str] = None) -> dict:
    channels = GN_SHAPE[1]

    def run(data: dict, device: str) -> None:
        for groups in GN_GROUPS:
            data["stage"] = f"building GroupNorm({groups}, {channels}, affine={affine})"
            norm = GroupNorm(groups, channels, affine=affine)
            data[f"params_{groups}"] = _count(norm)
            if affine:
                data[f"affine_set_{groups}"] = _set_affine(norm, *_groupnorm_affine(seed, str(groups), True))
            data["stage"] = f"running GroupNorm({groups}, {channels}) on an input of shape {_fmt(GN_SHAPE)}"
            with torch.no_grad():
                data[f"out_{groups}"] = _plain(norm.to(device)(_groupnorm_input(seed, groups).to(device)))
        data["stage"] = f"building GroupNorm({GN_EPS_GROUPS}, 4, eps={GN_EPS}, affine={affine})"
        norm = GroupNorm(GN_EPS_GROUPS, GN_EPS_SHAPE[1], eps=GN_EPS, affine=affine)
        if affine:
            data["affine_set_eps"] = _set_affine(norm, *_affine_params(seed, "groupnorm/eps", GN_EPS_SHAPE[1]))
        data["stage"] = f"running GroupNorm({GN_EPS_GROUPS}, 4, eps={GN_EPS}) on an input of shape {_fmt(GN_EPS_SHAPE)}"
        with torch.no_grad():
            data["out_eps"] = _plain(norm.to(device)(_groupnorm_eps_input(seed)[0].to(device)))

    return _probe(run, seed, device)


def _with_affine(normed: torch.Tensor, weight, bias) -> torch.Tensor:
    if weight is None:
        return normed
    return normed * rearrange(weight, "c -> c 1 1") + rearrange(bias, "c -> c 1 1")


def _groupnorm_mistakes(x: torch.Tensor, groups: int, weight, bias, eps: float) -> list:
    """Known mistakes as (compute, message): each computes what that mistake would output."""
    batch, channels, height, width = x.shape
    n = channels // groups * height * width
    affine = lambda normed: _with_affine(normed, weight, bias)
    regroup = lambda y, pattern: rearrange(y, pattern, g=groups)
    mix_batch = lambda y: rearrange(y, "b c h w -> 1 c (b h) w")
    unmix_batch = lambda y: rearrange(y, "1 c (b h) w -> b c h w", b=batch)
    mistakes = []
    if weight is not None:
        mistakes.append(
            (
                lambda: F.group_norm(x, groups, eps=eps),
                "Your output is the normalised input without the affine step: when affine is true, multiply by "
                "self.weight and add self.bias (one value per channel) after normalising.",
            )
        )
    mistakes.append(
        (
            lambda: affine(math.sqrt((n - 1) / n) * F.group_norm(x, groups, eps=eps * (n - 1) / n)),
            f"Your output equals the reference times sqrt((N-1)/N) with N = {n} values per group: you used the "
            "unbiased variance (dividing by N-1). Use the biased one, var(..., unbiased=False), as torch does.",
        )
    )
    if 1 < groups < channels:
        mistakes.append(
            (
                lambda: affine(
                    regroup(
                        F.group_norm(regroup(x, "b (c g) h w -> b (g c) h w"), groups, eps=eps),
                        "b (g c) h w -> b (c g) h w",
                    )
                ),
                "Your groups are not adjacent channels: splitting with '(c g)' puts channels i, i+g, i+2g, ... in "
                "one group. Split with 'b (g c) h w -> b g c h w' so each group holds neighbouring channels.",
            )
        )
    if groups < channels:
        mistakes.append(
            (
                lambda: affine(F.group_norm(x, channels, eps=eps)),
                "You normalise each channel on its own (instance norm): take one mean and variance over all the "
                "channels of a group together with height and width.",
            )
        )
    if groups > 1:
        mistakes.append(
            (
                lambda: affine(F.group_norm(x, 1, eps=eps)),
                "You take one mean and variance over all channels: num_groups is ignored. Split the channels "
                "into num_groups groups.",
            )
        )
    mistakes += [
        (
            lambda: affine(unmix_batch(F.group_norm(mix_batch(x), groups, eps=eps))),
            "Your statistics mix the examples of the batch: reduce over the channels of a group, height and "
            "width of each example separately, never over the batch dimension.",
        ),
        (
            lambda: affine(F.batch_norm(x, None, None, training=True, eps=eps)),
            "You compute batch statistics (per channel over the batch): group norm keeps every example "
            "separate and pools the channels of each group.",
        ),
    ]
    return mistakes


def _groupnorm_eps_mistakes(x, mean, std, weight, bias) -> list:
    affine = lambda normed: _with_affine(normed, weight, bias)
    return [
        (
            lambda: affine((x - mean) / (std + GN_EPS)),
            "eps is added outside the square root: divide by sqrt(var + eps), with eps inside the square root.",
        ),
        (
            lambda: F.group_norm(x, GN_EPS_GROUPS, weight, bias, eps=GN_DEFAULT_EPS),
            f"Your GroupNorm ignores the eps argument (built with eps={GN_EPS}, it behaves as eps=1e-5): "
            "store eps in __init__ and use it.",
        ),
        (
            lambda: affine((x - mean) / std),
            "Your GroupNorm adds no eps: divide by sqrt(var + eps).",
        ),
    ]


@_judge
def judge_groupnorm(data: dict, seed: int = SEED, affine: bool = True) -> str:
    _raise_probe_error(data, "GroupNorm")
    channels = GN_SHAPE[1]
    for groups in GN_GROUPS:
        count = int(data[f"params_{groups}"])
        if not affine and count:
            raise AssertionError(f"GroupNorm(affine=False) should have no parameters, yours has {count}.")
        if affine and (count != 2 * channels or not data[f"affine_set_{groups}"]):
            raise AssertionError(
                "GroupNorm(affine=True) needs learnable parameters self.weight and self.bias, each of shape "
                f"(num_channels,) = ({channels},), and no others (found {count} parameters)."
            )
    for groups in GN_GROUPS:
        x = _groupnorm_input(seed, groups).double()
        weight, bias = (p if p is None else p.double() for p in _groupnorm_affine(seed, str(groups), affine))
        out = _tensor(data, f"out_{groups}", f"The output of GroupNorm({groups}, {channels})", GN_SHAPE)
        expected = F.group_norm(x, groups, weight, bias, eps=GN_DEFAULT_EPS)
        if not _close(out, expected):
            cause = _first_match(out, _groupnorm_mistakes(x, groups, weight, bias, GN_DEFAULT_EPS)) or (
                "Check the mean and biased variance per (example, group), eps inside the square root, and the "
                "per-channel weight and bias."
            )
            raise AssertionError(
                f"GroupNorm({groups}, {channels}) differs from torch.nn.GroupNorm by up to "
                f"{_max_error(out, expected):.3g} on an input of shape {_fmt(GN_SHAPE)}. {cause}"
            )
    if affine and not data["affine_set_eps"]:
        raise AssertionError("GroupNorm(2, 4, affine=True) needs self.weight and self.bias of shape (4,).")
    x, mean, std = (v.double() for v in _groupnorm_eps_input(seed))
    weight, bias = (
        (p.double() for p in _affine_params(seed, "groupnorm/eps", GN_EPS_SHAPE[1])) if affine else (None, None)
    )
    out = _tensor(data, "out_eps", f"The output of GroupNorm(2, 4, eps={GN_EPS})", GN_EPS_SHAPE)
    expected = F.group_norm(x, GN_EPS_GROUPS, weight, bias, eps=GN_EPS)
    if not _close(out, expected):
        cause = _first_match(out, _groupnorm_eps_mistakes(x, mean, std, weight, bias)) or "Check how you use eps."
        raise AssertionError(
            f"GroupNorm(2, 4, eps={GN_EPS}) differs from torch.nn.GroupNorm by up to {_max_error(out, expected):.3g} "
            f"on an input whose groups have a variance close to eps. {cause}"
        )
    weights = " with random weight and bias" if affine else ""
    return f"matches torch.nn.GroupNorm{weights} for 1, 2 and 8 groups (H != W), with eps inside the square root"


# ---------------------------------------------------------------------------------------------
# Sinusoidal step embeddings
# ---------------------------------------------------------------------------------------------

EMB_SIZES = (16, 10)
EMB_BATCH = 12
EMB_TOL = 2e-3  # float32 angles of up to 1000 radians carry errors near 1e-4


def _embedding_steps(seed: int) -> torch.Tensor:
    """(12,) int64 steps: 0 first (sin 0 = 0, cos 0 = 1 reveal the layout), then random up to 999."""
    return torch.cat([torch.zeros(1, dtype=torch.long), _randint(seed, "embedding/steps", 1, 1000, (EMB_BATCH - 1,))])


def _frequency_conventions(size: int) -> dict[str, torch.Tensor]:
    """Both common ways to space the size/2 frequencies, as (size/2,) float64 tensors."""
    k = torch.arange(size // 2, dtype=torch.float64)
    return {
        "1/10000^(2k/d)": 10000.0 ** (-2 * k / size),
        "exp(-ln(10000) k/(d/2-1))": torch.exp(-math.log(10000) * k / (size // 2 - 1)),
    }


def _sin_cos(steps: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """(batch,), (d/2,) -> (batch, d): all the sines, then all the cosines."""
    angles = steps.double()[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _matched_columns(actual: torch.Tensor, expected: torch.Tensor) -> int:
    """How many columns of `expected` can be matched by distinct columns of `actual`, in any order: a
    maximum bipartite matching, since with few steps several columns can be alike."""
    close = ((actual.T[:, None, :] - expected.T[None, :, :]).abs().amax(dim=-1) < EMB_TOL).tolist()
    partner: dict[int, int] = {}  # column of expected -> column of actual

    def augment(i: int, visited: set[int]) -> bool:
        for j, near in enumerate(close[i]):
            if near and j not in visited:
                visited.add(j)
                if j not in partner or augment(partner[j], visited):
                    partner[j] = i
                    return True
        return False

    return sum(augment(i, set()) for i in range(len(close)))


def probe_sinusoidal_embeddings(SinusoidalPositionEmbeddings, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        steps = _embedding_steps(seed).to(device)
        for size in EMB_SIZES:
            data["stage"] = f"building SinusoidalPositionEmbeddings({size})"
            embed = SinusoidalPositionEmbeddings(size)
            data[f"params_{size}"] = sum(p.numel() for p in embed.parameters() if p.requires_grad)
            data["stage"] = f"embedding int64 steps of shape ({EMB_BATCH},) with SinusoidalPositionEmbeddings({size})"
            with torch.no_grad():
                data[f"out_{size}"] = _plain(embed.to(device)(steps))

    return _probe(run, seed, device)


def _explain_embedding(out: torch.Tensor, steps: torch.Tensor, size: int) -> str:
    half = size // 2
    first = out[0]  # step 0
    zeros = int((first.abs() < EMB_TOL).sum())
    ones = int(((first - 1).abs() < EMB_TOL).sum())
    best = max(_matched_columns(out, _sin_cos(steps, f)) for f in _frequency_conventions(size).values())
    if zeros == size:
        return (
            "At step 0 every entry is 0, but cos(0) = 1: half of the embedding must be cosines "
            "(you have only sines)."
        )
    if ones == size:
        return (
            "At step 0 every entry is 1, but sin(0) = 0: half of the embedding must be sines (you have only cosines)."
        )
    if zeros == half and ones == half:
        return (
            f"At step 0 you have {half} zeros and {half} ones, as sines and cosines should, but {size - best} of "
            f"{size} columns match no sin(w_k s) or cos(w_k s): the frequencies are wrong. Use "
            "w_k = 1 / 10000^(2k/d) for k = 0, ..., d/2 - 1, the same frequency for a sine and its cosine."
        )
    return (
        f"Only {best} of {size} columns match a sin(w_k s) or cos(w_k s) with w_k = 1 / 10000^(2k/d). Each "
        "frequency needs one sine and one cosine; any order of the columns is fine."
    )


@_judge
def judge_sinusoidal_embeddings(data: dict, seed: int = SEED) -> str:
    _raise_probe_error(data, "SinusoidalPositionEmbeddings")
    steps = _embedding_steps(seed)
    found = set()
    for size in EMB_SIZES:
        if data[f"params_{size}"]:
            raise AssertionError(
                f"SinusoidalPositionEmbeddings({size}) has {data[f'params_{size}']} trainable parameters; the "
                "embedding is fixed. Store the frequencies with self.register_buffer."
            )
        out = _tensor(data, f"out_{size}", f"SinusoidalPositionEmbeddings({size}) output", (EMB_BATCH, size))
        matches = [
            name
            for name, f in _frequency_conventions(size).items()
            if _matched_columns(out, _sin_cos(steps, f)) == size
        ]
        if not matches:
            raise AssertionError(
                f"SinusoidalPositionEmbeddings({size}) is wrong for steps {steps.tolist()}. "
                + _explain_embedding(out, steps, size)
            )
        found.add(matches[0])
    return (
        f"sines and cosines of the steps with frequencies {' / '.join(sorted(found))}, "
        f"for embedding sizes {EMB_SIZES[0]} and {EMB_SIZES[1]}"
    )


# ---------------------------------------------------------------------------------------------
# Swish / SiLU
# ---------------------------------------------------------------------------------------------

SWISH_SHAPE = (2, 3, 4, 5)
SWISH_EXTREMES = (-100.0, -30.0, -5.0, -1.0, 0.0, 1.0, 5.0, 30.0, 100.0)


def _swish_input(seed: int) -> torch.Tensor:
    return 4 * _randn(seed, "swish/x", SWISH_SHAPE)


def probe_swish(swish, SiLU, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        x = _swish_input(seed).to(device)
        original = x.clone()
        data["stage"] = f"calling swish on a tensor of shape {_fmt(SWISH_SHAPE)}"
        data["out"] = _plain(swish(x))
        data["input_unchanged"] = bool(torch.equal(x, original))
        data["stage"] = f"calling swish on the values {list(SWISH_EXTREMES)}"
        data["out_extremes"] = _plain(swish(torch.tensor(SWISH_EXTREMES, device=device)))
        data["stage"] = "building SiLU()"
        activation = SiLU()
        data["silu_is_module"] = isinstance(activation, nn.Module)
        data["stage"] = f"running SiLU() on a tensor of shape {_fmt(SWISH_SHAPE)}"
        data["out_silu"] = _plain(activation(original.clone()))

    return _probe(run, seed, device)


@_judge
def judge_swish(data: dict, seed: int = SEED) -> str:
    _raise_probe_error(data, "swish")
    x = _swish_input(seed).double()
    expected = F.silu(x)
    out = _tensor(data, "out", "swish(x)", SWISH_SHAPE)
    if not _close(out, expected):
        cause = (
            _first_match(
                out,
                [
                    (lambda: torch.sigmoid(x), "You return sigmoid(x): multiply it by x, swish(x) = x * sigmoid(x)."),
                    (lambda: F.relu(x), "That is ReLU: swish(x) = x * sigmoid(x)."),
                    (
                        lambda: x * torch.sigmoid(-x),
                        "The sign is flipped inside the sigmoid: sigmoid(x) = 1 / (1 + exp(-x)).",
                    ),
                ],
            )
            or "swish(x) must be x * sigmoid(x)."
        )
        raise AssertionError(f"swish differs from x * sigmoid(x) by up to {_max_error(out, expected):.3g}. {cause}")
    if not data["input_unchanged"]:
        raise AssertionError("swish modifies its input in place: return a new tensor (avoid mul_ and friends).")
    extremes = torch.tensor(SWISH_EXTREMES, dtype=torch.float64)
    value = data["out_extremes"]
    if isinstance(value, torch.Tensor) and not torch.isfinite(value).all():
        raise AssertionError(
            "swish returns NaN or inf for inputs like -100 or 100: use torch.sigmoid, which is stable."
        )
    out = _tensor(data, "out_extremes", f"swish({list(SWISH_EXTREMES)})", extremes.shape)
    if not _close(out, F.silu(extremes)):
        raise AssertionError(f"swish is wrong for large inputs {list(SWISH_EXTREMES)}: got {out.tolist()}.")
    if not data["silu_is_module"]:
        raise AssertionError("SiLU must be an nn.Module subclass.")
    if not _close(_tensor(data, "out_silu", "SiLU()(x)", SWISH_SHAPE), expected):
        raise AssertionError("SiLU()(x) differs from swish(x): SiLU.forward should return swish(x).")
    return "swish(x) and SiLU()(x) equal x * sigmoid(x), also for inputs as large as +-100"


# ---------------------------------------------------------------------------------------------
# SelfAttention
# ---------------------------------------------------------------------------------------------
#
# The lesson leaves the layout of the projections open: four Linear(C, C) or 1x1 Conv2d layers, or
# one fused Linear(C, 3C) or Conv2d(C, 3C, 1) split into queries, keys and values, with or without
# biases, under any attribute names. The probe sets every Linear and Conv2d layer to seeded values,
# numbered in the order in which the forward pass first uses them, and the judge tries every way of
# reading those layers as queries, keys, values and output projection (`_attention_readings`).

ATTN_SHAPE = (2, 8, 3, 5)  # height != width
ATTN_HEADS = (4, 2)  # the default, then an explicit num_heads
ATTN_GAIN = 1.5  # makes the attention weights clearly non-uniform, so that wrong scalings show up


def _attention_inputs(seed: int, tag: str) -> dict[str, Any]:
    """Inputs of the attention probes: x, a single-pixel x, x with one pixel changed, and a pixel
    permutation (of height * width) applied to x."""
    batch, channels, height, width = ATTN_SHAPE
    x = _randn(seed, f"{tag}/x", ATTN_SHAPE)
    poked = x.clone()
    row = int(_randint(seed, f"{tag}/row", 0, height, (1,)))
    col = int(_randint(seed, f"{tag}/col", 0, width, (1,)))
    poked[:, :, row, col] += 3 * _randn(seed, f"{tag}/poke", (batch, channels))
    order = torch.argsort(torch.rand(height * width, generator=_stream(seed, f"{tag}/perm")))
    return {
        "x": x,
        "pixel": _randn(seed, f"{tag}/pixel", (batch, channels, 1, 1)),
        "poked": poked,
        "order": order,
        "permuted": _permute_pixels(x, order),
    }


def _permute_pixels(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """x: (batch, channels, height, width); order: (height * width,) -> same shape, pixels reordered."""
    flat = rearrange(x, "b c h w -> b c (h w)")[:, :, order.to(x.device)]
    return rearrange(flat, "b c (h w) -> b c h w", h=x.shape[2])


def projection_values(seed: int, tag: str, index: int, n_out: int, n_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded (weight (n_out, n_in), bias (n_out,)) of the index-th projection layer that a
    forward pass uses."""
    name = f"{tag}/projection{index}/{n_out}x{n_in}"
    weight = ATTN_GAIN * _randn(seed, name + "/weight", (n_out, n_in)) / n_in**0.5
    return weight, 0.3 * _randn(seed, name + "/bias", (n_out,))


def _projection_layers(module: nn.Module) -> list:
    """The Linear and Conv2d layers inside `module`, the fused input projection of any
    nn.MultiheadAttention, and every bare parameter outside a GroupNorm, the last two as namespaces
    with weight, bias, parameters() and name."""
    layers: list = []
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            layers.append(m)
        elif not isinstance(m, nn.MultiheadAttention) and _unit_kind(m) != "norm":
            for p in m.parameters(recurse=False):
                layers.append(SimpleNamespace(weight=p, bias=None, parameters=lambda p=p: iter([p]), name="Parameter"))
        elif isinstance(m, nn.MultiheadAttention) and isinstance(m.in_proj_weight, torch.Tensor):
            own = [p for p in (m.in_proj_weight, m.in_proj_bias) if isinstance(p, torch.Tensor)]
            layers.append(SimpleNamespace(
                weight=m.in_proj_weight, bias=m.in_proj_bias, parameters=lambda own=own: iter(own),
                name="MultiheadAttention.in_proj",
            ))
    return layers


def _describe_layer(layer) -> list:
    """[class name, weight shape, has a bias, acts on each pixel alone]."""
    if isinstance(layer, SimpleNamespace):  # pointwise: a bare parameter can only be a matrix product
        return [layer.name, [int(n) for n in layer.weight.shape], isinstance(layer.bias, torch.Tensor), True]
    pointwise = isinstance(layer, nn.Linear) or (
        tuple(layer.weight.shape[2:]) == (1, 1)
        and tuple(layer.stride) == (1, 1)
        and tuple(layer.dilation) == (1, 1)
        and layer.groups == 1
        and layer.padding in ((0, 0), "valid", "same")  # "same" pads nothing for a 1x1 kernel
    )
    shape = [int(n) for n in layer.weight.shape]
    return [type(layer).__name__, shape, isinstance(layer.bias, torch.Tensor), pointwise]


def _seed_projections(
    module: nn.Module, forward: Callable[[], Any], seed: int, tag: str, channels: int
) -> tuple[dict, set]:
    """Set every Linear and Conv2d layer of `module` to `projection_values`, numbered in the order in
    which `forward()` first uses them.

    Returns ({"layers": [_describe_layer(...)] in that order, "other": class names of other modules
    that hold parameters (GroupNorms aside), which the probe cannot set}, ids of the used parameters)."""
    layers = _projection_layers(module)
    with torch.no_grad(), _FirstUse(layers) as first_use:
        forward()
    with torch.no_grad():
        for index, layer in enumerate(first_use.order):
            if getattr(layer, "name", "") == "Parameter":
                layer.weight.copy_(raw_values(seed, tag, index, tuple(layer.weight.shape), channels))
                continue
            weight, bias = projection_values(seed, tag, index, *(int(n) for n in layer.weight.shape[:2]))
            if layer.weight[0].numel() == weight.shape[1]:
                layer.weight.copy_(weight.reshape(layer.weight.shape))
            if isinstance(layer.bias, torch.Tensor):
                layer.bias.copy_(bias)
    known = {id(p) for layer in layers for p in layer.parameters()}
    other = [
        type(m).__name__
        for m in module.modules()
        if _unit_kind(m) != "norm" and any(id(p) not in known for p in m.parameters(recurse=False))
    ]
    used = {id(p) for layer in first_use.order for p in layer.parameters()}
    return {"layers": [_describe_layer(layer) for layer in first_use.order], "other": other}, used


def _layer_names(layers: list) -> str:
    return ", ".join(f"{name}{_fmt(shape)}" for name, shape, *_ in layers) or "none"


def _is_raw_weight(shape: tuple[int, ...], channels: int) -> bool:
    """Whether a bare parameter is a weight rather than a bias: three or more axes, one of them the
    channels; or a matrix with the channels first, or last after at least as many rows (a (3, C) or
    (heads, head_size) table is a bias)."""
    if len(shape) >= 3:
        return channels in shape
    return len(shape) == 2 and (shape[0] == channels or (shape[1] == channels and shape[0] >= channels))


def raw_values(seed: int, tag: str, index: int, shape: tuple[int, ...], channels: int) -> torch.Tensor:
    """Seeded values for a projection kept as a bare nn.Parameter: weights (`_is_raw_weight`) scaled
    like `projection_values`' weights, biases like its biases."""
    values = _randn(seed, f"{tag}/parameter{index}/{'x'.join(map(str, shape))}", tuple(shape))
    return ATTN_GAIN * values / channels**0.5 if _is_raw_weight(shape, channels) else 0.3 * values


def _raw_orientations(value: torch.Tensor, channels: int) -> list[torch.Tensor]:
    """The (out, in = channels) matrices a bare weight parameter may stand for: for each axis of
    `channels` entries taken as the input, the other axes flattened in order as the output
    ((out, in) for F.linear, (in, out) for x @ W, (heads, in, head_size) per head, ...), and when
    that is square its transpose as well (an output projection (heads, head_size, out))."""
    found: list[torch.Tensor] = []
    for axis, size in enumerate(value.shape):
        if size != channels:
            continue
        matrix = value.movedim(axis, -1).reshape(-1, channels)
        for candidate in (matrix, matrix.T) if matrix.shape[0] == channels else (matrix,):
            if not any(candidate.shape == f.shape and torch.equal(candidate, f) for f in found):
                found.append(candidate)
    return found


def _projection_choices(layers: list, seed: int, tag: str, channels: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Every way to read the layers as projections [(weight (out, in), bias (out,))] in order of first
    use, float64. A layer gives one; a bare weight parameter may give several (`_raw_orientations`),
    and a bare bias belongs to the first projection before it of its size that has none."""
    options: list[list[torch.Tensor]] = []
    biases: list[Optional[torch.Tensor]] = []
    for index, (name, shape, has_bias, _) in enumerate(layers):
        if name != "Parameter":
            weight, bias = projection_values(seed, tag, index, shape[0], shape[1])
            options.append([weight.double()])
            biases.append(bias.double() if has_bias else None)
            continue
        value = raw_values(seed, tag, index, tuple(shape), channels).double()
        if _is_raw_weight(tuple(shape), channels):
            options.append(_raw_orientations(value, channels))
            biases.append(None)
            continue
        owner = next((i for i, o in enumerate(options) if biases[i] is None and o and o[0].shape[0] == value.numel()), None)
        if owner is None:
            return []
        biases[owner] = value.flatten()
    choices = []
    for weights in itertools.islice(itertools.product(*options), 64):
        choices.append([(w, b if b is not None else torch.zeros(w.shape[0], dtype=torch.float64)) for w, b in zip(weights, biases)])
    return choices


def _attention_readings(
    layers: list, seed: int, tag: str, channels: int, heads: int, mismatched: bool = False
) -> list[tuple[str, dict]]:
    """Every reading of the seeded projection layers (as `_seed_projections` describes them) as
    multi-head attention, each as (label, {"W_Q": (weight, bias), ..., "W_O": ...}) in float64 and
    in the layout of `_attention_reference` (heads split as '(n e)').

    One projection of channels to channels is the output projection (the last one used, or any
    other); the others, stacked in order of first use, map channels to 3 * channels. Their rows hold queries, keys and values (t) in any order, and heads (n) and
    features (e) in any nesting: '(t n e)' is separate or chunked projections, '(n t e)' is the
    per-head layout of some fused projections. The heads are merged back in the same n/e order (in
    the other order with `mismatched`, a mistake). Raises AssertionError when the layers cannot be
    read as attention."""
    described = _layer_names(layers)
    if not all(pointwise for *_, pointwise in layers):
        raise AssertionError(
            f"its projections must act on each pixel alone (nn.Linear, or nn.Conv2d with a 1x1 kernel); "
            f"it uses {described}"
        )
    choices = _projection_choices(layers, seed, tag, channels)
    readings = [
        reading
        for values in choices
        for arranged in _output_last(values, channels)
        if _fits(arranged, channels)
        for reading in _readings_of(arranged, channels, heads, mismatched)
    ]
    if readings:
        return readings
    if choices and sum(w.shape[0] for w, _ in choices[0]) == 3 * channels:
        raise AssertionError(
            f"it has no output projection ({described}): after merging the heads, apply a "
            f"{channels} -> {channels} projection (nn.Linear or a 1x1 nn.Conv2d)"
        )
    raise AssertionError(
        f"its projections, in the order forward uses them, are {described}: expected projections to "
        f"queries, keys and values ({3 * channels} outputs in all, as three layers or one fused layer), then "
        f"an output projection {channels} -> {channels}"
    )


def _output_last(values: list, channels: int) -> list[list]:
    """The projections with each (channels, channels) one moved last, as the output projection: the
    last one used first, since one call can use several (F.multi_head_attention_forward)."""
    square = [i for i, (w, _) in enumerate(values) if tuple(w.shape) == (channels, channels)]
    return [values[:i] + values[i + 1 :] + [values[i]] for i in reversed(square)] or [values]


def _fits(values: list, channels: int) -> bool:
    """Whether projections [(weight, bias)] are inputs to 3 * channels, then an output projection."""
    return (
        len(values) >= 2
        and sum(w.shape[0] for w, _ in values[:-1]) == 3 * channels
        and tuple(values[-1][0].shape) == (channels, channels)
        and all(w.shape[1] == channels for w, _ in values)
    )


def _readings_of(values: list, channels: int, heads: int, mismatched: bool) -> list[tuple[str, dict]]:
    w_in, b_in = torch.cat([w for w, _ in values[:-1]]), torch.cat([b for _, b in values[:-1]])
    w_out, b_out = values[-1]
    readings = []
    for layout in itertools.permutations("tne"):
        order = {part: rearrange(torch.arange(3 * channels), f"({' '.join(layout)}) -> t (n e)", t=3, n=heads)[i]
                 for i, part in enumerate("qkv")}
        merged = "(e n)" if (layout.index("e") < layout.index("n")) != mismatched else "(n e)"
        columns = rearrange(torch.arange(channels), f"{merged} -> (n e)", n=heads)
        for roles in itertools.permutations("qkv"):
            weights = {
                name: (w_in[order[role]], b_in[order[role]]) for name, role in zip(("W_Q", "W_K", "W_V"), roles)
            }
            weights["W_O"] = (w_out[:, columns], b_out)
            readings.append((f"{''.join(roles)} in the layout ({' '.join(layout)})", weights))
    return readings


def _closest_reading(out: torch.Tensor, x: torch.Tensor, readings: list, heads: int) -> tuple[float, str, dict]:
    """(relative error, label, weights) of the reading whose attention output is nearest to `out`."""
    best = None
    for label, weights in readings:
        expected = _attention_reference(x, weights, heads)
        error = ((out - expected).abs() / (1 + expected.abs())).max().item()
        if best is None or error < best[0]:
            best = (error, label, weights)
    return best


def _attention_reference(
    x: torch.Tensor,
    weights: dict,
    heads: int,
    *,
    scale: Optional[float] = None,
    reshape_heads: bool = False,
    project_out: bool = True,
    softmax_over_queries: bool = False,
) -> torch.Tensor:
    """Multi-head self-attention over pixels, x: (batch, channels, height, width) -> same shape, with
    head i on channels i * head_size to (i + 1) * head_size - 1 of the projections.

    Built on F.scaled_dot_product_attention; the keyword arguments reproduce known mistakes."""
    batch, channels, height, width = x.shape
    scale = scale if scale else (channels // heads) ** -0.5
    pixels = rearrange(x, "b c h w -> b (h w) c")
    q, k, v = (F.linear(pixels, *weights[name]) for name in ("W_Q", "W_K", "W_V"))
    if reshape_heads:
        q, k, v = (y.reshape(batch, heads, height * width, channels // heads) for y in (q, k, v))
    else:
        q, k, v = (rearrange(y, "b s (n e) -> b n s e", n=heads) for y in (q, k, v))
    if softmax_over_queries:
        mixed = ((q @ k.transpose(-1, -2)) * scale).softmax(dim=-2) @ v
    else:
        mixed = F.scaled_dot_product_attention(q, k, v, scale=scale)
    if reshape_heads:
        merged = mixed.reshape(batch, height * width, channels)
    else:
        merged = rearrange(mixed, "b n s e -> b s (n e)")
    if project_out:
        merged = F.linear(merged, *weights["W_O"])
    return rearrange(merged, "b (h w) c -> b c h w", h=height)


def _attention_mistakes(x: torch.Tensor, weights: dict, heads: int) -> list:
    """Known mistakes as (compute, message): each computes what that mistake would output."""
    channels = x.shape[1]
    head_size = channels // heads

    def attend(heads: int = heads, **mistake):
        return lambda: _attention_reference(x, weights, heads, **mistake)

    mistakes = [
        (attend(scale=1.0), f"The scores are not scaled: divide them by sqrt(head_size) = sqrt({head_size})."),
        (
            attend(scale=channels**-0.5),
            f"The scores are scaled by 1/sqrt(channels) = 1/sqrt({channels}); scale them by 1/sqrt(head_size) = "
            f"1/sqrt({head_size}), the size of one head.",
        ),
        (attend(scale=1 / head_size), "The scores are divided by head_size: divide by its square root."),
        (
            attend(softmax_over_queries=True),
            "The attention weights do not sum to 1 over the keys: take the softmax over the key dimension "
            "(the last one of a (batch, heads, queries, keys) score tensor).",
        ),
    ]
    if heads > 1:
        mistakes += [
            (attend(heads=1), f"You use a single head: split the channels into num_heads = {heads} heads."),
            (
                attend(heads=1, scale=head_size**-0.5),
                f"You use a single head: split the channels into num_heads = {heads} heads.",
            ),
            (
                attend(reshape_heads=True),
                "The heads are made with a reshape that does not move the head axis: (batch, seq, channels) must "
                "become (batch, heads, seq, head_size) with rearrange 'b s (n h) -> b n s h' (a transpose, not a "
                "view).",
            ),
        ]
    return mistakes


def _single_pixel_output(pixel: torch.Tensor, weights: dict) -> torch.Tensor:
    """What attention outputs for a 1x1 image: the output projection of the pixel's value."""
    values = F.linear(rearrange(pixel, "b c h w -> b (h w) c"), *weights["W_V"])
    return rearrange(F.linear(values, *weights["W_O"]), "b (h w) c -> b c h w", h=1)


def _attention_behaviour(data: dict, prefix: str, inputs: dict, readings: list, heads: int) -> Optional[str]:
    """Black-box properties of self-attention over pixels; the first one violated, as a message.
    `readings`: the ways of reading the student's projections (`_attention_readings`)."""
    out = _tensor(data, f"{prefix}out", "The output", ATTN_SHAPE)
    pixel = inputs["pixel"].double()
    single = _tensor(data, f"{prefix}out_pixel", "The output for a 1x1 image", pixel.shape)
    if not any(_close(single, _single_pixel_output(pixel, weights)) for _, weights in readings):
        return (
            "With a single pixel, a query can only attend to itself, so the output must be the output projection "
            "of that pixel's value; yours differs. Are you attending over channels instead of pixels? The "
            "sequence axis is height * width and the feature axis is channels."
        )
    permuted = _tensor(data, f"{prefix}out_permuted", "The output for permuted pixels", ATTN_SHAPE)
    if not _close(permuted, _permute_pixels(out, inputs["order"])):
        return (
            "Permuting the pixels of the input should permute the output pixels the same way; yours come "
            "back in a different order. Undo your flattening with the same pattern: "
            "'b c h w -> b (h w) c' there, 'b (h w) c -> b c h w' (h=height) back."
        )
    poked = _tensor(data, f"{prefix}out_poked", "The output after changing one pixel", ATTN_SHAPE)
    # pixels that the change moves clearly under every reading, yet do not move in the student's output
    clearly = torch.stack([
        (_attention_reference(inputs["poked"], weights, heads) - _attention_reference(inputs["x"], weights, heads))
        .abs().amax(dim=1) > 1e-3
        for _, weights in readings
    ]).all(dim=0)
    still = clearly & ((poked - out).abs().amax(dim=1) <= 1e-7)
    if bool(still.any()):
        return (
            f"Changing one input pixel left {int(still.sum())} output pixels unchanged: every pixel "
            "must attend to every pixel of its image, as one sequence of height * width = "
            f"{ATTN_SHAPE[2] * ATTN_SHAPE[3]} tokens."
        )
    return None


def _probe_attention_runs(data: dict, module: nn.Module, prefix: str, inputs: dict, device: str, seed: int) -> None:
    """Seed the projections, run the module on x and on the behavioural inputs; record the outputs and
    the used parameters that get no gradient."""
    name = type(module).__name__
    data["stage"] = f"running {name} on an input of shape {_fmt(ATTN_SHAPE)}"
    x = inputs["x"].to(device)
    data[f"{prefix}projections"], used = _seed_projections(module, lambda: module(x), seed, prefix, ATTN_SHAPE[1])
    out = module(x)
    data[f"{prefix}out"] = _plain(out)
    data["stage"] = f"backpropagating through {name}"
    data[f"{prefix}missing_grads"] = _backward(module, [out], seed, prefix, used)
    with torch.no_grad():
        for key, label in (
            ("pixel", "a 1x1 image"),
            ("permuted", "an input with permuted pixels"),
            ("poked", "an input with one pixel changed"),
        ):
            data["stage"] = f"running {name} on {label}"
            data[f"{prefix}out_{key}"] = _plain(module(inputs[key].to(device)))


def probe_self_attention(SelfAttention, seed: int = SEED, device: Optional[str] = None) -> dict:
    channels = ATTN_SHAPE[1]

    def run(data: dict, device: str) -> None:
        for heads in ATTN_HEADS:
            call = f"SelfAttention({channels})" if heads == 4 else f"SelfAttention({channels}, num_heads={heads})"
            data["stage"] = f"building {call}"
            attention = SelfAttention(channels) if heads == 4 else SelfAttention(channels, num_heads=heads)
            attention.to(device)
            _probe_attention_runs(data, attention, f"h{heads}_", _attention_inputs(seed, f"attention/{heads}"), device, seed)

    return _probe(run, seed, device)


def _merged_in_another_order(out, x, layers: list, seed: int, tag: str, heads: int) -> Optional[str]:
    readings = _attention_readings(layers, seed, tag, x.shape[1], heads, mismatched=True)
    if _closest_reading(out, x, readings, heads)[0] <= TOL:
        return (
            "The heads are merged back in another channel order than they were split: merge with the same "
            "pattern you split with, for example 'b s (n e) -> b n s e' and then 'b n s e -> b s (n e)'."
        )
    return None


def _double(inputs: dict) -> dict:
    return {k: (v.double() if v.is_floating_point() else v) for k, v in inputs.items()}


def _check_settable(projections: dict, subject: str) -> None:
    other = [str(name) for name in projections["other"]]
    if other:
        raise AssertionError(
            f"{subject} keeps parameters outside nn.Linear and nn.Conv2d layers (in {', '.join(other[:4])}), so "
            "the test cannot set its projections to check the heads: build the projections from nn.Linear or 1x1 "
            "nn.Conv2d layers."
        )


@_judge
def judge_self_attention(data: dict, seed: int = SEED) -> str:
    _raise_probe_error(data, "SelfAttention")
    channels = ATTN_SHAPE[1]
    for heads in ATTN_HEADS:
        prefix = f"h{heads}_"
        subject = f"SelfAttention({channels}, num_heads={heads})"
        projections = data[f"{prefix}projections"]
        _check_settable(projections, subject)
        try:
            readings = _attention_readings(projections["layers"], seed, prefix, channels, heads)
        except AssertionError as problem:
            raise AssertionError(f"{subject}: {problem}.") from None
        inputs = _double(_attention_inputs(seed, f"attention/{heads}"))
        out = _tensor(data, f"{prefix}out", f"The output of {subject}", ATTN_SHAPE)
        error, _, weights = _closest_reading(out, inputs["x"], readings, heads)
        if error > TOL:
            cause = (
                _first_match_in_any(out, readings, lambda weights: _attention_mistakes(inputs["x"], weights, heads))
                or _merged_in_another_order(out, inputs["x"], projections["layers"], seed, prefix, heads)
                or _attention_behaviour(data, prefix, inputs, readings, heads)
                or "Compare each step with the recipe: project, split heads, scaled scores, softmax over keys, "
                "weighted values, merge heads, project."
            )
            raise AssertionError(
                f"{subject} differs from multi-head attention with your projections by up to {error:.3g} "
                f"(relative) on an input of shape {_fmt(ATTN_SHAPE)}. {cause}"
            )
        for key, label in (("pixel", "a 1x1 image"), ("permuted", "permuted pixels"), ("poked", "one pixel changed")):
            # the same reading of the projections must also fit the other inputs
            found = _tensor(data, f"{prefix}out_{key}", f"The output of {subject} for {label}", inputs[key].shape)
            if not _close(found, _attention_reference(inputs[key], weights, heads)):
                problem = _attention_behaviour(data, prefix, inputs, readings, heads) or (
                    "Check that nothing in your forward depends on the input's height and width."
                )
                raise AssertionError(f"{subject} is right on one input but not on {label}: {problem}")
        _check_no_missing_grads(data, f"{prefix}missing_grads", "SelfAttention")
    return (
        "matches multi-head attention with 4 (default) and 2 heads on a 3x5 image, with your projections "
        "however they are laid out; global, equivariant to permuting pixels"
    )


# ---------------------------------------------------------------------------------------------
# AttentionBlock
# ---------------------------------------------------------------------------------------------


def _attention_block_input(seed: int) -> dict[str, Any]:
    """The attention inputs, shifted and scaled so that normalising them matters."""
    inputs = _attention_inputs(seed, "attention_block")
    for key in ("x", "pixel", "poked", "permuted"):
        inputs[key] = 2 * inputs[key] + 1
    return inputs


def probe_attention_block(AttentionBlock, seed: int = SEED, device: Optional[str] = None) -> dict:
    channels = ATTN_SHAPE[1]

    def run(data: dict, device: str) -> None:
        data["stage"] = f"building AttentionBlock({channels})"
        block = AttentionBlock(channels)
        block.to(device)
        x = _attention_block_input(seed)["x"].to(device)
        data["stage"] = f"running AttentionBlock({channels}) on an input of shape {_fmt(ATTN_SHAPE)}"
        data["projections"], used = _seed_projections(block, lambda: block(x), seed, "attention_block", channels)
        out = block(x)
        data["out"] = _plain(out)
        data["stage"] = "backpropagating through AttentionBlock"
        data["missing_grads"] = _backward(block, [out], seed, "attention_block", used)

    return _probe(run, seed, device)


def _attention_block_mistakes(x: torch.Tensor, weights: dict) -> list:
    attend = lambda y: _attention_reference(y, weights, 4)
    normed = lambda groups: F.group_norm(x, groups, eps=GN_DEFAULT_EPS)
    mistakes = [
        (
            lambda: attend(normed(1)),
            "The block does not add its input back: return x + attention(norm(x)), the residual connection of the "
            "diagram.",
        ),
        (
            lambda: normed(1) + attend(normed(1)),
            "The block adds the normalised input back: the shortcut carries the raw input, x + attention(norm(x)).",
        ),
        (lambda: x + attend(x), "The attention sees the raw input: normalise it first with GroupNorm(1, channels)."),
    ]
    for groups in (2, 4, 8):
        mistakes.append(
            (
                lambda groups=groups: x + attend(normed(groups)),
                f"The norm uses {groups} groups; the attention block normalises with a single group.",
            )
        )
    return mistakes


def _other_head_counts(out: torch.Tensor, x: torch.Tensor, layers: list, seed: int) -> Optional[str]:
    """The message for an AttentionBlock whose SelfAttention has another number of heads than 4."""
    normed = F.group_norm(x, 1, eps=GN_DEFAULT_EPS)
    for heads in (1, 2, 8):
        readings = _attention_readings(layers, seed, "attention_block", x.shape[1], heads)
        if _closest_reading(out - x, normed, readings, heads)[0] <= TOL:
            return f"The SelfAttention inside AttentionBlock has {heads} head(s); it should have 4 heads."
    return None


@_judge
def judge_attention_block(data: dict, seed: int = SEED) -> str:
    _raise_probe_error(data, "AttentionBlock")
    channels = ATTN_SHAPE[1]
    subject = f"AttentionBlock({channels})"
    projections = data["projections"]
    _check_settable(projections, subject)
    try:
        readings = _attention_readings(projections["layers"], seed, "attention_block", channels, 4)
    except AssertionError as problem:
        raise AssertionError(f"The SelfAttention inside {subject}: {problem}.") from None
    x = _attention_block_input(seed)["x"].double()
    out = _tensor(data, "out", f"The output of {subject}", ATTN_SHAPE)
    normed = F.group_norm(x, 1, eps=GN_DEFAULT_EPS)
    error, _, weights = _closest_reading(out - x, normed, readings, 4)
    if error > TOL:
        expected = x + _attention_reference(normed, weights, 4)
        cause = (
            _first_match_in_any(out, readings, lambda weights: _attention_block_mistakes(x, weights))
            or _other_head_counts(out, x, projections["layers"], seed)
            or "Follow the diagram: x + attention(groupnorm_1_group(x)). The block runs your GroupNorm and "
            "SelfAttention: if test_groupnorm or test_self_attention fails, fix that first."
        )
        raise AssertionError(
            f"{subject} differs from x + attention(norm(x)) by up to {_max_error(out, expected):.3g}. {cause}"
        )
    _check_no_missing_grads(data, "missing_grads", "AttentionBlock")
    return "equals x + SelfAttention(GroupNorm(1 group)(x)) with 4 heads"


# ---------------------------------------------------------------------------------------------
# Blocks that take the step embedding: shared inputs
# ---------------------------------------------------------------------------------------------

STEP_DIM = 6
BATCH = 2


def _block_inputs(seed: int, tag: str, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """x and a large x of `shape`, and two step embeddings (batch, STEP_DIM)."""
    return {
        "x": _randn(seed, f"{tag}/x", shape),
        "x_big": 5 * _randn(seed, f"{tag}/x_big", shape),
        "emb": _randn(seed, f"{tag}/emb", (shape[0], STEP_DIM)),
        "emb2": _randn(seed, f"{tag}/emb2", (shape[0], STEP_DIM)),
    }


def _check_batch_independence(batched: list[torch.Tensor], alone: list[torch.Tensor], subject: str) -> None:
    """Run alone, the first example must give the first row of the batched output."""
    if not all(_close(single, full[:1]) for single, full in zip(alone, batched)):
        raise AssertionError(
            f"The output of {subject} for one example changes when another example shares its batch: something "
            "mixes the examples (statistics over the batch dimension?). Process every example on its own."
        )


def _check_step_effect(outputs: list[tuple[torch.Tensor, torch.Tensor]], subject: str) -> None:
    if not any(_changes(a, b) for a, b in outputs):
        raise AssertionError(
            f"The step embedding has no effect on the output of {subject}: pass it to every residual block, "
            "which adds its projection between the two convolutions."
        )


# ---------------------------------------------------------------------------------------------
# ResidualBlock
# ---------------------------------------------------------------------------------------------

RES_CONFIGS = {"change": (4, 8, 2), "same": (8, 8, 4)}  # name -> (input channels, output channels, groups)
RES_SIZE = (5, 6)


def probe_residual_block(ResidualBlock, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        for name, (c_in, c_out, groups) in RES_CONFIGS.items():
            call = f"ResidualBlock({c_in}, {c_out}, {STEP_DIM}, {groups})"
            data["stage"] = f"building {call}"
            block = ResidualBlock(c_in, c_out, STEP_DIM, groups)
            data[f"{name}_params"] = _count(block)
            data[f"{name}_param_shapes"] = _param_shapes(block)
            block.to(device)
            inputs = {
                k: v.to(device) for k, v in _block_inputs(seed, f"residual/{name}", (BATCH, c_in, *RES_SIZE)).items()
            }
            data["stage"] = f"running {call} on x {_fmt(inputs['x'].shape)} and step_emb {_fmt(inputs['emb'].shape)}"
            out = block(inputs["x"], inputs["emb"])
            data[f"{name}_out"] = _plain(out)
            data["stage"] = f"backpropagating through {call}"
            data[f"{name}_missing_grads"] = _backward(block, [out], seed, f"residual/{name}")
            with torch.no_grad():
                for key, x, emb in (
                    ("x_emb2", "x", "emb2"),
                    ("big_emb", "x_big", "emb"),
                    ("big_emb2", "x_big", "emb2"),
                ):
                    data["stage"] = (
                        f"running {call} on x {_fmt(inputs[x].shape)} and step_emb {_fmt(inputs[emb].shape)}"
                    )
                    data[f"{name}_out_{key}"] = _plain(block(inputs[x], inputs[emb]))
                data["stage"] = f"running {call} on the first example alone"
                data[f"{name}_out_first"] = _plain(block(inputs["x"][:1], inputs["emb"][:1]))
            data["stage"] = f"running {call} with the grader's weights"
            _probe_grader_weights(
                data, f"{name}_", block, lambda: block(inputs["x"], inputs["emb"]), seed, f"residual/{name}"
            )

    return _probe(run, seed, device)


@_judge
def judge_residual_block(data: dict, seed: int = SEED) -> str:
    _raise_probe_error(data, "ResidualBlock")
    for name, (c_in, c_out, groups) in RES_CONFIGS.items():
        subject = f"ResidualBlock({c_in}, {c_out}, {STEP_DIM}, {groups})"
        shape = (BATCH, c_out, *RES_SIZE)
        out, out_emb2, big, big_emb2 = (
            _tensor(data, f"{name}_{key}", f"The output of {subject}", shape)
            for key in ("out", "out_x_emb2", "out_big_emb", "out_big_emb2")
        )
        first = _tensor(data, f"{name}_out_first", f"The output of {subject}", (1, *shape[1:]))
        _check_batch_independence([out], [first], subject)
        _check_step_effect([(out, out_emb2)], subject)
        emb_effect, emb_effect_big = out - out_emb2, big - big_emb2
        if _max_error(emb_effect, emb_effect_big) <= TOL * (1 + emb_effect.abs().max().item()):
            raise AssertionError(
                f"In {subject} the step embedding shifts the output by the same amount whatever the input: it is "
                "added after the second (conv, norm, SiLU) round. Add it between the two rounds, so that the "
                "second convolution sees it."
            )
        if min(big.min().item(), big_emb2.min().item()) >= SILU_MIN - 1e-4:
            raise AssertionError(
                f"{subject} never outputs less than {SILU_MIN:.3f}, the minimum of SiLU, even for strongly "
                "negative inputs: its output is the main branch alone. Add the shortcut (x itself, or its 1x1 conv "
                "when the channels change) to the main branch."
            )
        expected = _residual_params(c_in, c_out, STEP_DIM)
        known = {
            _conv_params(c_in, c_out, 1): "The 1x1 shortcut conv is only needed when the channel count changes; "
            "use the identity when input_channels == output_channels.",
            -_shortcut_params(c_in, c_out): "The shortcut needs a 1x1 conv when the channel count changes.",
            -4 * c_out: "The two GroupNorms should be affine, with a weight and a bias per channel.",
            -_linear_params(STEP_DIM, c_out): f"The step embedding needs its own (SiLU, Linear({STEP_DIM}, {c_out})).",
        }
        _check_param_count(int(data[f"{name}_params"]), expected, subject, data[f"{name}_param_shapes"], known)
        _check_no_missing_grads(data, f"{name}_missing_grads", subject)
    return (
        "output shapes, parameter counts (1x1 shortcut only when channels change), step embedding used between "
        f"the convolutions, shortcut present{NUMBERS_CHECKED}"
    )


# ---------------------------------------------------------------------------------------------
# DownBlock
# ---------------------------------------------------------------------------------------------

DOWN = (4, 8, 2)  # channels_in, channels_out, groups
DOWN_SIZE = (8, 6)


def _pair(value: Any) -> Any:
    """A block's (output, skip) pair as two plain tensors, or a description of what came back."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return [_plain(value[0]), _plain(value[1])]
    size = f" of length {len(value)}" if isinstance(value, (tuple, list)) else ""
    return f"a {type(value).__name__}{size}"


def probe_downblock(DownBlock, seed: int = SEED, downsample: bool = True, device: Optional[str] = None) -> dict:
    c_in, c_out, groups = DOWN

    def run(data: dict, device: str) -> None:
        call = f"DownBlock({c_in}, {c_out}, {STEP_DIM}, {groups}, downsample={downsample})"
        data["stage"] = f"building {call}"
        block = DownBlock(c_in, c_out, STEP_DIM, groups, downsample)
        data["params"] = _count(block)
        data["param_shapes"] = _param_shapes(block)
        block.to(device)
        inputs = {k: v.to(device) for k, v in _block_inputs(seed, "down", (BATCH, c_in, *DOWN_SIZE)).items()}
        data["stage"] = f"running {call} on x {_fmt(inputs['x'].shape)}"
        result = block(inputs["x"], inputs["emb"])
        data["out"] = _pair(result)
        if isinstance(data["out"], str):
            return
        data["stage"] = f"backpropagating through {call}"
        data["missing_grads"] = _backward(block, list(result), seed, "down")
        with torch.no_grad():
            data["stage"] = f"running {call} with another step embedding"
            data["out_emb2"] = _pair(block(inputs["x"], inputs["emb2"]))
            data["stage"] = f"running {call} on the first example alone"
            data["out_first"] = _pair(block(inputs["x"][:1], inputs["emb"][:1]))
            odd = (BATCH, c_in, 5, 6) if downsample else (BATCH, c_in, 5, 7)
            data["stage"] = f"running {call} on x of odd height {_fmt(odd)}"
            try:
                block(_randn(seed, "down/odd", odd).to(device), inputs["emb"])
                data["odd"] = "no error"
            except Exception as exc:  # the lesson asks for an assert here
                data["odd"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        data["stage"] = f"running {call} with the grader's weights"
        _probe_grader_weights(data, "", block, lambda: block(inputs["x"], inputs["emb"]), seed, "down")

    return _probe(run, seed, device)


def _check_pair(data: dict, key: str, subject: str, shapes: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    value = data[key]
    if isinstance(value, str):
        raise AssertionError(f"{subject} returned {value}; it should return a tuple (downsampled output, skip).")
    found = tuple(tuple(v.shape) if isinstance(v, torch.Tensor) else v for v in value)
    if found == shapes[::-1] and shapes[0] != shapes[1]:
        raise AssertionError(f"{subject} returned (skip, output): return the downsampled output first, then the skip.")
    if found[0] == found[1] == shapes[0] and shapes[0] != shapes[1]:
        raise AssertionError(
            f"{subject} returned a skip of shape {_fmt(found[1])}, taken after downsampling: the skip is the "
            "full-size output of the attention block, before the 4x4 conv."
        )
    names = ("output", "skip")
    return tuple(_as_tensor(v, f"The {n} of {subject}", s) for v, n, s in zip(value, names, shapes))


@_judge
def judge_downblock(data: dict, seed: int = SEED, downsample: bool = True) -> str:
    _raise_probe_error(data, "DownBlock")
    c_in, c_out, groups = DOWN
    subject = f"DownBlock({c_in}, {c_out}, {STEP_DIM}, {groups}, downsample={downsample})"
    height, width = DOWN_SIZE
    full = (BATCH, c_out, height, width)
    small = (BATCH, c_out, height // 2, width // 2) if downsample else full
    if isinstance(data["out"], list):
        found = tuple(tuple(v.shape) if isinstance(v, torch.Tensor) else v for v in data["out"])
        if not downsample and found[0] != full:
            raise AssertionError(
                f"{subject} returned an output of shape {_fmt(found[0])}: with downsample=False leave out the "
                f"4x4 conv, so both outputs keep the input's height and width {_fmt(full)}."
            )
        if downsample and found == (full, full):
            raise AssertionError(
                f"{subject} did not downsample: with downsample=True apply the 4x4 conv with stride 2."
            )
    out, skip = _check_pair(data, "out", subject, (small, full))
    if not downsample and not _close(out, skip):
        raise AssertionError(f"With downsample=False both outputs of {subject} should be the same tensor.")
    out2, skip2 = _check_pair(data, "out_emb2", subject, (small, full))
    alone = _check_pair(data, "out_first", subject, tuple((1, *shape[1:]) for shape in (small, full)))
    _check_batch_independence([out, skip], list(alone), subject)
    _check_step_effect([(out, out2), (skip, skip2)], subject)
    down = _conv_params(c_out, c_out, 4)
    known = {
        -down: "The 4x4 conv with stride 2 and padding 1 is missing.",
        down: "With downsample=False there is no 4x4 conv.",
        -_attention_block_params(c_out): "The attention block is missing.",
    }
    _check_param_count(
        int(data["params"]),
        _down_params(c_in, c_out, STEP_DIM, downsample),
        subject,
        data["param_shapes"],
        known,
        attention=(c_out,),
    )
    _check_no_missing_grads(data, "missing_grads", subject)
    size = "halved output and full-size skip" if downsample else "two full-size outputs"
    # Good practice, not a requirement: it only ever adds a note.
    advice = ""
    if downsample and str(data["odd"]) == "no error":
        advice = " (a tip, no points involved: assert that the height and width are even before halving them)"
    return f"{size}, parameter count, step embedding used{NUMBERS_CHECKED}{advice}"


# ---------------------------------------------------------------------------------------------
# UpBlock
# ---------------------------------------------------------------------------------------------

UP = (4, 8, 2)  # dim_in, dim_out (of the matching DownBlock), groups
UP_SIZE = (4, 3)


def probe_upblock(UpBlock, seed: int = SEED, upsample: bool = True, device: Optional[str] = None) -> dict:
    dim_in, dim_out, groups = UP

    def run(data: dict, device: str) -> None:
        call = f"UpBlock({dim_in}, {dim_out}, {STEP_DIM}, {groups}, upsample={upsample})"
        data["stage"] = f"building {call}"
        block = UpBlock(dim_in, dim_out, STEP_DIM, groups, upsample)
        data["params"] = _count(block)
        data["param_shapes"] = _param_shapes(block)
        block.to(device)
        inputs = {k: v.to(device) for k, v in _block_inputs(seed, "up", (BATCH, dim_out, *UP_SIZE)).items()}
        x, emb, skip = inputs["x"], inputs["emb"], _randn(seed, "up/skip", tuple(inputs["x"].shape)).to(device)
        data["stage"] = f"running {call} on x and skip of shape {_fmt(x.shape)}"
        out = block(x, emb, skip)
        data["out"] = _plain(out)
        data["stage"] = f"backpropagating through {call}"
        data["missing_grads"] = _backward(block, [out], seed, "up")
        with torch.no_grad():
            variants = {
                "emb2": ("another step embedding", (x, inputs["emb2"], skip)),
                "skip2": ("another skip", (x, emb, -skip)),
                "swapped": ("x and skip swapped", (skip, emb, x)),
            }
            for key, (label, args) in variants.items():
                data["stage"] = f"running {call} with {label}"
                data[f"out_{key}"] = _plain(block(*args))
            data["stage"] = f"running {call} on the first example alone"
            data["out_first"] = _plain(block(x[:1], emb[:1], skip[:1]))
        data["stage"] = f"running {call} with the grader's weights"
        _probe_grader_weights(data, "", block, lambda: block(x, emb, skip), seed, "up")

    return _probe(run, seed, device)


@_judge
def judge_upblock(data: dict, seed: int = SEED, upsample: bool = True) -> str:
    _raise_probe_error(data, "UpBlock")
    dim_in, dim_out, groups = UP
    subject = f"UpBlock({dim_in}, {dim_out}, {STEP_DIM}, {groups}, upsample={upsample})"
    height, width = UP_SIZE
    scale = 2 if upsample else 1
    shape = (BATCH, dim_in, scale * height, scale * width)
    value = data["out"]
    if isinstance(value, torch.Tensor) and tuple(value.shape) != shape:
        resize = "doubles" if upsample else "keeps"
        raise AssertionError(
            f"The output of {subject} has shape {_fmt(value.shape)}, expected {_fmt(shape)}: with "
            f"upsample={upsample} the block {resize} the height and width and ends with dim_in = {dim_in} channels."
        )
    out, out_emb2, out_skip2, swapped = (
        _tensor(data, key, f"The output of {subject}", shape) for key in ("out", "out_emb2", "out_skip2", "out_swapped")
    )
    _check_batch_independence([out], [_tensor(data, "out_first", f"The output of {subject}", (1, *shape[1:]))], subject)
    if not _changes(out, out_skip2):
        raise AssertionError(
            f"The skip input has no effect on {subject}: concatenate it with x along the channels, "
            "t.cat([x, skip], dim=1), before the first residual block."
        )
    if _close(out, swapped, 1e-6):
        raise AssertionError(
            f"{subject} gives the same output when x and skip are swapped, so it adds them: concatenate them along "
            "the channels instead (t.cat([x, skip], dim=1)), so the first residual block sees 2 * dim_out channels."
        )
    if upsample:
        blocks = rearrange(out, "b c (h i) (w j) -> b c h w (i j)", i=2, j=2)
        if _max_error(blocks, blocks[..., :1].expand_as(blocks)) < 1e-6:
            raise AssertionError(
                f"The output of {subject} repeats in 2x2 blocks: that is nearest-neighbour upsampling. Use the 4x4 "
                f"transposed convolution, ConvTranspose2d({dim_in}, {dim_in}, 4, stride=2, padding=1)."
            )
    _check_step_effect([(out, out_emb2)], subject)
    up = _conv_params(dim_in, dim_in, 4)
    known = {
        -up: "The 4x4 transposed convolution (stride 2, padding 1) is missing.",
        up: "With upsample=False there is no transposed convolution.",
        -(
            _residual_params(2 * dim_out, dim_in, STEP_DIM) - _residual_params(dim_out, dim_in, STEP_DIM)
        ): "The first residual block should take 2 * dim_out channels: x and skip concatenated.",
    }
    _check_param_count(
        int(data["params"]),
        _up_params(dim_in, dim_out, STEP_DIM, upsample),
        subject,
        data["param_shapes"],
        known,
        attention=(dim_in,),
    )
    _check_no_missing_grads(data, "missing_grads", subject)
    size = "doubled" if upsample else "kept"
    return (
        f"output shape ({size} size), skip concatenated (not added), parameter count, step embedding used"
        f"{NUMBERS_CHECKED}"
    )


# ---------------------------------------------------------------------------------------------
# MidBlock
# ---------------------------------------------------------------------------------------------

MID = (8, 2)  # mid_dim, groups
MID_SIZE = (4, 3)
MID_ORDER = ["residual", "attention", "residual"]


@contextlib.contextmanager
def _recording_calls(block: nn.Module, step_dim: int, calls: list) -> Iterator[None]:
    """Record the order in which the block first uses its attention (an AttentionBlock, or a
    SelfAttention outside one) and each Linear layer that projects the step embedding (one per
    residual block), without knowing attribute names: a layer counts when any torch call uses its
    parameters, so F.linear(emb, layer.weight, layer.bias) counts too."""
    candidates = [m for m in block.modules() if _is_a(m, "AttentionBlock") or _is_attention(m)]
    nested = {id(sub) for a in candidates for sub in a.modules() if sub is not a}
    attentions = [m for m in candidates if id(m) not in nested]
    inside = {id(sub) for a in attentions for sub in a.modules()}
    projections = [
        m for m in block.modules() if isinstance(m, nn.Linear) and m.in_features == step_dim and id(m) not in inside
    ]
    labels = {**{id(m): "attention" for m in attentions}, **{id(m): "residual" for m in projections}}
    with _FirstUse(attentions + projections) as first_use:
        yield
    calls.extend(labels[id(m)] for m in first_use.order)


def probe_midblock(MidBlock, seed: int = SEED, device: Optional[str] = None) -> dict:
    mid, groups = MID

    def run(data: dict, device: str) -> None:
        call = f"MidBlock({mid}, {STEP_DIM}, {groups})"
        data["stage"] = f"building {call}"
        block = MidBlock(mid, STEP_DIM, groups)
        data["params"] = _count(block)
        data["param_shapes"] = _param_shapes(block)
        block.to(device)
        inputs = {k: v.to(device) for k, v in _block_inputs(seed, "mid", (BATCH, mid, *MID_SIZE)).items()}
        data["stage"] = f"running {call} on x {_fmt(inputs['x'].shape)}"
        calls: list[str] = []
        with _recording_calls(block, STEP_DIM, calls):
            out = block(inputs["x"], inputs["emb"])
        data["calls"] = calls
        data["out"] = _plain(out)
        data["stage"] = f"backpropagating through {call}"
        data["missing_grads"] = _backward(block, [out], seed, "mid")
        data["stage"] = f"running {call} with another step embedding"
        with torch.no_grad():
            data["out_emb2"] = _plain(block(inputs["x"], inputs["emb2"]))
            data["stage"] = f"running {call} on the first example alone"
            data["out_first"] = _plain(block(inputs["x"][:1], inputs["emb"][:1]))
        data["stage"] = f"running {call} with the grader's weights"
        _probe_grader_weights(data, "", block, lambda: block(inputs["x"], inputs["emb"]), seed, "mid")

    return _probe(run, seed, device)


@_judge
def judge_midblock(data: dict, seed: int = SEED) -> str:
    _raise_probe_error(data, "MidBlock")
    mid, groups = MID
    subject = f"MidBlock({mid}, {STEP_DIM}, {groups})"
    shape = (BATCH, mid, *MID_SIZE)
    out, out_emb2 = (_tensor(data, key, f"The output of {subject}", shape) for key in ("out", "out_emb2"))
    _check_batch_independence([out], [_tensor(data, "out_first", f"The output of {subject}", (1, *shape[1:]))], subject)
    _check_step_effect([(out, out_emb2)], subject)
    calls = [str(c) for c in data["calls"]]
    # Without one attention and two step projections to watch, the order cannot be seen here; the
    # grader's weights check still checks it.
    if calls.count("attention") == 1 and calls.count("residual") == 2 and calls != MID_ORDER:
        raise AssertionError(
            f"{subject} runs {' -> '.join(calls)}; it should run residual block -> attention block -> residual "
            "block. (Detected from the calls of your AttentionBlock or SelfAttention and of the Linear layers that "
            "project the step embedding.)"
        )
    known = {-_attention_block_params(mid): "The attention block is missing."}
    _check_param_count(
        int(data["params"]), _mid_params(mid, STEP_DIM), subject, data["param_shapes"], known, attention=(mid,)
    )
    _check_no_missing_grads(data, "missing_grads", subject)
    order = "residual -> attention -> residual, " if [str(c) for c in data["calls"]] == MID_ORDER else ""
    return f"{order}shape kept, parameter count, step embedding used{NUMBERS_CHECKED}"


# ---------------------------------------------------------------------------------------------
# Unet
# ---------------------------------------------------------------------------------------------

UNET = dict(image_shape=(3, 8, 12), channels=8, dim_mults=(1, 2), groups=2, max_steps=20)


def _unet_steps(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (batch,) int64 step tensors in 1..max_steps that differ only for image 1."""
    max_steps = UNET["max_steps"]
    steps = _randint(seed, "unet/steps", 1, max_steps + 1, (BATCH,))
    other = steps.clone()
    other[1] = steps[1] % max_steps + 1
    return steps, other


def _unet_params(image_shape, channels, dim_mults, groups, max_steps) -> int:
    emb = 4 * channels
    dims = [channels] + [m * channels for m in dim_mults]
    pairs = list(zip(dims[:-1], dims[1:]))
    step_mlp = _linear_params(max_steps, emb) + _linear_params(emb, emb)
    downs = sum(_down_params(c_in, c_out, emb, i < len(pairs) - 1) for i, (c_in, c_out) in enumerate(pairs))
    ups = sum(_up_params(c_in, c_out, emb, True) for c_in, c_out in pairs[1:])
    convs = _conv_params(image_shape[0], channels, 7) + _conv_params(channels, image_shape[0], 1)
    return step_mlp + convs + downs + _mid_params(dims[-1], emb) + ups + _residual_params(channels, channels, emb)


def _unet_attention_channels() -> tuple[int, ...]:
    """The channels of every attention in the tests' Unet: one per down block, the mid block, and one
    per up block."""
    dims = [UNET["channels"]] + [m * UNET["channels"] for m in UNET["dim_mults"]]
    return (*dims[1:], dims[-1], *dims[1:-1])


def _diffusion_model_class():
    try:
        from w3d4_part1_diffusion_training_solution import DiffusionModel
    except ImportError:
        return None
    return DiffusionModel


def probe_unet(Unet, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        config = ", ".join(f"{k}={v}" for k, v in UNET.items() if k != "image_shape")
        call = f"Unet({UNET['image_shape']}, {config})"
        data["stage"] = f"building {call}"
        model = Unet(UNET["image_shape"], **{k: v for k, v in UNET.items() if k != "image_shape"})
        base = _diffusion_model_class()
        data["is_diffusion_model"] = None if base is None else isinstance(model, base)
        data["class_names"] = [cls.__name__ for cls in type(model).__mro__]
        img_shape = getattr(model, "img_shape", None)
        data["img_shape"] = [int(n) for n in img_shape] if isinstance(img_shape, (tuple, list)) else repr(img_shape)
        data["noise_schedule_is_none"] = getattr(model, "noise_schedule", "missing") is None
        data["params"] = _count(model)
        data["param_shapes"] = _param_shapes(model)
        model.to(device)
        x = _randn(seed, "unet/x", (BATCH, *UNET["image_shape"])).to(device)
        steps, other = (s.to(device) for s in _unet_steps(seed))
        data["stage"] = f"running {call} on images {_fmt(x.shape)} and int64 num_steps {steps.tolist()}"
        out = model(x, steps)
        data["out"] = _plain(out)
        data["stage"] = f"backpropagating through {call}"
        data["missing_grads"] = _backward(model, [out], seed, "unet") if isinstance(out, torch.Tensor) else []
        data["stage"] = f"running {call} with num_steps {other.tolist()}"
        with torch.no_grad():
            data["out_other_steps"] = _plain(model(x, other))
        data["stage"] = f"running {call} with the grader's weights"
        step_layer = unit_key("linear", (4 * UNET["channels"], UNET["max_steps"]))
        _probe_grader_weights(data, "", model, lambda: model(x, steps), seed, "unet", capture=step_layer)

    return _probe(run, seed, device)


@_judge
def judge_unet(data: dict, seed: int = SEED) -> str:
    _raise_probe_error(data, "Unet")
    flag = data["is_diffusion_model"]
    if flag is False or (flag is None and "DiffusionModel" not in data["class_names"]):
        raise AssertionError(
            "Unet must subclass DiffusionModel from part 1 (class Unet(DiffusionModel)), so that part 1's training "
            "and sampling code accept it."
        )
    if data["img_shape"] != list(UNET["image_shape"]):
        raise AssertionError(
            f"Unet.img_shape should be the image_shape argument {UNET['image_shape']}, yours is {data['img_shape']}."
        )
    if not data["noise_schedule_is_none"]:
        raise AssertionError("Unet.noise_schedule should be None until training attaches a schedule.")
    shape = (BATCH, *UNET["image_shape"])
    out = _tensor(data, "out", "The output of Unet", shape)
    other = _tensor(data, "out_other_steps", "The output of Unet", shape)
    if not _changes(out[1], other[1]):
        raise AssertionError(
            "The output of Unet does not depend on num_steps: embed the steps (sinusoidal embedding, Linear, GELU, "
            "Linear) and pass the embedding to every block."
        )
    if _changes(out[0], other[0], 1e-5):
        raise AssertionError(
            "Changing num_steps of image 1 changed the output for image 0: something mixes the examples of a "
            "batch (statistics over the batch dimension?). Process every example on its own."
        )
    channels, image_channels, emb = UNET["channels"], UNET["image_shape"][0], 4 * UNET["channels"]
    known = {
        _conv_params(image_channels, channels, 3)
        - _conv_params(image_channels, channels, 7): "The input convolution should be 7x7 with padding 3.",
        -_linear_params(
            emb, emb
        ): f"The step MLP should be Linear(max_steps, 4C), GELU, Linear(4C, 4C) with 4C = {emb}.",
        -_residual_params(channels, channels, emb): "The residual block before the final 1x1 conv is missing.",
    }
    _check_param_count(
        int(data["params"]), _unet_params(**UNET), "Unet", data["param_shapes"], known, attention=_unet_attention_channels()
    )
    _check_no_missing_grads(data, "missing_grads", "Unet")
    return (
        "a DiffusionModel with the parameter count of the diagrams; output shaped like the input, "
        f"depends on num_steps per image{NUMBERS_CHECKED}"
    )


# ---------------------------------------------------------------------------------------------
# Bonus: a transposed convolution from scratch
#
# The student's class has a name of its own, so that the blocks keep using nn.ConvTranspose2d (and
# the bonus cannot change another exercise's verdict) unless the student points ConvTranspose2d at it.
# ---------------------------------------------------------------------------------------------

CONVT_CONFIGS = ((3, 4, 3, 2, 1), (2, 3, 4, 2, 1), (2, 2, 3, 1, 0), (3, 2, 5, 3, 2))  # in, out, kernel, stride, padding
CONVT_SIZE = (4, 5)


def _convt_params(seed: int, config: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    c_in, c_out, kernel, _, _ = config
    tag = "convt/" + "-".join(map(str, config))
    return _randn(seed, tag + "/weight", (c_in, c_out, kernel, kernel)), _randn(seed, tag + "/bias", (c_out,))


def _convt_input(seed: int, config: tuple) -> torch.Tensor:
    return _randn(seed, "convt/x/" + "-".join(map(str, config)), (BATCH, config[0], *CONVT_SIZE))


def probe_conv_transpose2d(ConvTranspose2d, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        for i, config in enumerate(CONVT_CONFIGS):
            c_in, c_out, kernel, stride, padding = config
            call = f"ConvTranspose2d({c_in}, {c_out}, {kernel}, stride={stride}, padding={padding})"
            data["stage"] = f"building {call}"
            conv = ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=padding)
            weight, bias = (getattr(conv, name, None) for name in ("weight", "bias"))
            data[f"{i}_weight_shape"] = list(weight.shape) if isinstance(weight, torch.Tensor) else []
            data[f"{i}_bias_shape"] = list(bias.shape) if isinstance(bias, torch.Tensor) else []
            data[f"{i}_params"] = _count(conv)
            if data[f"{i}_weight_shape"] != [c_in, c_out, kernel, kernel] or data[f"{i}_bias_shape"] != [c_out]:
                return
            with torch.no_grad():
                for target, value in zip((weight, bias), _convt_params(seed, config)):
                    target.copy_(value)
            x = _convt_input(seed, config).to(device)
            data["stage"] = f"running {call} on x {_fmt(x.shape)}"
            with torch.no_grad():
                data[f"{i}_out"] = _plain(conv.to(device)(x))

    return _probe(run, seed, device)


@_judge
def judge_conv_transpose2d(data: dict, seed: int = SEED) -> str:
    _raise_probe_error(data, BONUS_CLASS)
    for i, config in enumerate(CONVT_CONFIGS):
        c_in, c_out, kernel, stride, padding = config
        subject = f"ConvTranspose2d({c_in}, {c_out}, {kernel}, stride={stride}, padding={padding})"
        weight_shape = [int(n) for n in data[f"{i}_weight_shape"]]
        if weight_shape != [c_in, c_out, kernel, kernel]:
            layout = " (that is Conv2d's layout)" if weight_shape == [c_out, c_in, kernel, kernel] else ""
            raise AssertionError(
                f"{subject}.weight has shape {_fmt(weight_shape)}{layout}; keep torch's layout "
                f"(in_channels, out_channels, kernel_size, kernel_size) = {_fmt((c_in, c_out, kernel, kernel))}."
            )
        if [int(n) for n in data[f"{i}_bias_shape"]] != [c_out]:
            raise AssertionError(f"{subject}.bias should have shape (out_channels,) = ({c_out},).")
        if data[f"{i}_params"] != c_in * c_out * kernel * kernel + c_out:
            raise AssertionError(f"{subject} should have only weight and bias as parameters.")
        weight, bias = (p.double() for p in _convt_params(seed, config))
        x = _convt_input(seed, config).double()
        expected = F.conv_transpose2d(x, weight, bias, stride=stride, padding=padding)
        value = data[f"{i}_out"]
        if isinstance(value, torch.Tensor) and value.shape != expected.shape:
            raise AssertionError(
                f"The output of {subject} on x {_fmt(x.shape)} has shape {_fmt(value.shape)}, expected "
                f"{_fmt(expected.shape)}: (height - 1) * stride - 2 * padding + kernel_size, same for width."
            )
        out = _tensor(data, f"{i}_out", f"The output of {subject}", tuple(expected.shape))
        if not _close(out, expected):
            cause = (
                _first_match(
                    out,
                    [
                        (
                            lambda: F.conv_transpose2d(x, weight.flip(-1, -2), bias, stride=stride, padding=padding),
                            "The kernel has the wrong orientation: flip it left-right and up-down when you use an "
                            "ordinary "
                            "convolution.",
                        ),
                        (
                            lambda: F.conv_transpose2d(x, weight, None, stride=stride, padding=padding),
                            "The bias is not added.",
                        ),
                    ],
                )
                or "Check the zero insertion, the border padding of kernel_size - 1 - padding, and the kernel flip."
            )
            raise AssertionError(
                f"{subject} differs from torch.nn.functional.conv_transpose2d by up to "
                f"{_max_error(out, expected):.3g}. {cause}"
            )
    return "matches torch.nn.ConvTranspose2d for kernels 3 to 5, strides 1 to 3 and paddings 0 to 2"


# ---------------------------------------------------------------------------------------------
# Registry and the notebook-facing tests
# ---------------------------------------------------------------------------------------------

TESTS: dict[str, tuple[Callable[..., dict], Callable[..., str]]] = {
    "groupnorm": (probe_groupnorm, judge_groupnorm),
    "sinusoidal_embeddings": (probe_sinusoidal_embeddings, judge_sinusoidal_embeddings),
    "swish": (probe_swish, judge_swish),
    "self_attention": (probe_self_attention, judge_self_attention),
    "attention_block": (probe_attention_block, judge_attention_block),
    "residual_block": (probe_residual_block, judge_residual_block),
    "downblock": (probe_downblock, judge_downblock),
    "upblock": (probe_upblock, judge_upblock),
    "midblock": (probe_midblock, judge_midblock),
    "unet": (probe_unet, judge_unet),
    "conv_transpose2d": (probe_conv_transpose2d, judge_conv_transpose2d),
}

SUBJECTS: dict[str, tuple[str, ...]] = {
    "groupnorm": ("GroupNorm",),
    "sinusoidal_embeddings": ("SinusoidalPositionEmbeddings",),
    "swish": ("swish", "SiLU"),
    "self_attention": ("SelfAttention",),
    "attention_block": ("AttentionBlock",),
    "residual_block": ("ResidualBlock",),
    "downblock": ("DownBlock",),
    "upblock": ("UpBlock",),
    "midblock": ("MidBlock",),
    "unet": ("Unet",),
    "conv_transpose2d": (BONUS_CLASS,),
}

NOTEBOOK_CALLS: tuple[tuple[str, dict], ...] = (
    ("groupnorm", {"affine": False}),
    ("groupnorm", {"affine": True}),
    ("sinusoidal_embeddings", {}),
    ("swish", {}),
    ("self_attention", {}),
    ("attention_block", {}),
    ("residual_block", {}),
    ("downblock", {"downsample": True}),
    ("downblock", {"downsample": False}),
    ("upblock", {"upsample": True}),
    ("upblock", {"upsample": False}),
    ("midblock", {}),
    ("unet", {}),
    ("conv_transpose2d", {}),
)


def run_test(name: str, *subjects, seed: int = SEED, device: Optional[str] = None, **kwargs) -> str:
    """Probe then judge in this process; returns the PASS summary or raises AssertionError."""
    probe, judge = TESTS[name]
    return judge(probe(*subjects, seed=seed, device=device, **kwargs), seed=seed, **kwargs)


def _test(name: str, *subjects, seed: int, **kwargs) -> None:
    arguments = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    label = f"test_{name}({arguments})" if arguments else f"test_{name}"
    try:
        summary = run_test(name, *subjects, seed=seed, **kwargs)
    except AssertionError as exc:
        raise AssertionError(f"{label}: {exc}") from None
    print(f"PASS {label}: {summary}")


def test_groupnorm(GroupNorm, affine: bool = True, seed: int = SEED) -> None:
    _test("groupnorm", GroupNorm, seed=seed, affine=affine)


def test_sinusoidal_embeddings(SinusoidalPositionEmbeddings, seed: int = SEED) -> None:
    _test("sinusoidal_embeddings", SinusoidalPositionEmbeddings, seed=seed)


def test_swish(swish, SiLU, seed: int = SEED) -> None:
    _test("swish", swish, SiLU, seed=seed)


def test_self_attention(SelfAttention, seed: int = SEED) -> None:
    _test("self_attention", SelfAttention, seed=seed)


def test_attention_block(AttentionBlock, seed: int = SEED) -> None:
    _test("attention_block", AttentionBlock, seed=seed)


def test_residual_block(ResidualBlock, seed: int = SEED) -> None:
    _test("residual_block", ResidualBlock, seed=seed)


def test_downblock(DownBlock, downsample: bool = True, seed: int = SEED) -> None:
    _test("downblock", DownBlock, seed=seed, downsample=downsample)


def test_upblock(UpBlock, upsample: bool = True, seed: int = SEED) -> None:
    _test("upblock", UpBlock, seed=seed, upsample=upsample)


def test_midblock(MidBlock, seed: int = SEED) -> None:
    _test("midblock", MidBlock, seed=seed)


def test_unet(Unet, seed: int = SEED) -> None:
    _test("unet", Unet, seed=seed)


def test_conv_transpose2d(ConvTranspose2d, seed: int = SEED) -> None:
    _test("conv_transpose2d", ConvTranspose2d, seed=seed)


# The notebook calls these; pytest must not collect them (this file's name matches *_test.py).
for _notebook_test in (
    test_groupnorm,
    test_sinusoidal_embeddings,
    test_swish,
    test_self_attention,
    test_attention_block,
    test_residual_block,
    test_downblock,
    test_upblock,
    test_midblock,
    test_unet,
    test_conv_transpose2d,
):
    _notebook_test.__test__ = False
