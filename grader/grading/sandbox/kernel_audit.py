"""Runs INSIDE the sandbox as the kernel's entry point: `python kernel_audit.py LOG -f CONNECTION`.

It installs an audit hook (PEP 578, which code in the process cannot remove) that notes where the
submission's own code reaches for files outside the notebook's folder, then starts the kernel as
`python -m ipykernel_launcher` would. Nothing is refused here (the sandbox does that); the notes
are what the grader's integrity flags (grader/grading/integrity.py) read: a notebook that hunts
for the solutions leaves no other trace when the sandbox has nothing to find.

What is noted: opening, listing, globbing, changing or deleting a path outside the folder, a
database connection, and the path-like words of a command the code starts (as one line of JSON
per distinct attempt, at most MAX_RECORDS). What is not: the import system, the standard
library on its own, installed packages (torch, matplotlib, IPython's `!ls`), the Python
installation and the grader's own code. Only when the first frame outside the standard library is
the submission's (a cell, code it exec'd, or a module beside the notebook) does an attempt count.

The notes go to a file in the job folder, which the student's code can also write: it can hide an
attempt, or invent one against itself, but never make an honest notebook look like a cheat.
Stdlib only: this runs before anything else in the kernel's process.
"""

import json
import os
import shlex
import sys
import sysconfig

MAX_RECORDS = 200
HERE = os.path.dirname(os.path.abspath(__file__))
PROBE_RUNNER = os.path.join(HERE, "kernel_probe.py")  # runpy reads it from a probe cell: the grader's doing

# event -> the positions of its path arguments
PATH_EVENTS = {
    "open": (0,), "os.listdir": (0,), "os.scandir": (0,), "glob.glob/2": (0,),  # "glob.glob" says it again
    "os.chmod": (0,), "os.chown": (0,), "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,),
    "os.rename": (0, 1), "os.truncate": (0,), "os.utime": (0,), "os.symlink": (0, 1), "os.link": (0, 1),
    "shutil.copyfile": (0, 1), "shutil.rmtree": (0,), "sqlite3.connect": (0,),
}
COMMAND_EVENTS = {"subprocess.Popen": 1, "os.system": 0, "os.exec": 1, "os.posix_spawn": 1}  # -> argv position


def _dirs(*paths) -> tuple[str, ...]:
    found = set()
    for path in paths:
        if path:
            found |= {os.path.abspath(path) + os.sep, os.path.realpath(path) + os.sep}
    return tuple(sorted(found))


STDLIB = _dirs(sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
INSTALLED = _dirs(sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr", "/lib", "/lib64", "/bin", "/sbin")
GRADER = _dirs(HERE)


# Library functions that only pass a call on: IPython puts its `open` in the notebook's namespace.
PASS_THROUGH = {("_modified_open", "interactiveshell.py")}


def _frame_kind(filename: str, function: str = "") -> str:
    """'import', 'stdlib' (or a pass-through), 'grader', 'library' or 'submission'."""
    if (function, os.path.basename(filename)) in PASS_THROUGH:
        return "stdlib"
    if filename.startswith("<frozen importlib"):
        return "import"
    if filename.startswith("<frozen "):
        return "stdlib"
    if not filename.startswith("/"):
        return "submission"  # a cell, or code built from a string (exec)
    packages = "-packages" in filename
    if filename.startswith(STDLIB) and not packages:
        return "stdlib"
    if filename.startswith(GRADER):
        return "grader"
    return "library" if packages or filename.startswith(INSTALLED) else "submission"


def by_submission(frame, event: str) -> bool:
    """Whether the first frame outside the standard library, from `frame` outwards, is the
    submission's. A glob's own listings are not counted again: its pattern was noted."""
    while frame is not None:
        kind = _frame_kind(frame.f_code.co_filename, frame.f_code.co_name)
        if kind != "stdlib":
            return kind == "submission"
        if event in ("os.scandir", "os.listdir") and os.path.basename(frame.f_code.co_filename) == "glob.py":
            return False
        frame = frame.f_back
    return False


def _text(value) -> str | None:
    if isinstance(value, int) or value is None:
        return None  # a file descriptor, or the working folder
    try:
        return os.fsdecode(os.fspath(value))
    except (TypeError, ValueError):
        return None


def outside(path: str, folder: str) -> bool:
    resolved = os.path.abspath(path)
    return resolved != folder and not resolved.startswith(folder + os.sep) and not resolved.startswith(INSTALLED)


def _command_words(value) -> list[str]:
    """The words of a command (a string or an argv list)."""
    if isinstance(value, (str, bytes)):
        try:
            return shlex.split(os.fsdecode(value))
        except ValueError:
            return os.fsdecode(value).split()
    try:
        return [word for word in map(_text, value) if word]
    except TypeError:
        return []


class Recorder:
    """The hook: one JSON line per distinct attempt, {"event", "path", "resolved"[, "command"]}."""

    def __init__(self, fd: int, folder: str):
        self.fd, self.folder, self.seen, self.busy = fd, folder, set(), False

    def __call__(self, event: str, args: tuple) -> None:
        if self.busy or (event not in PATH_EVENTS and event not in COMMAND_EVENTS):
            return
        self.busy = True
        try:
            self._handle(event, args)
        except BaseException:  # noqa: BLE001 - an audit hook that raises would break the student's own call
            pass
        finally:
            self.busy = False

    def _handle(self, event: str, args: tuple) -> None:
        if event in COMMAND_EVENTS:
            words = _command_words(args[COMMAND_EVENTS[event]])
            paths = [w for w in words[1:] if "/" in w]
            command = " ".join(words)[:300]
        else:
            paths = [p for p in (_text(args[i]) for i in PATH_EVENTS[event] if i < len(args)) if p]
            root = _text(args[2]) if event == "glob.glob/2" and len(args) > 2 else None
            paths = [os.path.join(root, p) for p in paths] if root else paths  # glob(pattern, root_dir=...)
            command = None
        paths = [p for p in paths if outside(p, self.folder) and os.path.abspath(p) != PROBE_RUNNER]
        if not paths or len(self.seen) >= MAX_RECORDS or not by_submission(sys._getframe(2), event):
            return
        for path in paths:
            record = {"event": event, "path": path[:500], "resolved": os.path.abspath(path)[:500]}
            if command is not None:
                record["command"] = command
            key = json.dumps(record, sort_keys=True)
            if key not in self.seen and len(self.seen) < MAX_RECORDS:
                self.seen.add(key)
                os.write(self.fd, (key + "\n").encode())


def install(log: str) -> None:
    """Add the hook, writing to `log`; without a log to write, the kernel starts all the same."""
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # not inherited by child processes
    except OSError:
        return
    sys.addaudithook(Recorder(fd, os.getcwd()))


if __name__ == "__main__":
    import importlib.util

    log = sys.argv.pop(1)
    del sys.path[0]  # this folder: the kernel's imports and argv are those of `python -m ipykernel_launcher`
    sys.argv[0] = importlib.util.find_spec("ipykernel_launcher").origin
    install(log)
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()
