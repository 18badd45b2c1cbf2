"""The module a later lesson imports, generated from an earlier lesson's source.

Part 2 and part 3 import part 1's definitions (`DiffusionModel`, `NoiseSchedule`, `train`,
`sample`, ...). They are written once, in part 1's lesson source, and the build copies them out:

    the code cells of the source, in order,
    minus the graded test cells (grade_id test_*),
    minus the cells tagged skip-when-grading,
    minus the demo cells (whose first statement is `if MAIN...`),
    with the ### BEGIN/END SOLUTION lines removed (their code kept).

So the part 1 lesson cannot drift from the module its successors rely on.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext

from ..grading.verdicts import SKIP_TAG
from .build import GENERATED_NOTE, SOLUTION_BEGIN, SOLUTION_END, BuildError, _rel

DOCSTRING = '"""{title}: the definitions of its lesson, for the lessons that build on it.\n\nEvery code cell of {source} except its tests and demos.\n"""\n'


def _is_demo(source: str) -> bool:
    """True when the cell's first statement is `if MAIN ...` (plots, prints: nothing to import)."""
    try:
        body = ast.parse(source).body
    except SyntaxError as error:
        raise BuildError(f"a code cell does not parse: {error}") from None
    first = body[0] if body else None
    return not body or (isinstance(first, ast.If) and ast.unparse(first.test).startswith("MAIN"))


def _kept(cell) -> bool:
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
    return (cell.cell_type == "code" and not grade_id.startswith("test_")
            and SKIP_TAG not in cell.metadata.get("tags", []) and not _is_demo(cell.source))


def module_text(source: Path, title: str) -> str:
    """The generated module's text, headed by the line saying which file to edit."""
    nb = jupytext.read(source, fmt="py:percent")
    cells = []
    for cell in filter(_kept, nb.cells):
        lines = [line for line in cell.source.splitlines() if line.strip() not in (SOLUTION_BEGIN, SOLUTION_END)]
        cells.append("\n".join(lines).strip("\n"))
    header = f"# {GENERATED_NOTE.format(source=_rel(source))}\n"
    text = header + DOCSTRING.format(title=title, source=_rel(source)) + "\n" + "\n\n\n".join(cells) + "\n"
    try:
        compile(text, str(source), "exec")
    except SyntaxError as error:
        raise BuildError(f"the module generated from {_rel(source)} does not compile: {error}") from None
    return text
