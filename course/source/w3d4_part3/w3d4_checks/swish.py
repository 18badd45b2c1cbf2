# Generated from checks/w3d4_checks/swish.py by `python -m grader build`: edit that file, not this one.
"""swish and SiLU: x * sigmoid(x), including at extreme inputs where a naive formula overflows."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .judging import first_match, fmt, is_close, judge_safely, max_error, raise_probe_error, tensor_at
from .probing import plain, run_probe
from .seeding import SEED, randn


SWISH_SHAPE = (2, 3, 4, 5)
SWISH_EXTREMES = (-100.0, -30.0, -5.0, -1.0, 0.0, 1.0, 5.0, 30.0, 100.0)


def _swish_input(seed: int) -> torch.Tensor:
    return 4 * randn(seed, "swish/x", SWISH_SHAPE)


def probe_swish(swish, SiLU, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        x = _swish_input(seed).to(device)
        original = x.clone()
        data["stage"] = f"calling swish on a tensor of shape {fmt(SWISH_SHAPE)}"
        data["out"] = plain(swish(x))
        data["input_unchanged"] = bool(torch.equal(x, original))
        data["stage"] = f"calling swish on the values {list(SWISH_EXTREMES)}"
        data["out_extremes"] = plain(swish(torch.tensor(SWISH_EXTREMES, device=device)))
        data["stage"] = "building SiLU()"
        activation = SiLU()
        data["silu_is_module"] = isinstance(activation, nn.Module)
        data["stage"] = f"running SiLU() on a tensor of shape {fmt(SWISH_SHAPE)}"
        data["out_silu"] = plain(activation(original.clone()))

    return run_probe(run, seed, device)


@judge_safely
def judge_swish(data: dict, seed: int = SEED) -> str:
    raise_probe_error(data, "swish")
    x = _swish_input(seed).double()
    expected = F.silu(x)
    out = tensor_at(data, "out", "swish(x)", SWISH_SHAPE)
    if not is_close(out, expected):
        cause = (
            first_match(
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
        raise AssertionError(f"swish differs from x * sigmoid(x) by up to {max_error(out, expected):.3g}. {cause}")
    if not data["input_unchanged"]:
        raise AssertionError("swish modifies its input in place: return a new tensor (avoid mul_ and friends).")
    extremes = torch.tensor(SWISH_EXTREMES, dtype=torch.float64)
    value = data["out_extremes"]
    if isinstance(value, torch.Tensor) and not torch.isfinite(value).all():
        raise AssertionError(
            "swish returns NaN or inf for inputs like -100 or 100: use torch.sigmoid, which is stable."
        )
    out = tensor_at(data, "out_extremes", f"swish({list(SWISH_EXTREMES)})", extremes.shape)
    if not is_close(out, F.silu(extremes)):
        raise AssertionError(f"swish is wrong for large inputs {list(SWISH_EXTREMES)}: got {out.tolist()}.")
    if not data["silu_is_module"]:
        raise AssertionError("SiLU must be an nn.Module subclass.")
    if not is_close(tensor_at(data, "out_silu", "SiLU()(x)", SWISH_SHAPE), expected):
        raise AssertionError("SiLU()(x) differs from swish(x): SiLU.forward should return swish(x).")
    return "swish(x) and SiLU()(x) equal x * sigmoid(x), also for inputs as large as +-100"
