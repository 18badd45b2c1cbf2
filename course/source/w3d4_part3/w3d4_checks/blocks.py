# Generated from checks/w3d4_checks/blocks.py by `python -m grader build`: edit that file, not this one.
"""The blocks that take the step embedding: ResidualBlock, DownBlock, UpBlock and MidBlock. Their
numbers depend on the wiring, which only the solution fixes, so these checks test what every
correct block does: shapes, parameter counts, the step embedding's effect, batch independence,
the shortcut, the skip, and the order of the mid block's parts."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from einops import rearrange
from torch import nn

from .judging import NUMBERS_CHECKED, SILU_MIN, TOL, as_tensor, attention_block_params, check_no_missing_grads, check_param_count, conv_params, differs, down_params, fmt, is_close, judge_safely, linear_params, max_error, mid_params, raise_probe_error, residual_params, shortcut_params, tensor_at, up_params
from .probing import FirstUse, backprop, count_params, is_a, is_attention, param_shapes, plain, plain_pair, run_probe
from .seeding import SEED, randn


STEP_DIM = 6
BATCH = 2


def block_inputs(seed: int, tag: str, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """x and a large x of `shape`, and two step embeddings (batch, STEP_DIM)."""
    return {
        "x": randn(seed, f"{tag}/x", shape),
        "x_big": 5 * randn(seed, f"{tag}/x_big", shape),
        "emb": randn(seed, f"{tag}/emb", (shape[0], STEP_DIM)),
        "emb2": randn(seed, f"{tag}/emb2", (shape[0], STEP_DIM)),
    }


def _build(data: dict, Block, args: tuple, call: str, device: str, prefix: str = "") -> nn.Module:
    """Build the student's block, record its trainable parameters (count and shapes under `prefix`)
    and move it to `device`."""
    data["stage"] = f"building {call}"
    block = Block(*args)
    data[f"{prefix}params"] = count_params(block)
    data[f"{prefix}param_shapes"] = param_shapes(block)
    block.to(device)  # not its return value: a student's own `to` may return nothing
    return block


def _check_batch_independence(batched: list[torch.Tensor], alone: list[torch.Tensor], subject: str) -> None:
    """Run alone, the first example must give the first row of the batched output."""
    if not all(is_close(single, full[:1]) for single, full in zip(alone, batched)):
        raise AssertionError(
            f"The output of {subject} for one example changes when another example shares its batch: something "
            "mixes the examples (statistics over the batch dimension?). Process every example on its own."
        )


def _check_step_effect(outputs: list[tuple[torch.Tensor, torch.Tensor]], subject: str) -> None:
    if not any(differs(a, b) for a, b in outputs):
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
            block = _build(data, ResidualBlock, (c_in, c_out, STEP_DIM, groups), call, device, f"{name}_")
            inputs = {
                k: v.to(device) for k, v in block_inputs(seed, f"residual/{name}", (BATCH, c_in, *RES_SIZE)).items()
            }
            data["stage"] = f"running {call} on x {fmt(inputs['x'].shape)} and step_emb {fmt(inputs['emb'].shape)}"
            out = block(inputs["x"], inputs["emb"])
            data[f"{name}_out"] = plain(out)
            data["stage"] = f"backpropagating through {call}"
            data[f"{name}_missing_grads"] = backprop(block, [out], seed, f"residual/{name}")
            with torch.no_grad():
                for key, x, emb in (
                    ("x_emb2", "x", "emb2"),
                    ("big_emb", "x_big", "emb"),
                    ("big_emb2", "x_big", "emb2"),
                ):
                    data["stage"] = (
                        f"running {call} on x {fmt(inputs[x].shape)} and step_emb {fmt(inputs[emb].shape)}"
                    )
                    data[f"{name}_out_{key}"] = plain(block(inputs[x], inputs[emb]))
                data["stage"] = f"running {call} on the first example alone"
                data[f"{name}_out_first"] = plain(block(inputs["x"][:1], inputs["emb"][:1]))

    return run_probe(run, seed, device)


@judge_safely
def judge_residual_block(data: dict, seed: int = SEED) -> str:
    raise_probe_error(data, "ResidualBlock")
    for name, (c_in, c_out, groups) in RES_CONFIGS.items():
        subject = f"ResidualBlock({c_in}, {c_out}, {STEP_DIM}, {groups})"
        shape = (BATCH, c_out, *RES_SIZE)
        out, out_emb2, big, big_emb2 = (
            tensor_at(data, f"{name}_{key}", f"The output of {subject}", shape)
            for key in ("out", "out_x_emb2", "out_big_emb", "out_big_emb2")
        )
        first = tensor_at(data, f"{name}_out_first", f"The output of {subject}", (1, *shape[1:]))
        _check_batch_independence([out], [first], subject)
        _check_step_effect([(out, out_emb2)], subject)
        emb_effect, emb_effect_big = out - out_emb2, big - big_emb2
        if max_error(emb_effect, emb_effect_big) <= TOL * (1 + emb_effect.abs().max().item()):
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
        expected = residual_params(c_in, c_out, STEP_DIM)
        known = {
            conv_params(c_in, c_out, 1): "The 1x1 shortcut conv is only needed when the channel count changes; "
            "use the identity when input_channels == output_channels.",
            -shortcut_params(c_in, c_out): "The shortcut needs a 1x1 conv when the channel count changes.",
            -4 * c_out: "The two GroupNorms should be affine, with a weight and a bias per channel.",
            -linear_params(STEP_DIM, c_out): f"The step embedding needs its own (SiLU, Linear({STEP_DIM}, {c_out})).",
        }
        check_param_count(int(data[f"{name}_params"]), expected, subject, data[f"{name}_param_shapes"], known)
        check_no_missing_grads(data, f"{name}_missing_grads", subject)
    return (
        "output shapes, parameter counts (1x1 shortcut only when channels change), step embedding used between "
        f"the convolutions, shortcut present{NUMBERS_CHECKED}"
    )


# ---------------------------------------------------------------------------------------------
# DownBlock
# ---------------------------------------------------------------------------------------------

DOWN = (4, 8, 2)  # channels_in, channels_out, groups
DOWN_SIZE = (8, 6)


def probe_down_block(DownBlock, seed: int = SEED, downsample: bool = True, device: Optional[str] = None) -> dict:
    c_in, c_out, groups = DOWN

    def run(data: dict, device: str) -> None:
        call = f"DownBlock({c_in}, {c_out}, {STEP_DIM}, {groups}, downsample={downsample})"
        block = _build(data, DownBlock, (c_in, c_out, STEP_DIM, groups, downsample), call, device)
        inputs = {k: v.to(device) for k, v in block_inputs(seed, "down", (BATCH, c_in, *DOWN_SIZE)).items()}
        data["stage"] = f"running {call} on x {fmt(inputs['x'].shape)}"
        result = block(inputs["x"], inputs["emb"])
        data["out"] = plain_pair(result)
        if isinstance(data["out"], str):
            return
        data["stage"] = f"backpropagating through {call}"
        data["missing_grads"] = backprop(block, list(result), seed, "down")
        with torch.no_grad():
            data["stage"] = f"running {call} with another step embedding"
            data["out_emb2"] = plain_pair(block(inputs["x"], inputs["emb2"]))
            data["stage"] = f"running {call} on the first example alone"
            data["out_first"] = plain_pair(block(inputs["x"][:1], inputs["emb"][:1]))
            odd = (BATCH, c_in, 5, 6) if downsample else (BATCH, c_in, 5, 7)
            data["stage"] = f"running {call} on x of odd height {fmt(odd)}"
            try:
                block(randn(seed, "down/odd", odd).to(device), inputs["emb"])
                data["odd"] = "no error"
            except Exception as exc:  # the lesson asks for an assert here
                data["odd"] = f"{type(exc).__name__}: {str(exc)[:200]}"

    return run_probe(run, seed, device)


def _check_pair(data: dict, key: str, subject: str, shapes: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    value = data[key]
    if isinstance(value, str):
        raise AssertionError(f"{subject} returned {value}; it should return a tuple (downsampled output, skip).")
    found = tuple(tuple(v.shape) if isinstance(v, torch.Tensor) else v for v in value)
    if found == shapes[::-1] and shapes[0] != shapes[1]:
        raise AssertionError(f"{subject} returned (skip, output): return the downsampled output first, then the skip.")
    if found[0] == found[1] == shapes[0] and shapes[0] != shapes[1]:
        raise AssertionError(
            f"{subject} returned a skip of shape {fmt(found[1])}, taken after downsampling: the skip is the "
            "full-size output of the attention block, before the 4x4 conv."
        )
    names = ("output", "skip")
    return tuple(as_tensor(v, f"The {n} of {subject}", s) for v, n, s in zip(value, names, shapes))


@judge_safely
def judge_down_block(data: dict, seed: int = SEED, downsample: bool = True) -> str:
    raise_probe_error(data, "DownBlock")
    c_in, c_out, groups = DOWN
    subject = f"DownBlock({c_in}, {c_out}, {STEP_DIM}, {groups}, downsample={downsample})"
    height, width = DOWN_SIZE
    full = (BATCH, c_out, height, width)
    small = (BATCH, c_out, height // 2, width // 2) if downsample else full
    if isinstance(data["out"], list):
        found = tuple(tuple(v.shape) if isinstance(v, torch.Tensor) else v for v in data["out"])
        if not downsample and found[0] != full:
            raise AssertionError(
                f"{subject} returned an output of shape {fmt(found[0])}: with downsample=False leave out the "
                f"4x4 conv, so both outputs keep the input's height and width {fmt(full)}."
            )
        if downsample and found == (full, full):
            raise AssertionError(
                f"{subject} did not downsample: with downsample=True apply the 4x4 conv with stride 2."
            )
    out, skip = _check_pair(data, "out", subject, (small, full))
    if not downsample and not is_close(out, skip):
        raise AssertionError(f"With downsample=False both outputs of {subject} should be the same tensor.")
    out2, skip2 = _check_pair(data, "out_emb2", subject, (small, full))
    alone = _check_pair(data, "out_first", subject, tuple((1, *shape[1:]) for shape in (small, full)))
    _check_batch_independence([out, skip], list(alone), subject)
    _check_step_effect([(out, out2), (skip, skip2)], subject)
    down = conv_params(c_out, c_out, 4)
    known = {
        -down: "The 4x4 conv with stride 2 and padding 1 is missing.",
        down: "With downsample=False there is no 4x4 conv.",
        -attention_block_params(c_out): "The attention block is missing.",
    }
    check_param_count(
        int(data["params"]),
        down_params(c_in, c_out, STEP_DIM, downsample),
        subject,
        data["param_shapes"],
        known,
        attention=(c_out,),
    )
    check_no_missing_grads(data, "missing_grads", subject)
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


def probe_up_block(UpBlock, seed: int = SEED, upsample: bool = True, device: Optional[str] = None) -> dict:
    dim_in, dim_out, groups = UP

    def run(data: dict, device: str) -> None:
        call = f"UpBlock({dim_in}, {dim_out}, {STEP_DIM}, {groups}, upsample={upsample})"
        block = _build(data, UpBlock, (dim_in, dim_out, STEP_DIM, groups, upsample), call, device)
        inputs = {k: v.to(device) for k, v in block_inputs(seed, "up", (BATCH, dim_out, *UP_SIZE)).items()}
        x, emb, skip = inputs["x"], inputs["emb"], randn(seed, "up/skip", tuple(inputs["x"].shape)).to(device)
        data["stage"] = f"running {call} on x and skip of shape {fmt(x.shape)}"
        out = block(x, emb, skip)
        data["out"] = plain(out)
        data["stage"] = f"backpropagating through {call}"
        data["missing_grads"] = backprop(block, [out], seed, "up")
        with torch.no_grad():
            variants = {
                "emb2": ("another step embedding", (x, inputs["emb2"], skip)),
                "skip2": ("another skip", (x, emb, -skip)),
                "swapped": ("x and skip swapped", (skip, emb, x)),
            }
            for key, (label, args) in variants.items():
                data["stage"] = f"running {call} with {label}"
                data[f"out_{key}"] = plain(block(*args))
            data["stage"] = f"running {call} on the first example alone"
            data["out_first"] = plain(block(x[:1], emb[:1], skip[:1]))

    return run_probe(run, seed, device)


@judge_safely
def judge_up_block(data: dict, seed: int = SEED, upsample: bool = True) -> str:
    raise_probe_error(data, "UpBlock")
    dim_in, dim_out, groups = UP
    subject = f"UpBlock({dim_in}, {dim_out}, {STEP_DIM}, {groups}, upsample={upsample})"
    height, width = UP_SIZE
    scale = 2 if upsample else 1
    shape = (BATCH, dim_in, scale * height, scale * width)
    value = data["out"]
    if isinstance(value, torch.Tensor) and tuple(value.shape) != shape:
        resize = "doubles" if upsample else "keeps"
        raise AssertionError(
            f"The output of {subject} has shape {fmt(value.shape)}, expected {fmt(shape)}: with "
            f"upsample={upsample} the block {resize} the height and width and ends with dim_in = {dim_in} channels."
        )
    out, out_emb2, out_skip2, swapped = (
        tensor_at(data, key, f"The output of {subject}", shape) for key in ("out", "out_emb2", "out_skip2", "out_swapped")
    )
    _check_batch_independence([out], [tensor_at(data, "out_first", f"The output of {subject}", (1, *shape[1:]))], subject)
    if not differs(out, out_skip2):
        raise AssertionError(
            f"The skip input has no effect on {subject}: concatenate it with x along the channels, "
            "t.cat([x, skip], dim=1), before the first residual block."
        )
    if is_close(out, swapped, 1e-6):
        raise AssertionError(
            f"{subject} gives the same output when x and skip are swapped, so it adds them: concatenate them along "
            "the channels instead (t.cat([x, skip], dim=1)), so the first residual block sees 2 * dim_out channels."
        )
    if upsample:
        blocks = rearrange(out, "b c (h i) (w j) -> b c h w (i j)", i=2, j=2)
        if max_error(blocks, blocks[..., :1].expand_as(blocks)) < 1e-6:
            raise AssertionError(
                f"The output of {subject} repeats in 2x2 blocks: that is nearest-neighbour upsampling. Use the 4x4 "
                f"transposed convolution, ConvTranspose2d({dim_in}, {dim_in}, 4, stride=2, padding=1)."
            )
    _check_step_effect([(out, out_emb2)], subject)
    up = conv_params(dim_in, dim_in, 4)
    known = {
        -up: "The 4x4 transposed convolution (stride 2, padding 1) is missing.",
        up: "With upsample=False there is no transposed convolution.",
        -(
            residual_params(2 * dim_out, dim_in, STEP_DIM) - residual_params(dim_out, dim_in, STEP_DIM)
        ): "The first residual block should take 2 * dim_out channels: x and skip concatenated.",
    }
    check_param_count(
        int(data["params"]),
        up_params(dim_in, dim_out, STEP_DIM, upsample),
        subject,
        data["param_shapes"],
        known,
        attention=(dim_in,),
    )
    check_no_missing_grads(data, "missing_grads", subject)
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
    candidates = [m for m in block.modules() if is_a(m, "AttentionBlock") or is_attention(m)]
    nested = {id(sub) for a in candidates for sub in a.modules() if sub is not a}
    attentions = [m for m in candidates if id(m) not in nested]
    inside = {id(sub) for a in attentions for sub in a.modules()}
    projections = [
        m for m in block.modules() if isinstance(m, nn.Linear) and m.in_features == step_dim and id(m) not in inside
    ]
    labels = {**{id(m): "attention" for m in attentions}, **{id(m): "residual" for m in projections}}
    with FirstUse(attentions + projections) as first_use:
        yield
    calls.extend(labels[id(m)] for m in first_use.order)


def probe_mid_block(MidBlock, seed: int = SEED, device: Optional[str] = None) -> dict:
    mid, groups = MID

    def run(data: dict, device: str) -> None:
        call = f"MidBlock({mid}, {STEP_DIM}, {groups})"
        block = _build(data, MidBlock, (mid, STEP_DIM, groups), call, device)
        inputs = {k: v.to(device) for k, v in block_inputs(seed, "mid", (BATCH, mid, *MID_SIZE)).items()}
        data["stage"] = f"running {call} on x {fmt(inputs['x'].shape)}"
        calls: list[str] = []
        with _recording_calls(block, STEP_DIM, calls):
            out = block(inputs["x"], inputs["emb"])
        data["calls"] = calls
        data["out"] = plain(out)
        data["stage"] = f"backpropagating through {call}"
        data["missing_grads"] = backprop(block, [out], seed, "mid")
        data["stage"] = f"running {call} with another step embedding"
        with torch.no_grad():
            data["out_emb2"] = plain(block(inputs["x"], inputs["emb2"]))
            data["stage"] = f"running {call} on the first example alone"
            data["out_first"] = plain(block(inputs["x"][:1], inputs["emb"][:1]))

    return run_probe(run, seed, device)


@judge_safely
def judge_mid_block(data: dict, seed: int = SEED) -> str:
    raise_probe_error(data, "MidBlock")
    mid, groups = MID
    subject = f"MidBlock({mid}, {STEP_DIM}, {groups})"
    shape = (BATCH, mid, *MID_SIZE)
    out, out_emb2 = (tensor_at(data, key, f"The output of {subject}", shape) for key in ("out", "out_emb2"))
    _check_batch_independence([out], [tensor_at(data, "out_first", f"The output of {subject}", (1, *shape[1:]))], subject)
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
    known = {-attention_block_params(mid): "The attention block is missing."}
    check_param_count(
        int(data["params"]), mid_params(mid, STEP_DIM), subject, data["param_shapes"], known, attention=(mid,)
    )
    check_no_missing_grads(data, "missing_grads", subject)
    order = "residual -> attention -> residual, " if [str(c) for c in data["calls"]] == MID_ORDER else ""
    return f"{order}shape kept, parameter count, step embedding used{NUMBERS_CHECKED}"
