# Generated from checks/w3d4_checks/attention.py by `python -m grader build`: edit that file, not this one.
"""SelfAttention, judged by what it computes: the probe sets every projection to seeded values in the
order the forward pass uses them, and the judge tries every reasonable reading of those values
(which projection is q, k, v or the output; how heads are split and merged; weights stored as
(out, in) or (in, out)). It passes when one reading matches, and otherwise names the mistake that
the closest reading explains."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .judging import TOL, check_no_missing_grads, first_match_in_any, fmt, is_close, judge_safely, raise_probe_error, tensor_at
from .probing import FirstUse, backprop, is_norm, plain, run_probe
from .seeding import SEED, randint, randn, stream


#
# The lesson leaves the layout of the projections open: four Linear(C, C) or 1x1 Conv2d layers, or
# one fused Linear(C, 3C) or Conv2d(C, 3C, 1) split into queries, keys and values, with or without
# biases, under any attribute names. The probe sets every Linear and Conv2d layer to seeded values,
# numbered in the order in which the forward pass first uses them, and the judge tries every way of
# reading those layers as queries, keys, values and output projection (`attention_readings`).

ATTN_SHAPE = (2, 8, 3, 5)  # height != width
ATTN_HEADS = (4, 2)  # the default, then an explicit num_heads
ATTN_GAIN = 1.5  # makes the attention weights clearly non-uniform, so that wrong scalings show up


def attention_inputs(seed: int, tag: str) -> dict[str, Any]:
    """Inputs of the attention probes: x, a single-pixel x, x with one pixel changed, and a pixel
    permutation (of height * width) applied to x."""
    batch, channels, height, width = ATTN_SHAPE
    x = randn(seed, f"{tag}/x", ATTN_SHAPE)
    poked = x.clone()
    row = int(randint(seed, f"{tag}/row", 0, height, (1,)))
    col = int(randint(seed, f"{tag}/col", 0, width, (1,)))
    poked[:, :, row, col] += 3 * randn(seed, f"{tag}/poke", (batch, channels))
    order = torch.argsort(torch.rand(height * width, generator=stream(seed, f"{tag}/perm")))
    return {
        "x": x,
        "pixel": randn(seed, f"{tag}/pixel", (batch, channels, 1, 1)),
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
    weight = ATTN_GAIN * randn(seed, name + "/weight", (n_out, n_in)) / n_in**0.5
    return weight, 0.3 * randn(seed, name + "/bias", (n_out,))


def _projection_layers(module: nn.Module) -> list:
    """The Linear and Conv2d layers inside `module`, the fused input projection of any
    nn.MultiheadAttention, and every bare parameter outside a GroupNorm, the last two as namespaces
    with weight, bias, parameters() and name."""
    layers: list = []
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            layers.append(m)
        elif not isinstance(m, nn.MultiheadAttention) and not is_norm(m):
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


def seed_projections(
    module: nn.Module, forward: Callable[[], Any], seed: int, tag: str, channels: int
) -> tuple[dict, set]:
    """Set every Linear and Conv2d layer of `module` to `projection_values`, numbered in the order in
    which `forward()` first uses them.

    Returns ({"layers": [_describe_layer(...)] in that order, "other": class names of other modules
    that hold parameters (GroupNorms aside), which the probe cannot set}, ids of the used parameters)."""
    layers = _projection_layers(module)
    with torch.no_grad(), FirstUse(layers) as first_use:
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
        if not is_norm(m) and any(id(p) not in known for p in m.parameters(recurse=False))
    ]
    used = {id(p) for layer in first_use.order for p in layer.parameters()}
    return {"layers": [_describe_layer(layer) for layer in first_use.order], "other": other}, used


def _layer_names(layers: list) -> str:
    return ", ".join(f"{name}{fmt(shape)}" for name, shape, *_ in layers) or "none"


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
    values = randn(seed, f"{tag}/parameter{index}/{'x'.join(map(str, shape))}", tuple(shape))
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


def attention_readings(
    layers: list, seed: int, tag: str, channels: int, heads: int, mismatched: bool = False
) -> list[tuple[str, dict]]:
    """Every reading of the seeded projection layers (as `seed_projections` describes them) as
    multi-head attention, each as (label, {"W_Q": (weight, bias), ..., "W_O": ...}) in float64 and
    in the layout of `multihead_attention` (heads split as '(n e)').

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


def closest_reading(out: torch.Tensor, x: torch.Tensor, readings: list, heads: int) -> tuple[float, str, dict]:
    """(relative error, label, weights) of the reading whose attention output is nearest to `out`."""
    best = None
    for label, weights in readings:
        expected = multihead_attention(x, weights, heads)
        error = ((out - expected).abs() / (1 + expected.abs())).max().item()
        if best is None or error < best[0]:
            best = (error, label, weights)
    return best


def multihead_attention(
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
        return lambda: multihead_attention(x, weights, heads, **mistake)

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
    `readings`: the ways of reading the student's projections (`attention_readings`)."""
    out = tensor_at(data, f"{prefix}out", "The output", ATTN_SHAPE)
    pixel = inputs["pixel"].double()
    single = tensor_at(data, f"{prefix}out_pixel", "The output for a 1x1 image", pixel.shape)
    if not any(is_close(single, _single_pixel_output(pixel, weights)) for _, weights in readings):
        return (
            "With a single pixel, a query can only attend to itself, so the output must be the output projection "
            "of that pixel's value; yours differs. Are you attending over channels instead of pixels? The "
            "sequence axis is height * width and the feature axis is channels."
        )
    permuted = tensor_at(data, f"{prefix}out_permuted", "The output for permuted pixels", ATTN_SHAPE)
    if not is_close(permuted, _permute_pixels(out, inputs["order"])):
        return (
            "Permuting the pixels of the input should permute the output pixels the same way; yours come "
            "back in a different order. Undo your flattening with the same pattern: "
            "'b c h w -> b (h w) c' there, 'b (h w) c -> b c h w' (h=height) back."
        )
    poked = tensor_at(data, f"{prefix}out_poked", "The output after changing one pixel", ATTN_SHAPE)
    # pixels that the change moves clearly under every reading, yet do not move in the student's output
    clearly = torch.stack([
        (multihead_attention(inputs["poked"], weights, heads) - multihead_attention(inputs["x"], weights, heads))
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
    data["stage"] = f"running {name} on an input of shape {fmt(ATTN_SHAPE)}"
    x = inputs["x"].to(device)
    data[f"{prefix}projections"], used = seed_projections(module, lambda: module(x), seed, prefix, ATTN_SHAPE[1])
    out = module(x)
    data[f"{prefix}out"] = plain(out)
    data["stage"] = f"backpropagating through {name}"
    data[f"{prefix}missing_grads"] = backprop(module, [out], seed, prefix, used)
    with torch.no_grad():
        for key, label in (
            ("pixel", "a 1x1 image"),
            ("permuted", "an input with permuted pixels"),
            ("poked", "an input with one pixel changed"),
        ):
            data["stage"] = f"running {name} on {label}"
            data[f"{prefix}out_{key}"] = plain(module(inputs[key].to(device)))


def probe_self_attention(SelfAttention, seed: int = SEED, device: Optional[str] = None) -> dict:
    channels = ATTN_SHAPE[1]

    def run(data: dict, device: str) -> None:
        for heads in ATTN_HEADS:
            call = f"SelfAttention({channels})" if heads == 4 else f"SelfAttention({channels}, num_heads={heads})"
            data["stage"] = f"building {call}"
            attention = SelfAttention(channels) if heads == 4 else SelfAttention(channels, num_heads=heads)
            attention.to(device)
            _probe_attention_runs(data, attention, f"h{heads}_", attention_inputs(seed, f"attention/{heads}"), device, seed)

    return run_probe(run, seed, device)


def _merged_in_another_order(out, x, layers: list, seed: int, tag: str, heads: int) -> Optional[str]:
    readings = attention_readings(layers, seed, tag, x.shape[1], heads, mismatched=True)
    if closest_reading(out, x, readings, heads)[0] <= TOL:
        return (
            "The heads are merged back in another channel order than they were split: merge with the same "
            "pattern you split with, for example 'b s (n e) -> b n s e' and then 'b n s e -> b s (n e)'."
        )
    return None


def _double(inputs: dict) -> dict:
    return {k: (v.double() if v.is_floating_point() else v) for k, v in inputs.items()}


def check_settable(projections: dict, subject: str) -> None:
    other = [str(name) for name in projections["other"]]
    if other:
        raise AssertionError(
            f"{subject} keeps parameters outside nn.Linear and nn.Conv2d layers (in {', '.join(other[:4])}), so "
            "the test cannot set its projections to check the heads: build the projections from nn.Linear or 1x1 "
            "nn.Conv2d layers."
        )


@judge_safely
def judge_self_attention(data: dict, seed: int = SEED) -> str:
    raise_probe_error(data, "SelfAttention")
    channels = ATTN_SHAPE[1]
    for heads in ATTN_HEADS:
        prefix = f"h{heads}_"
        subject = f"SelfAttention({channels}, num_heads={heads})"
        projections = data[f"{prefix}projections"]
        check_settable(projections, subject)
        try:
            readings = attention_readings(projections["layers"], seed, prefix, channels, heads)
        except AssertionError as problem:
            raise AssertionError(f"{subject}: {problem}.") from None
        inputs = _double(attention_inputs(seed, f"attention/{heads}"))
        out = tensor_at(data, f"{prefix}out", f"The output of {subject}", ATTN_SHAPE)
        error, _, weights = closest_reading(out, inputs["x"], readings, heads)
        if error > TOL:
            cause = (
                first_match_in_any(out, readings, lambda weights: _attention_mistakes(inputs["x"], weights, heads))
                or _merged_in_another_order(out, inputs["x"], projections["layers"], seed, prefix, heads)
                or _attention_behaviour(data, prefix, inputs, readings, heads)
                or "Compare each step with the recipe: project, split heads, scaled scores, softmax over keys, "
                "weighted values, merge heads, project."
            )
            raise AssertionError(
                f"{subject} differs from multi-head attention with your projections by up to {error:.3g} "
                f"(relative) on an input of shape {fmt(ATTN_SHAPE)}. {cause}"
            )
        for key, label in (("pixel", "a 1x1 image"), ("permuted", "permuted pixels"), ("poked", "one pixel changed")):
            # the same reading of the projections must also fit the other inputs
            found = tensor_at(data, f"{prefix}out_{key}", f"The output of {subject} for {label}", inputs[key].shape)
            if not is_close(found, multihead_attention(inputs[key], weights, heads)):
                problem = _attention_behaviour(data, prefix, inputs, readings, heads) or (
                    "Check that nothing in your forward depends on the input's height and width."
                )
                raise AssertionError(f"{subject} is right on one input but not on {label}: {problem}")
        check_no_missing_grads(data, f"{prefix}missing_grads", "SelfAttention")
    return (
        "matches multi-head attention with 4 (default) and 2 heads on a 3x5 image, with your projections "
        "however they are laid out; global, equivariant to permuting pixels"
    )
