# Generated from checks/w3d4_checks/groupnorm.py by `python -m grader build`: edit that file, not this one.
"""GroupNorm: compared with F.group_norm on channel counts with one group, some, and one per channel,
and with an eps large enough that where it goes matters."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from einops import repeat
from torch import nn

from .judging import first_match, fmt, is_close, judge_safely, max_error, raise_probe_error, tensor_at
from .probing import count_params, plain, run_probe
from .seeding import SEED, affine_params, randn, stream, uniform


GN_SHAPE = (3, 8, 4, 6)  # batch, channels, height != width
GN_GROUPS = (1, 2, 8)  # one group, some, one per channel
GN_DEFAULT_EPS = 1e-5
GN_EPS_SHAPE = (2, 4, 2, 3)
GN_EPS_GROUPS = 2
GN_EPS = 1e-3  # comparable to the variance of the eps input, so where eps goes matters


def _groupnorm_input(seed: int, groups: int) -> torch.Tensor:
    """(3, 8, 4, 6) with a different scale and offset per channel, so channel grouping matters."""
    channels = GN_SHAPE[1]
    scale = uniform(seed, f"groupnorm/scale{groups}", (1, channels, 1, 1), 0.5, 3.0)
    shift = 2 * randn(seed, f"groupnorm/shift{groups}", (1, channels, 1, 1))
    return randn(seed, f"groupnorm/x{groups}", GN_SHAPE) * scale + shift


def _groupnorm_eps_input(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x = mean + std * (+1/-1 pattern, half of each per group), so each (example, group) has exactly
    this mean and biased std. Returns x, mean, std, all (2, 4, 2, 3); std is 0.02 to 0.05."""
    batch, channels, height, width = GN_EPS_SHAPE
    groups, per_group = GN_EPS_GROUPS, channels // GN_EPS_GROUPS
    size = per_group * height * width
    signs = torch.tensor([1.0, -1.0]).repeat_interleave(size // 2)
    order = torch.argsort(torch.rand(batch * groups, size, generator=stream(seed, "groupnorm/eps/order")), dim=-1)
    pattern = rearrange(signs[order], "(b g) (c h w) -> b (g c) h w", b=batch, c=per_group, h=height)
    spread = lambda v: repeat(v, "b g -> b (g c) h w", c=per_group, h=height, w=width)
    mean = spread(uniform(seed, "groupnorm/eps/mean", (batch, groups), -1.0, 1.0))
    std = spread(uniform(seed, "groupnorm/eps/std", (batch, groups), 0.02, 0.05))
    return mean + std * pattern, mean, std


def _groupnorm_affine(seed: int, tag: str, affine: bool):
    return affine_params(seed, f"groupnorm/{tag}", GN_SHAPE[1]) if affine else (None, None)


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
            data[f"params_{groups}"] = count_params(norm)
            if affine:
                data[f"affine_set_{groups}"] = _set_affine(norm, *_groupnorm_affine(seed, str(groups), True))
            data["stage"] = f"running GroupNorm({groups}, {channels}) on an input of shape {fmt(GN_SHAPE)}"
            with torch.no_grad():
                data[f"out_{groups}"] = plain(norm.to(device)(_groupnorm_input(seed, groups).to(device)))
        data["stage"] = f"building GroupNorm({GN_EPS_GROUPS}, 4, eps={GN_EPS}, affine={affine})"
        norm = GroupNorm(GN_EPS_GROUPS, GN_EPS_SHAPE[1], eps=GN_EPS, affine=affine)
        if affine:
            data["affine_set_eps"] = _set_affine(norm, *affine_params(seed, "groupnorm/eps", GN_EPS_SHAPE[1]))
        data["stage"] = f"running GroupNorm({GN_EPS_GROUPS}, 4, eps={GN_EPS}) on an input of shape {fmt(GN_EPS_SHAPE)}"
        with torch.no_grad():
            data["out_eps"] = plain(norm.to(device)(_groupnorm_eps_input(seed)[0].to(device)))

    return run_probe(run, seed, device)


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
            f"Your output equals F.group_norm's times sqrt((N-1)/N) with N = {n} values per group: you used the "
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


@judge_safely
def judge_groupnorm(data: dict, seed: int = SEED, affine: bool = True) -> str:
    raise_probe_error(data, "GroupNorm")
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
        out = tensor_at(data, f"out_{groups}", f"The output of GroupNorm({groups}, {channels})", GN_SHAPE)
        expected = F.group_norm(x, groups, weight, bias, eps=GN_DEFAULT_EPS)
        if not is_close(out, expected):
            cause = first_match(out, _groupnorm_mistakes(x, groups, weight, bias, GN_DEFAULT_EPS)) or (
                "Check the mean and biased variance per (example, group), eps inside the square root, and the "
                "per-channel weight and bias."
            )
            raise AssertionError(
                f"GroupNorm({groups}, {channels}) differs from torch.nn.GroupNorm by up to "
                f"{max_error(out, expected):.3g} on an input of shape {fmt(GN_SHAPE)}. {cause}"
            )
    if affine and not data["affine_set_eps"]:
        raise AssertionError("GroupNorm(2, 4, affine=True) needs self.weight and self.bias of shape (4,).")
    x, mean, std = (v.double() for v in _groupnorm_eps_input(seed))
    weight, bias = (
        (p.double() for p in affine_params(seed, "groupnorm/eps", GN_EPS_SHAPE[1])) if affine else (None, None)
    )
    out = tensor_at(data, "out_eps", f"The output of GroupNorm(2, 4, eps={GN_EPS})", GN_EPS_SHAPE)
    expected = F.group_norm(x, GN_EPS_GROUPS, weight, bias, eps=GN_EPS)
    if not is_close(out, expected):
        cause = first_match(out, _groupnorm_eps_mistakes(x, mean, std, weight, bias)) or "Check how you use eps."
        raise AssertionError(
            f"GroupNorm(2, 4, eps={GN_EPS}) differs from torch.nn.GroupNorm by up to {max_error(out, expected):.3g} "
            f"on an input whose groups have a variance close to eps. {cause}"
        )
    weights = " with random weight and bias" if affine else ""
    return f"matches torch.nn.GroupNorm{weights} for 1, 2 and 8 groups (H != W), with eps inside the square root"
