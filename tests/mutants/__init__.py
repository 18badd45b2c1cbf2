"""Wrong versions of the lesson, to prove that every check of `w3d4_test` can fail, and fails with
the right diagnosis.

A mutant is the reference lesson source with a few text edits, the way a student's code differs from
the solution, executed as a fresh module. Because the edited classes look up their helpers in that
module, a mutant GroupNorm also changes the AttentionBlock built on it. `stub_namespace` does what
nbgrader does to the source: it replaces solution regions with `raise NotImplementedError()`.
"""

from __future__ import annotations

import re
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
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def namespace(*edits: tuple[str, str], name: str = "w3d4_mutant") -> types.ModuleType:
    """The reference lesson module with each (old, new) edit applied; each `old` must occur once."""
    source = SOURCE_PATH.read_text()
    for old, new in edits:
        count = source.count(old)
        if count != 1:
            raise ValueError(f"{name}: {old!r} occurs {count} times in {SOURCE_PATH.name}, expected once")
        source = source.replace(old, new)
    return _execute(source, name)


def solution_regions(source: str) -> list[tuple[str, int, int]]:
    """(qualname of the enclosing def, first line, last line) of every solution region, 0-based."""
    lines = source.splitlines()
    regions, scopes, start = [], [], None
    for number, line in enumerate(lines):
        match = re.match(r"(\s*)(?:class|def) (\w+)", line)
        if match:
            depth = len(match.group(1))
            scopes = [(d, n) for d, n in scopes if d < depth] + [(depth, match.group(2))]
        elif line.strip() and not line.startswith((" ", "#")):
            scopes = []  # top-level code such as `if MAIN:` ends every scope
        if line.strip() == BEGIN:
            start = number
        elif line.strip() == END:
            regions.append((".".join(n for _, n in scopes), start, number))
    return regions


def stub_namespace(only: Optional[set[str]] = None, name: str = "w3d4_stubs") -> types.ModuleType:
    """The lesson as a student receives it: solution regions replaced by `raise NotImplementedError()`.

    only: qualnames ('GroupNorm.forward', 'swish', ...) to stub; None stubs every region."""
    lines = SOURCE_PATH.read_text().splitlines()
    for qualname, start, end in reversed(solution_regions("\n".join(lines))):
        if only is None or qualname in only:
            indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
            lines[start : end + 1] = [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"]
    return _execute("\n".join(lines) + "\n", name)
