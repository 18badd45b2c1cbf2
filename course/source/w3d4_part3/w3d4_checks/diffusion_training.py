# Generated from checks/w3d4_checks/diffusion_training.py by `python -m grader build`: edit that file, not this one.
"""Part 1, the model and its training: TinyDiffuser and train.

train is checked with a test double instead of a real network: a model that predicts
`scale * images + shift` and records every call. Its dataset holds one image repeated, so the
noise added to any noised image it receives can be recovered from the step, and the losses train
reports can be recomputed exactly. Nothing needs to converge."""

from __future__ import annotations

import math
from typing import Optional

import torch
from einops import rearrange
from torch import nn

from .diffusion import SIGMAS, ddpm_tables, raise_error
from .judging import fmt, is_close, judge_safely, tensor_at
from .probing import count_params, plain, run_probe
from .seeding import SEED, randint, randn, uniform

TINY_SHAPE = (3, 4, 6)
TINY_BATCH = 5
TINY_MAX_STEPS = 100
TRAIN_SHAPE = (1, 4, 6)
TRAIN_IMAGES, TRAIN_BATCH, TRAIN_EPOCHS, TRAIN_MAX_STEPS, TRAIN_LR = 20, 8, 3, 20, 0.01
BATCH_SIZES = [8, 8, 4] * TRAIN_EPOCHS  # 20 images in batches of 8, three times


# --- TinyDiffuser --------------------------------------------------------------------------------


def _tiny_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = randn(seed, "tiny_diffuser/images", (TINY_BATCH, *TINY_SHAPE))
    steps = randint(seed, "tiny_diffuser/steps", 1, TINY_MAX_STEPS // 2, (TINY_BATCH,))
    return images, steps, steps + TINY_MAX_STEPS // 2


def probe_tiny_diffuser(TinyDiffuser, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        call = f"TinyDiffuser({TINY_SHAPE}, hidden_size=32, max_steps={TINY_MAX_STEPS})"
        data["stage"] = f"building {call}"
        model = TinyDiffuser(TINY_SHAPE, hidden_size=32, max_steps=TINY_MAX_STEPS)
        data["classes"] = [cls.__name__ for cls in type(model).__mro__]
        data["img_shape"] = str(tuple(getattr(model, "img_shape", ()) or ()))
        data["schedule_is_none"] = getattr(model, "noise_schedule", "missing") is None
        data["params"] = count_params(model)
        model.to(device)
        images, steps, later = (v.to(device) for v in _tiny_inputs(seed))
        data["stage"] = f"running {call} on images of shape {fmt(images.shape)} and int64 steps of shape ({TINY_BATCH},)"
        out = model(images, steps)
        data["out"] = plain(out)
        data["stage"] = "running it again with other steps"
        data["out_later"] = plain(model(images, later))
        data["out_other_images"] = plain(model(images.flip(0), steps.flip(0)))
        data["out_first"] = plain(model(images[:1], steps[:1]))
        data["stage"] = "backpropagating through TinyDiffuser"
        model.zero_grad(set_to_none=True)
        (out * torch.linspace(-1, 1, out.numel(), device=device).reshape(out.shape)).sum().backward()
        data["missing_grads"] = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]

    return run_probe(run, seed, device)


@judge_safely
def judge_tiny_diffuser(data: dict, seed: int = SEED) -> str:
    raise_error(data, "TinyDiffuser")
    if "DiffusionModel" not in data["classes"]:
        raise AssertionError("TinyDiffuser must subclass DiffusionModel (class TinyDiffuser(DiffusionModel)).")
    if data["img_shape"] != str(TINY_SHAPE):
        raise AssertionError(f"TinyDiffuser({TINY_SHAPE}).img_shape is {data['img_shape']}: keep the given line "
                             "self.img_shape = tuple(img_shape).")
    if not data["schedule_is_none"]:
        raise AssertionError("A new TinyDiffuser's noise_schedule must be None (train attaches one).")
    if data["params"] == 0:
        raise AssertionError("TinyDiffuser has no trainable parameters: build its Linear layers in __init__.")
    shape = (TINY_BATCH, *TINY_SHAPE)
    out = tensor_at(data, "out", "TinyDiffuser's output", shape)
    later = tensor_at(data, "out_later", "TinyDiffuser's output", shape)
    if not ((out - later).abs().flatten(1).amax(1) > 1e-6).all():
        raise AssertionError("TinyDiffuser's output does not change with num_steps: append the steps (divided by "
                             "max_steps) to each flattened image before the first Linear layer.")
    flipped = tensor_at(data, "out_other_images", "TinyDiffuser's output", shape)
    if not is_close(flipped, out.flip(0), 1e-4):
        raise AssertionError("Reversing the batch does not reverse TinyDiffuser's output: each image (with its own "
                             "step) must be processed on its own. Flatten with 'b c h w -> b (c h w)', not across "
                             "the batch.")
    first = tensor_at(data, "out_first", "TinyDiffuser's output for one image", (1, *TINY_SHAPE))
    if not is_close(first, out[:1], 1e-4):
        raise AssertionError("TinyDiffuser's output for an image depends on the other images of the batch: "
                             "process each image on its own.")
    if data["missing_grads"]:
        raise AssertionError(f"These parameters get no gradient: {', '.join(data['missing_grads'])}. Use every layer "
                             "you build in forward.")
    return (f"a DiffusionModel mapping images {fmt(shape)} and steps ({TINY_BATCH},) to {fmt(shape)}, depending on "
            "the steps, each image on its own")


# --- train -------------------------------------------------------------------------------------


def _train_image(seed: int) -> torch.Tensor:
    return uniform(seed, "train_loop/image", TRAIN_SHAPE, -1.0, 1.0)


def _recording_model(record: list, device: str) -> nn.Module:
    """A test double of a DiffusionModel (not a layer of the lesson): predicts scale * images + shift
    and records, for each call, the images, the steps and its output."""

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self.scale, self.shift = nn.Parameter(torch.tensor(0.5)), nn.Parameter(torch.tensor(0.1))
        self.img_shape, self.noise_schedule = TRAIN_SHAPE, None

    def forward(self, images: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        out = self.scale * images + self.shift
        record.append({"images": plain(images), "steps": plain(num_steps), "dtype": str(num_steps.dtype),
                       "out": plain(out), "grad": bool(out.requires_grad),
                       "params": [self.scale.item(), self.shift.item()]})
        return out

    return type("ProbeDiffusionModel", (nn.Module,), {"__init__": __init__, "forward": forward})().to(device)


def probe_train_loop(train, TrainConfig, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        trainset = _train_image(seed).expand(TRAIN_IMAGES, *TRAIN_SHAPE).clone()
        calls: list = []
        data["calls"], data["on_step"] = calls, []
        model = _recording_model(calls, device)
        config = TrainConfig(epochs=TRAIN_EPOCHS, batch_size=TRAIN_BATCH, lr=TRAIN_LR, max_steps=TRAIN_MAX_STEPS, seed=seed)
        data["stage"] = f"calling train(model, trainset of shape {fmt(trainset.shape)}, {config}, on_step)"
        log = train(model, trainset, config, lambda step, loss: data["on_step"].append([int(step), float(loss)]))
        losses = getattr(log, "losses", None)
        data["losses"] = [float(v) for v in losses] if isinstance(losses, (list, tuple)) else f"a {type(losses).__name__}"
        data["seconds"] = float(getattr(log, "seconds", -1.0) or 0.0)
        data["log_type"] = type(log).__name__
        data["final_params"] = [model.scale.item(), model.shift.item()]
        schedule = getattr(model, "noise_schedule", None)
        data["schedule_len"] = len(schedule) if schedule is not None else None
        data["stage"] = "calling train with time_budget_s=0.0"
        quick = TrainConfig(epochs=TRAIN_EPOCHS, batch_size=TRAIN_BATCH, lr=TRAIN_LR, max_steps=TRAIN_MAX_STEPS,
                            seed=seed, time_budget_s=0.0)
        quick_log = train(_recording_model([], device), trainset, quick)
        quick_losses = getattr(quick_log, "losses", None)
        data["quick_steps"] = len(quick_losses) if isinstance(quick_losses, (list, tuple)) else -1

    return run_probe(run, seed, device)


def _implied_noise(call: dict, x0: torch.Tensor, alpha_bars: torch.Tensor) -> torch.Tensor:
    ab = rearrange(alpha_bars[call["steps"].long() - 1], "b -> b 1 1 1")
    return (call["images"].double() - ab.sqrt() * x0) / (1 - ab).sqrt()


@judge_safely
def judge_train_loop(data: dict, seed: int = SEED) -> str:
    raise_error(data, "train")
    calls, losses = data["calls"], data["losses"]
    if data["log_type"] != "TrainLog" or isinstance(losses, str):
        raise AssertionError(f"train returned a {data['log_type']}: return TrainLog(losses, seconds), with losses a "
                             "list of floats, one per optimiser step.")
    if data["seconds"] < 0:
        raise AssertionError("TrainLog.seconds should be the (non-negative) wall-clock time train took.")
    if not calls:
        raise AssertionError("train never called the model.")
    sizes = [len(call["steps"]) if call["steps"].ndim else -1 for call in calls]
    if sizes != BATCH_SIZES:
        raise AssertionError(f"With {TRAIN_IMAGES} images, batch_size={TRAIN_BATCH} and epochs={TRAIN_EPOCHS}, the model "
                             f"should get batches of sizes {BATCH_SIZES}; yours got {sizes}. Loop over the epochs, and "
                             "in each over _batches(data, config.batch_size, generator), calling the model once per batch.")
    for call in calls:
        if call["steps"].is_floating_point() or "int" not in call["dtype"]:
            raise AssertionError(f"The model received num_steps of dtype {call['dtype']}: pass the int64 steps from noise_img.")
        if int(call["steps"].min()) < 1 or int(call["steps"].max()) > TRAIN_MAX_STEPS:
            raise AssertionError(f"The model received steps outside 1..{TRAIN_MAX_STEPS} (config.max_steps).")
        if not call["grad"]:
            raise AssertionError("The model ran without gradients (no_grad or inference_mode) during training.")
    x0 = _train_image(seed).double()
    alpha_bars = ddpm_tables(TRAIN_MAX_STEPS)["alpha_bars"]
    noises = [_implied_noise(call, x0, alpha_bars) for call in calls]
    every = torch.cat([n.flatten() for n in noises])
    m = every.numel()
    if abs(every.mean().item()) > SIGMAS / math.sqrt(m) or abs((every**2).mean().item() - 1) > SIGMAS * math.sqrt(2 / m):
        raise AssertionError(
            "The images the model receives are not the training images noised by equation 4 with the steps it receives "
            f"(the implied noise has mean {every.mean().item():.3g} and variance {every.var().item():.3g}, not 0 and 1): "
            "pass the model the noised images and the num_steps that noise_img returns, with a NoiseSchedule of "
            "config.max_steps steps."
        )
    if len(losses) != len(calls):
        raise AssertionError(f"TrainLog.losses has {len(losses)} entries for {len(calls)} optimiser steps: append "
                             "loss.item() once per batch.")
    for index, (call, noise, loss) in enumerate(zip(calls, noises, losses)):
        out = call["out"].double()
        if math.isclose(loss, torch.mean((out - noise) ** 2).item(), rel_tol=1e-3, abs_tol=1e-5):
            continue
        images = call["images"].double()
        candidates = [
            (torch.mean((out - x0) ** 2), "Your loss compares the prediction with the clean image: the model predicts "
             "the noise, so the loss is mse(model(noised, num_steps), noise)."),
            (torch.mean((out - images) ** 2), "Your loss compares the prediction with the noised image: compare it "
             "with the noise that noise_img added."),
            (torch.sum((out - noise) ** 2), "Your loss is a sum: use the mean squared error (F.mse_loss)."),
            (torch.mean((out - noise).abs()), "Your loss is the mean absolute error: use the mean squared error."),
        ]
        cause = next((m for v, m in candidates if math.isclose(loss, v.item(), rel_tol=1e-3, abs_tol=1e-5)), (
            "The loss must be the mean squared error between the model's output and the noise added to its input."))
        raise AssertionError(f"Step {index + 1}: train recorded the loss {loss:.5g}, but the mean squared error between "
                             f"the model's output and the noise that was added is "
                             f"{torch.mean((out - noise) ** 2).item():.5g}. {cause}")
    if calls[-1]["params"] == calls[0]["params"] or data["final_params"] == calls[0]["params"]:
        raise AssertionError("The model's parameters never changed: call loss.backward() and optimiser.step() "
                             "(Adam over model.parameters(), lr=config.lr) after each batch.")
    if [step for step, _ in data["on_step"]] != list(range(1, len(losses) + 1)) or not all(
        math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) for (_, a), b in zip(data["on_step"], losses)
    ):
        raise AssertionError("on_step(step, loss) must be called after every optimiser step, with the step number "
                             "(1, 2, ...) and that step's loss.")
    if data["schedule_len"] != TRAIN_MAX_STEPS:
        raise AssertionError(f"After training, model.noise_schedule should be the NoiseSchedule({TRAIN_MAX_STEPS}) that "
                             f"training used (config.max_steps); found {data['schedule_len']!r} steps.")
    if data["quick_steps"] != 1:
        raise AssertionError(f"With time_budget_s=0.0, train took {data['quick_steps']} steps: check the time after "
                             "each step and stop as soon as it exceeds the budget (one step here).")
    return (f"batches of the right sizes, noised by noise_img with int64 steps in 1..max_steps, MSE against the noise, "
            f"{len(losses)} optimiser steps logged and reported, the schedule attached, the time budget kept")
