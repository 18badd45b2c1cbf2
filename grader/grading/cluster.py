"""Grade on a Dask distributed cluster: `python -m grader grade --scheduler tcp://HOST:8786`.

What crosses the network: to a worker, one submission's normalised notebook (JSON text), the
student id, the notes intake wrote, the limits, and the seeds of that student's checks; back, its
verdict as plain data. Intake, the verdict cache, the gradebook and the course secret stay on the
instructor's machine. A seed is an HMAC of the secret (plan.seed_for): a worker learns the inputs
of the checks it runs, and nothing that predicts another student's.

After the verdicts, the same workers render the feedback pages (`run_each`: the autograded notebook
and the student's grades out, the page back; a page that does not come back is rendered locally).

Workers: the stock `dask worker tcp://HOST:8786`, with a checkout of this repository importable
(`PYTHONPATH=/path/to/checkout`: `dask worker` does not put its folder on the path), the same
environment, and bubblewrap. On connecting, every worker is asked for its grading_sha (verdicts.py)
and the digest of its grader package (checkout_sha): one that cannot import the grader, or runs
other code, stops the run before anything is sent. Inside a worker, each run holds a machine-wide sandbox slot (slots.py).

Nothing a worker returns is trusted more than a verdict from a local sandbox: it is rebuilt with
strict types; its student, notebook and grading code must be the ones sent; its checks must be
exactly the release's, in order (labels are rebuilt here); every text is cleaned again and cell
outputs filtered and bounded as the sandbox does. A verdict made by other grading code stops the
run (a worker joined later from another checkout: a rerun after fixing it resumes). Any other
unusable verdict, or a task that failed on every try, gives that student a failed verdict with a
note and a line for the instructor; it is saved for this run's reports but never reused, so the
next run grades that notebook again.
Dask itself unpickles what workers send, so the scheduler and workers must be machines the
instructor trusts; these checks guard against faults and mixed checkouts, not a hostile worker.

Jobs are sent a window at a time (IN_FLIGHT), each as the one before it comes back, so neither the
scheduler nor this process ever holds the whole class. Faults: a worker that dies mid-run has its
task rerun on another by the scheduler. Task keys are
unique per run, student and notebook, and each verdict is saved under its student as it arrives
(the cache local grading uses), so every student gets one row and nothing counts twice. An
unreachable scheduler, a lost connection, or no worker left for WORKER_WAIT_S stops the run with
one line (ClusterError); the verdicts saved so far stay, and the next run, local or on a cluster,
resumes from them.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError
from dataclasses import asdict, dataclass, fields
from functools import cache, cached_property
from pathlib import Path

import nbformat

from .. import paths
from .sandbox import WEAK, Limits, _keep, isolation_available
from .slots import machine_slot
from .verdicts import MAX_MESSAGE, CheckResult, Verdict, clean_message, grade_notebook, grading_sha, notebook_sha, release_checks

CONNECT_TIMEOUT_S = 15
WORKER_WAIT_S = 60  # for a first worker to join, and with no worker left midway
POLL_S = 2  # how often the run looks at the workers while waiting for verdicts
TICK_S = 0.2  # how often it looks for finished tasks
RETRIES = 1  # a task that raised runs once more; a worker's death is the scheduler's to retry
IN_FLIGHT = 256  # tasks on the cluster at once: enough to keep hundreds of workers busy
MAX_TEXT = 2000  # one note or flag (the grader's own are a few hundred characters)
MAX_FLAGS = 50
STATUSES = {"ok", "error", "timeout", "died"}
ISOLATIONS = {"bubblewrap", WEAK, "unknown"}
VERDICT_FIELDS = {f.name for f in fields(Verdict)}
CHECK_FIELDS = {f.name for f in fields(CheckResult)}
CELL_FIELDS = {"index", "status", "seconds", "outputs"}
CUT = {"output_type": "stream", "name": "stderr", "text": "... (output cut by the grader)\n"}


class ClusterError(Exception):
    """The cluster cannot grade this class; the verdicts saved so far stay saved."""


class Refused(Exception):
    """A verdict from a worker that cannot be used."""


class OtherCode(Refused):
    """A verdict made by other grading code or under other limits."""


@dataclass(frozen=True)
class Job:
    """One submission, as a worker receives it (never the secret: see payload)."""

    student_id: str
    notebook: str  # the normalised notebook, as nbformat wrote it to submitted/
    seeds: dict[str, int]
    notes: list[str]
    assignment: str = paths.ASSIGNMENT

    @cached_property
    def parsed(self) -> nbformat.NotebookNode:
        return nbformat.reads(self.notebook, as_version=4)

    @cached_property
    def notebook_sha(self) -> str:
        return notebook_sha(self.parsed)


# ---------------------------------------------------------------------------------------------
# On the workers: imported there by module path, given plain data only
# ---------------------------------------------------------------------------------------------


@cache
def checkout_sha() -> str:
    """Identity of everything else a worker may run for a grading run (the feedback pages: the
    course package, its templates, the course's nbgrader configuration)."""
    digest = hashlib.sha256()
    files = [p for p in (paths.REPO / "grader").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for path in sorted([*files, paths.NBGRADER_CONFIG]):
        digest.update(path.relative_to(paths.REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def worker_identity(limits: dict) -> dict:
    """What the scheduler side compares with its own before sending any work."""
    return {"grading_sha": grading_sha(Limits(**limits)), "checkout_sha": checkout_sha(),
            "isolation": isolation_available(), "checkout": str(paths.REPO)}


def grade_remote(notebook: str, student_id: str, seeds: dict, notes: list, limits: dict,
                 assignment: str = paths.ASSIGNMENT) -> dict:
    """grade_notebook on this worker's machine, in a sandbox slot no other process here holds."""
    lesson = paths.lesson(assignment)
    with tempfile.TemporaryDirectory(prefix="w3d4-remote-") as scratch, machine_slot() as slot:
        path = Path(scratch) / lesson.notebook
        path.write_text(notebook, encoding="utf-8")
        verdict = grade_notebook(path, student_id, seeds, notes, Limits(**limits), slot, assignment)
    return asdict(verdict)


def payload(job: Job, limits: Limits) -> tuple:
    """grade_remote's arguments: everything that crosses the network for one submission."""
    return job.notebook, job.student_id, dict(job.seeds), list(job.notes), asdict(limits), job.assignment


# ---------------------------------------------------------------------------------------------
# Checking what comes back
# ---------------------------------------------------------------------------------------------


def _record(value, names: set[str], what: str) -> dict:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise Refused(f"{what} is not a record")
    if set(value) != names:
        odd = sorted(set(value) ^ names)
        raise Refused(f"{what} has other fields than a verdict's ({', '.join(odd)[:200]})")
    return value


def _text(value, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise Refused(f"{what} is not text")
    return clean_message(value, limit)


def _texts(value, what: str, most: int) -> list[str]:
    if not isinstance(value, list) or len(value) > most:
        raise Refused(f"{what} is not a list of at most {most} texts")
    return [_text(v, what) for v in value]


def _seconds(value, what: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise Refused(f"{what} is not a duration")
    return float(value)


def _flag(value, what: str) -> bool:
    if type(value) is not bool:  # "yes", 1 or a truthy object is not a pass
        raise Refused(f"{what} is not true or false")
    return value


def _checks(value, assignment: str) -> list[CheckResult]:
    """Exactly the release's checks, in order; ids, cells, labels and hidden-ness are the plan's."""
    plan = release_checks(assignment)
    if not isinstance(value, list) or len(value) != len(plan):
        raise Refused(f"it does not hold the release's {len(plan)} checks")
    results = []
    for got, check in zip(value, plan):
        got = _record(got, CHECK_FIELDS, "a check")
        if got["check_id"] != check.check_id or got["grade_id"] != check.grade_id:
            raise Refused(f"its checks are not the release's (found {str(got['check_id'])[:80]!r} "
                          f"where {check.check_id!r} is due)")
        if _flag(got["hidden"], "hidden") != check.hidden:
            raise Refused(f"check {check.check_id} is hidden in the plan and not in the verdict, or the reverse")
        _text(got["label"], "a label")
        results.append(CheckResult(check.check_id, check.grade_id, check.describe(), check.hidden,
                                   _flag(got["passed"], "passed"), _text(got["message"], "a message", MAX_MESSAGE)))
    return results


def _outputs(value, limits: Limits) -> list[dict]:
    """The sandbox's own filter again (text and PNG only), and its size bound with room to spare."""
    if not isinstance(value, list) or not all(isinstance(o, dict) for o in value):
        raise Refused("a cell's outputs are not a list of outputs")
    try:
        kept = [o for o in map(_keep, value) if o is not None]
    except (AttributeError, TypeError):
        raise Refused("a cell's outputs are malformed") from None
    if len(json.dumps(kept)) > 2 * limits.output_chars + 1000:
        return [dict(CUT)]
    return kept


def _cells(value, nb: nbformat.NotebookNode, limits: Limits) -> list[dict]:
    code = {i for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    if not isinstance(value, list) or len(value) > len(code):
        raise Refused("its cells are not a list of the notebook's code cells")
    cells, seen = [], set()
    for got in value:
        got = _record(got, CELL_FIELDS, "a cell")
        index = got["index"]
        if type(index) is not int or index not in code or index in seen or got["status"] not in STATUSES:
            raise Refused("a cell's index or status is not one the notebook can have")
        seen.add(index)
        cells.append({"index": index, "status": got["status"], "seconds": _seconds(got["seconds"], "a cell's time"),
                      "outputs": _outputs(got["outputs"], limits)})
    return cells


def _notes(value, sent: list[str], nb: nbformat.NotebookNode) -> list[str]:
    """The notes sent, unchanged, then the grader's own (at most one per cell and two more)."""
    if not isinstance(value, list) or value[:len(sent)] != sent:
        raise Refused("its notes do not start with the ones sent")
    return list(sent) + _texts(value[len(sent):], "a note", len(nb.cells) + 2)


def validated(data, job: Job, limits: Limits) -> Verdict:
    """The verdict a worker returned for `job`, rebuilt from what this machine knows; Refused
    (OtherCode when made by other grading code) when it cannot be used."""
    record = _record(data, VERDICT_FIELDS, "the verdict")
    expected = grading_sha(limits)
    if record["grading_sha"] != expected:
        raise OtherCode(f"it was made by other grading code or limits (grading_sha {str(record['grading_sha'])[:12]!r}, "
                        f"here {expected[:12]!r})")
    if record["student_id"] != job.student_id:
        raise Refused("it is another student's verdict")
    if record["notebook_sha"] != job.notebook_sha:
        raise Refused("it is the verdict of another notebook")
    if record["isolation"] not in ISOLATIONS:
        raise Refused("its isolation is not one the sandbox reports")
    return Verdict(
        student_id=job.student_id, notebook_sha=job.notebook_sha, isolation=record["isolation"],
        seconds=_seconds(record["seconds"], "its time"), notes=_notes(record["notes"], job.notes, job.parsed),
        checks=_checks(record["checks"], job.assignment), cells=_cells(record["cells"], job.parsed, limits), grading_sha=expected,
        flags=_texts(record["flags"], "a flag", MAX_FLAGS),
    )


def failed(job: Job, limits: Limits) -> Verdict:
    """No points, and a note saying so, for a submission the cluster could not grade."""
    note = ("The grader could not use this notebook's run on a grading machine; your instructor has been told, "
            "and the next grading run tries it again.")
    checks = [CheckResult(c.check_id, c.grade_id, c.describe(), c.hidden, False,
                          "This check produced no result (the grading machine's run could not be used).")
              for c in release_checks(job.assignment)]
    # No grading_sha: the verdict cache never reuses it, so the next run grades this notebook again.
    return Verdict(student_id=job.student_id, notebook_sha=job.notebook_sha, isolation="unknown", seconds=0.0,
                   notes=[*job.notes, note], checks=checks, grading_sha="")


# ---------------------------------------------------------------------------------------------
# On the instructor's machine: connect, check the workers, send, collect
# ---------------------------------------------------------------------------------------------


def connect(scheduler: str):
    from distributed import Client  # here: local grading never pays for importing Dask

    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} ({_one_line(error)})") from None


def _one_line(error: BaseException) -> str:
    return clean_message(str(error) or type(error).__name__, 300).replace("\n", " ")


def check_workers(client, scheduler: str, limits: Limits) -> None:
    """Wait (bounded) for a worker, then make sure every worker runs this grading code."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise ClusterError(f"no Dask worker joined the scheduler at {scheduler} within {WORKER_WAIT_S} s: start "
                           f"`dask worker {scheduler}` with PYTHONPATH pointing at a checkout of the course") from None
    expected = grading_sha(limits)
    answers = client.run(worker_identity, asdict(limits), on_error="return")
    for address, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            raise ClusterError(f"worker {address} cannot run the grader ({_one_line(answer)}): start `dask worker` "
                               "with PYTHONPATH pointing at a checkout of the course, in the grader's environment")
        if answer.get("grading_sha") != expected or answer.get("checkout_sha") != checkout_sha():
            raise ClusterError(f"worker {address} runs other grading code (its checkout {answer.get('checkout')}): "
                               "start `dask worker` from the same checkout as this one")
    weak = sorted(a for a, answer in answers.items() if not answer.get("isolation"))
    if weak:
        print(f"WARNING: bubblewrap namespaces are not available on {', '.join(weak)}: their runs are WEAKER "
              "(no filesystem or network isolation).", file=sys.stderr)


def _workers(client) -> int:
    try:
        return len(client.nthreads())
    except (OSError, CancelledError) as error:
        raise ClusterError(f"lost the connection to the Dask scheduler ({_one_line(error)})") from None


def _outcome(client, future, job: Job, limits: Limits, warn: Callable[[str], None]) -> Verdict:
    """The verdict a finished task brought back, checked; failed(job) with a line for the
    instructor when it cannot be used."""
    if future.status == "cancelled":
        raise ClusterError("lost the connection to the Dask scheduler")
    if future.status == "error":
        reason = f"it failed on every try ({_one_line(future.exception())})"
    else:
        try:
            return validated(future.result(), job, limits)
        except OtherCode as error:
            workers = ", ".join(client.who_has(future).get(future.key, ())) or "a worker"
            raise ClusterError(f"{workers} runs other grading code ({error}): start every `dask worker` from the same "
                               "checkout as this one") from None
        except Refused as error:
            reason = f"its verdict was refused: {error}"
    warn(f"{job.student_id}: {reason}; graded as failed for now: the next run grades it again")
    return failed(job, limits)


class _Sender:
    """Sends calls a window at a time: one task per submission, at most IN_FLIGHT on the cluster,
    so the scheduler's memory (and this process's) holds a window of notebooks, not the class.
    The run's own token is in each key: two runs on one scheduler (other secrets, so other seeds)
    must never share a task, nor one run's retry another's result.

    calls: (name, function, args, item) for each task; `item` comes back with its future."""

    def __init__(self, client, calls: Iterable[tuple[str, Callable, tuple, object]]):
        self.client, self.calls = client, iter(calls)
        self.run = uuid.uuid4().hex[:8]
        self.sent: dict = {}  # future -> its item, until it is collected

    def next(self):
        """Send the next call; its future, or None when every call has been sent."""
        call = next(self.calls, None)
        if call is None:
            return None
        name, function, args, item = call
        future = self.client.submit(function, *args, pure=False, retries=RETRIES, key=f"w3d4-{self.run}-{name}")
        self.sent[future] = item
        return future


def _collect(client, sender: _Sender, handle: Callable[[object, object], None]) -> None:
    """handle(future, item) for each task as it finishes, the next call sent in its place; stops
    when no worker has been left for WORKER_WAIT_S (tasks would wait for one forever)."""
    from distributed import as_completed

    first = [f for f in (sender.next() for _ in range(IN_FLIGHT)) if f is not None]
    finished = as_completed(first, loop=client.loop)  # the loop: this run's client may not be the default
    looked = last_seen = time.monotonic()
    while not finished.is_empty():
        batch = finished.next_batch(block=False)
        for future in batch:
            handle(future, sender.sent.pop(future))
            future.release()
            following = sender.next()
            if following is not None:
                finished.add(following)
        if batch:
            continue
        time.sleep(TICK_S)
        if time.monotonic() - looked >= POLL_S:
            looked = time.monotonic()
            last_seen = looked if _workers(client) else last_seen
            if looked - last_seen >= WORKER_WAIT_S:
                raise ClusterError(f"no Dask worker has been left for {WORKER_WAIT_S} s")


def _on_cluster(scheduler: str, limits: Limits, calls, handle: Callable[[object, object], None]) -> None:
    """Connect, check the workers, run the calls a window at a time; one ClusterError line if not."""
    client = connect(scheduler)
    try:
        check_workers(client, scheduler, limits)
        _collect(client, _Sender(client, calls), handle)
    except ClusterError as error:
        raise ClusterError(f"{error}. The verdicts saved so far are kept: grade again to resume.") from None
    finally:
        client.close(timeout=CONNECT_TIMEOUT_S)


def judge(scheduler: str, jobs: Iterable[Job], limits: Limits, done: Callable[[Verdict], None],
          warn: Callable[[str], None] = print) -> None:
    """Grade `jobs` on the cluster; `done(verdict)` for each, as it arrives (once per student)."""
    calls = ((f"{job.student_id}-{job.notebook_sha[:16]}", grade_remote, payload(job, limits), job) for job in jobs)
    _on_cluster(scheduler, limits, calls, lambda future, job: done(_outcome(future.client, future, job, limits, warn)))


def run_each(scheduler: str, limits: Limits, calls: Iterable[tuple[str, Callable, tuple, object]],
             done: Callable[[object, object, BaseException | None], None]) -> None:
    """Other work of a grading run, spread on the cluster: `function(*args)` for each call, and
    done(item, result, error) as each comes back (error set when it failed on every try). The
    function must be importable on the workers and take and return plain data."""
    def handle(future, item):
        if future.status == "cancelled":
            raise ClusterError("lost the connection to the Dask scheduler")
        if future.status == "error":
            done(item, None, future.exception())
        else:
            done(item, future.result(), None)

    _on_cluster(scheduler, limits, calls, handle)
