"""Integrity flags: one line per thing the grader saw that an instructor should look at.

An attack and a student who gave up can both end with 0 points; these flags tell them apart. They
are computed from what the sandboxed run recorded (`SandboxResult`): probes whose cell ran but left
no result, results in a form no probe writes, outputs of a type the submission defined that
redefine comparisons (an always-equal tensor, noted by the checks' `plain`), the submission's own
reaches for grading material outside its folder (noted by kernel_audit.py, or seen in an OSError
the kernel printed), and, worded as plain facts because they can have honest causes, kernel
restarts and timeouts.

The rule is that an honest mistake is never flagged: a wrong shape, a tuple instead of a tensor,
NaNs, the student's own exceptions, a missing data file, a hard-coded path of their own machine. So
every flag needs a signal that honest code does not produce, and an ambiguous one is left out. A
flag says what was seen, never what was meant.
"""

from __future__ import annotations

import posixpath
import re

from .. import paths
from .plan import Check
from .sandbox import LOAD_RETRY_FACTOR, Limits, SandboxResult

MAX_ITEMS = 6  # paths named in one flag
# Path components that name grading material. Support files released beside the notebook are no
# secret even where their name says "solution" (part 1's module): those are left out.
GRADING_WORDS = re.compile(r"(?<![a-z])solutions?(?![a-z])|gradebook|autograded|^\.?grader($|[._-])", re.IGNORECASE)
RELEASED_NAMES = {module.name.lower() for lesson in paths.LESSONS.values() for module in lesson.modules}
LISTING_EVENTS = {"os.listdir", "os.scandir", "glob.glob/2", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn"}
VERBS = {
    "open": "open", "os.listdir": "list", "os.scandir": "list", "glob.glob/2": "glob",
    "os.chmod": "chmod", "os.chown": "chown", "os.remove": "delete", "os.rmdir": "delete", "os.mkdir": "create",
    "os.rename": "rename", "os.truncate": "truncate", "os.utime": "touch", "os.symlink": "link", "os.link": "link",
    "shutil.copyfile": "copy", "shutil.rmtree": "delete", "sqlite3.connect": "open database",
}
OS_ERRORS = {"FileNotFoundError", "PermissionError", "OSError", "IsADirectoryError", "NotADirectoryError",
             "FileExistsError", "IOError"}
ERROR_PATHS = re.compile(r"\[Errno \d+\] [^:\n]*: '((?:[^'\\\n]|\\.)*)'(?: -> '((?:[^'\\\n]|\\.)*)')?")


def names_grading_material(path: str) -> bool:
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    return any(GRADING_WORDS.search(part) and part.lower() not in RELEASED_NAMES for part in parts)


def walks_root(resolved: str) -> bool:
    """`/` itself, or a glob whose first level is a wildcard (`/*`, `/**/x`)."""
    parts = [p for p in resolved.split("/") if p]
    return resolved.startswith("/") and (not parts or any(ch in parts[0] for ch in "*?["))


def _outside(path: str, folder: str) -> bool:
    """Whether `path` (absolute, or relative to the notebook's folder) lies outside that folder."""
    if not path.startswith("/"):
        return posixpath.normpath(path).split("/")[0] == ".."
    resolved = posixpath.normpath(path)
    return not folder or (resolved != folder and not resolved.startswith(folder.rstrip("/") + "/"))


def _beyond(path: str, folder: str) -> str:
    """The part of an absolute `path` below what it shares with the notebook's folder: the names of
    the folder's own ancestors (a grader's TMPDIR under /home/grader, say) are nobody's doing."""
    if not folder or not path.startswith("/"):
        return path
    return path[len(posixpath.commonpath([posixpath.normpath(path), folder])):]


def _access_items(run: SandboxResult) -> list[str]:
    """What the submission reached for outside its folder that names grading material or walks `/`."""
    items: list[str] = []
    for record in run.accesses:
        event, path, resolved = record.get("event", ""), record.get("path", ""), record.get("resolved", "")
        if not path or not resolved.startswith("/") or not _outside(resolved, run.folder):
            continue
        if names_grading_material(_beyond(resolved, run.folder)) or (event in LISTING_EVENTS and walks_root(resolved)):
            command = record.get("command")
            items.append(f"run `{command}`" if command else f"{VERBS.get(event, event)} {path}")
    for cell in run.cells:
        for out in cell.get("outputs", []) if isinstance(cell, dict) else []:
            if out.get("output_type") != "error" or out.get("ename") not in OS_ERRORS:
                continue
            for match in ERROR_PATHS.finditer(str(out.get("evalue", ""))):
                for path in filter(None, match.groups()):
                    if _outside(path, run.folder) and names_grading_material(_beyond(path, run.folder)):
                        items.append(f"{path} ({out.get('ename')})")
    return list(dict.fromkeys(items))


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:MAX_ITEMS])
    return shown + (f"; and {len(items) - MAX_ITEMS} more" if len(items) > MAX_ITEMS else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _unusual(result: dict) -> list[tuple[str, bool, tuple[str, ...]]]:
    """The probe's notes of outputs that redefine comparisons, checked to be plain data."""
    found = []
    for note in result.get("unusual", []) if isinstance(result.get("unusual"), list) else []:
        if isinstance(note, dict) and isinstance(note.get("type"), str) and isinstance(note.get("redefines"), list):
            redefines = tuple(str(name)[:40] for name in note["redefines"][:20])
            if redefines:
                found.append((note["type"][:100], note.get("tensor") is True, redefines))
    return found


def _probe_flags(run: SandboxResult, checks: list[Check]) -> list[str]:
    flags = []
    stopped = [c for c in checks if run.probe_status.get(c.check_id) == "ok" and c.check_id not in run.probes]
    if stopped:
        flags.append(f"Probes never ran: {len(stopped)} of {len(checks)} checks got no result, although the notebook "
                     "ran to the end (cells were blanked or the grader's code was stopped).")
    forged = [c for c in checks if (r := run.probes.get(c.check_id)) is not None and r.get("ok") is True
              and not (isinstance(r.get("data"), dict) and "stage" in r["data"])]
    if forged:
        flags.append(f"{_plural(len(forged), 'check')} got a result in a form the grader's probes never write "
                     "(other code in the kernel wrote or changed it).")
    odd: dict[tuple, int] = {}
    for check in checks:
        for note in dict.fromkeys(_unusual(run.probes.get(check.check_id) or {})):
            key = (" or ".join(check.args), *note)
            odd[key] = odd.get(key, 0) + 1
    for (subject, name, tensor, redefines), count in odd.items():
        what = "a torch.Tensor subclass defined by the submission" if tensor else "defined by the submission"
        flags.append(f"{subject} produced an object of type {name} ({what}, which redefines {', '.join(redefines)}) "
                     f"where a tensor was due ({_plural(count, 'check')}).")
    return flags


def _run_flags(run: SandboxResult, limits: Limits) -> list[str]:
    """Restarts and timeouts: facts, which a crash or a slow loop can explain as well as an attack.
    They are said here only (grade_notebook's notes leave them out), in the notes cell and summary."""
    flags = []
    if run.restarts:
        flags.append(f"The kernel was restarted {_plural(run.restarts, 'time')} after a crash or a hang.")
    if run.timed_out:
        flags.append(f"The notebook ran longer than {limits.notebook_timeout_s} s and was stopped before its end.")
    slow = [str(c.get("index")) for c in run.cells if isinstance(c, dict) and c.get("status") == "timeout"]
    if slow:
        flags.append(f"{_plural(len(slow), 'cell')} ran past the time limit twice ({limits.cell_timeout_s} s, then "
                     f"{LOAD_RETRY_FACTOR * limits.cell_timeout_s} s) and {'was' if len(slow) == 1 else 'were'} "
                     f"stopped (cell {', '.join(slow)}).")
    hung = sum(status == "timeout" for status in run.probe_status.values())
    if hung:
        flags.append(f"The probes of {_plural(hung, 'check')} ran past the time limit twice and were stopped.")
    return flags


def flags(run: SandboxResult, checks: list[Check], limits: Limits = Limits()) -> list[str]:
    """The integrity flags of one sandboxed run, each one line; [] for an honest run that went normally."""
    found = _probe_flags(run, checks)
    reached = _access_items(run)
    if reached:
        found.append(f"The notebook's code tried to reach files outside its folder: {_listed(reached)}.")
    return found + _run_flags(run, limits)

