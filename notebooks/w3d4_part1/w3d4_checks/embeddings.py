# Generated from checks/w3d4_checks/embeddings.py by `python -m grader build`: edit that file, not this one.
"""SinusoidalPositionEmbeddings: sin and cos of step * frequency, in any column order and either of
the two usual frequency conventions."""

from __future__ import annotations

import math
from typing import Optional

import torch

from .judging import judge_safely, raise_probe_error, tensor_at
from .probing import plain, run_probe
from .seeding import SEED, randint


EMB_SIZES = (16, 10)
EMB_BATCH = 12
EMB_TOL = 2e-3  # float32 angles of up to 1000 radians carry errors near 1e-4


def _embedding_steps(seed: int) -> torch.Tensor:
    """(12,) int64 steps: 0 first (sin 0 = 0, cos 0 = 1 reveal the layout), then random up to 999."""
    return torch.cat([torch.zeros(1, dtype=torch.long), randint(seed, "embedding/steps", 1, 1000, (EMB_BATCH - 1,))])


def frequency_conventions(size: int) -> dict[str, torch.Tensor]:
    """Both common ways to space the size/2 frequencies, as (size/2,) float64 tensors."""
    k = torch.arange(size // 2, dtype=torch.float64)
    return {
        "1/10000^(2k/d)": 10000.0 ** (-2 * k / size),
        "exp(-ln(10000) k/(d/2-1))": torch.exp(-math.log(10000) * k / (size // 2 - 1)),
    }


def sin_cos(steps: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """(batch,), (d/2,) -> (batch, d): all the sines, then all the cosines."""
    angles = steps.double()[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def matched_columns(actual: torch.Tensor, expected: torch.Tensor) -> int:
    """How many columns of `expected` can be matched by distinct columns of `actual`, in any order: a
    maximum bipartite matching, since with few steps several columns can be alike."""
    close = ((actual.T[:, None, :] - expected.T[None, :, :]).abs().amax(dim=-1) < EMB_TOL).tolist()
    partner: dict[int, int] = {}  # column of expected -> column of actual

    def augment(i: int, visited: set[int]) -> bool:
        for j, near in enumerate(close[i]):
            if near and j not in visited:
                visited.add(j)
                if j not in partner or augment(partner[j], visited):
                    partner[j] = i
                    return True
        return False

    return sum(augment(i, set()) for i in range(len(close)))


def probe_sinusoidal_embeddings(SinusoidalPositionEmbeddings, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        steps = _embedding_steps(seed).to(device)
        for size in EMB_SIZES:
            data["stage"] = f"building SinusoidalPositionEmbeddings({size})"
            embed = SinusoidalPositionEmbeddings(size)
            data[f"params_{size}"] = sum(p.numel() for p in embed.parameters() if p.requires_grad)
            data["stage"] = f"embedding int64 steps of shape ({EMB_BATCH},) with SinusoidalPositionEmbeddings({size})"
            with torch.no_grad():
                data[f"out_{size}"] = plain(embed.to(device)(steps))

    return run_probe(run, seed, device)


def _explain_embedding(out: torch.Tensor, steps: torch.Tensor, size: int) -> str:
    half = size // 2
    first = out[0]  # step 0
    zeros = int((first.abs() < EMB_TOL).sum())
    ones = int(((first - 1).abs() < EMB_TOL).sum())
    best = max(matched_columns(out, sin_cos(steps, f)) for f in frequency_conventions(size).values())
    if zeros == size:
        return (
            "At step 0 every entry is 0, but cos(0) = 1: half of the embedding must be cosines "
            "(you have only sines)."
        )
    if ones == size:
        return (
            "At step 0 every entry is 1, but sin(0) = 0: half of the embedding must be sines (you have only cosines)."
        )
    if zeros == half and ones == half:
        return (
            f"At step 0 you have {half} zeros and {half} ones, as sines and cosines should, but {size - best} of "
            f"{size} columns match no sin(w_k s) or cos(w_k s): the frequencies are wrong. Use "
            "w_k = 1 / 10000^(2k/d) for k = 0, ..., d/2 - 1, the same frequency for a sine and its cosine."
        )
    return (
        f"Only {best} of {size} columns match a sin(w_k s) or cos(w_k s) with w_k = 1 / 10000^(2k/d). Each "
        "frequency needs one sine and one cosine; any order of the columns is fine."
    )


@judge_safely
def judge_sinusoidal_embeddings(data: dict, seed: int = SEED) -> str:
    raise_probe_error(data, "SinusoidalPositionEmbeddings")
    steps = _embedding_steps(seed)
    found = set()
    for size in EMB_SIZES:
        if data[f"params_{size}"]:
            raise AssertionError(
                f"SinusoidalPositionEmbeddings({size}) has {data[f'params_{size}']} trainable parameters; the "
                "embedding is fixed. Store the frequencies with self.register_buffer."
            )
        out = tensor_at(data, f"out_{size}", f"SinusoidalPositionEmbeddings({size}) output", (EMB_BATCH, size))
        matches = [
            name
            for name, f in frequency_conventions(size).items()
            if matched_columns(out, sin_cos(steps, f)) == size
        ]
        if not matches:
            raise AssertionError(
                f"SinusoidalPositionEmbeddings({size}) is wrong for steps {steps.tolist()}. "
                + _explain_embedding(out, steps, size)
            )
        found.add(matches[0])
    return (
        f"sines and cosines of the steps with frequencies {' / '.join(sorted(found))}, "
        f"for embedding sizes {EMB_SIZES[0]} and {EMB_SIZES[1]}"
    )
