"""The checks library and the grader's weights run, as the tests drive them.

    data = probe(solution, "down_block", {"downsample": True})   # visible probe + weights run
    judge(data, "down_block", {"downsample": True})              # the visible judge
    check_weights("down_block", data, downsample=True)           # the grader's numbers check
"""

from __future__ import annotations

import w3d4_checks
from w3d4_checks import EXERCISES, SEED, exercises_of

from grader.grading import weights_run, wiring

# Part 2's exercises: the other lessons' checks are tested beside their own corpora (tests/test_part1_checks.py,
# tests/test_part3_checks.py).
CALLS = [(exercise.name, call) for exercise in exercises_of("w3d4_part2").values() for call in exercise.calls]
WIRED = [name for name, exercise in EXERCISES.items() if exercise.wiring]  # numbers checked by the grader


def subjects(module, name: str) -> list:
    """The objects exercise `name` takes, looked up in a module or namespace."""
    return [getattr(module, subject) for subject in EXERCISES[name].subjects]


def probe(module, name: str, kwargs: dict, seed: int = SEED, device=None) -> dict:
    """What the sandbox's probe runner returns: the visible probe, then the weights run."""
    return weights_run.probe_with_weights(w3d4_checks, name, tuple(subjects(module, name)), seed, kwargs, device)


def judge(data: dict, name: str, kwargs: dict, seed: int = SEED) -> str:
    return EXERCISES[name].judge(data, seed=seed, **kwargs)


def check_weights(name: str, data: dict, seed: int = SEED, failed: frozenset = frozenset(), **kwargs) -> None:
    wiring.check_weights(w3d4_checks, name, data, seed, failed, **kwargs)


def seeds(first: int, *more: int) -> list:
    """Seeds for a parametrized test: the first in every run, the others only with the slow tests
    (`make test`), so that `make test-fast` tries each check once."""
    import pytest

    return [first, *(pytest.param(seed, marks=pytest.mark.slow) for seed in more)]
