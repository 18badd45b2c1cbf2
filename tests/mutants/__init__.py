"""Wrong versions of the lesson, to prove that every check of `w3d4_test` can fail, and fails with
the right diagnosis.

A mutant is the reference lesson source with a few text edits, the way a student's code differs from
the solution, executed as a fresh module. Because the edited classes look up their helpers in that
module, a mutant GroupNorm also changes the AttentionBlock built on it. `stub_namespace` does what
nbgrader does to the source: it replaces solution regions with `raise NotImplementedError()`.
"""

from __future__ import annotations

import ast
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

SOURCE_PATH = Path(__file__).resolve().parents[2] / "solutions" / "w3d4_part2_unet_solution.py"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


@dataclass(frozen=True)
class Mutant:
    """One realistic mistake: the edits that make it, the test that must fail, and a distinctive
    part of the message that test must give."""

    name: str
    test: str  # an exercise: a key of w3d4_checks.EXERCISES
    edits: tuple[tuple[str, str], ...]
    message: str
    kwargs: dict = field(default_factory=dict)


def _execute(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module  # @dataclass looks the module up while it builds a class
    try:
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module


def edited(source_path: Path, *edits: tuple[str, str], name: str) -> types.ModuleType:
    """A lesson source with each (old, new) edit applied, executed as a fresh module; each `old` must
    occur exactly once."""
    source = source_path.read_text(encoding="utf-8")
    for old, new in edits:
        count = source.count(old)
        if count != 1:
            raise ValueError(f"{name}: {old!r} occurs {count} times in {source_path.name}, expected once")
        source = source.replace(old, new)
    return _execute(source, name)


def stubbed(source_path: Path, only: Optional[set[str]] = None, name: str = "w3d4_stubs") -> types.ModuleType:
    """A lesson as a student receives it: solution regions replaced by `raise NotImplementedError()`.

    only: qualnames ('GroupNorm.forward', 'swish', ...) to stub; None stubs every region."""
    lines = source_path.read_text(encoding="utf-8").splitlines()
    regions = solution_regions("\n".join(lines))
    assert regions, f"{source_path.name} has no solution region"
    for qualname, start, end in reversed(regions):
        if only is None or qualname in only:
            indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
            lines[start : end + 1] = [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
    return _execute("\n".join(lines) + "\n", name)


def namespace(*edits: tuple[str, str], name: str = "w3d4_mutant") -> types.ModuleType:
    """The part 2 lesson module with each (old, new) edit applied."""
    return edited(SOURCE_PATH, *edits, name=name)


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


def stub_namespace(only: Optional[set[str]] = None, name: str = "w3d4_stubs") -> types.ModuleType:
    """The part 2 lesson as a student receives it (see `stubbed`)."""
    return stubbed(SOURCE_PATH, only, name)
