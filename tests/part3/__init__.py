"""Part 3's corpora: correct answers written in many ways (`variants`), and realistic wrong ones
made by editing the lesson source (`corpus`), to show that the checks of `frechet_distance` and
`classifier_score` accept every correct answer and name each mistake.

    lesson(*edits)       the part 3 lesson source with (old, new) text edits, run as a fresh module
    stubbed()            the lesson as students receive it: every solution region a stub
"""

from __future__ import annotations

import types
from pathlib import Path

import training  # noqa: F401  (puts the lesson's neighbours, w3d4_digits and friends, on sys.path)
from mutants import edited
from mutants import stubbed as mutants_stubbed

SOURCE_PATH = Path(__file__).resolve().parents[2] / "solutions" / "w3d4_part3_train_evaluate_solution.py"


def lesson(*edits: tuple[str, str], name: str = "w3d4_part3_mutant") -> types.ModuleType:
    """The lesson module with each (old, new) edit applied; each `old` must occur exactly once."""
    return edited(SOURCE_PATH, *edits, name=name)


def stubbed(name: str = "w3d4_part3_stubs") -> types.ModuleType:
    """Every solution region replaced by `raise NotImplementedError()`, as nbgrader does."""
    return mutants_stubbed(SOURCE_PATH, None, name)