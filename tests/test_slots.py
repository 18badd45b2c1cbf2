"""Sandbox slots held machine-wide (grader/grading/slots.py), and orphaned sandboxes reaped
(grader/grading/sandbox/__init__.py, reap_orphans): what lets several Dask workers, or a worker and
a local run, share one machine, and a killed worker leave nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from grader import paths
from grader.grading import slots
from grader.grading.sandbox import isolation_available
from grader.grading.slots import machine_slot


def test_threads_never_share_a_slot():
    held, free = threading.Event(), threading.Event()
    seen = []

    def hold():
        with machine_slot() as slot:
            seen.append(slot)
            held.set()
            free.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    with machine_slot() as mine:
        assert mine != seen[0]
    free.set()
    thread.join()


def test_a_killed_process_gives_its_slot_back():
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom grader.grading.slots import machine_slot\n"
                               "with machine_slot() as slot:\n    print(slot, flush=True)\n    time.sleep(60)"],
                              cwd=paths.REPO, stdout=subprocess.PIPE, text=True)
    try:
        theirs = int(holder.stdout.readline())
        assert slots._try_lock(slots.lock_dir(), theirs) is None, "held while its process lives"
        holder.kill()
        holder.wait()
        fd = slots._try_lock(slots.lock_dir(), theirs)
        assert fd is not None, "free once its process is gone, even killed"
        os.close(fd)
    finally:
        holder.kill()
        holder.wait()


REAP_MARKER = "/tmp/w3d4-sb-reap-test"


def _bwrap(*args: str) -> list[str]:
    return ["bwrap", "--dev-bind", "/", "/", "--unshare-pid", "--setenv", "SCRATCH", REAP_MARKER, *args]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not isolation_available(), reason="bubblewrap namespaces are not available")
def test_orphaned_sandboxes_are_reaped_and_live_ones_kept():
    """A worker killed mid-run can leave its sandbox adopted by init; the next run on the machine
    kills it. A sandbox whose grader lives (here: this test) is left alone."""
    from grader.grading.sandbox import reap_orphans

    live = subprocess.Popen(_bwrap("sleep", "60"))
    adopted = subprocess.run(["sh", "-c", " ".join(_bwrap("sleep", "60")) + " >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True, check=True)
    orphan = int(adopted.stdout)
    try:
        time.sleep(0.3)
        assert _alive(orphan) and _alive(live.pid)
        reap_orphans()
        deadline = time.monotonic() + 5
        while _alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(orphan), "an orphaned sandbox survives"
        assert live.poll() is None, "a live grader's sandbox was killed"
    finally:
        live.kill()
        live.wait()
        _kill_reap_test_sandboxes()


def _kill_reap_test_sandboxes() -> None:
    """Every process of this test, the sandboxed `sleep`s inside bwrap included (killing bwrap does
    not end them): left alive, they would count as sandboxes that outlived a later grading run."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()
                 and REAP_MARKER.encode() in _cmdline(int(p))]
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    raise AssertionError("the reap test's sandboxes would not die")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
