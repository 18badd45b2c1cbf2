"""The lesson's wiring, in float64: what a block computes with the grader's weights.

The visible block tests check facts that every correct block has (shapes, parameter counts, the
step embedding changes the output), and the student's kernel reports those facts. Code in that
kernel can report anything, so facts alone cannot be trusted. The numbers can: the weights run
(`weights_run`, in the kernel) overwrites every layer with the grader's seeded values and records
the block's output, and this module recomputes that output in float64 from the same values, in the
grader's process. Reporting the right output therefore takes a correct block, which is what the
points are for. This is the solution's wiring, so it is never released.

In that run the parts that are exercises of their own (GroupNorm, SiLU, SelfAttention,
AttentionBlock, ConvTranspose2d, the step embedding) compute with torch built-ins, so a mistake
there costs only that exercise. The other blocks run as the student wrote them: a wrong
ResidualBlock also makes the DownBlock, UpBlock, MidBlock and Unet built on it wrong, since their
wiring cannot be replaced without the solution.

    check_weights(checks, "unet", data, seed)   # raises AssertionError with a diagnosis, or passes

`checks` is the grader's trusted copy of the checks library; `data` is what the probe returned.
"""

from __future__ import annotations

import functools
from collections import Counter
from types import ModuleType
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange

from .weights_run import ATTENTION_HEADS, Case, cases, describe_unit, step_layer, unit_key, unit_values

TOL = 2e-4  # float32 blocks against float64 expectations: a Unet is some 30 layers deep


class Layers:
    """Hands out the grader's weights in the lesson's order and applies each layer in float64."""

    def __init__(self, checks: ModuleType, seed: int, tag: str):
        self.checks, self.seed, self.tag = checks, seed, tag
        self.taken: list[str] = []

    def _take(self, kind: str, shape: tuple[int, ...]) -> dict:
        key = unit_key(kind, shape)
        values = unit_values(self.checks, self.seed, self.tag, kind, shape, self.taken.count(key))
        self.taken.append(key)
        if kind == "attention":
            return {name: (w.double(), b.double()) for name, (w, b) in values.items()}
        return {name: value.double() for name, value in values.items()}

    def conv(self, x: torch.Tensor, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> torch.Tensor:
        p = self._take("conv", (c_out, x.shape[1], kernel, kernel))
        return F.conv2d(x, p["weight"], p["bias"], stride=stride, padding=padding)

    def conv_transpose(self, x: torch.Tensor, c_out: int) -> torch.Tensor:
        """The 4x4 transposed convolution with stride 2 and padding 1 that doubles the size."""
        p = self._take("conv_transpose", (x.shape[1], c_out, 4, 4))
        return F.conv_transpose2d(x, p["weight"], p["bias"], stride=2, padding=1)

    def linear(self, x: torch.Tensor, n_out: int) -> torch.Tensor:
        p = self._take("linear", (n_out, x.shape[-1]))
        return F.linear(x, p["weight"], p["bias"])

    def norm(self, x: torch.Tensor, groups: int) -> torch.Tensor:
        p = self._take("norm", (x.shape[1],))
        return F.group_norm(x, groups, p["weight"], p["bias"], eps=self.checks.GN_DEFAULT_EPS)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        weights = self._take("attention", (x.shape[1],))
        return self.checks.multihead_attention(x, weights, ATTENTION_HEADS)


# ---------------------------------------------------------------------------------------------
# The lesson's blocks; x: (batch, channels, height, width), emb: (batch, step_dim)
# ---------------------------------------------------------------------------------------------


def residual_block(L: Layers, x: torch.Tensor, emb: torch.Tensor, c_out: int, groups: int) -> torch.Tensor:
    """(conv 3x3, norm, SiLU), + SiLU-Linear projection of emb, (conv 3x3, norm, SiLU), + shortcut."""
    h = F.silu(L.norm(L.conv(x, c_out, 3, padding=1), groups))
    h = h + rearrange(L.linear(F.silu(emb), c_out), "b c -> b c 1 1")
    h = F.silu(L.norm(L.conv(h, c_out, 3, padding=1), groups))
    return h + (x if x.shape[1] == c_out else L.conv(x, c_out, 1))


def attention_block(L: Layers, x: torch.Tensor) -> torch.Tensor:
    return x + L.attention(L.norm(x, 1))


def down_block(L: Layers, x, emb, c_out: int, groups: int, downsample: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (output, skip): the skip is taken before the 4x4 stride-2 conv."""
    skip = attention_block(L, residual_block(L, residual_block(L, x, emb, c_out, groups), emb, c_out, groups))
    return (L.conv(skip, c_out, 4, stride=2, padding=1) if downsample else skip), skip


def up_block(L: Layers, x, emb, skip, dim_in: int, groups: int, upsample: bool, skip_first: bool) -> torch.Tensor:
    """The lesson concatenates x then skip; the original diagram does not fix the order, so the
    grader accepts skip then x as well (`skip_first`)."""
    h = torch.cat([skip, x] if skip_first else [x, skip], dim=1)
    h = attention_block(L, residual_block(L, residual_block(L, h, emb, dim_in, groups), emb, dim_in, groups))
    return L.conv_transpose(h, dim_in) if upsample else h


def mid_block(L: Layers, x, emb, groups: int) -> torch.Tensor:
    channels = x.shape[1]
    return residual_block(L, attention_block(L, residual_block(L, x, emb, channels, groups)), emb, channels, groups)


def unet(L: Layers, x, step_embedding, channels: int, dim_mults: tuple, groups: int, skip_first: bool) -> torch.Tensor:
    """step_embedding: (batch, max_steps), the sinusoidal embedding of num_steps."""
    emb = L.linear(F.gelu(L.linear(step_embedding, 4 * channels)), 4 * channels)
    dims = [channels] + [m * channels for m in dim_mults]
    pairs = list(zip(dims[:-1], dims[1:]))
    h, skips = L.conv(x, channels, 7, padding=3), []
    for i, (_, c_out) in enumerate(pairs):
        h, skip = down_block(L, h, emb, c_out, groups, downsample=i < len(pairs) - 1)
        skips.append(skip)
    h = mid_block(L, h, emb, groups)
    for c_in, _ in reversed(pairs[1:]):
        h = up_block(L, h, emb, skips.pop(), c_in, groups, upsample=True, skip_first=skip_first)
    return L.conv(residual_block(L, h, emb, channels, groups), x.shape[1], 1)


# ---------------------------------------------------------------------------------------------
# One expected output per case, and what to tell a student whose block differs
# ---------------------------------------------------------------------------------------------


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _builds_on(checks: ModuleType, name: str, failed: frozenset) -> str:
    """What to say about the student's own sub-blocks that this check runs."""
    builds_on = checks.EXERCISES[name].builds_on
    if not builds_on:
        return ""
    subject = lambda n: checks.EXERCISES[n].subjects[0]
    broken = [n for n in builds_on if n in failed]
    if broken:
        return (
            f" This check runs your {_and([subject(n) for n in broken])}, which fail"
            f"{'s' if len(broken) == 1 else ''} {_and(['test_' + n for n in broken])}: fix that first."
        )
    return f" This check runs your own {_and([subject(n) for n in builds_on])}."


def _expected(checks: ModuleType, name: str, case: Case, data: dict, seed: int, kwargs: dict) -> Callable:
    """compute(L, skip_first) -> the output (or (output, skip)) that the lesson's wiring gives."""
    i = [value.double() for value in case.inputs]
    k = case.config
    if name == "residual_block":
        return lambda L, _: residual_block(L, i[0], i[1], k["c_out"], k["groups"])
    if name == "down_block":
        return lambda L, _: down_block(L, i[0], i[1], k["c_out"], k["groups"], kwargs.get("downsample", True))
    if name == "up_block":
        upsample = kwargs.get("upsample", True)
        return lambda L, skip_first: up_block(L, i[0], i[1], i[2], k["dim_in"], k["groups"], upsample, skip_first)
    if name == "mid_block":
        return lambda L, _: mid_block(L, i[0], i[1], k["groups"])
    if name == "unet":
        embedding = functools.cache(lambda: _step_embedding(checks, data, seed))  # checked once, when first needed
        return lambda L, skip_first: unet(L, i[0], embedding(), k["channels"], k["dim_mults"], k["groups"], skip_first)
    raise KeyError(name)


def _step_embedding(checks: ModuleType, data: dict, seed: int) -> torch.Tensor:
    """The student's embedding of num_steps, accepted when it is a sinusoidal embedding in any of the
    layouts and frequency conventions that test_sinusoidal_embeddings accepts."""
    max_steps = checks.UNET["max_steps"]
    layer = describe_unit(step_layer(checks))
    steps = checks.unet_steps(seed)[0]
    captured = data.get("weights_captured", "missing")
    if isinstance(captured, str):
        raise AssertionError(
            f"Unet never used a {layer} on a tensor: the step MLP is Linear(max_steps, 4C), GELU, Linear(4C, 4C)."
        )
    embedding = checks.as_tensor(captured, f"The input of the step MLP's {layer}", (checks.BATCH, max_steps))
    if not any(
        checks.matched_columns(embedding, checks.sin_cos(steps, f)) == max_steps
        for f in checks.frequency_conventions(max_steps).values()
    ):
        raise AssertionError(
            f"The input of Unet's {layer} is not the sinusoidal embedding of num_steps {steps.tolist()}: the step "
            "MLP starts with SinusoidalPositionEmbeddings(max_steps)."
        )
    return embedding


def _explain(checks: ModuleType, name: str, case: Case, data: dict, taken: list[str], error: float, failed: frozenset) -> str:
    subject, prefix = case.subject, case.prefix
    problems = [str(p) for p in data[prefix + "weights_problems"]]
    if problems:
        return (
            f"The grader sets the weights of every layer to check the numbers of {subject}, but could not: "
            f"{'; '.join(problems[:3])}. Build each layer from nn.Conv2d, nn.Linear, your GroupNorm, your "
            "SelfAttention or ConvTranspose2d."
        )
    uncalled = [str(u) for u in data[prefix + "weights_uncalled"]]
    yours, lessons = Counter(map(str, data[prefix + "weights_units"])), Counter(taken)
    if yours != lessons:
        missing = [describe_unit(k) for k in (lessons - yours).elements()]
        extra = [describe_unit(k) for k in (yours - lessons).elements()]
        parts = [f"{subject} calls layers that differ from the lesson's"]
        if missing:
            parts.append(f"missing: {', '.join(missing[:5])}")
        if extra:
            parts.append(f"not in the lesson: {', '.join(extra[:5])}")
        if uncalled:
            parts.append(
                f"never used: {', '.join(uncalled[:5])} (the grader sets the weights of the layers that the "
                "forward pass uses)"
            )
        return "; ".join(parts) + "."
    return (
        f"{subject} has the lesson's layers, but with the grader's weights its output differs from the "
        f"lesson's wiring by up to {error:.3g} (relative). {checks.EXERCISES[name].wiring}{_builds_on(checks, name, failed)}"
    )


def _error(checks: ModuleType, subject: str, value, expected) -> float:
    """The largest deviation of the recorded output (or (output, skip) pair) from the expected one,
    in units of the tolerance, so that 1 is the largest accepted."""
    if isinstance(expected, tuple):
        if not isinstance(value, list) or len(value) != 2:
            raise AssertionError(f"{subject} did not return (output, skip) with the grader's weights.")
        names = ("output", "skip")
        pairs = [(checks.as_tensor(v, f"The {n} of {subject}", tuple(e.shape)), e) for v, n, e in zip(value, names, expected)]
    else:
        pairs = [(checks.as_tensor(value, f"The output of {subject}", tuple(expected.shape)), expected)]
    return max(((actual - wanted).abs() / (TOL * (1 + wanted.abs()))).max().item() for actual, wanted in pairs)


def check_weights(checks: ModuleType, name: str, data: dict, seed: int, failed: frozenset = frozenset(), **kwargs) -> None:
    """Raise AssertionError unless the block's output with the grader's weights is the wiring's.

    `failed`: the exercises this student already fails, named in the diagnosis when this block runs them."""
    orders = (False, True) if name in ("up_block", "unet") else (False,)
    checks.raise_probe_error(data, checks.EXERCISES[name].subjects[0])
    for case in cases(checks, name, seed, kwargs):
        if case.prefix + "weights_out" not in data:
            raise AssertionError(f"{case.subject} was not run with the grader's weights (the probe's result is incomplete).")
        compute = _expected(checks, name, case, data, seed, kwargs)
        errors = []
        for skip_first in orders:
            layers = Layers(checks, seed, case.tag)
            errors.append(_error(checks, case.subject, data[case.prefix + "weights_out"], compute(layers, skip_first)))
        if min(errors) > 1:
            raise AssertionError(_explain(checks, name, case, data, layers.taken, min(errors) * TOL, failed))
