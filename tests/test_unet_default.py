"""The reference `Unet` at its default size: it builds, keeps the image shape, and trains a step.

This is the one place the ~133M-parameter default model is built (batch of one); the lesson's
tests use small configurations.
"""

from __future__ import annotations

import pytest
import torch as t

import w3d4_part2_unet_solution as solution
from w3d4_part1_diffusion_training_solution import DiffusionModel

DEVICES = ["cpu"] + (["cuda"] if t.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_default_unet_forward_and_backward(device: str):
    t.manual_seed(0)
    model = solution.Unet((3, 32, 32)).to(device)
    assert isinstance(model, DiffusionModel) and model.noise_schedule is None
    n_params = sum(p.numel() for p in model.parameters())
    assert 130e6 < n_params < 136e6, f"{n_params:,} parameters"
    images = t.randn(1, 3, 32, 32, device=device)
    out = model(images, t.tensor([500], device=device))
    assert out.shape == images.shape
    out.square().mean().backward()
    assert all(p.grad is not None and t.isfinite(p.grad).all() for p in model.parameters())
