"""The real nbgrader commands on this course: release, fetch, submit and collect through an
exchange; zip_collect from an LMS download; and the formgrader web page."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from grader import paths
from grader.course.commands import tool_env
from grader.course.workspace import Workspace

# Kernels, sandboxes or nbgrader commands: minutes, so only in `make test`.
pytestmark = pytest.mark.slow


@pytest.fixture()
def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.setup()
    return ws


def run(cwd: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=tool_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_release_fetch_submit_collect_autograde(workspace: Workspace, tmp_path: Path):
    exchange, student_home = tmp_path / "exchange", tmp_path / "student"
    exchange.mkdir(mode=0o777)
    student_home.mkdir()
    flag = f"--Exchange.root={exchange}"
    run(workspace.root, "release_assignment", paths.ASSIGNMENT, flag)
    run(student_home, "fetch_assignment", paths.ASSIGNMENT, "--course=w3d4", flag)
    fetched = student_home / paths.ASSIGNMENT / paths.NOTEBOOK_NAME
    assert "raise NotImplementedError()" in fetched.read_text(encoding="utf-8")
    shutil.copyfile(paths.REPO / paths.SAMPLE_DIR / "cleo_first_half.ipynb", fetched)
    run(student_home, "submit", paths.ASSIGNMENT, "--course=w3d4", flag)
    run(workspace.root, "collect", paths.ASSIGNMENT, flag)
    collected = list((workspace.root / "submitted").glob(f"*/{paths.ASSIGNMENT}/{paths.NOTEBOOK_NAME}"))
    assert len(collected) == 1
    run(workspace.root, "autograde", paths.ASSIGNMENT)
    run(workspace.root, "export", f"--CsvExportPlugin.to={tmp_path / 'grades.csv'}")
    assert ",6.0," in (tmp_path / "grades.csv").read_text()


def test_zip_collect_names_students_from_lms_file_names(workspace: Workspace):
    archive = workspace.root / "downloaded" / paths.ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "class.zip", "w") as zf:
        for student, sample in (("ada_lovelace", "ada_complete"), ("dev", "dev_classic_mistakes")):
            zf.write(paths.REPO / paths.SAMPLE_DIR / f"{sample}.ipynb", f"export/{student}_w3d4_part2_unet.ipynb")
    run(workspace.root, "zip_collect", paths.ASSIGNMENT)
    submitted = sorted(p.name for p in (workspace.root / "submitted").iterdir())
    assert submitted == ["ada_lovelace", "dev"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_formgrader_serves_the_course(workspace: Workspace):
    port, token = _free_port(), "w3d4-test-token"
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False", "--allow-root"],
        cwd=workspace.root, env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, page = time.time() + 60, ""
        while time.time() < deadline:
            try:
                url = f"http://127.0.0.1:{port}/formgrader/manage_assignments?token={token}"
                with urllib.request.urlopen(url, timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert "Manage Assignments" in page or "formgrader" in page.lower(), page[:500]
        api = f"http://127.0.0.1:{port}/formgrader/api/assignments?token={token}"
        with urllib.request.urlopen(api, timeout=10) as response:
            assert paths.ASSIGNMENT in response.read().decode()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
