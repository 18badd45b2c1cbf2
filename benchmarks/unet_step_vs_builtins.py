"""One training step of the solution's Unet against the same network built from torch's own layers.

    .venv/bin/python benchmarks/unet_step_vs_builtins.py [--repeats 15] [--device cpu] [--skip-large]

A step is forward, MSE loss against the noise, backward and an Adam step, on a fixed batch. The
solution's `Unet` uses the from-scratch GroupNorm, SiLU, self-attention, sinusoidal embedding and
(the bonus) ConvTranspose2d; `training/builtin_unet.BuiltinUnet` has the same parameters, in the
same order, but uses nn.GroupNorm, F.silu, F.scaled_dot_product_attention and nn.ConvTranspose2d.
Both start from the same weights. Steps alternate between the two models so that a busy machine
slows both alike; the medians and their ratio (goal: at most 1.5) are printed per configuration:

    digits   Unet((1, 8, 8), channels=16, dim_mults=(1, 2), max_steps=200), batch 128 (the demo's)
    rgb32    Unet((3, 32, 32), channels=16, dim_mults=(1, 2, 4)), batch 8: attention over 1024 pixels
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch as t  # noqa: E402
from torch import nn  # noqa: E402

import training  # noqa: E402, F401  (makes w3d4_digits and the solutions importable)
import w3d4_part2_unet_solution as solution  # noqa: E402
from builtin_unet import BuiltinUnet  # noqa: E402
from w3d4_digits import UNET_CONFIG, default_device, match_parameters  # noqa: E402

GOAL_RATIO = 1.5
CONFIGS = {
    "digits": (UNET_CONFIG, 128),
    "rgb32": ({"image_shape": (3, 32, 32), "channels": 16, "dim_mults": (1, 2, 4), "groups": 4, "max_steps": 1000}, 8),
}


def training_step(model: nn.Module, config: dict, batch: int, device: t.device) -> Callable[[], None]:
    """A closure that runs one optimiser step on a fixed random batch."""
    generator = t.Generator().manual_seed(0)
    images = t.randn((batch, *config["image_shape"]), generator=generator).to(device)
    noise = t.randn(images.shape, generator=generator).to(device)
    steps = t.randint(1, config["max_steps"] + 1, (batch,), generator=generator).to(device)
    optimiser = t.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = nn.functional.mse_loss(model(images, steps), noise)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if device.type == "cuda":
            t.cuda.synchronize()

    return step


def compare(name: str, config: dict, batch: int, repeats: int, device: t.device) -> float:
    t.manual_seed(0)
    ours = solution.Unet(**config).to(device)
    builtin = BuiltinUnet(**config).to(device)
    with t.no_grad():  # same weights: the parameters line up by registration order and shape
        for param, value in match_parameters(builtin, list(ours.named_parameters())):
            param.copy_(value)
        probe = t.randn((4, *config["image_shape"]), device=device), t.tensor([1, 2, 3, 4], device=device)
        difference = (ours(*probe) - builtin(*probe)).abs().max().item()
    steps = {"solution Unet": training_step(ours, config, batch, device),
             "built-in layers": training_step(builtin, config, batch, device)}
    times: dict[str, list[float]] = {label: [] for label in steps}
    for step in steps.values():  # warm-up: allocator, oneDNN kernels
        step()
        step()
    for _ in range(repeats):
        for label, step in steps.items():
            start = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - start)
    medians = {label: statistics.median(values) for label, values in times.items()}
    ratio = medians["solution Unet"] / medians["built-in layers"]
    n_params = sum(p.numel() for p in ours.parameters())
    print(f"{name}: image {config['image_shape']}, channels {config['channels']}, dim_mults {config['dim_mults']}, "
          f"batch {batch}, {n_params:,} parameters; the two outputs differ by at most {difference:.1e}")
    for label, median in medians.items():
        spread = f"{min(times[label]):.3f}-{max(times[label]):.3f}"
        print(f"  {label:<16} {median:8.3f} s per step (median of {repeats}; range {spread})")
    print(f"  ratio {ratio:.2f} -> {'met' if ratio <= GOAL_RATIO else 'NOT met'} (goal at most {GOAL_RATIO})")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--skip-large", action="store_true", help="only the digits configuration")
    args = parser.parse_args()
    device = t.device(args.device) if args.device else default_device()
    print(f"device: {device}, torch threads: {t.get_num_threads()}, CPUs: {os.cpu_count()}")
    for name, (config, batch) in CONFIGS.items():
        if name != "digits" and args.skip_large:
            continue
        compare(name, config, batch, args.repeats, device)


if __name__ == "__main__":
    main()
