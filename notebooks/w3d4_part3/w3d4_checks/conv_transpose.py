# Generated from checks/w3d4_checks/conv_transpose.py by `python -m grader build`: edit that file, not this one.
"""The bonus: a transposed convolution from scratch, compared with F.conv_transpose2d."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .blocks import BATCH
from .judging import first_match, fmt, is_close, judge_safely, max_error, raise_probe_error, tensor_at
from .probing import count_params, plain, run_probe
from .seeding import SEED, randn


BONUS_CLASS = "ConvTranspose2dFromScratch"  # the bonus exercise's class

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
    return randn(seed, tag + "/weight", (c_in, c_out, kernel, kernel)), randn(seed, tag + "/bias", (c_out,))


def _convt_input(seed: int, config: tuple) -> torch.Tensor:
    return randn(seed, "convt/x/" + "-".join(map(str, config)), (BATCH, config[0], *CONVT_SIZE))


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
            data[f"{i}_params"] = count_params(conv)
            if data[f"{i}_weight_shape"] != [c_in, c_out, kernel, kernel] or data[f"{i}_bias_shape"] != [c_out]:
                return
            with torch.no_grad():
                for target, value in zip((weight, bias), _convt_params(seed, config)):
                    target.copy_(value)
            x = _convt_input(seed, config).to(device)
            data["stage"] = f"running {call} on x {fmt(x.shape)}"
            with torch.no_grad():
                data[f"{i}_out"] = plain(conv.to(device)(x))

    return run_probe(run, seed, device)


@judge_safely
def judge_conv_transpose2d(data: dict, seed: int = SEED) -> str:
    raise_probe_error(data, BONUS_CLASS)
    for i, config in enumerate(CONVT_CONFIGS):
        c_in, c_out, kernel, stride, padding = config
        subject = f"ConvTranspose2d({c_in}, {c_out}, {kernel}, stride={stride}, padding={padding})"
        weight_shape = [int(n) for n in data[f"{i}_weight_shape"]]
        if weight_shape != [c_in, c_out, kernel, kernel]:
            layout = " (that is Conv2d's layout)" if weight_shape == [c_out, c_in, kernel, kernel] else ""
            raise AssertionError(
                f"{subject}.weight has shape {fmt(weight_shape)}{layout}; keep torch's layout "
                f"(in_channels, out_channels, kernel_size, kernel_size) = {fmt((c_in, c_out, kernel, kernel))}."
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
                f"The output of {subject} on x {fmt(x.shape)} has shape {fmt(value.shape)}, expected "
                f"{fmt(expected.shape)}: (height - 1) * stride - 2 * padding + kernel_size, same for width."
            )
        out = tensor_at(data, f"{i}_out", f"The output of {subject}", tuple(expected.shape))
        if not is_close(out, expected):
            cause = (
                first_match(
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
                f"{max_error(out, expected):.3g}. {cause}"
            )
    return "matches torch.nn.ConvTranspose2d for kernels 3 to 5, strides 1 to 3 and paddings 0 to 2"
