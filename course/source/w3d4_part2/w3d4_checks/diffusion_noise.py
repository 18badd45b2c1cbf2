# Generated from checks/w3d4_checks/diffusion_noise.py by `python -m grader build`: edit that file, not this one.
"""Part 1, the indexed schedule and jumping to a step: NoiseSchedule, noise_img and reconstruct.

noise_img is random, so it is judged by consistency and by distribution: the noised images it
returns must equal sqrt(alpha_bar) * img + sqrt(1 - alpha_bar) * noise exactly, for the steps and
the noise it returns; the noise must look standard Gaussian and the steps uniform on 1..max_steps,
within 6 standard errors."""

from __future__ import annotations

import math
from typing import Optional

import torch
from einops import rearrange

from .diffusion import SIGMAS, ddpm_tables, raise_error
from .judging import first_match, fmt, is_close, judge_safely, max_error, tensor_at
from .probing import plain, run_probe
from .seeding import SEED, randint, uniform

SCHEDULE_SIZES = (10, 1000)
TABLES = ("betas", "alphas", "alpha_bars")
LOOKUPS = {"betas": "beta", "alphas": "alpha", "alpha_bars": "alpha_bar"}
NOISE_STEPS = 50  # the schedule noise_img and reconstruct get
NOISE_SHAPE = (3000, 1, 4, 6)  # 72,000 pixels, 3,000 draws of the step
FEW_STEPS, FEW_SHAPE = 5, (400, 1, 4, 6)
RECON_SHAPE = (6, 3, 4, 6)


def _schedule_record(schedule, max_steps: int, device: str) -> dict:
    """The schedule's tables as its methods return them, for steps 1..max_steps."""
    steps = torch.arange(1, max_steps + 1, device=device)
    return {table: plain(getattr(schedule, method)(steps)) for table, method in LOOKUPS.items()}


def probe_noise_schedule(NoiseSchedule, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        for size in SCHEDULE_SIZES:
            data["stage"] = f"building NoiseSchedule({size})"
            schedule = NoiseSchedule(size)
            data[f"buffers_{size}"] = sorted(name for name, _ in schedule.named_buffers())
            data[f"len_{size}"] = len(schedule)
            schedule.to(device)
            for table in TABLES:
                value = getattr(schedule, table, None)
                data[f"{table}_{size}"] = plain(value) if isinstance(value, torch.Tensor) else None
            data["stage"] = f"looking up steps 1..{size - 1} with beta, alpha and alpha_bar"
            steps = torch.arange(1, size, device=device)
            for table, method in LOOKUPS.items():
                data[f"lookup_{table}_{size}"] = plain(getattr(schedule, method)(steps))
            for step in (size, 1):
                data["stage"] = f"calling alpha_bar({step}) with a Python int on NoiseSchedule({size})"
                try:
                    data[f"last_{size}_{step}"] = plain(schedule.alpha_bar(step))
                except IndexError as error:
                    data[f"last_{size}_{step}"] = f"IndexError: {str(error)[:200]}"
            grid = randint(seed, "noise_schedule/grid", 1, size, (2, 3)).to(device)  # not the last step: see "last"
            data["stage"] = f"calling alpha_bar on a tensor of steps of shape (2, 3) on NoiseSchedule({size})"
            data[f"grid_{size}"] = plain(schedule.alpha_bar(grid))
            for bad in (0, size + 1):
                data["stage"] = f"calling alpha_bar({bad}) on NoiseSchedule({size})"
                try:
                    value = schedule.alpha_bar(torch.tensor([1, bad], device=device))
                    data[f"bad_{size}_{bad}"] = f"no error (returned {plain(value).tolist()})"
                except IndexError:
                    data[f"bad_{size}_{bad}"] = "IndexError"
                except Exception as error:  # another error type is the student's choice we report on
                    data[f"bad_{size}_{bad}"] = f"{type(error).__name__}"

    return run_probe(run, seed, device)


def _table_mistakes(out: torch.Tensor, table: str, tables: dict, shifted: bool) -> str:
    betas, alphas = tables["betas"], tables["alphas"]
    candidates = []
    if table == "alpha_bars":
        candidates += [
            (lambda: torch.cumsum(alphas, 0), "alpha_bars must be the cumulative *product* of the alphas (t.cumprod), "
             "not their cumulative sum."),
            (lambda: 1 - torch.cumsum(betas, 0), "alpha_bars must be the cumulative product of the alphas "
             "(t.cumprod(1 - betas)), not 1 - cumsum(betas)."),
            (lambda: torch.cumprod(betas, 0), "alpha_bars is the cumulative product of the alphas (1 - beta), not of the betas."),
            (lambda: alphas, "alpha_bars equals the alphas: it is their cumulative product, t.cumprod(alphas, dim=0)."),
            (lambda: torch.cumprod(alphas, 0).sqrt(), "alpha_bars is the cumulative product of the alphas, without a square root."),
        ]
    if table == "alphas":
        candidates += [(lambda: betas, "alphas must be 1 - betas.")]
    candidates += [(lambda: 1 - tables[table], f"{table} looks like 1 minus what it should be.")]
    for compute, message in candidates:
        expected = compute()
        if is_close(out, expected[: len(out)], 1e-5) or (shifted and is_close(out, expected[1 : len(out) + 1], 1e-5)):
            return message
    return ""


@judge_safely
def judge_noise_schedule(data: dict, seed: int = SEED) -> str:
    raise_error(data, "NoiseSchedule")
    for size in SCHEDULE_SIZES:
        tables = ddpm_tables(size)
        buffers = set(data[f"buffers_{size}"])
        if not set(TABLES) <= buffers:
            missing = ", ".join(sorted(set(TABLES) - buffers))
            raise AssertionError(f"NoiseSchedule({size}) has no buffer {missing}: create each table with "
                                 "self.register_buffer(name, tensor), so that .to(device) moves it.")
        if data[f"len_{size}"] != size:
            raise AssertionError(f"len(NoiseSchedule({size})) is {data[f'len_{size}']}, expected {size}.")
        for table in TABLES:
            value = tensor_at(data, f"{table}_{size}", f"NoiseSchedule({size}).{table}", (size,))
            if not is_close(value, tables[table], 1e-5):
                cause = _table_mistakes(value, table, tables, False) or (
                    "betas rise linearly from 1e-4 to 0.02, alphas = 1 - betas, alpha_bars = t.cumprod(alphas, 0).")
                raise AssertionError(f"NoiseSchedule({size}).{table} differs from DDPM's by up to "
                                     f"{max_error(value, tables[table]):.3g}. {cause}")
        for table, method in LOOKUPS.items():
            out = tensor_at(data, f"lookup_{table}_{size}", f"{method}(steps 1..{size - 1})", (size - 1,))
            if not is_close(out, tables[table][:-1], 1e-5):
                off = is_close(out, tables[table][1:], 1e-5)
                cause = ("Off by one: step s is stored at index s - 1 (step 1, the first noising step, is at index 0)."
                         if off else "Return the table's entries at index num_steps - 1.")
                raise AssertionError(f"NoiseSchedule({size}).{method}(num_steps) returns the wrong entries for steps "
                                     f"1..{size - 1}. {cause}")
        for step in (size, 1):
            last = data[f"last_{size}_{step}"]
            if isinstance(last, str):
                raise AssertionError(f"NoiseSchedule({size}).alpha_bar({step}) raised {last}: steps 1..{size} are "
                                     f"valid, and step s is at index s - 1.")
            last = tensor_at(data, f"last_{size}_{step}", f"alpha_bar({step})")
            if last.numel() != 1 or not is_close(last.flatten(), tables["alpha_bars"][step - 1 : step], 1e-5):
                raise AssertionError(f"NoiseSchedule({size}).alpha_bar({step}) (a Python int) should be one number, "
                                     f"alpha_bars[{step - 1}].")
        grid = randint(seed, "noise_schedule/grid", 1, size, (2, 3))
        out = tensor_at(data, f"grid_{size}", "alpha_bar(steps of shape (2, 3))")
        if tuple(out.shape) != (2, 3):
            raise AssertionError(f"alpha_bar(steps) must have the shape of steps, (2, 3); yours has {fmt(out.shape)}.")
        if not is_close(out, tables["alpha_bars"][grid - 1], 1e-5):
            raise AssertionError("alpha_bar(steps) with a tensor of steps of shape (2, 3) returns the wrong entries.")
        for bad in (0, size + 1):
            if data[f"bad_{size}_{bad}"] != "IndexError":
                raise AssertionError(
                    f"NoiseSchedule({size}).alpha_bar with a step of {bad} gave {data[f'bad_{size}_{bad}']}: raise "
                    f"IndexError for steps outside 1..{size} (step 0 would silently read the last entry)."
                )
    return ("buffers betas, alphas, alpha_bars of DDPM's linear schedule; beta/alpha/alpha_bar(s) read index s - 1, "
            "keep the shape of s, and raise IndexError outside 1..max_steps")


def _schedule_error(data: dict) -> None:
    """Fail early, pointing at test_noise_schedule, when the student's schedule is wrong."""
    tables = ddpm_tables(NOISE_STEPS)
    for table in TABLES:
        value = tensor_at(data["schedule"], table, f"NoiseSchedule({NOISE_STEPS}).{table[:-1]}(1..{NOISE_STEPS})")
        if tuple(value.shape) != (NOISE_STEPS,) or not is_close(value, tables[table], 1e-5):
            raise AssertionError(f"Your NoiseSchedule's {table} are wrong, so this test cannot judge the function "
                                 "that uses it: make test_noise_schedule pass first.")


# --- noise_img ---------------------------------------------------------------------------------


def _images(seed: int, tag: str, shape: tuple[int, ...]) -> torch.Tensor:
    return uniform(seed, tag, shape, -1.0, 1.0)


def probe_noise_img(noise_img, NoiseSchedule, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        data["stage"] = f"building NoiseSchedule({NOISE_STEPS})"
        schedule = NoiseSchedule(NOISE_STEPS).to(device)
        data["stage"] = f"looking up NoiseSchedule({NOISE_STEPS})'s tables"
        data["schedule"] = _schedule_record(schedule, NOISE_STEPS, device)
        img = _images(seed, "noise_img/img", NOISE_SHAPE).to(device)
        original = img.clone()
        data["stage"] = f"calling noise_img(img, NoiseSchedule({NOISE_STEPS})) with img of shape {fmt(NOISE_SHAPE)}"
        result = noise_img(img, schedule)
        data["input_unchanged"] = bool(torch.equal(img, original))
        data["full"] = [plain(v) for v in result] if isinstance(result, (tuple, list)) else plain(result)
        few = _images(seed, "noise_img/few", FEW_SHAPE).to(device)
        data["stage"] = f"calling noise_img(img, NoiseSchedule({NOISE_STEPS}), max_steps={FEW_STEPS})"
        result = noise_img(few, schedule, max_steps=FEW_STEPS)
        data["few"] = [plain(v) for v in result] if isinstance(result, (tuple, list)) else plain(result)

    return run_probe(run, seed, device)


def _returned(data: dict, key: str, call: str, shape: tuple[int, ...]):
    value = data[key]
    if not isinstance(value, list) or len(value) != 3:
        raise AssertionError(f"{call} returned {value if isinstance(value, str) else f'{len(value)} values'}: "
                             "return the tuple (num_steps, noise, noised).")
    steps, noise, noised = value
    if not isinstance(steps, torch.Tensor) or steps.is_floating_point() or tuple(steps.shape) != shape[:1]:
        what = steps if isinstance(steps, str) else f"of dtype {steps.dtype} and shape {fmt(steps.shape)}"
        raise AssertionError(f"num_steps, the first value {call} returns, is {what}: it should be an int64 tensor of "
                             f"shape ({shape[0]},), one step per image (t.randint).")
    return steps.long(), tensor_at(data[key], 1, f"noise from {call}", shape), tensor_at(data[key], 2, f"noised from {call}", shape)


def _mixing_mistakes(noised, img, noise, steps: torch.Tensor, tables: dict) -> Optional[str]:
    per_image = lambda values: rearrange(values, "b -> b 1 1 1")
    at = lambda table, shift=0: per_image(tables[table][(steps - 1 + shift).clamp(0, NOISE_STEPS - 1)])
    ab = at("alpha_bars")
    mix = lambda a, s: a * img + s * noise
    return first_match(noised, [
        (lambda: mix(at("alpha_bars", 1).sqrt(), (1 - at("alpha_bars", 1)).sqrt()),
         "Off by one: for step s you use alpha_bar of step s + 1. Step s is at index s - 1 of the tables (or use "
         "noise_schedule.alpha_bar(num_steps))."),
        (lambda: mix(at("alpha_bars", -1).sqrt(), (1 - at("alpha_bars", -1)).sqrt()),
         "Off by one: for step s you use alpha_bar of step s - 1."),
        (lambda: mix(ab, 1 - ab), "Take square roots: sqrt(alpha_bar) * img + sqrt(1 - alpha_bar) * noise."),
        (lambda: mix(ab.sqrt(), 1 - ab), "The noise is scaled by sqrt(1 - alpha_bar): take the square root."),
        (lambda: mix(ab, (1 - ab).sqrt()), "The image is scaled by sqrt(alpha_bar): take the square root."),
        (lambda: mix((1 - ab).sqrt(), ab.sqrt()), "The factors are swapped: sqrt(alpha_bar) scales the image."),
        (lambda: mix(at("alphas").sqrt(), at("betas").sqrt()), "You apply one step (alpha_t, beta_t): jump straight "
         "to step s with alpha_bar_s, the product of the alphas up to s (equation 4)."),
    ])


@judge_safely
def judge_noise_img(data: dict, seed: int = SEED) -> str:
    raise_error(data, "noise_img")
    _schedule_error(data)
    tables = ddpm_tables(NOISE_STEPS)
    img = _images(seed, "noise_img/img", NOISE_SHAPE).double()
    call = f"noise_img(img, NoiseSchedule({NOISE_STEPS}))"
    steps, noise, noised = _returned(data, "full", call, NOISE_SHAPE)
    if not data["input_unchanged"]:
        raise AssertionError("noise_img modifies img in place: compute new tensors instead.")
    low, high = int(steps.min()), int(steps.max())
    if low < 1 or high > NOISE_STEPS:
        raise AssertionError(f"{call} drew steps from {low} to {high}: draw them from 1..{NOISE_STEPS}, "
                             f"t.randint(1, max_steps + 1, ...) (the upper end of randint is excluded).")
    if low != 1 or high != NOISE_STEPS:
        raise AssertionError(f"In {NOISE_SHAPE[0]:,} draws, {call} never drew step {1 if low != 1 else NOISE_STEPS}: "
                             f"draw from 1..{NOISE_STEPS} inclusive, t.randint(1, max_steps + 1, ...).")
    n, mean = len(steps), steps.double().mean().item()
    spread = math.sqrt((NOISE_STEPS**2 - 1) / 12 / n)
    if abs(mean - (NOISE_STEPS + 1) / 2) > SIGMAS * spread:
        raise AssertionError(f"The steps {call} draws average {mean:.2f}; uniform on 1..{NOISE_STEPS} averages "
                             f"{(NOISE_STEPS + 1) / 2}. Draw each image's step with t.randint(1, max_steps + 1, (batch,)).")
    m = noise.numel()
    if abs(noise.mean().item()) > SIGMAS / math.sqrt(m) or abs((noise**2).mean().item() - 1) > SIGMAS * math.sqrt(2 / m):
        raise AssertionError(f"The noise should be standard Gaussian; yours has mean {noise.mean().item():.3g} and "
                             f"variance {noise.var().item():.3g}. Draw it with t.randn_like(img).")
    ab = rearrange(tables["alpha_bars"][steps - 1], "b -> b 1 1 1")
    expected = ab.sqrt() * img + (1 - ab).sqrt() * noise
    if not is_close(noised, expected):
        cause = _mixing_mistakes(noised, img, noise, steps, tables) or (
            "Return the very noise you added and the steps you used: noised must equal sqrt(alpha_bar_s) * img + "
            "sqrt(1 - alpha_bar_s) * noise for the steps s and the noise you return.")
        raise AssertionError(f"noised differs from sqrt(alpha_bar) * img + sqrt(1 - alpha_bar) * noise (for the "
                             f"num_steps and noise returned) by up to {max_error(noised, expected):.3g}. {cause}")
    few_call = f"noise_img(img, NoiseSchedule({NOISE_STEPS}), max_steps={FEW_STEPS})"
    steps, noise, noised = _returned(data, "few", few_call, FEW_SHAPE)
    if int(steps.min()) != 1 or int(steps.max()) != FEW_STEPS:
        raise AssertionError(f"{few_call} drew steps from {int(steps.min())} to {int(steps.max())} in {FEW_SHAPE[0]} "
                             f"draws: with max_steps given, draw from 1..max_steps.")
    img = _images(seed, "noise_img/few", FEW_SHAPE).double()
    ab = rearrange(tables["alpha_bars"][steps - 1], "b -> b 1 1 1")
    if not is_close(noised, ab.sqrt() * img + (1 - ab).sqrt() * noise):
        raise AssertionError(f"With max_steps={FEW_STEPS}, noised is not sqrt(alpha_bar) * img + sqrt(1 - alpha_bar) * noise.")
    return (f"steps uniform on 1..max_steps (int64), standard Gaussian noise, and noised = sqrt(alpha_bar) img + "
            f"sqrt(1 - alpha_bar) noise for the values returned ({NOISE_SHAPE[0]:,} images)")


# --- reconstruct -------------------------------------------------------------------------------


def _reconstruct_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    noisy = 1.5 * uniform(seed, "reconstruct/noisy", RECON_SHAPE, -1.0, 1.0)
    noise = uniform(seed, "reconstruct/noise", RECON_SHAPE, -2.0, 2.0)
    steps = randint(seed, "reconstruct/steps", 2, NOISE_STEPS, (RECON_SHAPE[0],))
    steps[0], steps[-1] = 1, NOISE_STEPS  # both ends of the schedule
    return noisy, noise, steps


def probe_reconstruct(reconstruct, NoiseSchedule, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        data["stage"] = f"building NoiseSchedule({NOISE_STEPS})"
        schedule = NoiseSchedule(NOISE_STEPS).to(device)
        data["stage"] = f"looking up NoiseSchedule({NOISE_STEPS})'s tables"
        data["schedule"] = _schedule_record(schedule, NOISE_STEPS, device)
        noisy, noise, steps = (v.to(device) for v in _reconstruct_inputs(seed))
        data["stage"] = f"calling reconstruct(noisy_img, noise, num_steps, schedule) on images of shape {fmt(RECON_SHAPE)}"
        data["out"] = plain(reconstruct(noisy, noise, steps, schedule))

    return run_probe(run, seed, device)


@judge_safely
def judge_reconstruct(data: dict, seed: int = SEED) -> str:
    raise_error(data, "reconstruct")
    _schedule_error(data)
    noisy, noise, steps = (v.double() if v.is_floating_point() else v for v in _reconstruct_inputs(seed))
    tables = ddpm_tables(NOISE_STEPS)
    ab_at = lambda shift=0: rearrange(tables["alpha_bars"][(steps - 1 + shift).clamp(0, NOISE_STEPS - 1)], "b -> b 1 1 1")
    solve = lambda ab, s: (noisy - s * noise) / ab
    ab = ab_at()
    expected = solve(ab.sqrt(), (1 - ab).sqrt())
    out = tensor_at(data, "out", "reconstruct(noisy_img, noise, num_steps, schedule)", RECON_SHAPE)
    if not is_close(out, expected):
        cause = first_match(out, [
            (lambda: solve(ab_at(1).sqrt(), (1 - ab_at(1)).sqrt()), "Off by one: for step s you use alpha_bar of step "
             "s + 1 (step s is at index s - 1; noise_schedule.alpha_bar(num_steps) does it for you)."),
            (lambda: solve(ab_at(-1).sqrt(), (1 - ab_at(-1)).sqrt()), "Off by one: for step s you use alpha_bar of step s - 1."),
            (lambda: solve(ab, 1 - ab), "Take square roots: x_0 = (noisy - sqrt(1 - alpha_bar) noise) / sqrt(alpha_bar)."),
            (lambda: solve(ab.sqrt(), 1 - ab), "The noise is scaled by sqrt(1 - alpha_bar): take the square root."),
            (lambda: solve(ab, (1 - ab).sqrt()), "Divide by sqrt(alpha_bar), not alpha_bar."),
            (lambda: (noisy + (1 - ab).sqrt() * noise) / ab.sqrt(), "Subtract the noise, do not add it."),
            (lambda: noisy - (1 - ab).sqrt() * noise, "After subtracting the noise, divide by sqrt(alpha_bar)."),
            (lambda: (noisy - (1 - ab).sqrt() * noise) * ab.sqrt(), "Divide by sqrt(alpha_bar), do not multiply."),
        ]) or "Solve equation 4 for x_0: x_0 = (noisy - sqrt(1 - alpha_bar) * noise) / sqrt(alpha_bar)."
        raise AssertionError(f"reconstruct differs from (noisy - sqrt(1 - alpha_bar) noise) / sqrt(alpha_bar) by up to "
                             f"{max_error(out, expected):.3g}. {cause}")
    return "reconstruct solves equation 4 for x_0, for steps from 1 to max_steps"
