"""The grader's own wiring of the lesson's blocks, to check a whole block's numbers.

The block tests of `w3d4_test` check facts that every correct block has (shapes, parameter counts,
the step embedding changes the output), and the student's kernel reports those facts. Code in that
kernel can report anything, so facts alone cannot be trusted. The numbers can: the probe overwrites
every layer with the grader's seeded values (`w3d4_test.unit_values`) and records the block's
output, and this module recomputes that output in float64 from the same values, in the grader's
process. Reporting the right output therefore takes a correct block, which is what the points are
for. The wiring lives here, out of the student's release, because it is the solution.

In that run the parts that are exercises of their own and whose formula the visible tests already
state (GroupNorm, SiLU, SelfAttention, AttentionBlock, ConvTranspose2d, the step embedding) compute
with torch built-ins from their own parameters, so a mistake there costs only that exercise. The
other blocks run as the student wrote them: a wrong ResidualBlock also makes the DownBlock, UpBlock,
MidBlock and Unet built on it wrong, since their wiring cannot be replaced without the solution.

    check_weights(tests, "unet", data, seed)   # raises AssertionError with a diagnosis, or passes

`tests` is the grader's trusted copy of the tests module; `data` is what the probe returned.
"""

from __future__ import annotations

import functools
from collections import Counter
from types import ModuleType
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange

TOL = 2e-4  # float32 blocks against float64 references: a Unet is some 30 layers deep
ATTENTION_HEADS = 4


class Layers:
    """Hands out the grader's weights in the lesson's order and applies each layer in float64."""

    def __init__(self, tests: ModuleType, seed: int, tag: str):
        self.tests, self.seed, self.tag = tests, seed, tag
        self.taken: list[str] = []

    def _take(self, kind: str, shape: tuple[int, ...]) -> dict:
        key = self.tests.unit_key(kind, shape)
        values = self.tests.unit_values(self.seed, self.tag, kind, shape, self.taken.count(key))
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
        return F.group_norm(x, groups, p["weight"], p["bias"], eps=self.tests.GN_DEFAULT_EPS)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        weights = self._take("attention", (x.shape[1],))
        return self.tests._attention_reference(x, weights, ATTENTION_HEADS)


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
# One case per probe: the reference outputs, and what to tell a student whose block differs
# ---------------------------------------------------------------------------------------------

HINTS = {  # the tests whose numbers are checked here, and what to tell a student whose block differs
    "residual_block": "Each round is conv 3x3, then GroupNorm, then SiLU; the step embedding goes through SiLU "
    "and Linear and is added between the rounds; the shortcut (x, or its 1x1 conv) is added last.",
    "downblock": "The order is residual block, residual block, attention block; the skip is that output, and "
    "the 4x4 stride-2 conv comes after it.",
    "upblock": "Concatenate x then skip along the channels (t.cat([x, skip], dim=1)), then residual block, "
    "residual block, attention block, then the transposed convolution.",
    "midblock": "The order is residual block, attention block, residual block.",
    "unet": "The step embedding is sinusoidal embedding, Linear, GELU, Linear; then the 7x7 conv, the down "
    "blocks (keep each skip), the mid block, the up blocks (each takes the last skip not used yet), "
    "the final residual block and the 1x1 conv.",
}
CHECKED = tuple(HINTS)
# The student's blocks that a check runs as they wrote them.
USES = {
    "downblock": ("residual_block",),
    "upblock": ("residual_block",),
    "midblock": ("residual_block",),
    "unet": ("residual_block", "downblock", "midblock", "upblock"),
}


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _uses(tests: ModuleType, test: str, failed: frozenset) -> str:
    """What to say about the student's own sub-blocks that this check runs."""
    if test not in USES:
        return ""
    broken = [t for t in USES[test] if t in failed]
    if broken:
        return (
            f" This check runs your {_and([tests.SUBJECTS[t][0] for t in broken])}, which fail"
            f"{'s' if len(broken) == 1 else ''} {_and(['test_' + t for t in broken])}: fix that first."
        )
    return f" This check runs your own {_and([tests.SUBJECTS[t][0] for t in USES[test]])}."


def _cases(tests: ModuleType, test: str, data: dict, seed: int, kwargs: dict) -> list[tuple[str, str, str, Callable]]:
    """[(data prefix, weights tag, subject, compute(L, skip_first) -> expected output or (output, skip))] for one
    probe; the prefix and tag are those the probe passed to _probe_grader_weights."""
    T = tests

    def inputs(tag: str, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        return {k: v.double() for k, v in T._block_inputs(seed, tag, (T.BATCH, *shape)).items()}

    if test == "residual_block":
        cases = []
        for name, (c_in, c_out, groups) in T.RES_CONFIGS.items():
            i = inputs(f"residual/{name}", (c_in, *T.RES_SIZE))
            cases.append((
                f"{name}_",
                f"residual/{name}",
                f"ResidualBlock({c_in}, {c_out}, {T.STEP_DIM}, {groups})",
                lambda L, _, i=i, c=c_out, g=groups: residual_block(L, i["x"], i["emb"], c, g),
            ))
        return cases
    if test == "downblock":
        c_in, c_out, groups = T.DOWN
        downsample = kwargs.get("downsample", True)
        i = inputs("down", (c_in, *T.DOWN_SIZE))
        subject = f"DownBlock({c_in}, {c_out}, {T.STEP_DIM}, {groups}, downsample={downsample})"
        return [("", "down", subject, lambda L, _: down_block(L, i["x"], i["emb"], c_out, groups, downsample))]
    if test == "upblock":
        dim_in, dim_out, groups = T.UP
        upsample = kwargs.get("upsample", True)
        i = inputs("up", (dim_out, *T.UP_SIZE))
        skip = T._randn(seed, "up/skip", tuple(i["x"].shape)).double()
        subject = f"UpBlock({dim_in}, {dim_out}, {T.STEP_DIM}, {groups}, upsample={upsample})"
        return [("", "up", subject, lambda L, skip_first: up_block(L, i["x"], i["emb"], skip, dim_in, groups, upsample, skip_first))]
    if test == "midblock":
        mid, groups = T.MID
        i = inputs("mid", (mid, *T.MID_SIZE))
        return [("", "mid", f"MidBlock({mid}, {T.STEP_DIM}, {groups})", lambda L, _: mid_block(L, i["x"], i["emb"], groups))]
    if test == "unet":
        config = T.UNET
        x = T._randn(seed, "unet/x", (T.BATCH, *config["image_shape"])).double()
        size = (config["channels"], config["dim_mults"], config["groups"])
        embedding = functools.cache(lambda: _step_embedding(T, data, seed))  # checked once, when first needed
        return [("", "unet", "Unet", lambda L, skip_first: unet(L, x, embedding(), *size, skip_first))]
    return []


def _step_embedding(tests: ModuleType, data: dict, seed: int) -> torch.Tensor:
    """The student's embedding of num_steps, accepted when it is a sinusoidal embedding in any of the
    layouts and frequency conventions that test_sinusoidal_embeddings accepts."""
    max_steps, channels = tests.UNET["max_steps"], tests.UNET["channels"]
    layer = tests.describe_unit(tests.unit_key("linear", (4 * channels, max_steps)))
    steps = tests._unet_steps(seed)[0]
    captured = data.get("weights_captured", "missing")
    if isinstance(captured, str):
        raise AssertionError(
            f"Unet never used a {layer} on a tensor: the step MLP is Linear(max_steps, 4C), GELU, Linear(4C, 4C)."
        )
    embedding = tests._as_tensor(captured, f"The input of the step MLP's {layer}", (tests.BATCH, max_steps))
    if not any(
        tests._matched_columns(embedding, tests._sin_cos(steps, f)) == max_steps
        for f in tests._frequency_conventions(max_steps).values()
    ):
        raise AssertionError(
            f"The input of Unet's {layer} is not the sinusoidal embedding of num_steps {steps.tolist()}: the step "
            "MLP starts with SinusoidalPositionEmbeddings(max_steps)."
        )
    return embedding


def _explain(
    tests: ModuleType, test: str, subject: str, data: dict, prefix: str, taken: list[str], error: float, failed: frozenset
) -> str:
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
        missing = [tests.describe_unit(k) for k in (lessons - yours).elements()]
        extra = [tests.describe_unit(k) for k in (yours - lessons).elements()]
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
    uses = _uses(tests, test, failed)
    return (
        f"{subject} has the lesson's layers, but with the grader's weights its output differs from the "
        f"lesson's wiring by up to {error:.3g} (relative). {HINTS[test]}{uses}"
    )


def _error(tests: ModuleType, subject: str, value, expected) -> float:
    """The largest deviation of the recorded output (or (output, skip) pair) from the expected one."""
    if isinstance(expected, tuple):
        if not isinstance(value, list) or len(value) != 2:
            raise AssertionError(f"{subject} did not return (output, skip) with the grader's weights.")
        names = ("output", "skip")
        pairs = [(tests._as_tensor(v, f"The {n} of {subject}", tuple(e.shape)), e) for v, n, e in zip(value, names, expected)]
    else:
        pairs = [(tests._as_tensor(value, f"The output of {subject}", tuple(expected.shape)), expected)]
    # the deviation in units of the tolerance, so that 1 is the largest accepted
    return max(((actual - wanted).abs() / (TOL * (1 + wanted.abs()))).max().item() for actual, wanted in pairs)


def check_weights(tests: ModuleType, test: str, data: dict, seed: int, failed: frozenset = frozenset(), **kwargs) -> None:
    """Raise AssertionError unless the block's output with the grader's weights is the reference's.

    `failed`: the tests this student already fails, named in the diagnosis when this block runs them."""
    orders = (False, True) if test in ("upblock", "unet") else (False,)
    tests._raise_probe_error(data, tests.SUBJECTS[test][0])
    for prefix, tag, subject, compute in _cases(tests, test, data, seed, kwargs):
        if prefix + "weights_out" not in data:
            raise AssertionError(f"{subject} was not run with the grader's weights (the probe's result is incomplete).")
        errors = []
        for skip_first in orders:
            layers = Layers(tests, seed, tag)
            errors.append(_error(tests, subject, data[prefix + "weights_out"], compute(layers, skip_first)))
        if min(errors) > 1:
            error = min(errors) * TOL
            raise AssertionError(_explain(tests, test, subject, data, prefix, layers.taken, error, failed))

