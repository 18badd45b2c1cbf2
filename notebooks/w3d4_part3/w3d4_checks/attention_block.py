# Generated from checks/w3d4_checks/attention_block.py by `python -m grader build`: edit that file, not this one.
"""AttentionBlock: x + attention(GroupNorm with one group (x)), with the attention read as in
`attention`."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from .attention import ATTN_SHAPE, attention_inputs, attention_readings, check_settable, closest_reading, multihead_attention, seed_projections
from .groupnorm import GN_DEFAULT_EPS
from .judging import TOL, check_no_missing_grads, first_match_in_any, fmt, judge_safely, max_error, raise_probe_error, tensor_at
from .probing import backprop, plain, run_probe
from .seeding import SEED


def _attention_block_input(seed: int) -> dict[str, Any]:
    """The attention inputs, shifted and scaled so that normalising them matters."""
    inputs = attention_inputs(seed, "attention_block")
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
        data["stage"] = f"running AttentionBlock({channels}) on an input of shape {fmt(ATTN_SHAPE)}"
        data["projections"], used = seed_projections(block, lambda: block(x), seed, "attention_block", channels)
        out = block(x)
        data["out"] = plain(out)
        data["stage"] = "backpropagating through AttentionBlock"
        data["missing_grads"] = backprop(block, [out], seed, "attention_block", used)

    return run_probe(run, seed, device)


def _attention_block_mistakes(x: torch.Tensor, weights: dict) -> list:
    attend = lambda y: multihead_attention(y, weights, 4)
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
        readings = attention_readings(layers, seed, "attention_block", x.shape[1], heads)
        if closest_reading(out - x, normed, readings, heads)[0] <= TOL:
            return f"The SelfAttention inside AttentionBlock has {heads} head(s); it should have 4 heads."
    return None


@judge_safely
def judge_attention_block(data: dict, seed: int = SEED) -> str:
    raise_probe_error(data, "AttentionBlock")
    channels = ATTN_SHAPE[1]
    subject = f"AttentionBlock({channels})"
    projections = data["projections"]
    check_settable(projections, subject)
    try:
        readings = attention_readings(projections["layers"], seed, "attention_block", channels, 4)
    except AssertionError as problem:
        raise AssertionError(f"The SelfAttention inside {subject}: {problem}.") from None
    x = _attention_block_input(seed)["x"].double()
    out = tensor_at(data, "out", f"The output of {subject}", ATTN_SHAPE)
    normed = F.group_norm(x, 1, eps=GN_DEFAULT_EPS)
    error, _, weights = closest_reading(out - x, normed, readings, 4)
    if error > TOL:
        expected = x + multihead_attention(normed, weights, 4)
        cause = (
            first_match_in_any(out, readings, lambda weights: _attention_block_mistakes(x, weights))
            or _other_head_counts(out, x, projections["layers"], seed)
            or "Follow the diagram: x + attention(groupnorm_1_group(x)). The block runs your GroupNorm and "
            "SelfAttention: if test_groupnorm or test_self_attention fails, fix that first."
        )
        raise AssertionError(
            f"{subject} differs from x + attention(norm(x)) by up to {max_error(out, expected):.3g}. {cause}"
        )
    check_no_missing_grads(data, "missing_grads", "AttentionBlock")
    return "equals x + SelfAttention(GroupNorm(1 group)(x)) with 4 heads"
