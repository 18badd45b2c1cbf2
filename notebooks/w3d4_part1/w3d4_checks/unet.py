# Generated from checks/w3d4_checks/unet.py by `python -m grader build`: edit that file, not this one.
"""Unet: shapes, parameter count, step handling per image, and that it is a DiffusionModel."""

from __future__ import annotations

from typing import Optional

import torch

from .blocks import BATCH
from .judging import NUMBERS_CHECKED, check_no_missing_grads, check_param_count, conv_params, differs, down_params, fmt, judge_safely, linear_params, mid_params, raise_probe_error, residual_params, tensor_at, up_params
from .probing import backprop, count_params, param_shapes, plain, run_probe
from .seeding import SEED, randint, randn


UNET = dict(image_shape=(3, 8, 12), channels=8, dim_mults=(1, 2), groups=2, max_steps=20)


def unet_steps(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (batch,) int64 step tensors in 1..max_steps that differ only for image 1."""
    max_steps = UNET["max_steps"]
    steps = randint(seed, "unet/steps", 1, max_steps + 1, (BATCH,))
    other = steps.clone()
    other[1] = steps[1] % max_steps + 1
    return steps, other


def _unet_params(image_shape, channels, dim_mults, groups, max_steps) -> int:
    emb = 4 * channels
    dims = [channels] + [m * channels for m in dim_mults]
    pairs = list(zip(dims[:-1], dims[1:]))
    step_mlp = linear_params(max_steps, emb) + linear_params(emb, emb)
    downs = sum(down_params(c_in, c_out, emb, i < len(pairs) - 1) for i, (c_in, c_out) in enumerate(pairs))
    ups = sum(up_params(c_in, c_out, emb, True) for c_in, c_out in pairs[1:])
    convs = conv_params(image_shape[0], channels, 7) + conv_params(channels, image_shape[0], 1)
    return step_mlp + convs + downs + mid_params(dims[-1], emb) + ups + residual_params(channels, channels, emb)


def _unet_attention_channels() -> tuple[int, ...]:
    """The channels of every attention in the tests' Unet: one per down block, the mid block, and one
    per up block."""
    dims = [UNET["channels"]] + [m * UNET["channels"] for m in UNET["dim_mults"]]
    return (*dims[1:], dims[-1], *dims[1:-1])


def _diffusion_model_class():
    try:
        from w3d4_part1_diffusion_training_solution import DiffusionModel
    except ImportError:
        return None
    return DiffusionModel


def probe_unet(Unet, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        config = ", ".join(f"{k}={v}" for k, v in UNET.items() if k != "image_shape")
        call = f"Unet({UNET['image_shape']}, {config})"
        data["stage"] = f"building {call}"
        model = Unet(UNET["image_shape"], **{k: v for k, v in UNET.items() if k != "image_shape"})
        base = _diffusion_model_class()
        data["is_diffusion_model"] = None if base is None else isinstance(model, base)
        data["class_names"] = [cls.__name__ for cls in type(model).__mro__]
        img_shape = getattr(model, "img_shape", None)
        data["img_shape"] = [int(n) for n in img_shape] if isinstance(img_shape, (tuple, list)) else repr(img_shape)
        data["noise_schedule_is_none"] = getattr(model, "noise_schedule", "missing") is None
        data["params"] = count_params(model)
        data["param_shapes"] = param_shapes(model)
        model.to(device)
        x = randn(seed, "unet/x", (BATCH, *UNET["image_shape"])).to(device)
        steps, other = (s.to(device) for s in unet_steps(seed))
        data["stage"] = f"running {call} on images {fmt(x.shape)} and int64 num_steps {steps.tolist()}"
        out = model(x, steps)
        data["out"] = plain(out)
        data["stage"] = f"backpropagating through {call}"
        data["missing_grads"] = backprop(model, [out], seed, "unet") if isinstance(out, torch.Tensor) else []
        data["stage"] = f"running {call} with num_steps {other.tolist()}"
        with torch.no_grad():
            data["out_other_steps"] = plain(model(x, other))

    return run_probe(run, seed, device)


@judge_safely
def judge_unet(data: dict, seed: int = SEED) -> str:
    raise_probe_error(data, "Unet")
    flag = data["is_diffusion_model"]
    if flag is False or (flag is None and "DiffusionModel" not in data["class_names"]):
        raise AssertionError(
            "Unet must subclass DiffusionModel from part 1 (class Unet(DiffusionModel)), so that part 1's training "
            "and sampling code accept it."
        )
    if data["img_shape"] != list(UNET["image_shape"]):
        raise AssertionError(
            f"Unet.img_shape should be the image_shape argument {UNET['image_shape']}, yours is {data['img_shape']}."
        )
    if not data["noise_schedule_is_none"]:
        raise AssertionError("Unet.noise_schedule should be None until training attaches a schedule.")
    shape = (BATCH, *UNET["image_shape"])
    out = tensor_at(data, "out", "The output of Unet", shape)
    other = tensor_at(data, "out_other_steps", "The output of Unet", shape)
    if not differs(out[1], other[1]):
        raise AssertionError(
            "The output of Unet does not depend on num_steps: embed the steps (sinusoidal embedding, Linear, GELU, "
            "Linear) and pass the embedding to every block."
        )
    if differs(out[0], other[0], 1e-5):
        raise AssertionError(
            "Changing num_steps of image 1 changed the output for image 0: something mixes the examples of a "
            "batch (statistics over the batch dimension?). Process every example on its own."
        )
    channels, image_channels, emb = UNET["channels"], UNET["image_shape"][0], 4 * UNET["channels"]
    known = {
        conv_params(image_channels, channels, 3)
        - conv_params(image_channels, channels, 7): "The input convolution should be 7x7 with padding 3.",
        -linear_params(
            emb, emb
        ): f"The step MLP should be Linear(max_steps, 4C), GELU, Linear(4C, 4C) with 4C = {emb}.",
        -residual_params(channels, channels, emb): "The residual block before the final 1x1 conv is missing.",
    }
    check_param_count(
        int(data["params"]), _unet_params(**UNET), "Unet", data["param_shapes"], known, attention=_unet_attention_channels()
    )
    check_no_missing_grads(data, "missing_grads", "Unet")
    return (
        "a DiffusionModel with the parameter count of the diagrams; output shaped like the input, "
        f"depends on num_steps per image{NUMBERS_CHECKED}"
    )
