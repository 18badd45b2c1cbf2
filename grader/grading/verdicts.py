"""Verdicts: run a normalised submission in the sandbox, then judge its probe data out here.

A verdict is plain JSON (saved beside the course, never inside the sandbox), so a grading run that
is killed can resume without re-running the submissions it already judged. It is reused only for
the same notebook graded by the same grading code under the same limits (`grading_sha`): after a
judge is fixed, a regrade recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType

import nbformat

from .. import paths
from . import integrity, wiring
from .plan import Check, checks_for
from .sandbox import LOAD_RETRY_FACTOR, Limits, SandboxResult, run_notebook
from .trusted import load_package

MAX_MESSAGE = 600
TRUSTED_NAME = "_w3d4_trusted_checks"
# What decides a verdict: this package, the checks library and the releases.
GRADING_CODE = (Path(__file__).parent, paths.CHECKS, *(paths.REPO / l.release_dir for l in paths.LESSONS.values()))


@dataclass
class CheckResult:
    check_id: str
    grade_id: str
    label: str
    hidden: bool
    passed: bool
    message: str


@dataclass
class Verdict:
    student_id: str
    notebook_sha: str
    isolation: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    cells: list[dict] = field(default_factory=list)  # the sandbox's per-cell status and outputs
    grading_sha: str = ""  # the grading code and limits that produced it (see grading_sha)
    flags: list[str] = field(default_factory=list)  # integrity flags, one line each (see integrity.py)

    def score(self, grade_id: str, points: float) -> float:
        """Partial credit: the share of this cell's checks that passed, rounded to 0.01."""
        mine = [c for c in self.checks if c.grade_id == grade_id]
        return round(points * sum(c.passed for c in mine) / len(mine), 2) if mine else 0.0

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)  # atomic: a killed run never leaves half a verdict

    @classmethod
    def load(cls, path: Path) -> "Verdict | None":
        try:
            data = json.loads(path.read_text())
            data["checks"] = [CheckResult(**c) for c in data["checks"]]
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError):
            return None


def verdict_path(verdict_dir: Path, student: str, assignment: str, notebook: str) -> Path:
    return verdict_dir / assignment / student / f"{notebook}.json"


_LOADING = threading.Lock()


def trusted_checks() -> ModuleType:
    """The grader's own copy of the checks library, under a private name. Loaded once per process,
    under a lock: judges run in threads, and two loads at once would each take the package's
    private name out of sys.modules while the other is still running its modules."""
    with _LOADING:
        return _trusted_checks()


@cache
def _trusted_checks() -> ModuleType:
    return load_package(TRUSTED_NAME, paths.CHECKS_PACKAGE)


@cache
def _code_sha() -> str:
    digest = hashlib.sha256()
    for root in GRADING_CODE:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def grading_sha(limits: Limits) -> str:
    """Identity of what turns a notebook into a verdict: the grading code, the checks library, the
    release and the limits. A verdict made by other code or under other limits is not reused."""
    return hashlib.sha256(f"{_code_sha()}/{json.dumps(asdict(limits), sort_keys=True)}".encode()).hexdigest()


def cached(path: Path, nb: nbformat.NotebookNode, limits: Limits) -> tuple[Verdict | None, str]:
    """The saved verdict for this notebook if it is still valid, else None and why not ("" when
    there is none)."""
    verdict = Verdict.load(path)
    if verdict is None:
        return None, ""
    if verdict.notebook_sha != notebook_sha(nb):
        return None, "the notebook changed"
    if not verdict.grading_sha:  # a stand-in for a run that could not be used (cluster.failed)
        return None, "it could not be graded"
    if verdict.grading_sha != grading_sha(limits):
        return None, "the grading code or limits changed"
    return verdict, ""


def notebook_sha(nb: nbformat.NotebookNode) -> str:
    """Identity of what gets executed: cell types and sources, in order (not outputs or metadata)."""
    content = json.dumps([(c.cell_type, c.source) for c in nb.cells])
    return hashlib.sha256(content.encode()).hexdigest()


def clean_message(text: str, limit: int | None = MAX_MESSAGE) -> str:
    """Make text from inside the sandbox safe to show: printable, bounded (to `limit` characters,
    None for whole), no spreadsheet formulas."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(text))  # ANSI colours from tracebacks
    text = "".join(ch if ch.isprintable() or ch in "\n\t" else "?" for ch in text).strip()
    quote = "'" if text[:1] in ("=", "+", "-", "@") else ""  # the quote counts towards the limit too
    if limit is not None and len(quote) + len(text) > limit:
        text = text[: limit - len(quote) - 3] + "..."
    return quote + text


SKIP_TAG = "skip-when-grading"  # lesson cells that earn nothing and take time (the closing demo)


def not_run_when_grading(cell) -> bool:
    """Graded test cells (their outputs are replaced by the verdicts, so running their tests in the
    kernel as well would only cost time) and cells tagged SKIP_TAG."""
    meta = cell.get("metadata", {})
    return bool(meta.get("nbgrader", {}).get("grade")) or SKIP_TAG in meta.get("tags", [])


def judge(check: Check, seed: int, result: dict | None, failed: frozenset = frozenset()) -> CheckResult:
    """The trusted verdict for one check. Missing or malformed data is a failure, never a pass.

    `failed`: the tests this submission failed in earlier checks (a block's diagnosis names them)."""
    label = check.describe()

    def verdict(passed: bool, message: str) -> CheckResult:
        return CheckResult(check.check_id, check.grade_id, label, check.hidden, passed, message)

    if result is None:
        return verdict(False, "This check produced no result (the notebook stopped the grader's code from running).")
    if not result.get("ok"):
        return verdict(False, clean_message(result.get("error", "the check failed")))
    checks = trusted_checks()
    try:
        exercise = checks.EXERCISES[check.test]
        exercise.judge(result.get("data"), seed=seed, **check.kwargs)
        if exercise.wiring:
            wiring.check_weights(checks, check.test, result["data"], seed, failed, **check.kwargs)
    except AssertionError as error:
        return verdict(False, clean_message(str(error)))
    except Exception as error:  # data that does not have the shape a probe returns: forged or broken
        return verdict(False, f"The check's result was malformed ({type(error).__name__}).")
    return verdict(True, "passed")


def _judge_all(checks: list[Check], seeds: dict[str, int], probes: dict) -> list[CheckResult]:
    """Judge in notebook order, so that a block's diagnosis can name the sub-blocks that failed before it."""
    results: list[CheckResult] = []
    failed: set[str] = set()
    for check in checks:
        results.append(judge(check, seeds[check.check_id], probes.get(check.check_id), frozenset(failed)))
        if not results[-1].passed:
            failed.add(check.test)
    return results


@cache
def release_checks(assignment: str = paths.ASSIGNMENT) -> tuple[Check, ...]:
    """The checks of an assignment's release notebook, in notebook order."""
    return tuple(checks_for(nbformat.read(paths.lesson(assignment).release_notebook(), as_version=4)))


def grade_notebook(
    path: Path, student_id: str, seeds: dict[str, int], notes: list[str], limits: Limits = Limits(), slot: int = 0,
    assignment: str = paths.ASSIGNMENT,
) -> Verdict:
    """Execute the normalised notebook at `path` in the sandbox and judge every check.

    seeds: check_id -> seed for every check of the release (`plan.seeds_for`); the course secret
    itself never reaches this function, so it can run on a machine that must not hold it."""
    nb = nbformat.read(path, as_version=4)
    checks = list(release_checks(assignment))
    if set(seeds) != {c.check_id for c in checks}:
        raise ValueError("the seeds given do not match the release's checks")
    skipped = tuple(i for i, c in enumerate(nb.cells) if not_run_when_grading(c))
    probes = [c.probe_request(seeds[c.check_id]) for c in checks]
    notes = list(notes)
    for attempt in range(2):  # a kernel that would not start on a busy machine gets a second chance
        try:
            run: SandboxResult = run_notebook(path, probes, limits, slot, skip_cells=skipped, lesson=paths.lesson(assignment))
            break
        except Exception as error:  # the kernel would not start, the sandbox broke: no data, no points
            failure = f"{type(error).__name__}: {clean_message(str(error))}"
    else:
        run = SandboxResult(isolation="unknown", seconds=0.0, timed_out=False)
        notes.append(f"The grader could not run this notebook ({failure}); please tell your instructor.")
    # Restarts and timeouts are integrity flags (integrity._run_flags), shown beside these notes.
    if run.retries:
        notes.append(
            f"{run.retries} cell(s) ran longer than {limits.cell_timeout_s} s or stopped the kernel, and were run "
            f"again in a fresh kernel with {LOAD_RETRY_FACTOR * limits.cell_timeout_s} s."
        )
    for cell in run.cells:
        if cell.get("status") == "died":
            notes.append(f"Cell {cell.get('index')} crashed the kernel twice; it was restarted and grading went on.")
    return Verdict(
        student_id=student_id,
        notebook_sha=notebook_sha(nb),
        isolation=run.isolation,
        seconds=round(run.seconds, 2),
        notes=notes,
        checks=_judge_all(checks, seeds, run.probes),
        cells=run.cells,
        grading_sha=grading_sha(limits),
        flags=integrity.flags(run, checks, limits),
    )
