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
from mutants import BEGIN, END, solution_regions

SOURCE_PATH = Path(__file__).resolve().parents[2] / "solutions" / "w3d4_part3_train_evaluate_solution.py"


def _execute(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def lesson(*edits: tuple[str, str], name: str = "w3d4_part3_mutant") -> types.ModuleType:
    """The lesson module with each (old, new) edit applied; each `old` must occur exactly once."""
    source = SOURCE_PATH.read_text()
    for old, new in edits:
        count = source.count(old)
        if count != 1:
            raise ValueError(f"{name}: {old!r} occurs {count} times in {SOURCE_PATH.name}, expected once")
        source = source.replace(old, new)
    return _execute(source, name)


def stubbed(name: str = "w3d4_part3_stubs") -> types.ModuleType:
    """Every solution region replaced by `raise NotImplementedError()`, as nbgrader does."""
    lines = SOURCE_PATH.read_text().splitlines()
    regions = solution_regions("\n".join(lines))
    assert regions and all(lines[start].strip() == BEGIN and lines[end].strip() == END for _, start, end in regions)
    for _, start, end in reversed(regions):
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        lines[start : end + 1] = [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
    return _execute("\n".join(lines) + "\n", name)
