# Generated from checks/w3d4_checks/diffusion_sampling.py by `python -m grader build`: edit that file, not this one.
"""Part 1, sampling: DDPM's Algorithm 2.

The sampler is run on two test doubles of a model, A and B, that predict a known linear function
of their input, eps = g(t) * x_t, with the same seed. Whatever order a correct sampler draws its
random numbers in, with the same seed it draws the same ones for both models, so the noise cancels
in the difference between the two runs: every step's mean is checked exactly, in float64.
The noise a step adds, sigma_t * z, is then known exactly too; its variance over 48,000 pixels
must match sigma_t^2 = beta_t or the posterior variance beta_tilde_t (the paper allows both) within
6 standard errors, and the last step must add none.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from einops import rearrange
from torch import nn

from .diffusion import SIGMAS, ddpm_tables, raise_error
from .diffusion_noise import TABLES, _schedule_record
from .judging import is_close, judge_safely, tensor_at
from .probing import plain, run_probe
from .seeding import SEED

SAMPLE_STEPS = 10
SAMPLE_SHAPE = (1, 4, 6)
N_SAMPLES = 2000
MODELS = {"A": (0.2, 0.6), "B": (-0.3, 0.5)}  # g(t) = c0 + c1 * t / T


def _coefficient(model: str, steps: torch.Tensor) -> torch.Tensor:
    c0, c1 = MODELS[model]
    return c0 + c1 * steps / SAMPLE_STEPS


def _linear_model(name: str, schedule: nn.Module, calls: list, device: str) -> nn.Module:
    """A test double of a DiffusionModel (not a layer of the lesson): predicts g(t) * x_t and
    records the steps of each call."""

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so that its device can be found
        self.img_shape, self.noise_schedule = SAMPLE_SHAPE, schedule

    def forward(self, images: torch.Tensor, num_steps: torch.Tensor) -> torch.Tensor:
        calls.append({"dtype": str(num_steps.dtype), "shape": list(num_steps.shape),
                      "values": sorted({int(v) for v in num_steps.flatten().tolist()})})
        coefficient = _coefficient(name, num_steps.to(images.dtype)).to(images.dtype)
        if coefficient.ndim == 1:
            coefficient = rearrange(coefficient, "b -> b 1 1 1")
        return coefficient * images + self.anchor

    return type("ProbeLinearModel", (nn.Module,), {"__init__": __init__, "forward": forward})().to(device)


def _trajectory(value) -> list:
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return plain(value)


def probe_ddpm_sample(sample, NoiseSchedule, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        data["stage"] = f"building NoiseSchedule({SAMPLE_STEPS})"
        schedule = NoiseSchedule(SAMPLE_STEPS).to(device)
        data["schedule"] = _schedule_record(schedule, SAMPLE_STEPS, device)
        sample_seed = seed % 2**31 + 1
        for offset, name in enumerate(MODELS):
            calls: list = []
            data[f"calls_{name}"] = calls
            model = _linear_model(name, schedule, calls, device)
            torch.manual_seed(seed % 2**31 + 100 + offset)  # another global state for each run: only `seed` ties them
            data["stage"] = f"calling sample(model, {N_SAMPLES}, return_all_steps=True, seed={sample_seed})"
            data[f"steps_{name}"] = _trajectory(sample(model, N_SAMPLES, return_all_steps=True, seed=sample_seed))
        data["stage"] = f"calling sample(model, {N_SAMPLES}, seed={sample_seed})"
        torch.manual_seed(seed % 2**31 + 200)
        data["final"] = plain(sample(_linear_model("A", schedule, [], device), N_SAMPLES, seed=sample_seed))

    return run_probe(run, seed, device)


def _posterior_variance(tables: dict) -> torch.Tensor:
    previous = torch.cat([torch.ones(1, dtype=torch.float64), tables["alpha_bars"][:-1]])
    return tables["betas"] * (1 - previous) / (1 - tables["alpha_bars"])


def _mean_factors(tables: dict, name: str) -> dict[str, torch.Tensor]:
    """x_{t-1}'s mean as factor_t * x_t for model `name`, per step t = 1..T (index t - 1), for the
    right formula and for known mistakes."""
    b, a, ab = tables["betas"], tables["alphas"], tables["alpha_bars"]
    g = _coefficient(name, torch.arange(1, SAMPLE_STEPS + 1, dtype=torch.float64))
    shift = lambda v: torch.cat([v[1:], v[-1:]])  # the entries of step t + 1
    return {
        "right": (1 - b / (1 - ab).sqrt() * g) / a.sqrt(),
        "The sign of the noise term is flipped: x_t minus beta_t / sqrt(1 - alpha_bar_t) times the predicted noise.":
            (1 + b / (1 - ab).sqrt() * g) / a.sqrt(),
        "Take the square root of 1 - alpha_bar_t in the noise term's factor, beta_t / sqrt(1 - alpha_bar_t).":
            (1 - b / (1 - ab) * g) / a.sqrt(),
        "Divide by sqrt(alpha_t), the alpha of this step, not sqrt(alpha_bar_t).": (1 - b / (1 - ab).sqrt() * g) / ab.sqrt(),
        "Divide by sqrt(alpha_t), not alpha_t.": (1 - b / (1 - ab).sqrt() * g) / a,
        "Divide the whole bracket by sqrt(alpha_t), not only x_t.": 1 / a.sqrt() - b / (1 - ab).sqrt() * g,
        "The noise term's factor is beta_t / sqrt(1 - alpha_bar_t), with beta_t, not sqrt(beta_t).":
            (1 - b.sqrt() / (1 - ab).sqrt() * g) / a.sqrt(),
        "Off by one: at step t you use the schedule's values of step t + 1 (step t is at index t - 1).":
            (1 - shift(b) / (1 - shift(ab)).sqrt() * g) / shift(a).sqrt(),
        "You subtract the predicted noise itself: x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t) "
        "+ sigma_t z.": 1 - g,
    }


def _residuals(steps: list, factors: torch.Tensor) -> list[torch.Tensor]:
    """r_t = x_{t-1} - factor_t x_t for t = T..1 (in that order): the noise each step added."""
    T = len(steps) - 1
    return [steps[i + 1] - factors[T - 1 - i] * steps[i] for i in range(T)]


def _consistent(res_a: list, res_b: list, tol: float) -> bool:
    return all(is_close(ra, rb, tol) for ra, rb in zip(res_a, res_b))


@judge_safely
def judge_ddpm_sample(data: dict, seed: int = SEED) -> str:
    raise_error(data, "sample")
    tables = ddpm_tables(SAMPLE_STEPS)
    for table in TABLES:
        value = tensor_at(data["schedule"], table, f"NoiseSchedule({SAMPLE_STEPS}) {table}")
        if tuple(value.shape) != (SAMPLE_STEPS,) or not is_close(value, tables[table], 1e-5):
            raise AssertionError("Your NoiseSchedule's tables are wrong, so this test cannot judge sample: make "
                                 "test_noise_schedule pass first.")
    shape = (N_SAMPLES, *SAMPLE_SHAPE)
    trajectories = {}
    for name in MODELS:
        value = data[f"steps_{name}"]
        if not isinstance(value, list):
            what = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else value
            raise AssertionError(f"sample(..., return_all_steps=True) returned {what}: return the list of all the "
                                 "batches, from the initial noise to x_0.")
        if len(value) != SAMPLE_STEPS + 1:
            raise AssertionError(f"With {SAMPLE_STEPS} steps, sample(..., return_all_steps=True) should return "
                                 f"{SAMPLE_STEPS + 1} batches, the initial noise x_T first and x_0 last; yours returned "
                                 f"{len(value)}.")
        trajectories[name] = [tensor_at(data[f"steps_{name}"], i, f"batch {i} of the returned steps", shape)
                              for i in range(SAMPLE_STEPS + 1)]
        calls = data[f"calls_{name}"]
        called = [call["values"] for call in calls]
        expected = [[step] for step in range(SAMPLE_STEPS, 0, -1)]
        if called != expected:
            shown = [v[0] if len(v) == 1 else v for v in called]
            hint = (" Off by one: the steps run from T down to 1 (range(T, 0, -1))." if called == [[s - 1] for s in
                    range(SAMPLE_STEPS, 0, -1)] else "")
            raise AssertionError(f"With a schedule of {SAMPLE_STEPS} steps, the model should be called once per step "
                                 f"with num_steps = {SAMPLE_STEPS}, {SAMPLE_STEPS - 1}, ..., 1 (one value for the whole "
                                 f"batch); it was called with {shown}.{hint}")
        for call in calls:
            if "int" not in call["dtype"] or call["shape"] != [N_SAMPLES]:
                raise AssertionError(f"The model received num_steps of dtype {call['dtype']} and shape "
                                     f"{tuple(call['shape'])}: pass an int64 tensor of shape (n_samples,), "
                                     "t.full((n_samples,), step, dtype=t.long).")
    a, b = trajectories["A"], trajectories["B"]
    start = a[0]
    m = start.numel()
    if abs(start.mean().item()) > SIGMAS / math.sqrt(m) or abs((start**2).mean().item() - 1) > SIGMAS * math.sqrt(2 / m):
        raise AssertionError(f"The first batch, x_T, should be standard Gaussian noise; it has mean "
                             f"{start.mean().item():.3g} and variance {start.var().item():.3g}. Start from t.randn.")
    if not torch.equal(a[0], b[0]):
        raise AssertionError("Two calls of sample with the same seed start from different noise: when seed is given, "
                             "draw every random number from t.Generator(device=device).manual_seed(seed).")
    mistakes = {}
    for message in _mean_factors(tables, "A"):
        res_a = _residuals(a, _mean_factors(tables, "A")[message])
        res_b = _residuals(b, _mean_factors(tables, "B")[message])
        # a mistake is named with a looser tolerance: float32 loses digits in some wrong formulas
        # (1 - alpha_bar_1 = beta_1 = 1e-4 is computed as 1.00017e-4)
        mistakes[message] = _consistent(res_a, res_b, 1e-4 if message == "right" else 2e-3)
        if message == "right":
            right_a = res_a
    if not mistakes["right"]:
        known = [message for message, fits in mistakes.items() if fits]
        cause = known[0] if known else (
            "Either a step's mean is not (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps) / sqrt(alpha_t), or the noise "
            "added is not drawn from the seeded generator (the same seed must give the same noise at every step).")
        raise AssertionError(f"A denoising step computes the wrong x_(t-1). {cause}")
    last = right_a[-1]
    if last.abs().max().item() > 1e-4 * (1 + a[-2].abs().max().item()):
        raise AssertionError(f"The last step (t = 1) adds noise of standard deviation {last.std().item():.3g}: "
                             "x_0 is the mean alone, with z = 0.")
    conventions = {"beta_t": tables["betas"], "the posterior variance beta_tilde_t": _posterior_variance(tables)}
    variances = [r.pow(2).mean().item() for r in right_a[:-1]]  # t = T .. 2
    means = [r.mean().item() for r in right_a[:-1]]
    fits = {}
    for label, sigma2 in conventions.items():
        wanted = [sigma2[t - 1].item() for t in range(SAMPLE_STEPS, 1, -1)]
        fits[label] = all(
            abs(v / w - 1) <= SIGMAS * math.sqrt(2 / m) and abs(mu) <= SIGMAS * math.sqrt(w / m)
            for v, w, mu in zip(variances, wanted, means)
        )
    if not any(fits.values()):
        beta_sq = [tables["betas"][t - 1].item() ** 2 for t in range(SAMPLE_STEPS, 1, -1)]
        squared = all(abs(v / w - 1) <= SIGMAS * math.sqrt(2 / m) for v, w in zip(variances, beta_sq))
        cause = ("You multiply z by beta_t: sigma_t is the square root, sqrt(beta_t)." if squared else
                 "Add sigma_t * z with z = t.randn(...) standard Gaussian and sigma_t = sqrt(beta_t).")
        wanted = tables["betas"][SAMPLE_STEPS - 1].item()
        raise AssertionError(f"The noise added at step {SAMPLE_STEPS} has variance {variances[0]:.4g}; with "
                             f"sigma_t^2 = beta_t it should be {wanted:.4g}. {cause}")
    final = tensor_at(data, "final", f"sample(model, {N_SAMPLES}, seed=...)", shape)
    if not is_close(final, a[-1], 1e-4):
        raise AssertionError("sample(model, n, seed=s) without return_all_steps should return the last batch x_0 of "
                             "sample(model, n, return_all_steps=True, seed=s).")
    convention = next(label for label, ok in fits.items() if ok)
    return (f"Algorithm 2 from step {SAMPLE_STEPS} down to 1: every step's mean exact, noise of variance "
            f"sigma_t^2 = {convention}, none at the last step, reproducible with a seed")
