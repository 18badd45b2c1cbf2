"""What is checked for each graded cell: the visible calls in the cell, plus hidden checks.

The visible checks are read from the release notebook's graded cells, so the lesson source stays
the single place where they are written: `w3d4_test.test_groupnorm(GroupNorm, affine=False)`
becomes the check "run probe `groupnorm` on the student's `GroupNorm` with affine=False". Every
check gets a seed derived from a per-course secret, so its inputs and parameters are chosen at
grading time and differ from the ones the notebook's own test used. Each visible check is also
repeated as a hidden check on a second, independent seed: an answer tuned to one set of inputs
(or to the notebook's default seed) fails there. Hidden checks are reported as "hidden check",
and their inputs never appear in any notebook or feedback.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat



@dataclass(frozen=True)
class Check:
    check_id: str  # unique, file-name safe
    grade_id: str  # the graded cell it counts towards
    test: str  # the w3d4_test test name without "test_", e.g. "groupnorm"
    args: tuple[str, ...]  # names of the student's objects, looked up in their kernel
    kwargs: dict = field(default_factory=dict, hash=False)
    hidden: bool = False

    def describe(self) -> str:
        shown = ", ".join([*self.args, *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return "hidden check" if self.hidden else f"test_{self.test}({shown})"

    def probe_request(self, seed: int) -> dict:
        return {**asdict(self), "args": list(self.args), "seed": seed}


def _is_test_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "w3d4_test"
        and node.func.attr.startswith("test_")
    )


def _visible_calls(source: str) -> list[tuple[str, tuple[str, ...], dict]]:
    """`w3d4_test.test_x(A, B, k=1)` calls in a cell -> [("x", ("A", "B"), {"k": 1})], in the order
    they are written (their number is part of each check's id, and so of its seed).

    Positional arguments name the student's objects, which the probe looks up in their kernel;
    anything else there (a literal, an attribute, `*args`) would be a different test than the
    notebook runs, so it is refused rather than dropped."""
    calls = []
    found = sorted((n for n in ast.walk(ast.parse(source)) if _is_test_call(n)), key=lambda n: (n.lineno, n.col_offset))
    for node in found:
        for arg in node.args:
            if not isinstance(arg, ast.Name):
                raise ValueError(f"in `{ast.unparse(node)}`, the positional argument `{ast.unparse(arg)}` is not a "
                                 "plain name: the grader passes only the student's objects, by name; give options "
                                 "as keywords with literal values")
        args = tuple(a.id for a in node.args)
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        calls.append((node.func.attr.removeprefix("test_"), args, kwargs))
    return calls


def checks_for(release: nbformat.NotebookNode) -> list[Check]:
    """Every check, in notebook order, grouped by graded cell."""
    checks: list[Check] = []
    for cell in release.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade") or cell.cell_type != "code":
            continue
        grade_id = meta["grade_id"]
        try:
            calls = _visible_calls(cell.source)
        except ValueError as error:
            raise ValueError(f"graded cell {grade_id!r}: {error}") from None
        if not calls:
            raise ValueError(f"graded cell {grade_id!r} calls no w3d4_test test")
        for n, (test, args, kwargs) in enumerate(calls, 1):
            checks.append(Check(f"{grade_id}-{n}", grade_id, test, args, kwargs))
        for n, (test, args, kwargs) in enumerate(calls, 1):
            checks.append(Check(f"{grade_id}-hidden-{n}", grade_id, test, args, kwargs, hidden=True))
    return checks


def seed_for(secret: bytes, student_id: str, check: Check) -> int:
    """A seed nobody can predict without the course secret, stable for one student and check."""
    digest = hmac.new(secret, f"{student_id}\0{check.check_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def seeds_for(secret: bytes, student_id: str, checks: list[Check]) -> dict[str, int]:
    """Every check's seed for one student: what a grading process needs instead of the secret."""
    return {c.check_id: seed_for(secret, student_id, c) for c in checks}


def course_secret(path: Path) -> bytes:
    """The per-course secret that seeds the checks; created once, readable only by its owner."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())
