"""What each figure is drawn from, recorded next to the figures in figures/inputs.json.

`python -m figures` redraws a figure only when what it is drawn from has changed, and
`python -m figures --check` compares those inputs, not pixels, so it needs no browser. One entry
per figure, four fields:

code      a digest of each figures/ module that draws it: the module of its drawing function and
          the figures/ modules that module uses (style.py, lesson.py), found through its imports.
          For a diagram, figures/diagrams.py without the DIAGRAMS table, so that editing one
          diagram's text leaves the other five alone.
data      what it shows: the lesson solution for figures computed from it (lesson.SOURCES), the
          mermaid text for a diagram; absent when the numbers are written in the module itself.
renderer  what turns the drawing into a file, see `renderer`.
file      a digest of the file as drawn, so a file edited by hand or replaced reads as stale too.

This module, figures/__init__.py and figures/__main__.py only keep the books: they are digested
for no figure, so whatever shapes a picture belongs in a drawing module. Digests are of the bytes
with CRLF read as LF (a Windows checkout is not stale); an edited comment counts as a change.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
from pathlib import Path
from types import ModuleType

import matplotlib

from figures import catalogue, diagrams, lesson

ROOT = lesson.ROOT
FOLDER = Path(__file__).resolve().parent
MANIFEST = "inputs.json"
BOOKKEEPING = {"figures", "figures.__main__", __name__}


def digest(data: bytes) -> str:
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()[:16]


def _rel(path: Path) -> str:
    return Path(path).resolve().relative_to(ROOT).as_posix()


def modules(name: str) -> list[ModuleType]:
    """The figures/ modules that draw figure `name`, its own first, then the others by name."""
    start = diagrams if name in catalogue.DIAGRAMS else sys.modules[catalogue.DRAWINGS[name].__module__]
    found, todo = {start.__name__: start}, [start]
    while todo:
        for value in list(vars(todo.pop()).values()):
            if (isinstance(value, ModuleType) and value.__name__.startswith("figures.")
                    and value.__name__ not in BOOKKEEPING and value.__name__ not in found):
                found[value.__name__] = value
                todo.append(value)
    return [start, *sorted((m for m in found.values() if m is not start), key=lambda m: m.__name__)]


def _without_diagrams_table(source: bytes) -> bytes:
    """figures/diagrams.py less the lines of its `DIAGRAMS = {...}` statement."""
    lines = source.replace(b"\r\n", b"\n").split(b"\n")
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(target, ast.Name) and target.id == "DIAGRAMS" for target in targets):
            return b"\n".join(lines[: node.lineno - 1] + lines[node.end_lineno :])
    raise ValueError("figures/diagrams.py has no DIAGRAMS table")


def code(name: str, root: Path = ROOT) -> dict[str, str]:
    """{path of a figures/ module: digest} for the modules that draw figure `name`, read under root."""
    result = {}
    for module in modules(name):
        path = _rel(Path(module.__file__))
        source = (Path(root) / path).read_bytes()
        if module is diagrams:
            source = _without_diagrams_table(source)
        result[path] = digest(source)
    return result


def data(name: str, root: Path = ROOT) -> dict[str, str]:
    """{what: digest} of what figure `name` shows; see the module docstring."""
    if name in catalogue.DIAGRAMS:
        return {"mermaid text": digest(catalogue.DIAGRAMS[name].strip().encode())}
    if lesson in modules(name):
        return {_rel(path): digest(_code((Path(root) / _rel(path)).read_bytes())) for path in lesson.SOURCES}
    return {}


def _code(source: bytes) -> bytes:
    """A lesson file without its comment lines and blank lines: the lesson's prose lives in comments
    (jupytext's markdown cells), and rewording it changes no figure."""
    lines = source.replace(b"\r\n", b"\n").split(b"\n")
    return b"\n".join(line for line in lines if line.strip() and not line.lstrip().startswith(b"#"))


def renderer(name: str) -> dict[str, str | None]:
    """What turns figure `name` into a file, as far as it changes the file.

    A matplotlib figure: the matplotlib version, whole, since it brings its own FreeType and Agg
    rasteriser and a bug-fix release may move anti-aliased pixels (requirements.txt pins it).

    A diagram: the mermaid version, which fixes all of the JavaScript that runs (mermaid.min.js
    bundles its dependencies); a digest of the font every label is measured with (matplotlib's
    DejaVu Sans, loaded as a web font, so the machine's fonts play no part); and the MAJOR version
    of Chromium. Layout and text shaping change when Chromium moves to a new milestone, while the
    releases within one milestone are security and stability fixes taken onto a frozen branch:
    156.0.8078.108 and 156.0.8078.114 drew all six diagrams identically but for the version in
    their stamp comment. "chromium" is None on a machine without Chromium, and is then not
    compared. What this cannot see (a system library under Debian's Chromium, say) shows up when
    a diagram is redrawn: `python -m figures --force`, or the browser test in tests/test_figures.py.
    """
    if name in catalogue.DIAGRAMS:
        version = diagrams.chromium_version()
        return {"chromium": version.split(".")[0] if version else None,
                "font": digest(diagrams.FONT.read_bytes()),
                "mermaid": diagrams.locked_mermaid_version()}
    return {"matplotlib": matplotlib.__version__}


def current(name: str, root: Path = ROOT) -> dict:
    """The inputs of figure `name` on this machine now (without "file", known once drawn)."""
    entry = {"code": code(name, root), "renderer": renderer(name)}
    shown = data(name, root)
    return {**entry, "data": shown} if shown else entry


def load(folder: Path = FOLDER) -> dict[str, dict]:
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def save(manifest: dict[str, dict], folder: Path = FOLDER) -> bool:
    """Write the manifest, sorted; leave the file untouched when that changes nothing. True if written."""
    path = Path(folder) / MANIFEST
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8", newline="\n")
    return True


def _changed(what: str, old: dict, new: dict) -> str | None:
    keys = sorted(key for key in {*old, *new} if old.get(key) != new.get(key))
    return f"{what} changed ({', '.join(keys)})" if keys else None


def why_stale(name: str, recorded: dict | None, now: dict, folder: Path = FOLDER) -> list[str]:
    """Why the file of figure `name` in folder is not what its inputs `now` draw; [] if it is.

    recorded: its manifest entry. A renderer part unknown here (None) is not compared.
    """
    path = Path(folder) / name
    if not path.exists():
        return ["missing"]
    if recorded is None:
        return [f"not recorded in {MANIFEST}"]
    reasons = []
    if recorded.get("file") != digest(path.read_bytes()):
        reasons.append(f"the file is not the one drawn (its digest is not the one in {MANIFEST})")
    for what in ("code", "data"):
        reasons.append(_changed(what, recorded.get(what, {}), now.get(what, {})))
    old, new = recorded.get("renderer", {}), now["renderer"]
    moved = [f"{key} {old.get(key)} -> {new[key]}" for key in sorted({*old, *new})
             if new.get(key) is not None and old.get(key) != new.get(key)]
    reasons.append(f"renderer changed ({', '.join(moved)})" if moved else None)
    return [reason for reason in reasons if reason]


def check(folder: Path = FOLDER, root: Path = ROOT, names: list[str] | None = None) -> dict[str, list[str]]:
    """{figure: reasons} for every stale figure in folder, its sources read under root."""
    manifest = load(folder)
    stale = {}
    for name in catalogue.ALL if names is None else names:
        reasons = why_stale(name, manifest.get(name), current(name, root), folder)
        if reasons:
            stale[name] = reasons
    return stale
