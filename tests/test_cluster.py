"""Grading on a Dask cluster (`grade --scheduler`): what is sent, what comes back, and faults.

The fast tests check the scheduler side alone: every forged verdict a worker could return is
refused or cleaned, an honest one comes back unchanged, and the course secret is in nothing sent
(on an in-process Dask cluster whose task is replaced by a stand-in). The slow ones start a real
`dask scheduler` and two `dask worker` processes on 127.0.0.1, grade the sample class and the
hostile class there (the points must be the ones local grading gives), kill a worker midway, and
stop and resume a run against an unreachable or vanishing scheduler.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import nbformat
import pytest

from grader import paths
from grader.course.commands import tool_env
from grader.course import autograded
from grader.course import grade as grade_module
from grader.course.grade import NOTEBOOK_ID, finish, grade, judge_all
from grader.course.workspace import Workspace
from grader.grading import cluster
from grader.grading.intake import METADATA_KEY
from grader.grading.plan import course_secret, seeds_for
from grader.grading.sandbox import Limits, isolation_available
from grader.grading.verdicts import MAX_MESSAGE, CheckResult, Verdict, grading_sha, release_checks
from hostile.observe import sandbox_processes
from test_grading import EXPECTED, by_test, run_cli

import test_hostile as hostile_tests

LIMITS = Limits()
SECRET = bytes(range(32))
SENT_NOTES = ["A note from intake."]


def make_job(release, student_id: str = "ada", secret: bytes = SECRET) -> cluster.Job:
    nb = copy.deepcopy(release)
    nb.metadata[METADATA_KEY] = {"normalised": True, "notes": SENT_NOTES}
    return cluster.Job(student_id, nbformat.writes(nb), seeds_for(secret, student_id, list(release_checks())),
                       list(SENT_NOTES))


def honest(job: cluster.Job, limits: Limits = LIMITS) -> Verdict:
    """A verdict as grade_notebook makes it: some checks passed, outputs of each kept kind."""
    code = [i for i, c in enumerate(job.parsed.cells) if c.cell_type == "code"]
    checks = [CheckResult(c.check_id, c.grade_id, c.describe(), c.hidden, n % 3 != 0,
                          "passed" if n % 3 else "'=expected 2, got 3")
              for n, c in enumerate(release_checks())]
    outputs = [{"output_type": "stream", "name": "stdout", "text": "hello\n"},
               {"output_type": "display_data", "data": {"text/plain": "<Figure>", "image/png": "iVBORw0KGgo="},
                "metadata": {}},
               {"output_type": "error", "ename": "ValueError", "evalue": "no", "traceback": ["line 1", "ValueError: no"]}]
    cells = [{"index": code[0], "status": "ok", "seconds": 0.25, "outputs": outputs},
             {"index": code[1], "status": "timeout", "seconds": 10.0, "outputs": []}]
    return Verdict(job.student_id, job.notebook_sha, "bubblewrap", 12.5, [*job.notes, "1 cell(s) ran longer."],
                   checks, cells, grading_sha(limits), ["The kernel was restarted 1 time."])


@pytest.fixture(scope="module")
def job(notebooks) -> cluster.Job:
    return make_job(notebooks.release)


def test_an_honest_verdict_comes_back_unchanged(job):
    verdict = honest(job)
    assert cluster.validated(asdict(verdict), job, LIMITS) == verdict


def _drop_first_check(d):
    d["checks"].pop(0)


def _add_check(d):
    d["checks"].append({**d["checks"][0], "check_id": "extra-1"})


def _rename_check(d):
    d["checks"][0]["check_id"] = "forged-1"


def _flip_hidden(d):
    d["checks"][0]["hidden"] = not d["checks"][0]["hidden"]


def _other_notes(d):
    d["notes"][0] = "All is well."


def _html_cell(d):
    d["cells"][0]["outputs"][0] = {"output_type": "display_data", "data": {"text/html": "<script>x</script>"}}


FORGED = {  # each makes the verdict unusable: the worker is refused
    "other_student": lambda d: d.update(student_id="ben"),
    "other_notebook": lambda d: d.update(notebook_sha="0" * 64),
    "passed_is_a_string": lambda d: d["checks"][0].update(passed="yes"),
    "passed_is_a_number": lambda d: d["checks"][0].update(passed=1),
    "a_check_missing": _drop_first_check,
    "an_extra_check": _add_check,
    "a_check_renamed": _rename_check,
    "a_hidden_check_shown": _flip_hidden,
    "other_cell": lambda d: d["checks"][0].update(grade_id="cell-x"),
    "an_extra_field": lambda d: d.update(score=100),
    "the_notes_sent_changed": _other_notes,
    "a_cell_not_in_the_notebook": lambda d: d["cells"][0].update(index=10_000),
    "an_unknown_status": lambda d: d["cells"][0].update(status="perfect"),
    "odd_isolation": lambda d: d.update(isolation="<b>bubblewrap</b>"),
    "time_not_a_number": lambda d: d.update(seconds=float("nan")),
    "flags_not_a_list": lambda d: d.update(flags="none"),
}


@pytest.mark.parametrize("forge", FORGED.values(), ids=FORGED.keys())
def test_a_forged_verdict_is_refused(job, forge):
    data = asdict(honest(job))
    forge(data)
    with pytest.raises(cluster.Refused):
        cluster.validated(data, job, LIMITS)


@pytest.mark.parametrize("data", [None, "passed", [], {"student_id": "ada"}], ids=["none", "text", "list", "partial"])
def test_what_is_not_a_verdict_is_refused(job, data):
    with pytest.raises(cluster.Refused):
        cluster.validated(data, job, LIMITS)


def test_a_verdict_of_other_grading_code_is_told_apart(job):
    data = asdict(honest(job, Limits(cell_timeout_s=1)))
    with pytest.raises(cluster.OtherCode, match="other grading code"):
        cluster.validated(data, job, LIMITS)


def test_labels_come_from_the_plan(job):
    data = asdict(honest(job))
    data["checks"][1]["label"] = "test_groupnorm(GroupNorm) - the answer is 42"
    data["checks"][2]["label"] = "visible check"  # a hidden check's label would give its inputs away
    checks = cluster.validated(data, job, LIMITS).checks
    assert [c.label for c in checks] == [c.describe() for c in release_checks()]


def test_texts_are_cleaned_again(job):
    data = asdict(honest(job))
    data["checks"][0]["message"] = "=HYPERLINK(\"http://x\")" + "x" * 100_000
    data["notes"].append("\x1b[31mred\x1b[0m and a bell\x07")
    data["flags"].append("+cmd|' /C calc'!A0")
    verdict = cluster.validated(data, job, LIMITS)
    assert len(verdict.checks[0].message) <= MAX_MESSAGE and verdict.checks[0].message.startswith("'=")
    assert verdict.notes[-1] == "red and a bell?"
    assert verdict.flags[-1].startswith("'+")


def test_outputs_are_filtered_and_bounded(job):
    data = asdict(honest(job))
    _html_cell(data)
    data["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x" * 10_000_000}]
    cells = cluster.validated(data, job, LIMITS).cells
    assert cells[0]["outputs"] == honest(job).cells[0]["outputs"][1:], "HTML is dropped as the sandbox drops it"
    assert cells[1]["outputs"] == [cluster.CUT]


# ---------------------------------------------------------------------------------------------
# The scheduler side on an in-process cluster, with a stand-in for the task
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def in_process():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as local:
        yield local.scheduler_address


def submitted_class(tmp_path: Path, release, students: list[str]) -> tuple[Workspace, dict[str, Path]]:
    workspace = Workspace(tmp_path / "grading")
    notebooks = {}
    for sid in students:
        notebooks[sid] = workspace.submitted(sid)
        notebooks[sid].parent.mkdir(parents=True)
        notebooks[sid].write_text(make_job(release, sid).notebook, encoding="utf-8")
    return workspace, notebooks


SENT: list[bytes] = []  # what the stand-ins were sent (Dask runs a copy of each: not on the instance)


class StandIn:
    """grade_remote's place on the workers: records what it was sent, answers honestly or not."""

    def __init__(self, forge=lambda student_id, data: None):
        SENT.clear()
        self.forge = forge

    def __call__(self, notebook: str, student_id: str, seeds: dict, notes: list, limits: dict, assignment: str) -> dict:
        SENT.append(pickle.dumps((notebook, student_id, seeds, notes, limits, assignment)))
        data = asdict(honest(cluster.Job(student_id, notebook, seeds, notes, assignment), Limits(**limits)))
        self.forge(student_id, data)
        return data


def test_the_secret_never_reaches_a_worker(in_process, tmp_path, notebooks, monkeypatch):
    students = ["ada", "ben", "cleo"]
    workspace, submitted = submitted_class(tmp_path, notebooks.release, students)
    monkeypatch.setattr(cluster, "grade_remote", StandIn())
    verdicts = judge_all(workspace, submitted, 1, LIMITS, in_process)
    secret = course_secret(workspace.secret)
    assert len(SENT) == len(students)
    for sent in SENT:
        assert secret not in sent and secret.hex().encode() not in sent
    assert {sid: v.checks for sid, v in verdicts.items()} == {sid: honest(make_job(notebooks.release, sid, secret)).checks
                                                              for sid in students}
    saved = [Verdict.load(workspace.verdicts / "w3d4_part2" / sid / "w3d4_part2_unet.json") for sid in students]
    assert saved == [verdicts[sid] for sid in students], "each verdict is saved as local grading saves it"


def test_a_refused_verdict_fails_its_student_with_a_note(in_process, tmp_path, notebooks, monkeypatch, capsys):
    workspace, submitted = submitted_class(tmp_path, notebooks.release, ["ada", "ben"])

    def forge(student_id, data):
        if student_id == "ben":
            data["checks"][0]["passed"] = "yes"

    monkeypatch.setattr(cluster, "grade_remote", StandIn(forge))
    verdicts = judge_all(workspace, submitted, 1, LIMITS, in_process)
    assert not any(c.passed for c in verdicts["ben"].checks)
    assert "your instructor has been told" in verdicts["ben"].notes[-1]
    assert verdicts["ben"].notes[:-1] == SENT_NOTES
    assert any(c.passed for c in verdicts["ada"].checks)
    assert "ben: its verdict was refused: passed is not true or false" in capsys.readouterr().err
    # The stand-in is never reused: the next run grades ben again (and only ben).
    monkeypatch.setattr(cluster, "grade_remote", StandIn(lambda student_id, data: None))
    again = judge_all(workspace, submitted, 1, LIMITS, in_process)
    assert any(c.passed for c in again["ben"].checks) and again["ada"] == verdicts["ada"]
    assert "1 to run" in capsys.readouterr().out


def test_jobs_are_sent_a_window_at_a_time(in_process, tmp_path, notebooks, monkeypatch):
    """The scheduler never holds more than IN_FLIGHT notebooks, and every student is graded once."""
    students = [f"s{i}" for i in range(7)]
    workspace, submitted = submitted_class(tmp_path, notebooks.release, students)
    monkeypatch.setattr(cluster, "IN_FLIGHT", 2)
    most, real_next = [], cluster._Sender.next

    def counting(sender):
        future = real_next(sender)
        most.append(len(sender.sent))
        return future

    monkeypatch.setattr(cluster._Sender, "next", counting)
    monkeypatch.setattr(cluster, "grade_remote", StandIn(lambda student_id, data: None))
    verdicts = judge_all(workspace, submitted, 1, LIMITS, in_process)
    assert sorted(verdicts) == students
    assert max(most) == 2


@pytest.mark.slow
def test_feedback_pages_rendered_on_the_workers_are_the_local_ones(in_process, tmp_path, notebooks, monkeypatch):
    """finish() with a scheduler renders each page on a worker and writes it here: the same bytes as
    local rendering. A page that comes back as something else is rendered here instead."""
    monkeypatch.setenv("PATH", tool_env()["PATH"])  # nbgrader runs `alembic` to create a gradebook
    students = ["ada", "ben", "cleo"]
    workspace, submitted = submitted_class(tmp_path, notebooks.release, students)
    workspace.setup()
    monkeypatch.setattr(cluster, "grade_remote", StandIn())
    judge_all(workspace, submitted, 1, LIMITS, in_process)
    pages = {sid: workspace.root / "feedback" / sid / "w3d4_part2" / "w3d4_part2_unet.html" for sid in students}
    finish(workspace, students, 1)
    local = {sid: page.read_bytes() for sid, page in pages.items()}
    real = autograded.render_remote
    monkeypatch.setattr(grade_module, "MAX_PAGE_BYTES", max(map(len, local.values())) + 100)
    answers = {"ada": lambda page: "<p>cluster</p>" + page, "ben": lambda page: 42,
               "cleo": lambda page: page + "x" * 1000}  # a page, not a page, a page too large
    monkeypatch.setattr(autograded, "render_remote",
                        lambda text, grades, sid, assignment: answers[sid](real(text, grades, sid, assignment)))
    for page in pages.values():
        page.unlink()
    finish(workspace, students, 1, scheduler=in_process)
    assert pages["ada"].read_bytes() == b"<p>cluster</p>" + local["ada"], "ada's page was not the worker's"
    assert pages["ben"].read_bytes() == local["ben"], "a page that is not a page is rendered here"
    assert pages["cleo"].read_bytes() == local["cleo"], "a page too large is rendered here"


def test_other_grading_code_stops_the_run(in_process, tmp_path, notebooks, monkeypatch):
    workspace, submitted = submitted_class(tmp_path, notebooks.release, ["ada"])
    monkeypatch.setattr(cluster, "grade_remote", StandIn(lambda sid, data: data.update(grading_sha="f" * 64)))
    with pytest.raises(cluster.ClusterError, match="runs other grading code.*same checkout"):
        judge_all(workspace, submitted, 1, LIMITS, in_process)


def test_a_worker_from_another_checkout_stops_the_run_before_anything_is_sent(in_process, tmp_path, notebooks,
                                                                            monkeypatch):
    """Its grading code may be the same while its feedback template is not: the pages it renders
    would differ from local ones."""
    workspace, submitted = submitted_class(tmp_path, notebooks.release, ["ada"])
    real = cluster.worker_identity
    monkeypatch.setattr(cluster, "worker_identity", lambda limits: {**real(limits), "checkout_sha": "0" * 64})
    monkeypatch.setattr(cluster, "grade_remote", StandIn())
    with pytest.raises(cluster.ClusterError, match="runs other grading code.*same checkout"):
        judge_all(workspace, submitted, 1, LIMITS, in_process)
    assert not SENT and not workspace.verdicts.exists()


def test_an_unreachable_scheduler_stops_the_run_with_one_line(tmp_path, notebooks, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    workspace, submitted = submitted_class(tmp_path, notebooks.release, ["ada"])
    with pytest.raises(cluster.ClusterError) as stopped:
        judge_all(workspace, submitted, 1, LIMITS, "tcp://127.0.0.1:9")
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in str(stopped.value)
    assert "\n" not in str(stopped.value)
    assert not workspace.verdicts.exists()


# ---------------------------------------------------------------------------------------------
# A real cluster: `dask scheduler` and `dask worker` processes on 127.0.0.1
# ---------------------------------------------------------------------------------------------

WORKER_ENV = {**tool_env(), "PYTHONPATH": str(paths.REPO)}  # `dask worker` does not put its folder on the path


class Cluster:
    """A scheduler and its workers, each in a process group of its own (so a worker dies whole,
    with the processes Dask starts for it)."""

    def __init__(self, folder: Path):
        self.folder, self.workers = folder, []
        scheduler_file = folder / "scheduler.json"
        self.scheduler = self._start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                     "--scheduler-file", str(scheduler_file))
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written whole, but give it its moment
        self.address = json.loads(scheduler_file.read_text())["address"]

    def _start(self, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{args[0]}-{len(self.workers)}.log", "ab")
        with log:
            return subprocess.Popen([str(Path(sys.executable).parent / "dask"), *args], cwd=paths.REPO,
                                    env=WORKER_ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_worker(self) -> None:
        self.workers.append(self._start("worker", self.address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                                        "--local-directory", str(self.folder / f"worker-{len(self.workers)}")))

    def connected(self) -> int:
        from distributed import Client

        with Client(self.address, timeout=10, set_as_default=False) as client:
            return len(client.nthreads())

    def wait_for_workers(self, count: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.connected() != count:
            assert time.monotonic() < deadline, f"{count} workers did not connect: see {self.folder}"
            time.sleep(0.5)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # gone already
            pass
        process.wait()

    def close(self) -> None:
        for process in [*self.workers, self.scheduler]:
            self.kill(process)


@contextmanager
def dask_cluster(folder: Path, workers: int):
    started = Cluster(folder)
    try:
        for _ in range(workers):
            started.start_worker()
        started.wait_for_workers(workers)
        yield started
    finally:
        started.close()


@pytest.fixture(scope="module")
def dask(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("dask"), workers=2) as started:
        yield started


def saved_verdicts(out: Path) -> dict[str, Path]:
    folder = Workspace(out).verdicts / paths.ASSIGNMENT
    return {p.parent.name: p for p in folder.glob(f"*/{NOTEBOOK_ID}.json")} if folder.is_dir() else {}


def when_saved(out: Path, count: int, then) -> threading.Thread:
    """Call `then()` once `count` verdicts are saved in the workspace at `out` (in a thread)."""
    def watch():
        deadline = time.monotonic() + 600
        while len(saved_verdicts(out)) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def points(out: Path) -> dict[str, dict[str, float]]:
    return {sid: {test: score for test, (score, _) in tests.items()} for sid, tests in by_test(out).items()}


@pytest.fixture(scope="module")
def sample(dask, tmp_path_factory) -> Path:
    """The sample class graded on the cluster; one worker is killed (SIGKILL, its whole process
    group) once the first verdict is saved, and a fresh one joins after the run."""
    out = tmp_path_factory.mktemp("sample")
    killed = []
    watcher = when_saved(out, 1, lambda: killed.append((Cluster.kill(dask.workers[0]), len(saved_verdicts(out)))))
    rows = grade(None, out, jobs=2, scheduler=dask.address)
    watcher.join(5)
    assert killed and killed[0][1] < len(EXPECTED), "the worker was killed while the class was being graded"
    assert sorted(r.student_id for r in rows) == sorted(EXPECTED)
    time.sleep(0.5)  # a killed kernel's processes are reaped asynchronously
    assert not sandbox_processes(), "a sandbox outlived its killed worker"
    dask.start_worker()
    dask.wait_for_workers(2)
    return out


@pytest.mark.slow
def test_the_sample_class_gets_the_points_local_grading_gives(sample):
    """EXPECTED is what local grading gives (test_grading.py pins it), one worker killed or not."""
    assert points(sample) == EXPECTED
    with open(sample / "grades.csv", newline="", encoding="utf-8") as f:
        students = [row["student_id"] for row in csv.DictReader(f)]
    assert sorted(students) == sorted(EXPECTED), "one gradebook row per student, none twice"
    for sid, path in saved_verdicts(sample).items():
        verdict = Verdict.load(path)
        assert (verdict.isolation, verdict.grading_sha) == ("bubblewrap", grading_sha(Limits())), sid


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_an_unreachable_scheduler_stops_the_cli_and_a_rerun_resumes(dask, sample, capsys):
    again = ["ada_complete", "dev_classic_mistakes"]
    for sid in again:
        saved_verdicts(sample)[sid].unlink()
    kept = {sid: path.stat().st_mtime_ns for sid, path in saved_verdicts(sample).items()}
    grades = (sample / "grades.csv").read_bytes()
    result = run_cli("grade", "--assignment", paths.ASSIGNMENT, "--out", str(sample), "--scheduler",
                     f"tcp://127.0.0.1:{unused_port()}")
    assert result.returncode == 2, result.stdout + result.stderr
    stopped = [line for line in result.stderr.splitlines() if "grading stopped" in line]
    assert len(stopped) == 1 and "cannot reach the Dask scheduler" in stopped[0], result.stderr
    assert "Traceback" not in result.stderr
    assert {sid: p.stat().st_mtime_ns for sid, p in saved_verdicts(sample).items()} == kept, "nothing half-written"
    assert not list(Workspace(sample).verdicts.rglob("*.tmp"))
    assert (sample / "grades.csv").read_bytes() == grades
    capsys.readouterr()
    grade(None, sample, jobs=2, scheduler=dask.address)
    assert f"{len(kept)} submissions already judged (resuming); {len(again)} to run" in capsys.readouterr().out
    assert {sid: p.stat().st_mtime_ns for sid, p in saved_verdicts(sample).items() if sid in kept} == kept
    assert points(sample) == EXPECTED


@pytest.mark.slow
def test_a_lost_scheduler_stops_the_run_and_keeps_what_was_saved(sample, tmp_path):
    again = ["ben_untouched", "cleo_first_half", "eve_always_equal"]
    for sid in again:
        saved_verdicts(sample)[sid].unlink()
    with dask_cluster(tmp_path, workers=1) as own:
        watcher = when_saved(sample, len(EXPECTED) - len(again) + 1, lambda: Cluster.kill(own.scheduler))
        with pytest.raises(cluster.ClusterError, match="lost the connection to the Dask scheduler.*grade again to resume"):
            grade(None, sample, jobs=2, scheduler=own.address)
        watcher.join(5)
    assert len(saved_verdicts(sample)) == len(EXPECTED) - len(again) + 1, "the verdict that came back is kept"


# The hostile class's own tests (test_hostile.py), on the class graded on the cluster.
@pytest.fixture(scope="module")
def graded(dask, sample, tmp_path_factory) -> hostile_tests.Graded:
    """After the sample class: its fixture brings the cluster back to two workers."""
    if not isolation_available():
        pytest.skip("bubblewrap namespaces are not available: the WEAKER mode is not meant to stop these")
    return hostile_tests.grade_hostile_class(tmp_path_factory.mktemp("hostile"), scheduler=dask.address)


slow = pytest.mark.slow
test_hostile_batch_completes = slow(hostile_tests.test_the_batch_completes_with_one_row_per_submission)
test_hostile_points = slow(hostile_tests.test_every_submission_gets_exactly_the_points_it_earned)
test_hostile_told_why = slow(hostile_tests.test_every_submission_is_told_why)
test_hostile_flags = slow(hostile_tests.test_attacks_are_flagged_and_damaged_files_are_not)
test_hostile_sandboxed = slow(hostile_tests.test_every_notebook_ran_in_the_sandbox)
test_hostile_course_unchanged = slow(hostile_tests.test_the_course_folder_is_unchanged_apart_from_its_records)
test_hostile_repository_unchanged = slow(hostile_tests.test_the_repository_is_unchanged)
test_hostile_nothing_extracted = slow(hostile_tests.test_nothing_is_extracted_outside_the_scratch_folder)
test_hostile_no_process_survives = slow(hostile_tests.test_no_sandboxed_process_survives)
test_hostile_no_connection = slow(hostile_tests.test_no_connection_reaches_the_listener)
test_hostile_floods_not_kept = slow(hostile_tests.test_output_floods_are_not_kept)
test_hostile_names_not_html = slow(hostile_tests.test_student_chosen_names_are_not_html_in_feedback)
