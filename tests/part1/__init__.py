"""Part 1's corpora: correct answers written in many ways, and realistic mistakes.

    VARIANTS, load(name)     tests/part1/variants/<name>.py, each a complete, standalone answer to
                             every exercise of part 1, imported fresh
    MUTANTS (see mistakes)   the lesson source with a few text edits, each a mistake a student makes
    lesson(*edits)           the lesson source, edited, executed as a fresh module
    stubs(only)              the lesson as a student receives it (solution regions stubbed)
    run(module, exercise)    the notebook's test call on that module's objects
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path
from typing import Optional

from mutants import BEGIN, END

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


def _execute(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module  # @dataclass looks the module up while it builds the class
    try:
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module


def lesson(*edits: tuple[str, str], name: str = "part1_lesson") -> types.ModuleType:
    """The lesson source with each (old, new) edit applied; each `old` must occur exactly once."""
    source = SOURCE_PATH.read_text(encoding="utf-8")
    for old, new in edits:
        count = source.count(old)
        if count != 1:
            raise ValueError(f"{name}: {old!r} occurs {count} times in {SOURCE_PATH.name}, expected once")
        source = source.replace(old, new)
    return _execute(source, name)


def solution_regions(source: str) -> list[tuple[str, int, int]]:
    """(qualname of the enclosing def, first line, last line) of every solution region, 0-based; found
    with `ast`, so that signatures over several lines (`) -> TrainLog:`) do not hide the def."""
    defs = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                defs.append((child.lineno - 1, child.end_lineno - 1, name))
                visit(child, name + ".")

    visit(ast.parse(source), "")
    regions, start = [], None
    for number, line in enumerate(source.splitlines()):
        if line.strip() == BEGIN:
            start = number
        elif line.strip() == END:
            inside = [d for d in defs if d[0] <= start <= d[1]]  # the END comment may follow the last line
            regions.append((max(inside)[2] if inside else "", start, number))
    return regions


def stubs(only: Optional[set[str]] = None, name: str = "part1_stubs") -> types.ModuleType:
    """The lesson with solution regions replaced by `raise NotImplementedError()`, as nbgrader does.

    only: qualnames ('NoiseSchedule._lookup', 'train', ...) to stub; None stubs every region."""
    lines = SOURCE_PATH.read_text(encoding="utf-8").splitlines()
    for qualname, start, end in reversed(solution_regions("\n".join(lines))):
        if only is None or qualname in only:
            indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
            lines[start : end + 1] = [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
    assert not any(line.strip() in (BEGIN, END) for line in lines if only is None)
    return _execute("\n".join(lines) + "\n", name)


def run(module, exercise: str, seed: int = SEED) -> None:
    """What the notebook's test cell does: w3d4_test.test_<exercise>(*subjects) on the module's objects."""
    subjects = [getattr(module, subject) for subject in EXERCISES[exercise].subjects]
    getattr(w3d4_test, f"test_{exercise}")(*subjects, seed=seed)
