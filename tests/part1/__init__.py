"""Part 1's corpora: correct answers written in many ways, and realistic mistakes.

    VARIANTS, load(name)     tests/part1/variants/<name>.py, each a complete, standalone answer to
                             every exercise of part 1, imported fresh
    MUTANTS (see mistakes)   the lesson source with a few text edits, each a mistake a student makes
    lesson(*edits)           the lesson source, edited, executed as a fresh module
    stubs(only)              the lesson as a student receives it (solution regions stubbed)
    run(module, exercise)    the notebook's test call on that module's objects
"""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path
from typing import Optional

from mutants import edited, stubbed

import w3d4_test
from w3d4_checks import EXERCISES, SEED, exercises_of

HERE = Path(__file__).resolve().parent
SOURCE_PATH = HERE.parents[1] / "solutions" / "w3d4_part1_diffusion_solution.py"
PART1 = tuple(exercises_of("w3d4_part1"))  # the exercise names, in the lesson's order

VARIANTS: tuple[str, ...] = (
    "plain_indexing_dataloader",
    "float64_upfront_noise",
    "einops_generator_always",
    "posterior_variance_gather",
    "functional_mlp_normal",
    "sinusoidal_steps_adamw",
    "log_space_while_loops",
    "distributions_module",
)


def load(name: str) -> types.ModuleType:
    """tests/part1/variants/<name>.py imported as a new module object (never cached in sys.modules)."""
    if name not in VARIANTS:
        raise KeyError(f"no part 1 variant {name!r}")
    spec = importlib.util.spec_from_file_location(f"part1_variant_{name}", HERE / "variants" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lesson(*edits: tuple[str, str], name: str = "part1_lesson") -> types.ModuleType:
    """The lesson source with each (old, new) edit applied; each `old` must occur exactly once."""
    return edited(SOURCE_PATH, *edits, name=name)


def stubs(only: Optional[set[str]] = None, name: str = "part1_stubs") -> types.ModuleType:
    """The lesson with solution regions replaced by `raise NotImplementedError()`, as nbgrader does.

    only: qualnames ('NoiseSchedule._lookup', 'train', ...) to stub; None stubs every region."""
    return stubbed(SOURCE_PATH, only, name)


def run(module, exercise: str, seed: int = SEED) -> None:
    """What the notebook's test cell does: w3d4_test.test_<exercise>(*subjects) on the module's objects."""
    subjects = [getattr(module, subject) for subject in EXERCISES[exercise].subjects]
    getattr(w3d4_test, f"test_{exercise}")(*subjects, seed=seed)
