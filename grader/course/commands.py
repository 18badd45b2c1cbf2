"""Running nbgrader's own commands, with this environment's tools on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


class NbgraderError(Exception):
    """An nbgrader command failed; the message carries its output."""


def tool_env() -> dict[str, str]:
    """The environment for nbgrader subprocesses: nbgrader runs `alembic` from PATH, so the folder of
    this Python's scripts must come first even when the virtual environment is not activated."""
    scripts = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}


def nbgrader(course_root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run one nbgrader command in a course folder; NbgraderError with its output when it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course_root, env=tool_env(), capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise NbgraderError(f"nbgrader {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result
