"""How untrusted code runs: one submission, one real Jupyter kernel, inside its own namespaces.

The grader process is the kernel's client (nbclient): it sends the student's cells one by one,
then the probes, and reads the outputs. Only the kernel runs in the sandbox. With bubblewrap
(`bwrap`, Linux) the kernel gets its own mount, PID, network, IPC and UTS namespaces. It sees the
system's read-only /usr, the read-only Python installation, a read-only grader folder (the probe
runner, the weights run and a pristine checks library) and its own job folder (the files a student has beside the
notebook, plus the kernel's sockets), all under an empty /tmp. Not the course, the solutions, the
gradebook, or the notebook file itself. The network namespace has nothing but its own loopback, and
client and kernel talk over Unix sockets in the job folder. When the grader runs as root, the
kernel also drops to an unprivileged user of its own (so the process limit applies to it alone).

The kernel starts through kernel_audit.py, whose audit hook notes where the submission's own code
reaches for files outside its folder (for the integrity flags); it refuses nothing.

rlimits bound CPU time, memory, processes, file size and open files; a per-cell timeout and a
whole-notebook deadline bound the wall time; output is capped per cell. Killing the kernel kills
bwrap, and with it the PID namespace and every process the student started.

Without bubblewrap (macOS, locked-down hosts) the kernel runs as a plain process in a scratch
folder with the same rlimits, timeouts and caps: the verdicts are still computed outside the
kernel, but student code can read whatever the grader's user can read. That mode is reported as
`isolation="none (WEAKER: no namespaces)"` wherever a grade is shown.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from ... import paths

HERE = Path(__file__).resolve().parent
GRADING = HERE.parent
WEAK = "none (WEAKER: no namespaces)"
SANDBOX_UID = 61000  # + job slot, so that each parallel job has a process limit of its own
MAX_PROBE_JSON = 5_000_000
MAX_PROBE_TENSORS = 100_000_000
MAX_AUDIT_BYTES = 1_000_000
AUDIT_LOG = "audit.jsonl"  # in the job's out/ folder: what kernel_audit.py noted
MAX_KERNEL_RESTARTS = 3
LOAD_RETRY_FACTOR = 2  # a cell that timed out or crashed runs once more with this many times the time


@dataclass(frozen=True)
class Limits:
    cell_timeout_s: int = 60
    notebook_timeout_s: int = 600
    cpu_s: int = 600
    memory_bytes: int = 6 * 2**30
    processes: int = 128
    file_bytes: int = 64 * 2**20
    open_files: int = 256
    output_chars: int = 20_000  # per cell, as stored; a 100 MB print is dropped, not kept
    tmp_bytes: int = 256 * 2**20  # the sandbox's /tmp lives in memory, outside RLIMIT_AS: bound it

    def rlimits(self) -> dict[str, int]:
        return {
            "RLIMIT_CPU": self.cpu_s, "RLIMIT_AS": self.memory_bytes, "RLIMIT_NPROC": self.processes,
            "RLIMIT_FSIZE": self.file_bytes, "RLIMIT_NOFILE": self.open_files, "RLIMIT_CORE": 0,
        }


@dataclass
class SandboxResult:
    isolation: str
    seconds: float
    timed_out: bool
    cells: list[dict] = field(default_factory=list)  # {"index", "status", "seconds", "outputs"}
    probes: dict[str, dict] = field(default_factory=dict)
    restarts: int = 0  # after a crash or a hang (twice timed out) of student code
    retries: int = 0  # cells run once more, with more time, after a first timeout or crash
    probe_status: dict[str, str] = field(default_factory=dict)  # check_id -> how its probe cell ended
    accesses: list[dict] = field(default_factory=list)  # the submission's reaches outside its folder (kernel_audit.py)
    folder: str = ""  # the notebook's folder in the sandbox, as the kernel saw it


@functools.cache
def isolation_available() -> bool:
    """True when bubblewrap can create the namespaces here (it may be installed but not allowed)."""
    if not sys.platform.startswith("linux") or shutil.which("bwrap") is None:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        probe = subprocess.run(
            bwrap_command(Path(scratch), Path(scratch), uid=None, tmp_bytes=2**20) + ["/bin/true"],
            capture_output=True, timeout=30,
        )
    return probe.returncode == 0


def _ro_path(path: str) -> list[str]:
    """Bind `path` read-only, creating its parents 0755: bwrap makes them 0700, which an
    unprivileged kernel could not enter."""
    args = []
    for parent in reversed(Path(path).parents[:-1]):
        if str(parent) != "/tmp":  # already there, a sticky 1777 tmpfs that must stay writable
            args += ["--perms", "0755", "--dir", str(parent)]
    return args + ["--ro-bind", path, path]


def _system_binds() -> list[str]:
    """Read-only views of the system folders that Python and its libraries load from."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "fonts"):
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def _python_binds() -> list[str]:
    """Read-only views of the Python installation and the environment (a .venv anywhere, even
    under /tmp: these are bound after the sandbox's own /tmp, which would otherwise hide them)."""
    args = []
    prefixes = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix)} | {sys.base_prefix, sys.prefix}
    for prefix in sorted(p for p in prefixes if not p.startswith("/usr/")):
        args += _ro_path(prefix)
    return args


@functools.cache
def _tmpfs_size_supported() -> bool:
    """bwrap >= 0.8 can bound a tmpfs (`--size`); older ones would refuse the option."""
    help_text = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=30)
    return "--size" in help_text.stdout + help_text.stderr


def bwrap_command(grader_dir: Path, job_dir: Path, uid: int | None, tmp_bytes: int) -> list[str]:
    """The bwrap prefix. The job and grader folders appear at their own paths, so the kernel's
    connection file and socket paths mean the same thing on both sides."""
    namespaces = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if os.geteuid() != 0:
        namespaces.append("--unshare-user")
    # The in-memory /tmp is bounded where bwrap can: files there are memory that RLIMIT_AS does not count.
    tmp_size = ["--size", str(tmp_bytes)] if _tmpfs_size_supported() else []
    command = ["bwrap", *namespaces, "--die-with-parent", "--new-session", *_system_binds(),
               "--perms", "1777", *tmp_size, "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev",
               *_python_binds(), *_ro_path(str(grader_dir)), "--bind", str(job_dir), str(job_dir), "--chdir", str(job_dir)]
    if uid is not None and os.geteuid() == 0:
        return command + ["--", "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
                          "--inh-caps=-all", "--bounding-set=-all"]
    return command + ["--"]


def sandbox_env(home: str) -> dict[str, str]:
    """A clean environment: nothing of the grader's leaks in (tokens, database URLs, paths)."""
    return {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "MPLCONFIGDIR": f"{home}/matplotlib",
        "IPYTHONDIR": f"{home}/ipython",
        "JUPYTER_PLATFORM_DIRS": "1",
        "OMP_NUM_THREADS": "1",  # parallel jobs share the cores; one thread each avoids thrashing
        "MKL_NUM_THREADS": "1",
    }


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel starts inside the sandbox, under the rlimits."""

    def setup(self, prefix: list[str], grader_dir: Path, limits: Limits, uid: int | None, audit_log: Path) -> None:
        self.sandbox_prefix, self.grader_dir, self.sandbox_uid, self.audit_log = prefix, grader_dir, uid, audit_log
        self.limits_json = json.dumps(limits.rlimits())

    def format_kernel_cmd(self, extra_arguments=None) -> list[str]:
        # Called right after the connection file is written (0600, ours): the kernel's user must read it.
        if self.sandbox_uid is not None:
            os.chown(self.connection_file, self.sandbox_uid, self.sandbox_uid)
        # kernel_audit.py notes the submission's reaches outside its folder, then starts ipykernel.
        kernel = [sys.executable, "-E", "-s", str(self.grader_dir / "kernel_audit.py"), str(self.audit_log),
                  "-f", self.connection_file]
        limits = [sys.executable, "-E", "-s", str(self.grader_dir / "limits.py"), self.limits_json, "--"]
        return self.sandbox_prefix + limits + kernel


class CappedClient(NotebookClient):
    """nbclient, keeping at most `limits.output_chars` of output per cell."""

    output_budget: dict[int, int]

    def _within_budget(self, outs, msg, cell_index: int) -> bool:
        spent = self.output_budget.get(cell_index, 0)
        size = len(json.dumps(msg.get("content", {})))
        self.output_budget[cell_index] = spent + size
        if spent + size > self.output_limit:
            if spent <= self.output_limit:
                outs.append(nbformat.v4.new_output("stream", name="stderr", text="... (output cut by the grader)\n"))
            return False
        return True

    def process_message(self, msg, cell, cell_index):
        self._cell = (cell, cell_index)  # for _update_display_id, which is not told the cell
        return super().process_message(msg, cell, cell_index)

    def output(self, outs, msg, display_id, cell_index):
        if not self._within_budget(outs, msg, cell_index):
            return None
        return super().output(outs, msg, display_id, cell_index)

    def _update_display_id(self, display_id, msg):
        # `display(..., display_id=True).update(...)` rewrites an earlier output in place, without
        # going through `output`: it pays from the same budget, or a 100 MB update would be kept.
        cell, cell_index = self._cell
        if self._within_budget(cell.outputs, msg, cell_index):
            super()._update_display_id(display_id, msg)

    def handle_comm_msg(self, outs, msg, cell_index):
        """Widgets are of no use to the grader, and nbclient would keep their state (unbounded) in
        this process: ignore them."""


def _keep(out: dict) -> dict | None:
    """Only text and PNG survive: HTML or JavaScript from a student could run in a grader's browser."""
    kind = out.get("output_type")
    if kind == "stream":
        return {"output_type": "stream", "name": "stdout" if out.get("name") == "stdout" else "stderr",
                "text": str(out.get("text", ""))}
    if kind in ("execute_result", "display_data"):
        data = {k: v for k, v in out.get("data", {}).items() if k in ("text/plain", "image/png") and isinstance(v, str)}
        return {"output_type": "display_data", "data": data, "metadata": {}} if data else None
    if kind == "error":
        return {"output_type": "error", "ename": str(out.get("ename", "Error"))[:200],
                "evalue": str(out.get("evalue", ""))[:2000],
                "traceback": [str(line)[:2000] for line in out.get("traceback", [])[-20:]]}
    return None


def _processes_of(uid: int) -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                found.append(entry.name)
        except OSError:  # gone meanwhile
            pass
    return found


def _wait_until_gone(uid: int, timeout_s: float = 30.0) -> None:
    """Killing the kernel kills its PID namespace, but the processes in it exit asynchronously (a
    fork flood's hundred copies of a kernel take a second or more). Until they are gone they count
    against RLIMIT_NPROC of this slot's user, and the slot's next kernel could not start a thread."""
    deadline = time.monotonic() + timeout_s
    while _processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _orphaned_sandbox(pid: str) -> bool:
    """A bwrap of ours (its folder is a w3d4-sb- scratch folder) that init has adopted."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    if int(stat.rsplit(")", 1)[1].split()[1]) != 1:
        return False
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return Path(os.fsdecode(argv[0])).name == "bwrap" and any(b"/w3d4-sb-" in arg for arg in argv)


def reap_orphans() -> None:
    """Kill the sandboxes of graders that died without stopping them (SIGKILL, a lost cluster
    worker): bwrap's --die-with-parent does not always take the PID namespace's first process
    with it, and that one keeps the kernel alive under a slot's user. Only a bwrap init has
    adopted is touched, so the live runs of other graders on this machine are safe (unless this
    process is init itself, in a container: then nothing is touched)."""
    if os.getpid() == 1:
        return
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and _orphaned_sandbox(entry.name):
                os.kill(int(entry.name), signal.SIGKILL)  # the namespace's first process: all of it goes
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not ours to read
            pass


class Session:
    """One kernel for one notebook; restarted and replayed when student code kills or hangs it."""

    def __init__(self, nb: nbformat.NotebookNode, job_dir: Path, grader_dir: Path, prefix: list[str], env: dict,
                 limits: Limits, uid: int | None):
        self.nb, self.job_dir, self.env = nb, job_dir, env
        self.grader_dir, self.prefix, self.limits, self.uid = grader_dir, prefix, limits, uid
        self.client = CappedClient(
            nb, timeout=limits.cell_timeout_s, allow_errors=True, interrupt_on_timeout=False,
            record_timing=False, shutdown_kernel="immediate", resources={"metadata": {"path": str(job_dir)}},
        )
        self.client.output_budget, self.client.output_limit = {}, limits.output_chars
        self.ok_cells: list[int] = []
        self.restarts = 0
        self.retries = 0  # cells run again after a timeout

    def start(self) -> None:
        # A new manager each time: nbclient drops the old one when it shuts a kernel down.
        km = SandboxKernelManager(kernel_name="python3", transport="ipc", ip=str(self.job_dir / "kernel"),
                                  connection_file=str(self.job_dir / "kernel.json"))
        km.setup(self.prefix, self.grader_dir, self.limits, self.uid, self.job_dir / "out" / AUDIT_LOG)
        self.client.km = km
        # The kernel's own stdout and stderr (not the cells' output, which travels as messages) are
        # of no use to the grader, and a student could flood them.
        self.client.start_new_kernel(env=self.env, cwd=str(self.job_dir), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.client.start_new_kernel_client()

    def stop(self) -> None:
        try:
            self.client._cleanup_kernel()
        except Exception:  # already dead, or never started
            pass
        if self.uid is not None:
            _wait_until_gone(self.uid)

    def run(self, index: int, second_try: bool = False) -> str:
        """Execute cell `index`: "ok", "error", "timeout" or "died".

        A cell that times out or kills the kernel gets one more try in a fresh kernel (after the
        cells that worked are replayed), with twice the time: on a busy machine a slow cell is not
        a hanging one, and must not cost a point. Code that really hangs or crashes does it twice."""
        cell = self.nb.cells[index]
        self.client.timeout = self.limits.cell_timeout_s * (LOAD_RETRY_FACTOR if second_try else 1)
        try:
            self.client.execute_cell(cell, index)
        except (CellTimeoutError, DeadKernelError) as stopped:
            self._restart()
            if second_try:
                return "timeout" if isinstance(stopped, CellTimeoutError) else "died"
            self.retries += 1  # this restart is not the student's doing: it does not count as one
            return self.run(index, second_try=True)
        except CellExecutionError:
            return "error"
        if any(out.get("output_type") == "error" for out in cell.outputs):
            return "error"
        self.ok_cells.append(index)
        return "ok"

    @property
    def exhausted(self) -> bool:
        """Whether student code has used up its kernel restarts (those for second tries aside)."""
        return self.restarts - self.retries >= MAX_KERNEL_RESTARTS

    def _restart(self) -> None:
        """A fresh kernel, replaying the cells that worked: one cell that kills or hangs the kernel
        must not cost the student everything before it."""
        self.stop()
        if self.exhausted:
            raise RuntimeError("the kernel died too often")
        self.restarts += 1
        self.start()
        replay, self.ok_cells = self.ok_cells, []
        for index in replay:
            saved = self.nb.cells[index].outputs
            self.run(index)
            self.nb.cells[index].outputs = saved


def prepare_job(root: Path, lesson: paths.Lesson = paths.LESSONS[paths.ASSIGNMENT]) -> tuple[Path, Path]:
    """Lay out the grader folder (read-only: probe runner, limits wrapper, weights run and a
    pristine checks library) and the job folder (the files a student keeps beside the notebook)
    under `root`."""
    grader_dir, job_dir = root / "grader", root / "job"
    grader_dir.mkdir(parents=True)
    (job_dir / "out" / "probes").mkdir(parents=True)
    for source in (HERE / "kernel_probe.py", HERE / "kernel_audit.py", HERE / "limits.py", GRADING / "trusted.py",
                   GRADING / "weights_run.py"):
        shutil.copyfile(source, grader_dir / source.name)
    _copy_package(paths.CHECKS_PACKAGE, grader_dir / paths.CHECKS_PACKAGE.name)
    release = paths.REPO / lesson.release_dir
    for support in (paths.TESTS_MODULE, *(m for m in lesson.modules if m.suffix == ".py")):
        shutil.copyfile(release / support.name, job_dir / support.name)
    _copy_package(release / paths.CHECKS_PACKAGE.name, job_dir / paths.CHECKS_PACKAGE.name)
    for path in grader_dir.rglob("*"):
        path.chmod(0o555 if path.is_dir() else 0o444)
    grader_dir.chmod(0o555)
    return grader_dir, job_dir


def _copy_package(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))


def _load_probes(out: Path) -> dict[str, dict]:
    """Read the probe results as plain data: JSON and safetensors only, with size caps."""
    from safetensors.torch import load_file

    results: dict[str, dict] = {}
    for path in sorted((out / "probes").glob("*.json")):
        try:
            if path.stat().st_size > MAX_PROBE_JSON:
                raise ValueError("probe result too large")
            result = json.loads(path.read_text(encoding="utf-8"))
            tensor_file = path.with_suffix(".safetensors")
            tensors = {}
            if tensor_file.is_file():
                if tensor_file.stat().st_size > MAX_PROBE_TENSORS:
                    raise ValueError("probe tensors too large")
                tensors = load_file(str(tensor_file))
            results[path.stem] = _resolve_tensors(result, tensors)
        except Exception as error:  # malformed output is the student's code's doing: a failed check
            results[path.stem] = {"ok": False, "error": f"unreadable probe result ({type(error).__name__})"}
    return results


def _load_accesses(log: Path) -> list[dict]:
    """kernel_audit.py's notes, as plain data (the student's code could have written the file too)."""
    try:
        with open(log, "rb") as f:
            text = f.read(MAX_AUDIT_BYTES).decode("utf-8", "replace")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append({str(k): str(v)[:500] for k, v in record.items() if isinstance(v, str)})
    return found


def _resolve_tensors(value, tensors: dict):
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return tensors[value["__tensor__"]]
        return {k: _resolve_tensors(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_tensors(v, tensors) for v in value]
    return value


def _run_probes(session: Session, probes: list[dict], probe_dir: Path, runner: Path) -> dict[str, str]:
    """One execution per probe, so that one hanging forward pass costs only its own check. Returns
    how each probe's cell ended ("ok", "error", "timeout" or "died"); probes never run are absent."""
    statuses: dict[str, str] = {}
    for probe in probes:
        result = probe_dir / f"{probe['check_id']}.json"
        result.unlink(missing_ok=True)  # a file the student's code left there must not count
        code = f"__import__('runpy').run_path({str(runner)!r})['run_probe'](globals(), {json.dumps(probe)!r}, {str(probe_dir)!r})"
        session.nb.cells.append(nbformat.v4.new_code_cell(code))
        try:
            status = session.run(len(session.nb.cells) - 1)
        except RuntimeError:
            status = "died"
        statuses[probe["check_id"]] = status
        if status != "ok" and not result.exists():
            reason = {"timeout": "timed out in", "died": "crashed"}.get(status, "could not run in")
            result.write_text(json.dumps({"ok": False, "error": f"The check {reason} your notebook's kernel."}))
        if status == "died" and session.exhausted:
            break
    return statuses


def run_notebook(
    notebook: Path, probes: list[dict], limits: Limits = Limits(), slot: int = 0, skip_cells: tuple[int, ...] = (),
    lesson: paths.Lesson = paths.LESSONS[paths.ASSIGNMENT],
) -> SandboxResult:
    """Execute `notebook` (except the cells in `skip_cells`) and then `probes` in a sandboxed kernel."""
    isolated = isolation_available()
    if isolated:
        reap_orphans()  # they would hold a slot user's processes, which the next kernel waits for
    nb = nbformat.read(notebook, as_version=4)
    with tempfile.TemporaryDirectory(prefix="w3d4-sb-") as scratch:
        grader_dir, job_dir = prepare_job(Path(scratch), lesson)
        uid = SANDBOX_UID + slot if isolated and os.geteuid() == 0 else None
        if uid is not None:
            for path in [job_dir, *job_dir.rglob("*")]:
                os.chown(path, uid, uid)
        if isolated:
            prefix, env = bwrap_command(grader_dir, job_dir, SANDBOX_UID + slot, limits.tmp_bytes), sandbox_env("/tmp")
        else:
            (Path(scratch) / "home").mkdir()
            prefix, env = [], sandbox_env(str(Path(scratch) / "home"))
        session = Session(nb, job_dir, grader_dir, prefix, env, limits, uid)
        start = time.perf_counter()
        cells: list[dict] = []
        timed_out = False
        probe_status: dict[str, str] = {}
        try:
            session.start()
            for index, cell in enumerate(list(nb.cells)):
                if cell.cell_type != "code" or index in skip_cells:
                    continue
                if time.perf_counter() - start > limits.notebook_timeout_s:
                    timed_out = True
                    break
                began = time.perf_counter()
                try:
                    status = session.run(index)
                except RuntimeError:  # too many restarts: stop running this notebook
                    status = "died"
                cells.append({"index": index, "status": status, "seconds": round(time.perf_counter() - began, 3),
                              "outputs": [o for o in map(_keep, cell.outputs) if o is not None]})
                if status == "died" and session.exhausted:
                    break
            else:
                probe_status = _run_probes(session, probes, job_dir / "out" / "probes", grader_dir / "kernel_probe.py")
        finally:
            session.stop()
        return SandboxResult(
            isolation="bubblewrap" if isolated else WEAK,
            seconds=time.perf_counter() - start,
            timed_out=timed_out,
            cells=cells,
            probes=_load_probes(job_dir / "out"),
            restarts=session.restarts - session.retries,
            retries=session.retries,
            probe_status=probe_status,
            accesses=_load_accesses(job_dir / "out" / AUDIT_LOG),
            folder=str(job_dir),
        )
