# Generated from checks/w3d4_checks/diffusion.py by `python -m grader build`: edit that file, not this one.
"""Part 1, the forward process: normalize_img / denormalize_img, linear_schedule, q_eq2 and q_eq4.

The noising functions are random, and correct code may draw its random numbers in any order, so
they are judged by the distribution of what they return: given an input pixel x, the output after
n steps is Gaussian with mean k * x and variance v, where k = sqrt(alpha_bar_n) and
v = 1 - alpha_bar_n. Over about 150,000 pixels the fitted k, the mean and the variance of the
residual must agree with that within 6 standard errors (a correct answer fails about once in 10^8
seeds); each known mistake predicts other (k, v), so the same test names it.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from .judging import first_match, fmt, is_close, judge_safely, max_error, raise_probe_error, tensor_at
from .probing import plain, run_probe
from .seeding import SEED, uniform

BETA_START, BETA_END = 1e-4, 0.02  # DDPM's linear schedule
SIGMAS = 6.0  # how many standard errors a statistic of correct code may stray
NORM_SHAPE = (3, 2, 4, 6)
SCHEDULE_LENGTHS = ((10, 1e-4, 0.02), (1000, 1e-4, 0.02), (7, 0.05, 0.3), (1, 0.01, 0.01))
Q_SHAPE = (1500, 3, 4, 8)  # 144,000 pixels
Q_STEPS = 5
Q_BETAS = 8


# --- shared by the part 1 checks ---------------------------------------------------------------


def ddpm_tables(max_steps: int) -> dict[str, torch.Tensor]:
    """DDPM's linear schedule in float64: betas, alphas, alpha_bars, each (max_steps,), index step - 1."""
    betas = torch.linspace(BETA_START, BETA_END, max_steps, dtype=torch.float64)
    alphas = 1 - betas
    return {"betas": betas, "alphas": alphas, "alpha_bars": torch.cumprod(alphas, 0)}


def fits_gaussian(out: torch.Tensor, x: Optional[torch.Tensor], k: float, v: float) -> bool:
    """Whether out = k * x + N(0, v) elementwise is consistent with the data, within SIGMAS standard
    errors on the fitted slope, the residual's mean and its mean square. x None means x = 0."""
    out = out.flatten().double()
    x = torch.zeros_like(out) if x is None else x.flatten().double()
    m = out.numel()
    if v <= 0 or not math.isfinite(v):
        return False
    residual = out - k * x
    if abs(residual.mean().item()) > SIGMAS * math.sqrt(v / m):
        return False
    if abs((residual**2).mean().item() / v - 1) > SIGMAS * math.sqrt(2 / m):
        return False
    energy = (x**2).sum().item()
    if energy > 0:
        slope = (out * x).sum().item() / energy
        if abs(slope - k) > SIGMAS * math.sqrt(v / energy):
            return False
    return True


def describe_fit(out: torch.Tensor, x: Optional[torch.Tensor]) -> str:
    """What the data look like: the fitted slope on x and the residual variance."""
    out = out.flatten().double()
    if x is None:
        return f"mean {out.mean().item():.4g}, variance {out.var().item():.4g}"
    x = x.flatten().double()
    slope = (out * x).sum().item() / (x**2).sum().item()
    return f"output = {slope:.4g} * input + noise of variance {(out - slope * x).var().item():.4g}"


DEVICE_HINT = (
    "Tensors on two devices met: make every new tensor on the device of the input (device=img.device, "
    "t.randn_like(img)), and let .to(device) move the schedule's tables (register them as buffers)."
)


def raise_error(data: dict, subject: str) -> None:
    """raise_probe_error, with a hint for the mistake that only shows on a GPU: tensors on two devices."""
    error = data.get("error")
    if error is not None and "device" in str(error.get("message", "")) and error.get("type") == "RuntimeError":
        where = f" in {error['function']}" if error.get("function") else ""
        code = f"\n    {error['code']}" if error.get("code") else ""
        raise AssertionError(f"{subject} raised RuntimeError{where} while {data['stage']}:{code}\n"
                             f"{str(error['message'])[:300]}\n{DEVICE_HINT}")
    raise_probe_error(data, subject)


def nan_hint(value, what: str, hint: str) -> None:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
        raise AssertionError(f"{what} contains NaN or inf. {hint}")


# --- normalize_img / denormalize_img -----------------------------------------------------------


def _norm_input(seed: int) -> torch.Tensor:
    return uniform(seed, "normalize_img/x", NORM_SHAPE, 0.0, 1.0)


def probe_normalize_img(normalize_img, denormalize_img, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        x = _norm_input(seed).to(device)
        data["stage"] = f"calling normalize_img on a tensor of shape {fmt(NORM_SHAPE)} with values in [0, 1]"
        data["normalized"] = plain(normalize_img(x.clone()))
        data["stage"] = "calling normalize_img on the values [0, 0.5, 1]"
        data["ends"] = plain(normalize_img(torch.tensor([0.0, 0.5, 1.0], device=device)))
        data["stage"] = f"calling denormalize_img on a tensor of shape {fmt(NORM_SHAPE)} with values in [-1, 1]"
        data["denormalized"] = plain(denormalize_img(x.clone() * 2 - 1))

    return run_probe(run, seed, device)


@judge_safely
def judge_normalize_img(data: dict, seed: int = SEED) -> str:
    raise_error(data, "normalize_img")
    x = _norm_input(seed).double()
    out = tensor_at(data, "normalized", "normalize_img(x)", NORM_SHAPE)
    if not is_close(out, 2 * x - 1):
        ends = tensor_at(data, "ends", "normalize_img([0, 0.5, 1])", (3,))
        cause = first_match(
            out,
            [
                (lambda: x, "normalize_img returns its input unchanged."),
                (lambda: x - 0.5, "Your values end up in [-0.5, 0.5]: scale by 2 as well, 2 * x - 1."),
                (lambda: (x - x.min()) / (x.max() - x.min()),
                 "Your values end up in [0, 1]: the model wants [-1, 1], so compute 2 * x - 1."),
                (lambda: (x - x.mean()) / x.std(), "You standardise the batch (mean 0, std 1): map [0, 1] onto "
                 "[-1, 1] with the fixed formula 2 * x - 1, which does not depend on the batch."),
                (lambda: (x + 1) / 2, "That is denormalize_img's formula: normalize_img computes 2 * x - 1."),
                (lambda: 1 - 2 * x, "Your mapping is flipped (0 -> 1, 1 -> -1): compute 2 * x - 1."),
            ],
        ) or f"normalize_img maps 0, 0.5, 1 to {[round(v, 4) for v in ends.tolist()]} instead of -1, 0, 1."
        raise AssertionError(f"normalize_img(x) differs from 2 * x - 1 by up to {max_error(out, 2 * x - 1):.3g}. {cause}")
    y = 2 * x - 1
    back = tensor_at(data, "denormalized", "denormalize_img(y)", NORM_SHAPE)
    if not is_close(back, x):
        cause = first_match(
            back,
            [
                (lambda: y, "denormalize_img returns its input unchanged."),
                (lambda: y + 0.5, "Shift and scale: (y + 1) / 2."),
                (lambda: y / 2 + 1, "The brackets: (y + 1) / 2, not y / 2 + 1."),
                (lambda: 2 * y - 1, "That is normalize_img's formula: denormalize_img computes (y + 1) / 2."),
                (lambda: (y - y.min()) / (y.max() - y.min()), "Use the fixed inverse (y + 1) / 2, not the batch's range."),
            ],
        ) or "denormalize_img must undo normalize_img: (y + 1) / 2."
        raise AssertionError(f"denormalize_img(y) differs from (y + 1) / 2 by up to {max_error(back, x):.3g}. {cause}")
    return "normalize_img maps [0, 1] onto [-1, 1] (2x - 1) and denormalize_img undoes it"


# --- linear_schedule ---------------------------------------------------------------------------


def probe_linear_schedule(linear_schedule, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        data["stage"] = "calling linear_schedule(1000) with the default noise levels"
        data["default"] = plain(linear_schedule(1000))
        for steps, low, high in SCHEDULE_LENGTHS:
            data["stage"] = f"calling linear_schedule({steps}, {low}, {high})"
            data[f"betas_{steps}"] = plain(linear_schedule(steps, low, high))

    return run_probe(run, seed, device)


def _schedule_mistakes(out: torch.Tensor, steps: int, low: float, high: float) -> Optional[str]:
    return first_match(
        out,
        [
            (lambda: torch.linspace(low, high, steps + 1, dtype=torch.float64)[1:],
             f"Your first beta is not min_noise ({low}): linspace(min_noise, max_noise, max_steps) starts at it."),
            (lambda: torch.linspace(low, high, steps + 1, dtype=torch.float64)[:-1],
             f"Your last beta is not max_noise ({high}): t.linspace includes both ends (with an arange, divide by "
             "max_steps - 1, not max_steps)."),
            (lambda: torch.linspace(high, low, steps, dtype=torch.float64),
             "Your betas fall: they must rise from min_noise to max_noise."),
            (lambda: 1 - torch.linspace(low, high, steps, dtype=torch.float64),
             "You return 1 - beta (the alphas): return the betas themselves."),
        ],
    )


@judge_safely
def judge_linear_schedule(data: dict, seed: int = SEED) -> str:
    raise_error(data, "linear_schedule")
    # the explicit noise levels first: a wrong formula is easier to name there than a wrong default
    cases = [(f"betas_{s}", s, lo, hi) for s, lo, hi in SCHEDULE_LENGTHS] + [("default", 1000, BETA_START, BETA_END)]
    for key, steps, low, high in cases:
        call = "linear_schedule(1000)" if key == "default" else f"linear_schedule({steps}, {low}, {high})"
        out = tensor_at(data, key, call)
        expected = torch.linspace(low, high, steps, dtype=torch.float64)
        if tuple(out.shape) != (steps,):
            raise AssertionError(f"{call} has shape {fmt(out.shape)}, expected ({steps},): one beta per step.")
        if not is_close(out, expected, 1e-6):
            cause = _schedule_mistakes(out, steps, low, high) or (
                "The defaults must be min_noise=1e-4 (0.0001) and max_noise=0.02." if key == "default"
                else "Use t.linspace(min_noise, max_noise, max_steps).")
            raise AssertionError(f"{call} differs from evenly spaced betas from {low} to {high} by up to "
                                 f"{max_error(out, expected):.3g}. {cause}")
    return "max_steps betas, evenly spaced from min_noise to max_noise (defaults 1e-4 and 0.02)"


# --- q_eq2 and q_eq4 ---------------------------------------------------------------------------


def q_inputs(seed: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Values x (Q_SHAPE) in [-3, 3], wide so that the slope on x is measured precisely, and
    Q_BETAS large, distinct, rising betas (float32), so that an off-by-one changes alpha_bar a lot."""
    x = uniform(seed, f"{name}/x", Q_SHAPE, -3.0, 3.0)
    betas = torch.linspace(0.1, 0.4, Q_BETAS) + uniform(seed, f"{name}/betas", (Q_BETAS,), -0.01, 0.01)
    return x, betas


def probe_q(q, name: str, seed: int, device: Optional[str]) -> dict:
    def run(data: dict, device: str) -> None:
        x, betas = (v.to(device) for v in q_inputs(seed, name))
        original = x.clone()
        data["stage"] = f"calling {name}(x, {Q_STEPS}, betas) with x of shape {fmt(Q_SHAPE)} and {Q_BETAS} betas"
        data["out"] = plain(q(x, Q_STEPS, betas))
        data["input_unchanged"] = bool(torch.equal(x, original))

    return run_probe(run, seed, device)


def _chain(scales: list, noises: list) -> tuple[float, float]:
    """(k, v) of x_n = a_n (... (a_1 x + c_1 z_1) ...) + c_n z_n for scales a and noise scales c."""
    k, v = 1.0, 0.0
    for a, c in zip(scales, noises):
        k, v = a * k, a * a * v + c * c
    return k, v


def _q_mistakes(betas: list, n: int, stepwise: bool) -> list[tuple[float, float, str]]:
    """(k, v, message) of each known mistake."""
    b = betas[:n]
    sq = math.sqrt
    alpha_bar = lambda bs: math.prod(1 - x for x in bs)
    eq4 = lambda ab: (sq(ab), 1 - ab)
    reused_noise = sum(sq(beta) * math.prod(sq(1 - x) for x in b[i + 1 :]) for i, beta in enumerate(b)) ** 2
    mistakes = [
        (*eq4(alpha_bar(betas[1 : n + 1])), "You use betas[1] .. betas[n]: step 1 uses beta_1, which is betas[0]."),
        (*eq4(alpha_bar(betas[: n - 1])), f"You apply {n - 1} steps instead of {n}: step s uses betas[s - 1], for s = 1 .. n."),
        (*eq4(alpha_bar(betas[: n + 1])), f"You apply {n + 1} steps instead of {n}: use betas[0] .. betas[n - 1]."),
    ]
    if stepwise:
        mistakes += [
            (*_chain([1 - x for x in b], [sq(x) for x in b]), "Scale by sqrt(1 - beta_t), not (1 - beta_t)."),
            (*_chain([sq(1 - x) for x in b], b), "The noise's standard deviation is sqrt(beta_t): multiply it by "
             "sqrt(beta_t), not beta_t."),
            (*_chain([1 - x for x in b], b), "Both factors need a square root: sqrt(1 - beta_t) * x + sqrt(beta_t) * noise."),
            (*_chain([sq(x) for x in b], [sq(1 - x) for x in b]), "The factors are swapped: the image is scaled by "
             "sqrt(1 - beta_t) and the noise by sqrt(beta_t)."),
            (*_chain([1.0] * n, [sq(x) for x in b]), "You do not scale the image down: x_t = sqrt(1 - beta_t) x_{t-1} + "
             "sqrt(beta_t) noise, so that the variance stays 1."),
            (alpha_bar(b) ** 0.5, reused_noise, "You add the same noise at every step: draw fresh noise at each step."),
        ]
    else:
        ab = alpha_bar(b)
        mistakes += [
            (ab, 1 - ab, "Take square roots: the image is scaled by sqrt(alpha_bar) and the noise by sqrt(1 - alpha_bar)."),
            (sq(ab), (1 - ab) ** 2, "The noise's standard deviation is sqrt(1 - alpha_bar): take the square root."),
            (ab, (1 - ab) ** 2, "Both factors need a square root: sqrt(alpha_bar) x + sqrt(1 - alpha_bar) noise."),
            (sq(1 - ab), ab, "The factors are swapped: sqrt(alpha_bar) scales the image, sqrt(1 - alpha_bar) the noise."),
            (sq(1 - b[-1]), b[-1], f"You use only step {n}'s alpha: alpha_bar is the product of all the alphas "
             f"(1 - beta) of steps 1 .. {n}."),
            (sq(math.prod(b)), 1 - math.prod(b), "You multiply the betas: alpha_bar is the product of (1 - beta)."),
        ]
        one_minus_sum = 1 - sum(b)
        if one_minus_sum > 0:
            mistakes.append((sq(one_minus_sum), sum(b), "You add the betas (cumsum): alpha_bar is the product of the "
                             "alphas, prod(1 - beta), not 1 - sum(beta)."))
    return mistakes


def judge_q(data: dict, seed: int, name: str) -> str:
    raise_error(data, name)
    x, betas = q_inputs(seed, name)
    betas_list = betas.double().tolist()
    stepwise = name == "q_eq2"
    call = f"{name}(x, {Q_STEPS}, betas)"
    nan_hint(data["out"], call, "A square root of a negative number? alpha_bar is the product of (1 - beta) and lies "
             "in (0, 1]." if not stepwise else "Check the factors sqrt(1 - beta_t) and sqrt(beta_t).")
    out = tensor_at(data, "out", call, Q_SHAPE)
    if not data["input_unchanged"]:
        raise AssertionError(f"{name} modifies its input x in place: compute a new tensor instead.")
    ab = math.prod(1 - b for b in betas_list[:Q_STEPS])
    if fits_gaussian(out, x.double(), math.sqrt(ab), 1 - ab):
        how = "step by step (equation 2)" if stepwise else "in one step (equation 4)"
        return (f"over {out.numel():,} pixels, {name} noises x {how} with the distribution "
                f"N(sqrt(alpha_bar) x, 1 - alpha_bar), alpha_bar = prod(1 - beta_s) over steps 1..{Q_STEPS}")
    for k, v, message in _q_mistakes(betas_list, Q_STEPS, stepwise):
        if fits_gaussian(out, x.double(), k, v):
            break
    else:
        message = ("Check that steps 1..n use betas[0]..betas[n-1], the square roots, and that the noise is "
                   "standard Gaussian (t.randn_like).")
    raise AssertionError(
        f"After {Q_STEPS} steps a pixel x should become sqrt(alpha_bar) x + noise of variance 1 - alpha_bar, that is "
        f"{math.sqrt(ab):.4g} * x + noise of variance {1 - ab:.4g}; yours gives {describe_fit(out, x)}. {message}"
    )


def probe_q_eq2(q_eq2, seed: int = SEED, device: Optional[str] = None) -> dict:
    return probe_q(q_eq2, "q_eq2", seed, device)


def probe_q_eq4(q_eq4, seed: int = SEED, device: Optional[str] = None) -> dict:
    return probe_q(q_eq4, "q_eq4", seed, device)


@judge_safely
def judge_q_eq2(data: dict, seed: int = SEED) -> str:
    return judge_q(data, seed, "q_eq2")


@judge_safely
def judge_q_eq4(data: dict, seed: int = SEED) -> str:
    return judge_q(data, seed, "q_eq4")
