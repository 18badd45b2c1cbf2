"""The grader's weights run: a whole block's numbers, checked with weights of the grader's own.

Runs INSIDE the student's kernel during grading (the sandbox's probe runner loads it next to a
pristine copy of the checks library), never in a student's own notebook. The visible tests check
facts that every correct block has; this run also checks the numbers. It overwrites every layer of
a block with seeded values and records the block's output, and `wiring` recomputes that output in
float64 in the grader's process. Layers are found by what they are (Conv2d, ConvTranspose2d,
Linear, GroupNorm, or the lesson's SelfAttention and AttentionBlock), never by attribute name. The
n-th layer of one kind and shape, in the order in which the forward pass first uses them, gets
`unit_values(checks, seed, tag, kind, shape, n)`. Two layers of the same kind and shape are used
in the same order by every correct block, because one consumes the other's output (conv1 before
conv2, down block 1 before down block 2), so the wiring hands out the same values in the lesson's
order.

Parts that are exercises of their own (GroupNorm, SiLU, SelfAttention, AttentionBlock,
ConvTranspose2d, the step embedding) compute with torch built-ins and the grader's values, so a
mistake in one of them costs only that exercise.

    data.update(probe(checks, "down_block", (DownBlock,), seed, {"downsample": True}))

`checks` is the checks library (w3d4_checks) as loaded by the caller; only its public API is used.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

CHECKS_DRIVER = True  # its frames are not the student's code (see w3d4_checks.probing)

ATTENTION_KINDS = ("attention_block", "attention")  # units whose channels are those of their input
ATTENTION_HEADS = 4  # the lesson's default num_heads


@dataclass(frozen=True)
class Case:
    """One run of a block with the grader's weights: how to build it, what to feed it."""

    prefix: str  # of the keys this run adds to the probe's result
    tag: str  # of the seeded weights
    subject: str  # how messages name the block, e.g. "DownBlock(4, 8, 6, 2, downsample=True)"
    args: tuple  # the constructor's arguments
    inputs: tuple  # the forward's arguments: float32 CPU tensors
    config: dict  # what the wiring needs: channels, groups, ...


def cases(checks: ModuleType, name: str, seed: int, kwargs: dict) -> list[Case]:
    """The runs of exercise `name` whose numbers the grader checks ([] for the others); the same
    configurations and seeded inputs as the visible probe."""
    c = checks
    if name == "residual_block":
        runs = []
        for label, (c_in, c_out, groups) in c.RES_CONFIGS.items():
            i = c.block_inputs(seed, f"residual/{label}", (c.BATCH, c_in, *c.RES_SIZE))
            args = (c_in, c_out, c.STEP_DIM, groups)
            runs.append(Case(f"{label}_", f"residual/{label}", f"ResidualBlock{args}", args, (i["x"], i["emb"]),
                             {"c_out": c_out, "groups": groups}))
        return runs
    if name == "down_block":
        (c_in, c_out, groups), downsample = c.DOWN, kwargs.get("downsample", True)
        i = c.block_inputs(seed, "down", (c.BATCH, c_in, *c.DOWN_SIZE))
        args = (c_in, c_out, c.STEP_DIM, groups, downsample)
        subject = f"DownBlock({c_in}, {c_out}, {c.STEP_DIM}, {groups}, downsample={downsample})"
        return [Case("", "down", subject, args, (i["x"], i["emb"]), {"c_out": c_out, "groups": groups})]
    if name == "up_block":
        (dim_in, dim_out, groups), upsample = c.UP, kwargs.get("upsample", True)
        i = c.block_inputs(seed, "up", (c.BATCH, dim_out, *c.UP_SIZE))
        skip = c.randn(seed, "up/skip", tuple(i["x"].shape))
        args = (dim_in, dim_out, c.STEP_DIM, groups, upsample)
        subject = f"UpBlock({dim_in}, {dim_out}, {c.STEP_DIM}, {groups}, upsample={upsample})"
        return [Case("", "up", subject, args, (i["x"], i["emb"], skip), {"dim_in": dim_in, "groups": groups})]
    if name == "mid_block":
        mid, groups = c.MID
        i = c.block_inputs(seed, "mid", (c.BATCH, mid, *c.MID_SIZE))
        args = (mid, c.STEP_DIM, groups)
        return [Case("", "mid", f"MidBlock{args}", args, (i["x"], i["emb"]), {"groups": groups})]
    if name == "unet":
        config = dict(c.UNET)
        x = c.randn(seed, "unet/x", (c.BATCH, *config["image_shape"]))
        return [Case("", "unet", "Unet", (config.pop("image_shape"),), (x, c.unet_steps(seed)[0]), config)]
    return []


def step_layer(checks: ModuleType) -> str:
    """The key of the Unet's first step-MLP layer, Linear(max_steps, 4C), whose input is captured."""
    return unit_key("linear", (4 * checks.UNET["channels"], checks.UNET["max_steps"]))


def probe(checks: ModuleType, name: str, subjects: tuple, seed: int, kwargs: dict, device: Optional[str] = None) -> dict:
    """Build each case of exercise `name` from the student's class, run it with the grader's weights
    and return what `wiring` needs, as plain data (an exception is recorded like the visible probe's)."""

    def run(data: dict, device: str) -> None:
        for case in cases(checks, name, seed, kwargs):
            data["stage"] = f"building {case.subject}"
            options = case.config if name == "unet" else {}
            block = subjects[0](*case.args, **options).to(device)
            inputs = [value.to(device) for value in case.inputs]
            data["stage"] = f"running {case.subject} with the grader's weights"
            capture = step_layer(checks) if name == "unet" else ""
            _probe_grader_weights(checks, data, case.prefix, block, lambda: block(*inputs), seed, case.tag, capture)

    return checks.run_probe(run, seed, device)


def probe_with_weights(checks: ModuleType, name: str, subjects: tuple, seed: int, kwargs: dict,
                       device: Optional[str] = None) -> dict:
    """The visible probe of exercise `name`, then (if it ran through) the weights run, in one result."""
    data = checks.EXERCISES[name].probe(*subjects, seed=seed, device=device, **kwargs)
    if "error" not in data and cases(checks, name, seed, kwargs):
        data.update(probe(checks, name, subjects, seed, kwargs, device))
    return data


def _unit_kind(checks: ModuleType, module: nn.Module) -> Optional[str]:
    if checks.is_a(module, "AttentionBlock"):  # first: it may also be a SelfAttention subclass
        return "attention_block"
    if checks.is_attention(module):
        return "attention"
    if isinstance(module, nn.ConvTranspose2d) or checks.is_a(module, "ConvTranspose2d") or checks.is_a(module, checks.BONUS_CLASS):
        return "conv_transpose"
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.GroupNorm) or checks.is_a(module, "GroupNorm"):
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


def unit_values(checks: ModuleType, seed: int, tag: str, kind: str, shape: tuple[int, ...], index: int) -> dict:
    """The seeded parameters of the index-th layer of this kind and shape, float32 on the CPU.

    attention: {"W_Q": (weight, bias), ...}; otherwise {"weight": ..., "bias": ...}."""
    name = f"weights/{tag}/{unit_key(kind, shape)}/{index}"
    if kind == "attention":
        return checks.projection_params(seed, name, shape[0])
    if kind == "norm":
        weight, bias = checks.affine_params(seed, name, shape[0])
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
        "weight": checks.randn(seed, name + "/weight", shape) / max(fan_in, 1) ** 0.5,
        "bias": 0.3 * checks.randn(seed, name + "/bias", (outputs,)),
    }


def _load_unit(checks: ModuleType, module: nn.Module, kind: str, values: dict) -> str:
    """Copy seeded values into one layer; "" on success, else why it could not be done."""
    if kind == "attention":
        return ""  # the weights run computes attention from `values` itself (see _trusted_forward)
    targets = {name: getattr(module, name, None) for name in values}
    for name, target in targets.items():
        if not isinstance(target, torch.Tensor) or tuple(target.shape) != tuple(values[name].shape):
            return f"{type(module).__name__} has no {name} of shape {checks.fmt(values[name].shape)}"
    with torch.no_grad():
        for name, target in targets.items():
            target.copy_(values[name])
    return ""


def _units(checks: ModuleType, model: nn.Module) -> list[nn.Module]:
    """The layers the grader sets: known kinds, and any other module that holds parameters itself.
    What is inside an AttentionBlock or a SelfAttention belongs to it."""
    inside = {
        id(sub)
        for m in model.modules()
        if _unit_kind(checks, m) in ATTENTION_KINDS
        for sub in m.modules()
        if sub is not m
    }
    return [
        m
        for m in model.modules()
        if id(m) not in inside and (_unit_kind(checks, m) or any(p.requires_grad for p in m.parameters(recurse=False)))
    ]


def _first_int(value: Any) -> int:
    """nn.ConvTranspose2d keeps (2, 2) where the lesson's class keeps 2."""
    return int(value[0] if isinstance(value, (tuple, list)) else value)


def _trusted_attention(checks: ModuleType, values: dict) -> Callable:
    """Multi-head attention (the lesson's 4 heads) with the grader's projections `values`. The
    student's own projections are not used: how they are laid out is the SelfAttention exercise's
    business, and test_self_attention checks it."""
    return lambda x: checks.multihead_attention(x, {k: (w.to(x.device), b.to(x.device)) for k, (w, b) in values.items()}, ATTENTION_HEADS)


def _trusted_norm(checks: ModuleType, values: dict, groups: int, eps: float) -> Callable:
    return lambda x: F.group_norm(x, groups, values["weight"].to(x.device), values["bias"].to(x.device), eps)


def _trusted_attention_block(checks: ModuleType, values: dict) -> Callable:
    """x + attention(GroupNorm(1 group)(x)), the formula that test_attention_block states, with the
    grader's values for the norm and the attention: what the block holds inside plays no part."""
    normalise, attend = _trusted_norm(checks, values["norm"], 1, checks.GN_DEFAULT_EPS), _trusted_attention(checks, values["attention"])
    return lambda x: x + attend(normalise(x))


def _trusted_forward(checks: ModuleType, module: nn.Module, embedding_size: int, grader_values: dict) -> Optional[Callable]:
    """A stand-in for a part that is an exercise of its own (GroupNorm, SiLU, SelfAttention,
    AttentionBlock, ConvTranspose2d, the step embedding), computed with torch built-ins from the
    grader's values for it (`grader_values`, by module id) or the part's own parameters. The grader's
    weights run uses them, so a mistake in one of those exercises is not counted again in every
    block that uses it."""
    kind = _unit_kind(checks, module)
    values = grader_values.get(id(module))
    if kind == "norm" and values is not None and isinstance(getattr(module, "num_groups", None), int):
        eps = getattr(module, "eps", checks.GN_DEFAULT_EPS)
        return _trusted_norm(checks, values, module.num_groups, float(eps) if isinstance(eps, (int, float)) else checks.GN_DEFAULT_EPS)
    if kind == "attention" and values is not None:
        return _trusted_attention(checks, values)
    if kind == "attention_block" and values is not None:
        return _trusted_attention_block(checks, values)
    if kind == "conv_transpose" and isinstance(getattr(module, "bias", None), torch.Tensor):
        stride, padding = (_first_int(getattr(module, key, default)) for key, default in (("stride", 2), ("padding", 1)))
        return lambda x: F.conv_transpose2d(x, module.weight, module.bias, stride=stride, padding=padding)
    if isinstance(module, nn.SiLU) or checks.is_a(module, "SiLU"):
        return F.silu
    if checks.is_a(module, "SinusoidalPositionEmbeddings") and embedding_size:
        frequencies = checks.frequency_conventions(embedding_size)["1/10000^(2k/d)"]
        return lambda steps: checks.sin_cos(steps.cpu(), frequencies).float().to(steps.device)
    return None


@contextlib.contextmanager
def _trusted_parts(checks: ModuleType, model: nn.Module, embedding_size: int = 0, grader_values: Optional[dict] = None) -> Iterator[None]:
    """Swap in `_trusted_forward` for every part that has one, and F.silu for a `swish` function that
    the blocks call directly, for the duration of the block."""
    swapped = []
    namespaces = {id(g): g for m in model.modules() if isinstance(g := getattr(type(m).forward, "__globals__", None), dict)}
    own_swish = {key: g["swish"] for key, g in namespaces.items() if callable(g.get("swish")) and g["swish"] is not F.silu}
    try:
        for module in model.modules():
            forward = _trusted_forward(checks, module, embedding_size, grader_values or {})
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


def _load_grader_weights(checks: ModuleType, 
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
        return unit_values(checks, seed, tag, kind, shape, counts[key] - 1)

    for module in order:
        kind = _unit_kind(checks, module)
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
            problem = _load_unit(checks, module, kind, values)
            # a GroupNorm that keeps its parameters under other names is fine when its stand-in can run
            if problem and not (kind == "norm" and isinstance(getattr(module, "num_groups", None), int)):
                problems.append(problem)
    return keys, problems, grader_values


def _probe_grader_weights(checks: ModuleType, 
    data: dict, prefix: str, model: nn.Module, forward: Callable[[], Any], seed: int, tag: str, capture: str = ""
) -> None:
    """Set every layer of `model` to the grader's values and record `forward()` with them, with the
    parts that are exercises of their own replaced by `_trusted_forward`.

    Records under `prefix`: weights_units (layer keys in order of first use), weights_problems,
    weights_uncalled (layers whose parameters forward never used), weights_out, and with
    `capture` (a layer key) the input of the first layer with that key, weights_captured."""
    units = _units(checks, model)
    # an attention's channels are those of its input, whatever shape its parameters have
    channels: dict[int, int] = {}
    def note_channels(module: nn.Module, args: tuple, kwargs: dict) -> None:  # returning a value would replace args
        images = [t for t in checks.tensors_in((args, kwargs)) if t.dim() == 4]
        if images:
            channels.setdefault(id(module), int(images[0].shape[1]))

    hooks = [
        m.register_forward_pre_hook(note_channels, with_kwargs=True) for m in units if _unit_kind(checks, m) in ATTENTION_KINDS
    ]
    try:
        with torch.no_grad(), checks.FirstUse(units) as first_use:
            forward()
    finally:
        for hook in hooks:
            hook.remove()
    order = first_use.order
    keys, problems, grader_values = _load_grader_weights(checks, order, seed, tag, channels)
    data[prefix + "weights_units"] = keys
    data[prefix + "weights_problems"] = problems
    used = {id(module) for module in order}
    data[prefix + "weights_uncalled"] = [
        type(m).__name__ for m in units if id(m) not in used and next(m.parameters(), None) is not None
    ]
    target = next((module for module, key in zip(order, keys) if key == capture), None)
    # the step embedding has the size of the step MLP's first Linear: max_steps
    embedding_size = target.weight.shape[1] if target is not None and capture.startswith("linear") else 0
    with torch.no_grad(), _trusted_parts(checks, model, embedding_size, grader_values), checks.FirstUse(
        [], capture=None if target is None else target.weight
    ) as run:
        out = forward()
    data[prefix + "weights_out"] = checks.plain_pair(out) if isinstance(out, (tuple, list)) else checks.plain(out)
    if capture:
        data[prefix + "weights_captured"] = "nothing" if run.captured is None else checks.plain(run.captured)

