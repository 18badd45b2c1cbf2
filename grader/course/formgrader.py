"""Serve nbgrader's formgrader on a graded course: `python -m grader formgrader [--out DIR]`.

The course is the workspace that `python -m grader grade --out DIR` wrote (DIR/course). The server
listens on 127.0.0.1 only, with a fresh token, and runs with this environment's scripts on PATH
(nbgrader starts `alembic` from PATH when it opens the gradebook).
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .commands import tool_env

READY_TIMEOUT_S = 90


class FormgraderError(Exception):
    """The formgrader could not be started; the message says why and what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(course_root: Path, port: int, token: str) -> list[str]:
    return [
        sys.executable, "-m", "jupyter_server",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={course_root}", f"--IdentityProvider.token={token}",
        "--ServerApp.open_browser=False",
        # A seminar laptop or a container may run everything as root; the server only listens locally.
        "--ServerApp.allow_root=True",
        # Enabled even where nbgrader's own extension settings were not installed (a plain pip install).
        "--ServerApp.jpserver_extensions={'nbgrader.server_extensions.formgrader': True}",
    ]


def check_course(out: Path) -> Path:
    """The course folder of a graded workspace, or FormgraderError saying how to make one."""
    course_root = out.resolve() / "course"
    if not (course_root / "nbgrader_config.py").is_file() or not (course_root / "autograded").is_dir():
        raise FormgraderError(
            f"{out} holds no graded class: run `python -m grader grade --out {out}` first."
        )
    return course_root


def wait_until_ready(server: subprocess.Popen, port: int, token: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll the formgrader's page until it answers; FormgraderError if the server dies or stalls."""
    url = f"http://127.0.0.1:{port}/formgrader?token={token}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise FormgraderError(f"the Jupyter server stopped at start-up (exit code {server.returncode}); "
                                  "its messages are above.")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise FormgraderError(f"the formgrader did not answer within {timeout_s:.0f} s.")


def serve(out: Path, port: int | None = None) -> int:
    """Start the server, print the URL to open, and run until interrupted (Ctrl-C)."""
    course_root = check_course(out)
    port = port or free_port()
    token = secrets.token_hex(24)
    server = subprocess.Popen(server_command(course_root, port, token), cwd=course_root, env=tool_env())
    try:
        wait_until_ready(server, port, token)
        print(f"Formgrader for {course_root}:\n  http://127.0.0.1:{port}/formgrader?token={token}\n"
              "Open it in a browser on this machine; press Ctrl-C here to stop the server.", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
