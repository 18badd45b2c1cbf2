"""Properties of the sandbox (grader.grading.sandbox.run_notebook), checked on tiny notebooks.

Each test runs a real kernel: what it can see, reach and use; what happens when a cell hangs,
crashes, floods or leaves processes behind; and how probe results come back (never pickle).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
import torch

import grader.grading.sandbox as sandbox
from grader import paths
from grader.grading.plan import Check
from grader.grading.sandbox import SANDBOX_UID, WEAK, Limits, run_notebook
from hostile.attacks import SWISH_HANGS
from hostile.corpus import answers, release
from hostile.observe import Listener, host_ip, sandbox_processes

# Kernels, sandboxes or nbgrader commands: minutes, so only in `make test`.
pytestmark = pytest.mark.slow

isolated = pytest.mark.skipif(not sandbox.isolation_available(), reason="bubblewrap namespaces are not available here")
LIMITS = Limits(cell_timeout_s=5, notebook_timeout_s=120, memory_bytes=2 * 2**30, processes=64,
                file_bytes=2**20, output_chars=10_000, tmp_bytes=32 * 2**20)
REPORT = "import json\nprint(json.dumps({}))"  # a cell that prints a dict of facts as JSON


def run(tmp_path: Path, *cells: str, probes=(), limits: Limits = LIMITS, slot: int = 0):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    path = tmp_path / "submission.ipynb"
    nbformat.write(nb, path)
    return run_notebook(path, list(probes), limits, slot=slot)


def printed(result, position: int = -1) -> str:
    return "".join(o.get("text", "") for o in result.cells[position]["outputs"] if o["output_type"] == "stream")


def facts(result, position: int = -1) -> dict:
    return json.loads(printed(result, position).strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# What the kernel can see and reach
# ---------------------------------------------------------------------------------------------


@isolated
def test_kernel_cannot_see_the_repository_the_course_or_the_graders_secrets(tmp_path, monkeypatch):
    course = tmp_path / "course"
    (course / "source").mkdir(parents=True)
    (course / "gradebook.db").write_text("the gradebook")
    monkeypatch.setenv("W3D4_GRADER_TOKEN", "s3cret-token")
    hidden = [str(paths.SOLUTIONS), str(paths.GRADER), str(paths.REPO / ".git"), str(paths.REPO / paths.SOURCE_DIR),
              str(course), str(course / "gradebook.db"), "/etc/shadow", "/etc/passwd", "/var", "/run"]
    result = run(tmp_path, f"""
import glob, json, os, sys
found = {{path: os.path.exists(path) for path in {hidden!r}}}
writable = {{}}
for folder in (sys.prefix, "/usr", "/etc", "/"):
    try:
        open(os.path.join(folder, "w3d4_probe"), "w").close()
        writable[folder] = True
    except OSError:
        writable[folder] = False
home = {str(Path.home())!r}
print(json.dumps({{"found": found, "env": dict(os.environ), "writable": writable, "uid": os.getuid(),
                  "grader_files": glob.glob("/tmp/*/grader/*"), "home": os.listdir(home) if os.path.isdir(home) else []}}))
""")
    seen = facts(result)
    assert not any(seen["found"].values()), {p for p, there in seen["found"].items() if there}
    # The grader's home shows at most the way to a Python installation that lives inside it.
    on_the_way = {Path(p).relative_to(Path.home()).parts[0] for p in (sys.prefix, sys.base_prefix)
                  if Path(p).is_relative_to(Path.home())}
    assert set(seen["home"]) <= on_the_way, seen["home"]
    assert "W3D4_GRADER_TOKEN" not in seen["env"] and "s3cret-token" not in json.dumps(seen["env"])
    # Only the clean environment, plus what bwrap (PWD) and ipykernel (colours, pagers) set themselves.
    added_by_tools = {"PWD", "CLICOLOR", "CLICOLOR_FORCE", "PAGER", "GIT_PAGER", "FORCE_COLOR", "TERM",
                      "PYDEVD_USE_FRAME_EVAL"}
    assert set(seen["env"]) <= set(sandbox.sandbox_env("/tmp")) | added_by_tools
    # The system and the Python installation are read-only; `/` and /etc are the sandbox's own
    # folders, which only a root grader's unprivileged kernel user cannot write either.
    assert not seen["writable"][sys.prefix] and not seen["writable"]["/usr"]
    if os.geteuid() == 0:
        assert not any(seen["writable"].values()), seen["writable"]
    # The probe runner, the weights run and the pristine checks library are visible (they must be),
    # read-only below.
    expected = {"kernel_probe.py", "kernel_audit.py", "limits.py", "trusted.py", "weights_run.py",
                paths.CHECKS_PACKAGE.name}
    assert {Path(p).name for p in seen["grader_files"]} == expected
    if os.geteuid() == 0:
        assert seen["uid"] == SANDBOX_UID, "a root grader runs the kernel as an unprivileged user of its own"


@isolated
def test_the_grader_folder_is_read_only_and_tmp_is_bounded(tmp_path):
    result = run(tmp_path, """
import glob, json, os
refused = []
# every file, and a new file in every folder, of the grader folder
targets = [p for p in glob.glob("/tmp/*/grader/**", recursive=True) if os.path.isfile(p)]
targets += [os.path.join(p, "new.py") for p in glob.glob("/tmp/*/grader/**/", recursive=True)]
for path in targets:
    try:
        with open(path, "a") as f:
            f.write("tampered")
    except OSError as error:
        refused.append(path)
written = 0
try:
    for i in range(64):
        with open(f"/tmp/fill{i}", "wb") as f:
            f.write(b"x" * 2**20)
        written += 1
except OSError as error:
    stopped = str(error)
print(json.dumps({"refused": len(refused), "total": len(targets), "written_mb": written}))
""", limits=replace(LIMITS, **{"file_bytes": 8 * 2**20}))
    seen = facts(result)
    modules = len(list(paths.CHECKS_PACKAGE.glob("*.py")))
    assert seen["refused"] == seen["total"] == 5 + modules + 2  # 5 files, the library, 2 folders
    assert seen["written_mb"] < 40, "the in-memory /tmp is bounded by Limits.tmp_bytes (32 MiB here)"


@isolated
def test_the_network_namespace_has_no_route_out(tmp_path):
    listener = Listener()
    try:
        result = run(tmp_path, f"""
import json, socket
outcomes = {{}}
for host in ("127.0.0.1", {host_ip()!r}, "8.8.8.8"):
    try:
        socket.create_connection((host, {listener.port}), timeout=2).close()
        outcomes[host] = "connected"
    except OSError as error:
        outcomes[host] = str(error)
try:
    socket.getaddrinfo("example.com", 80)
    outcomes["dns"] = "resolved"
except OSError as error:
    outcomes["dns"] = str(error)
routes = open("/proc/net/route").read().splitlines()[1:]
print(json.dumps({{"outcomes": outcomes, "routes": routes, "interfaces": [n for _, n in socket.if_nameindex()]}}))
""")
    finally:
        listener.close()
    seen = facts(result)
    assert "connected" not in seen["outcomes"].values() and seen["outcomes"]["dns"] != "resolved", seen["outcomes"]
    assert seen["routes"] == [] and seen["interfaces"] == ["lo"]
    assert listener.peers == []


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------


def test_rlimits_are_in_force_and_cannot_be_raised(tmp_path):
    result = run(tmp_path, """
import json, resource
names = ["RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE"]
limits = {name: resource.getrlimit(getattr(resource, name)) for name in names}
try:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard * 2))
    raised = True
except (ValueError, OSError):
    raised = False
try:
    hog = bytearray(3 * 2**30)
    allocated = True
except MemoryError:
    allocated = False
try:
    with open("big.bin", "wb") as f:
        f.write(b"x" * 2 * 2**20)
    big_file = True
except OSError:
    big_file = False
print(json.dumps({"limits": limits, "raised": raised, "allocated": allocated, "big_file": big_file}))
""")
    seen = facts(result)
    for name, value in LIMITS.rlimits().items():
        assert seen["limits"][name] == [value, value], name
    assert not seen["raised"] and not seen["allocated"] and not seen["big_file"]


BUSY_LOOP = """
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    pass
"""


def test_a_hanging_or_crashing_cell_restarts_the_kernel_and_replays_earlier_cells(tmp_path):
    result = run(tmp_path, "x = 41", BUSY_LOOP, "import os\nos._exit(1)", "print(x + 1)",
                 limits=replace(LIMITS, **{"cell_timeout_s": 3}))
    assert [c["status"] for c in result.cells] == ["ok", "timeout", "died", "ok"]
    assert printed(result).strip() == "42"
    assert (result.restarts, result.retries) == (2, 2)  # each was tried twice before it counted


# Slow or crashing the first time only, as a cell can be on an overloaded machine: the marker file in
# the notebook's folder survives the kernel restart, so the second try is quick.
FIRST_TRY_SLOW = """
import os, time
if not os.path.exists("tried"):
    open("tried", "w").close()
    time.sleep(30)
y = 1
"""
FIRST_TRY_CRASHES = """
import os
if not os.path.exists("crashed"):
    open("crashed", "w").close()
    os._exit(1)
z = 2
"""


def test_a_cell_that_fails_only_once_is_run_again_and_counts(tmp_path):
    result = run(tmp_path, "x = 41", FIRST_TRY_SLOW, FIRST_TRY_CRASHES, "print(x + y + z - 2)",
                 limits=replace(LIMITS, **{"cell_timeout_s": 3}))
    assert [c["status"] for c in result.cells] == ["ok", "ok", "ok", "ok"]
    assert printed(result).strip() == "42"
    assert (result.restarts, result.retries) == (0, 2)


def test_the_notebook_deadline_stops_a_long_notebook(tmp_path):
    result = run(tmp_path, *["import time\ntime.sleep(1)"] * 6,
                 limits=replace(LIMITS, **{"notebook_timeout_s": 2}))
    assert result.timed_out and len(result.cells) < 6


@isolated
def test_processes_left_behind_are_killed_with_the_kernel(tmp_path):
    assert not sandbox_processes("314159"), "left over from an earlier run"
    result = run(tmp_path, """
import subprocess, sys
subprocess.Popen(["sleep", "314159"], start_new_session=True)
daemon = '''
import os, signal, time
if os.fork():
    os._exit(0)
os.setsid()
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(s, signal.SIG_IGN)
while True:  # 314159
    time.sleep(1)
'''
subprocess.Popen([sys.executable, "-c", daemon], start_new_session=True)
print("started")
""", slot=5)
    assert printed(result).strip() == "started"
    assert not sandbox_processes("314159")


FORK_FLOOD = """
import os, time
hog = bytearray(512 * 2**20)  # children that take a while to exit, as copies of a kernel with torch do
children = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        children += 1
except OSError:
    pass
print(children)
"""


@isolated
@pytest.mark.skipif(os.geteuid() != 0, reason="the process limit is per sandbox user only when the grader is root")
def test_a_fork_flood_is_bounded_and_does_not_spoil_the_next_kernel(tmp_path):
    flood = run(tmp_path, FORK_FLOOD, slot=6)
    assert 0 < int(printed(flood)) < LIMITS.processes
    after = run(tmp_path, "print('next student')", slot=6)
    assert [c["status"] for c in after.cells] == ["ok"] and printed(after).strip() == "next student"


def test_output_is_capped_per_cell(tmp_path):
    result = run(tmp_path, """
for _ in range(5):
    print("x" * 2**20)
handle = display("small", display_id=True)
handle.update("z" * 2**21)
""", "print('next cell')")
    kept = json.dumps(result.cells[0]["outputs"])
    assert len(kept) < LIMITS.output_chars + 2_000
    assert "output cut by the grader" in kept
    assert printed(result).strip() == "next cell"


def test_the_weaker_fallback_still_runs_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "isolation_available", lambda: False)
    result = run(tmp_path, "import json, resource\nprint(json.dumps(resource.getrlimit(resource.RLIMIT_AS)))")
    assert result.isolation == WEAK and "WEAKER" in result.isolation
    assert json.loads(printed(result)) == [LIMITS.memory_bytes] * 2


# ---------------------------------------------------------------------------------------------
# Probes
# ---------------------------------------------------------------------------------------------


def _imports() -> str:
    return next(c.source for c in release().cells if c.metadata["nbgrader"]["grade_id"] == "code-004")


def test_probe_results_come_back_as_plain_data_without_pickle(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the grader unpickled something")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    probe = Check("swish-1", "test_swish", "swish", ("swish", "SiLU")).probe_request(seed=7)
    result = run(tmp_path, _imports(), answers()["swish"], probes=[probe])
    assert result.probes["swish-1"]["ok"], result.probes
    data = result.probes["swish-1"]["data"]
    assert any(isinstance(v, torch.Tensor) for v in data.values())


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["W3D4_MARKER"]),))


def test_probe_files_that_are_not_plain_data_are_refused(tmp_path, monkeypatch):
    marker = tmp_path / "unpickled"
    monkeypatch.setenv("W3D4_MARKER", str(marker))
    probes = tmp_path / "out" / "probes"
    probes.mkdir(parents=True)
    (probes / "evil.json").write_text(json.dumps({"ok": True, "data": {"out": {"__tensor__": "x"}}}))
    (probes / "evil.safetensors").write_bytes(pickle.dumps(_Payload()))  # a pickle posing as tensors
    (probes / "huge.json").write_text(" " * (sandbox.MAX_PROBE_JSON + 1))
    (probes / "other.pkl").write_bytes(pickle.dumps(_Payload()))
    results = sandbox._load_probes(tmp_path / "out")
    assert set(results) == {"evil", "huge"}
    assert all(not r["ok"] and "unreadable probe result" in r["error"] for r in results.values())
    assert not marker.exists()


def test_a_hanging_check_costs_only_itself(tmp_path):
    probes = [Check("swish-1", "test_swish", "swish", ("swish", "SiLU")).probe_request(seed=7),
              Check("sin-1", "test_sinusoidal_embeddings", "sinusoidal_embeddings", ("SinusoidalPositionEmbeddings",))
              .probe_request(seed=7)]
    result = run(tmp_path, _imports(), SWISH_HANGS, answers()["sinusoidal_embeddings"], probes=probes,
                 limits=replace(LIMITS, **{"cell_timeout_s": 10}))
    assert result.probes["swish-1"] == {"ok": False, "error": "The check timed out in your notebook's kernel."}
    assert result.probes["sin-1"]["ok"], result.probes["sin-1"]
    assert result.restarts == 1


def test_the_kernel_notes_the_submissions_reaches_outside_its_folder(tmp_path):
    """kernel_audit.py's hook: a cell's glob, open and listing outside the folder are noted, even
    when there is nothing to find; its own folder, torch's and matplotlib's reads, imports and the
    grader's probes are not; the kernel starts as ipykernel's launcher would."""
    probe = Check("swish-1", "test_swish", "swish", ("swish", "SiLU")).probe_request(seed=7)
    result = run(tmp_path, _imports(), answers()["swish"], """
import glob, os, sys
open("mine.txt", "w").write("inside the folder")
import matplotlib.pyplot as plt
plt.plot([1, 2]); plt.savefig("figure.png"); plt.close("all")
print(glob.glob("/work/*/solutions/*.py"), os.listdir("/"))
try:
    open("../../gradebook.db")
except OSError as error:
    print(type(error).__name__)
print(sys.argv[0].endswith("ipykernel_launcher.py"), sys.path[0] != os.path.dirname(sys.argv[0]))
""", probes=[probe])
    assert result.probes["swish-1"]["ok"] and result.probes["swish-1"]["unusual"] == []
    assert printed(result).strip().splitlines()[-1] == "True True"
    assert [(r["event"], r["path"]) for r in result.accesses] == [
        ("glob.glob/2", "/work/*/solutions/*.py"), ("os.listdir", "/"), ("open", "../../gradebook.db")]
    assert result.folder and result.accesses[-1]["resolved"] == str(Path(result.folder).parent.parent / "gradebook.db")
    assert result.probe_status == {"swish-1": "ok"}


def test_an_environment_under_tmp_is_not_hidden_by_the_sandboxes_own_tmp(monkeypatch, tmp_path):
    """A clone (and its .venv) under /tmp: the Python environment must be bound after the
    sandbox's empty /tmp, or the kernel cannot start."""
    venv = "/tmp/some-clone/.venv"
    monkeypatch.setattr(sys, "prefix", venv)
    command = sandbox.bwrap_command(tmp_path / "grader", tmp_path / "job", uid=None, tmp_bytes=2**20)
    tmpfs = command.index("--tmpfs")
    assert command[tmpfs + 1] == "/tmp"
    binds = [i for i in range(len(command) - 2) if command[i] == "--ro-bind" and command[i + 1] == venv]
    assert binds and all(i > tmpfs for i in binds), "the environment is bound before /tmp is replaced"
