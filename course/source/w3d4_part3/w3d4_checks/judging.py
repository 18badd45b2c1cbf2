# Generated from checks/w3d4_checks/judging.py by `python -m grader build`: edit that file, not this one.
"""Helpers that every judge uses: reading tensors out of a probe's result, comparing them, explaining
an error the student's code raised, and checking parameter counts against the lesson's diagrams."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional

import torch

TOL = 1e-4  # absolute and relative tolerance of float32 results against float64 expectations
# What the PASS line of a composite block adds: its visible test checks shapes, counts and behaviour,
# not the numbers, which only a copy of the solution could check.
NUMBERS_CHECKED = "; the autograder also checks its numbers with weights of its own"
SILU_MIN = -0.27846454  # the minimum of x * sigmoid(x), reached at x = -1.2785


def judge_safely(judge: Callable[..., str]) -> Callable[..., str]:
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


def raise_probe_error(data: dict, subject: str) -> None:
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


def fmt(shape) -> str:
    """A shape as Python writes a tuple: (2, 8) or (8,)."""
    return str(tuple(int(n) for n in shape))


def tensor_at(data: dict, key: str, what: str, shape: Optional[tuple[int, ...]] = None) -> torch.Tensor:
    """A student output from the probe, as float64 on the CPU, checked for shape and finiteness."""
    return as_tensor(data[key], what, shape)


def as_tensor(value: Any, what: str, shape: Optional[tuple[int, ...]] = None) -> torch.Tensor:
    if isinstance(value, str):
        raise AssertionError(f"{what} is {value}, not a tensor. Did you forget to return it?")
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} is a {type(value).__name__}")
    value = value.detach().to("cpu", torch.float64)
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise AssertionError(f"{what} has shape {fmt(value.shape)}, expected {fmt(shape)}.")
    if not torch.isfinite(value).all():
        raise AssertionError(f"{what} contains NaN or inf.")
    return value


def is_close(actual: torch.Tensor, expected: torch.Tensor, tol: float = TOL) -> bool:
    return actual.shape == expected.shape and bool(((actual - expected).abs() <= tol * (1 + expected.abs())).all())


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual - expected).abs().max().item()


def first_match_in_any(actual: torch.Tensor, readings: list, mistakes: Callable[[dict], list]) -> Optional[str]:
    """The first known mistake that `actual` matches under any reading of the projections.
    `mistakes(weights)` lists (compute, message) for one reading's weights, in order of priority."""
    catalogues = [mistakes(weights) for _, weights in readings]
    for position in range(len(catalogues[0]) if catalogues else 0):
        for catalogue in catalogues:
            compute, message = catalogue[position]
            if is_close(actual, compute()):
                return message
    return None


def first_match(actual: torch.Tensor, candidates, tol: float = TOL) -> Optional[str]:
    """The message of the first known mistake, given as (compute, message), that `actual` matches."""
    for compute, message in candidates:
        if is_close(actual, compute(), tol):
            return message
    return None


def _module_names(parameter_names: list, limit: int = 6) -> str:
    """'attention.norm.weight', 'attention.norm.bias' -> 'attention.norm', at most `limit` of them."""
    modules = list(dict.fromkeys(str(name).rpartition(".")[0] or str(name) for name in parameter_names))
    more = f" and {len(modules) - limit} more" if len(modules) > limit else ""
    return ", ".join(modules[:limit]) + more


def check_no_missing_grads(data: dict, key: str, subject: str) -> None:
    missing = list(data[key])
    if missing:
        raise AssertionError(
            f"No gradient reaches the parameters of {_module_names(missing)} in {subject}: these layers are "
            "created but never used in forward."
        )


def _format_params(shapes: list, limit: int = 24) -> str:
    """One line per parameter, or per top-level module (with its parameter count) when there are many."""
    if len(shapes) <= limit:
        return "\n    ".join(f"{name} {fmt(shape)}" for name, shape in shapes)
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


def check_param_count(
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


def differs(a: torch.Tensor, b: torch.Tensor, threshold: float = 1e-4) -> bool:
    return max_error(a, b) > threshold


# Parameter counts implied by the diagrams (convolutions and linear layers with bias).


def conv_params(c_in: int, c_out: int, kernel: int) -> int:
    return c_out * c_in * kernel * kernel + c_out


def linear_params(n_in: int, n_out: int) -> int:
    return n_out * n_in + n_out


def shortcut_params(c_in: int, c_out: int) -> int:
    return conv_params(c_in, c_out, 1) if c_in != c_out else 0


def residual_params(c_in: int, c_out: int, emb: int) -> int:
    norms = 2 * 2 * c_out
    return (
        conv_params(c_in, c_out, 3)
        + conv_params(c_out, c_out, 3)
        + norms
        + linear_params(emb, c_out)
        + shortcut_params(c_in, c_out)
    )


def attention_block_params(channels: int) -> int:
    return 4 * linear_params(channels, channels) + 2 * channels


def down_params(c_in: int, c_out: int, emb: int, downsample: bool) -> int:
    down = conv_params(c_out, c_out, 4) if downsample else 0
    return (
        residual_params(c_in, c_out, emb) + residual_params(c_out, c_out, emb) + attention_block_params(c_out) + down
    )


def up_params(dim_in: int, dim_out: int, emb: int, upsample: bool) -> int:
    up = conv_params(dim_in, dim_in, 4) if upsample else 0
    return (
        residual_params(2 * dim_out, dim_in, emb)
        + residual_params(dim_in, dim_in, emb)
        + attention_block_params(dim_in)
        + up
    )


def mid_params(channels: int, emb: int) -> int:
    return 2 * residual_params(channels, channels, emb) + attention_block_params(channels)
