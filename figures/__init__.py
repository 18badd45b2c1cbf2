"""Every figure of the lesson, rendered by code: `python -m figures` from the repository root.

Two kinds: matplotlib drawings (DRAWINGS), and block diagrams that mermaid draws in Chromium
(DIAGRAMS, see figures/diagrams.py). figures/inputs.json records what each file was drawn from
(figures/inputs.py): `python -m figures` redraws only the figures whose inputs changed (`--force`:
all of them), and `python -m figures --check` lists the stale ones and why, without drawing. A
diagram can be redrawn only where Chromium and the mermaid library are (`diagrams.unavailable()`).
"""

from dataclasses import dataclass, field
from pathlib import Path

from figures import diagrams, inputs, style
from figures.catalogue import ALL, DIAGRAMS, DRAWINGS

FOLDER = Path(__file__).resolve().parent


def render(folder: Path, names: list[str]) -> list[Path]:
    """Draw the named figures into folder, whatever their inputs, and return the paths written."""
    folder = Path(folder)
    paths = []
    with style.house_style():
        for name in names:
            if name in DRAWINGS:
                style.save(DRAWINGS[name](), folder / name)
                paths.append(folder / name)
    wanted = [name for name in names if name in DIAGRAMS]
    if wanted:
        paths += diagrams.render(folder, wanted)
    return paths


@dataclass
class Update:
    """What `update` did: figures redrawn (with why), left alone, and stale but not drawable here."""

    redrawn: dict[str, list[str]] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)
    cannot: dict[str, list[str]] = field(default_factory=dict)


def update(folder: Path = FOLDER, force: bool = False) -> Update:
    """Redraw the figures in folder whose recorded inputs differ from now (all, with force), and
    record their new inputs in folder/inputs.json. Files of fresh figures are not touched."""
    folder = Path(folder)
    manifest = inputs.load(folder)
    now = {name: inputs.current(name) for name in ALL}
    result = Update()
    for name in ALL:
        reasons = inputs.why_stale(name, manifest.get(name), now[name], folder)
        if force and not reasons:
            reasons = ["--force"]
        if not reasons:
            result.left.append(name)
        elif name in DIAGRAMS and diagrams.unavailable():
            result.cannot[name] = reasons
        else:
            result.redrawn[name] = reasons
    for path in render(folder, list(result.redrawn)):
        manifest[path.name] = {**now[path.name], "file": inputs.digest(path.read_bytes())}
    manifest = {name: entry for name, entry in manifest.items() if name in ALL}
    inputs.save(manifest, folder)
    return result


def check(folder: Path = FOLDER) -> dict[str, list[str]]:
    """{figure: why it is stale} for the figures in folder; {} when all are up to date."""
    return inputs.check(folder)
