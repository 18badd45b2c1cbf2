"""The hostile class for every other lesson: the attacks of corpus.py that do not depend on part 2's
exercises, aimed at any lesson of the day.

Each notebook is the lesson's release with its first exercise answered honestly (from the
solution), or not at all, plus an attack in a cell of its own after that answer. What the grader
must give it: the first exercise's points where the honest answer survives the attack, nothing
where the attack is a cheat or destroys the run, and a reason the student can read.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

from grader import paths
from grader.lesson.samples import BLANKER, EQ_PATCHES, _solution_answers
from .attacks import (BACKGROUND, FORK_FLOOD, HIDE_ERRORS, MEMORY_BOMB, OS_EXIT, OUTPUT_FLOOD, PATCH_TESTS_MODULE,
                      PROBE_FILE_FORGER, STUBBORN_LOOP, SYS_EXIT, TMPFS_BOMB, network)
from .corpus import Context


@dataclass(frozen=True)
class Attack:
    student_id: str
    keeps_points: bool  # the honest first answer still earns its points
    reason: str  # must appear in what the student is told
    snippet: Callable[[Context, paths.Lesson], str] | str | None  # run after the first answer; None: see `make`
    honest: bool = True  # the first exercise is answered from the solution
    flag: str = ""  # must appear in the instructor's integrity flags


def read_lesson_solutions(ctx: Context, lesson: paths.Lesson) -> str:
    targets = [lesson.source, paths.REPO / lesson.source_dir / lesson.notebook,
               ctx.course / "source" / lesson.assignment / lesson.notebook, ctx.course / "gradebook.db",
               ctx.course / ".grader_secret"]
    return f"""
import glob, json
targets = {[str(p) for p in targets]!r} + glob.glob("/work/*/solutions/*.py") + glob.glob("../../*/*.ipynb")
for path in targets:
    try:
        text = open(path).read()
        if path.endswith(".py"):
            exec(text, globals())
        print("STOLE", path)
    except Exception as error:
        print("could not read", path, type(error).__name__)
"""


def write_lesson_course(ctx: Context, lesson: paths.Lesson) -> str:
    targets = [ctx.course / "gradebook.db", ctx.course / "canary.txt", lesson.source,
               ctx.course / "source" / lesson.assignment / lesson.notebook, paths.TESTS_MODULE]
    return f"""
import os
for path in {[str(p) for p in targets]!r}:
    try:
        with open(path, "ab") as f:
            f.write(b"tampered")
        print("WROTE", path)
    except OSError as error:
        print("write refused", path, type(error).__name__)
"""


ATTACKS = (
    Attack("eq_always_true", False, "not implemented yet", None, honest=False),
    Attack("blanks_later_cells", False, "produced no result", BLANKER, flag="Probes never ran"),
    Attack("hides_errors", True, "not implemented yet", HIDE_ERRORS),
    Attack("patches_tests_module", True, "write refused", PATCH_TESTS_MODULE),
    Attack("reads_solutions", False, "could not read", read_lesson_solutions, honest=False),
    Attack("writes_course", False, "write refused", write_lesson_course, honest=False, flag="gradebook.db"),
    Attack("os_exit", True, "crashed the kernel", OS_EXIT, flag="The kernel was restarted 1 time"),
    Attack("sys_exit", True, "SystemExit", SYS_EXIT),
    Attack("ignores_sigterm", True, "ran longer than", STUBBORN_LOOP, flag="ran past the time limit twice"),
    Attack("memory_bomb", True, "MemoryError", MEMORY_BOMB.strip() + "\n" + TMPFS_BOMB),
    Attack("fork_flood", True, "fork refused", FORK_FLOOD),
    Attack("background_process", True, "started background processes", BACKGROUND),
    Attack("output_flood", True, "output cut by the grader", OUTPUT_FLOOD),
    Attack("network", True, "connect failed", lambda ctx, lesson: network(ctx)),
    Attack("forges_probe_files", False, "malformed", PROBE_FILE_FORGER, honest=False,
           flag="in a form the grader's probes never write"),
)


def first_exercise(lesson: paths.Lesson) -> tuple[str, str]:
    """The lesson's first answer cell and its solution (markers removed)."""
    source = nbformat.read(paths.REPO / lesson.source_dir / lesson.notebook, as_version=4)
    return next(iter(_solution_answers(source).items()))


def _notebook(lesson: paths.Lesson, first: str | None, extra: str | None) -> nbformat.NotebookNode:
    """The release with the first answer cell replaced by `first` and `extra` in a cell after it."""
    nb = copy.deepcopy(nbformat.read(lesson.release_notebook(), as_version=4))
    grade_id, _ = first_exercise(lesson)
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if cell.metadata["nbgrader"]["grade_id"] == grade_id:
            if first is not None:
                cell.source = first
            if extra:
                added = nbformat.v4.new_code_cell(extra.strip())
                added.id = "extra-attack"
                cells.append(added)
    nb.cells = cells
    return nb


def make(attack: Attack, lesson: paths.Lesson, ctx: Context) -> bytes:
    grade_id, solution = first_exercise(lesson)
    if attack.student_id == "eq_always_true":  # the patches pasted above the stub
        stub = next(c.source for c in nbformat.read(lesson.release_notebook(), as_version=4).cells
                    if c.metadata["nbgrader"]["grade_id"] == grade_id)
        return nbformat.writes(_notebook(lesson, EQ_PATCHES.strip() + "\n\n" + stub, None)).encode()
    snippet = attack.snippet(ctx, lesson) if callable(attack.snippet) else attack.snippet
    return nbformat.writes(_notebook(lesson, solution if attack.honest else None, snippet)).encode()


def write_class(lesson: paths.Lesson, ctx: Context, folder: Path) -> Path:
    """Every attack as STUDENT.ipynb in `folder`, plus two damaged files."""
    folder.mkdir(parents=True, exist_ok=True)
    for attack in ATTACKS:
        (folder / f"{attack.student_id}.ipynb").write_bytes(make(attack, lesson, ctx))
    honest = nbformat.writes(_notebook(lesson, first_exercise(lesson)[1], None))
    (folder / "malformed_json.ipynb").write_text(honest[: len(honest) // 2])
    (folder / "empty_file.ipynb").write_bytes(b"")
    return folder


DAMAGED = {"malformed_json": "not a valid notebook", "empty_file": "empty"}


def expected_points(lesson: paths.Lesson, student_id: str, first_points: float) -> float:
    attack = next((a for a in ATTACKS if a.student_id == student_id), None)
    return first_points if attack is not None and attack.keeps_points else 0.0


def reason(student_id: str) -> str:
    attack = next((a for a in ATTACKS if a.student_id == student_id), None)
    return attack.reason if attack else DAMAGED[student_id]
