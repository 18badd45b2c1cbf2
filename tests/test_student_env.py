"""The students' environment (`requirements-student.txt`, `make student`): what the lesson needs, at
the pins the project is tested with, and none of the instructor tools.

The fast tests read the released notebook and the modules shipped beside it and check their
imports against the requirements; the slow one builds the environment in a temporary folder and
looks at what a student's JupyterLab would load.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader import paths

STUDENT_REQUIREMENTS = paths.REPO / "requirements-student.txt"
REQUIREMENTS = paths.REPO / "requirements.txt"
INSTRUCTOR_ONLY = ["nbgrader", "pytest", "playwright", "jupytext"]


def normalised(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): `fancy_einsum` is `fancy-einsum`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """Distribution -> exact version, for every `name==version` line; anything else is an error."""
    found = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"{path.name}:{number}: {line!r} is not an exact pin (name==version)"
        name = normalised(match[1])
        assert name not in found, f"{path.name}:{number}: {match[1]} is pinned twice"
        found[name] = match[2]
    return found


def imported_modules(source: str) -> set[str]:
    """Top-level names of every absolute import anywhere in `source` (inside functions and try
    blocks too: the closing section imports scikit-learn lazily)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def notebook_code(path: Path) -> str:
    """The notebook's code cells as one Python source; IPython magics and shell lines are left out."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            lines += ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    return "\n".join(lines)


def release_imports() -> dict[str, list[str]]:
    """Third-party module -> the released files that import them, over every lesson's release."""
    found: dict[str, list[str]] = {}
    releases = [paths.REPO / lesson.release_dir for lesson in paths.LESSONS.values()]
    # the modules beside the notebooks, and the packages (the checks library): the checks library is the
    # same in every lesson, and imports part 2's neighbours only when part 2's checks run
    local = {p.stem for r in releases for p in r.glob("*.py")} | {p.parent.name for r in releases for p in r.glob("*/__init__.py")}
    for lesson in paths.LESSONS.values():
        release = paths.REPO / lesson.release_dir
        sources = {lesson.notebook: notebook_code(release / lesson.notebook)}
        sources |= {f"{lesson.assignment}/{p.relative_to(release).as_posix()}": p.read_text(encoding="utf-8")
                    for p in sorted(release.rglob("*.py"))}
        for name, source in sources.items():
            for module in imported_modules(source):
                if module not in sys.stdlib_module_names and module not in local:
                    found.setdefault(module, []).append(name)
    return found


# ---------------------------------------------------------------------------------------------
# Fast: the requirements file against the release
# ---------------------------------------------------------------------------------------------


def test_the_release_imports_what_the_lesson_is_about():
    """Guards the import scan itself: were it to find nothing, the next test would pass on nothing."""
    assert {"torch", "einops", "fancy_einsum", "matplotlib"} <= set(release_imports())


def test_every_import_of_the_release_is_pinned_for_students():
    distributions = importlib.metadata.packages_distributions()
    student = pins(STUDENT_REQUIREMENTS)
    missing = []
    for module, files in sorted(release_imports().items()):
        assert module in distributions, f"{module} (imported by {', '.join(files)}) is not installed here"
        if not any(normalised(d) in student for d in distributions[module]):
            missing.append(f"{module} ({' or '.join(distributions[module])}, imported by {', '.join(files)})")
    assert not missing, f"not in {STUDENT_REQUIREMENTS.name}: {'; '.join(missing)}"


def test_student_pins_are_the_project_pins():
    project = pins(REQUIREMENTS)
    for name, version in pins(STUDENT_REQUIREMENTS).items():
        assert name in project, f"{name} is pinned for students but not in {REQUIREMENTS.name}"
        assert version == project[name], f"{name}=={version} for students, =={project[name]} in {REQUIREMENTS.name}"


def test_torch_is_the_cpu_wheel_pin():
    assert pins(STUDENT_REQUIREMENTS)["torch"] == "2.13.0"


@pytest.mark.parametrize("name", INSTRUCTOR_ONLY)
def test_no_instructor_tools_for_students(name):
    assert name not in pins(STUDENT_REQUIREMENTS)


def test_pins_reads_what_pip_reads(tmp_path):
    """The parser above must refuse what it cannot check, rather than skip it."""
    path = tmp_path / "r.txt"
    path.write_text("# comment\n\nFancy_Einsum==0.0.3  # trailing\ntorch==2.13.0\n")
    assert pins(path) == {"fancy-einsum": "0.0.3", "torch": "2.13.0"}
    for bad in ["torch>=2.13", "torch", "-r other.txt", "torch==2.13.0\ntorch==2.13.0"]:
        path.write_text(bad)
        with pytest.raises(AssertionError):
            pins(path)


# ---------------------------------------------------------------------------------------------
# Slow: build the environment and look at it
# ---------------------------------------------------------------------------------------------


def run(command: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def check_environment(venv: Path, home: Path) -> None:
    """The environment in `venv` has the lesson's packages and no instructor tools, as pip and as
    the student's JupyterLab see it."""
    python = venv / "bin" / "python"
    installed = {normalised(p["name"]): p["version"] for p in json.loads(
        run([str(python), "-m", "pip", "list", "--format=json"], timeout=120).stdout)}
    for name in INSTRUCTOR_ONLY:
        assert name not in installed, f"{name} {installed.get(name)} was installed for students"
    assert installed["torch"].split("+")[0] == "2.13.0"
    assert not [name for name in installed if name.startswith("nvidia-")], "CUDA packages came with torch"

    run([str(python), "-c", "import torch, einops, fancy_einsum, matplotlib"], timeout=300)

    # Jupyter as the student's JupyterLab sees it: no settings from this machine's home or JUPYTER_*.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")} | {"HOME": str(home)}
    jupyter = str(venv / "bin" / "jupyter")
    for command in (["labextension", "list"], ["server", "extension", "list"]):
        result = run([jupyter, *command], timeout=300, env=env)
        listing = result.stdout + result.stderr
        assert "jupyterlab" in listing.lower(), listing  # it listed what it found
        assert "nbgrader" not in listing.lower(), f"jupyter {' '.join(command)} shows nbgrader:\n{listing}"


@pytest.mark.slow
def test_student_environment_builds_without_instructor_tools(tmp_path):
    """What `make student` does, in a temporary folder. pip is configured as for requirements.txt
    (the environment's pip settings pass through), so the torch CPU wheel comes from the same place."""
    venv = tmp_path / "venv"
    start = time.perf_counter()
    run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(STUDENT_REQUIREMENTS)], timeout=1800)
    print(f"\nstudent environment built in {time.perf_counter() - start:.0f} s")
    (tmp_path / "home").mkdir()
    check_environment(venv, tmp_path / "home")
