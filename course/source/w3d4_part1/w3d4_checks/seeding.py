# Generated from checks/w3d4_checks/seeding.py by `python -m grader build`: edit that file, not this one.
"""Seeded inputs: every tensor a check feeds in is a pure function of (seed, tag), so that a judge
in another process regenerates exactly what the probe used."""

from __future__ import annotations

import hashlib

import torch

SEED = 0  # the seed of the visible tests; the autograder draws its own per student
PROJECTIONS = ("W_Q", "W_K", "W_V", "W_O")  # how seeded attention values are named


def stream(seed: int, tag: str) -> torch.Generator:
    """A CPU generator for one named input, so that each input depends only on (seed, tag)."""
    digest = hashlib.sha256(f"{seed}/{tag}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def randn(seed: int, tag: str, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=stream(seed, tag))


def uniform(seed: int, tag: str, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=stream(seed, tag))


def randint(seed: int, tag: str, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=stream(seed, tag))


def affine_params(seed: int, tag: str, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A per-channel weight near 1 and bias near 0, both (channels,)."""
    return 1 + 0.5 * randn(seed, tag + "/weight", (channels,)), 0.5 * randn(seed, tag + "/bias", (channels,))


def projection_params(seed: int, tag: str, channels: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """name -> (weight (channels, channels), bias (channels,)) for W_Q, W_K, W_V and W_O.

    The gain makes the attention weights clearly non-uniform, so wrong scalings show up."""
    return {
        name: (
            1.5 * randn(seed, f"{tag}/{name}/weight", (channels, channels)) / channels**0.5,
            0.3 * randn(seed, f"{tag}/{name}/bias", (channels,)),
        )
        for name in PROJECTIONS
    }


def loss_weights(seed: int, tag: str, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """Random weights for the backward pass: a plain sum would vanish after a normalisation."""
    return [randn(seed, f"{tag}/grad{i}", shape) for i, shape in enumerate(shapes)]
