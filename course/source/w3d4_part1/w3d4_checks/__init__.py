# Generated from checks/w3d4_checks/__init__.py by `python -m grader build`: edit that file, not this one.
"""The checks behind the W3D4 tests (all three parts): seeded inputs, probes, judges and their catalogues of
mistakes. `w3d4_test.py` beside this package is what the notebook calls; this is how it decides.

Every exercise (see `EXERCISES`) is checked by two functions:

    data = EXERCISES["groupnorm"].probe(GroupNorm, seed=0, affine=True)   # runs the student's code
    summary = EXERCISES["groupnorm"].judge(data, seed=0, affine=True)     # decides

- A probe builds the student's objects, feeds them inputs that are a deterministic function of the
  seed, and returns plain data only: dicts with string keys, lists, str, int, float, bool, None and
  CPU tensors. It never raises for errors in student code: it records them under "error". It
  restores the caller's random state and TF32 flags.
- A judge is a pure function of that data, the seed and the call's keyword arguments. It
  regenerates every input from the seed and reads from the data only the student's outputs and
  measured facts (parameter counts, shapes, gradients, call order). It returns the summary for the
  PASS line or raises AssertionError naming the most likely mistake.

No check needs the solution: numbers are compared with torch built-ins or float64 formulas where
the lesson fixes the function (F.group_norm, F.scaled_dot_product_attention, F.conv_transpose2d, the
noise schedule, the Fréchet distance), with distributions for random functions, and otherwise with
behaviour that every correct answer has. An autograder can run the probe in a sandbox and the judge
elsewhere with the same seed; what it imports from here is listed in `__all__`.
"""

from __future__ import annotations

import sys

MIN_PYTHON = (3, 11)  # frames' co_qualname
MIN_TORCH = (2, 1)  # scaled_dot_product_attention(scale=...)


class VersionError(ImportError):
    """This interpreter or torch is too old for the checks; shown as one line in Jupyter."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def _version(text: str) -> tuple[int, ...]:
    """'2.13.0+cpu' -> (2, 13)."""
    return tuple(int(part) for part in text.split("+")[0].split(".")[:2] if part.isdigit())


if tuple(sys.version_info[:2]) < MIN_PYTHON:
    raise VersionError(
        f"The W3D4 tests need Python {'.'.join(map(str, MIN_PYTHON))} or newer, and this kernel runs Python "
        f"{'.'.join(map(str, sys.version_info[:3]))}. Choose a newer kernel (see the lesson's set-up section)."
    )

import torch  # noqa: E402 - only once the interpreter is known to be new enough

if _version(torch.__version__) < MIN_TORCH:
    raise VersionError(
        f"The W3D4 tests need torch {'.'.join(map(str, MIN_TORCH))} or newer, and this kernel has torch "
        f"{torch.__version__}. Install the version in the course's requirements and restart the kernel."
    )

from .attention import multihead_attention  # noqa: E402
from .blocks import BATCH, DOWN, DOWN_SIZE, MID, MID_SIZE, RES_CONFIGS, RES_SIZE, STEP_DIM, UP, UP_SIZE, block_inputs  # noqa: E402
from .conv_transpose import BONUS_CLASS  # noqa: E402
from .embeddings import frequency_conventions, matched_columns, sin_cos  # noqa: E402
from .exercises import EXERCISES, Exercise, exercises_of, run_check  # noqa: E402
from .groupnorm import GN_DEFAULT_EPS  # noqa: E402
from .judging import TOL, as_tensor, fmt, raise_probe_error  # noqa: E402
from .probing import FirstUse, default_device, is_a, is_attention, is_norm, plain, plain_pair, run_probe, tensors_in, unusual_returns  # noqa: E402
from .seeding import SEED, affine_params, projection_params, randn  # noqa: E402
from .unet import UNET, unet_steps  # noqa: E402

__all__ = [
    # the exercises and how to run one
    "EXERCISES", "Exercise", "exercises_of", "run_check", "SEED", "TOL", "default_device", "BONUS_CLASS", "VersionError",
    # probing and reading probe results
    "run_probe", "raise_probe_error", "as_tensor", "plain", "plain_pair", "fmt",
    "FirstUse", "is_a", "is_attention", "is_norm", "tensors_in", "unusual_returns",
    # seeded values and the float64 formulas the judges compare with
    "randn", "affine_params", "projection_params", "multihead_attention", "frequency_conventions", "sin_cos",
    "matched_columns", "GN_DEFAULT_EPS",
    # the configurations the block checks run
    "block_inputs", "BATCH", "STEP_DIM", "RES_CONFIGS", "RES_SIZE", "DOWN", "DOWN_SIZE", "UP", "UP_SIZE", "MID",
    "MID_SIZE", "UNET", "unet_steps",
]
