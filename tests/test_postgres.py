"""The gradebook in a real PostgreSQL server: `python -m grader grade --db postgresql://...`.

A throwaway server (tests/postgres_support.py) holds the gradebook; the sample class is graded into
it with the command line, and the totals are read back three ways: nbgrader's `Gradebook`,
`nbgrader export` in the workspace, and the run's grades.csv. Then two more runs write the same
database one after the other, and two at once into a fresh one. Without PostgreSQL's server
programs (scripts/system-deps.sh installs them) those tests are skipped, saying why; the URL and
error-message tests need no server.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader import paths
from grader.course import database
from grader.course.commands import nbgrader, tool_env
from grader.course.workspace import Workspace
from postgres_support import missing, postgres_server
from test_grading import EXPECTED, by_test, nbgrader_totals, run_cli

TOTALS = {student: float(sum(points.values())) for student, points in EXPECTED.items()}
TOGETHER = ["cleo_first_half"]  # the class both runs at once grade: the same rows, written twice


@pytest.fixture(scope="module")
def server():
    reason = missing()
    if reason:
        pytest.skip(reason)
    with postgres_server() as started:
        yield started


@pytest.fixture(scope="module")
def graded(server, tmp_path_factory) -> tuple[Path, str]:
    """The sample class graded into a new database, with the URL written the plain way."""
    url = server.create_database("gradebook")
    out = tmp_path_factory.mktemp("postgres")
    result = run_cli("grade", "--assignment", paths.ASSIGNMENT, "--out", str(out), "--db", url)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, url


def gradebook_totals(url: str) -> dict[str, float]:
    """Each student's total as nbgrader's own API reads it; every student has one submission."""
    from nbgrader.api import Gradebook

    with Gradebook(database.gradebook_url(url), "w3d4") as gradebook:
        submissions = gradebook.assignment_submissions(paths.ASSIGNMENT)
        students = [s.student_id for s in submissions]
        assert len(students) == len(set(students)), f"duplicate submissions: {sorted(students)}"
        assert sorted(s.id for s in gradebook.students) == sorted(students)
        return {s.student_id: s.score for s in submissions}


def rows_per_student(server, name: str) -> dict[str, int]:
    with server.connect(name) as connection:
        return dict(connection.execute("SELECT student_id, count(*) FROM submitted_assignment GROUP BY student_id"))


def exported_totals(out: Path, csv_path: Path) -> dict[str, float]:
    """`nbgrader export` run in the workspace: it reads the URL from the generated config."""
    nbgrader(out / "course", "export", f"--CsvExportPlugin.to={csv_path}")
    return nbgrader_totals(csv_path)


@pytest.mark.slow
def test_the_sample_class_is_graded_into_postgres(graded, tmp_path: Path):
    out, url = graded
    config = (out / "course" / "nbgrader_config.py").read_text()
    assert f"db_url = {database.gradebook_url(url)!r}" in config and "postgresql+psycopg://" in config
    assert not (out / "course" / "gradebook.db").exists()
    assert gradebook_totals(url) == TOTALS
    assert exported_totals(out, tmp_path / "export.csv") == TOTALS
    assert nbgrader_totals(out / "grades.csv") == TOTALS
    scores = {s: {t: score for t, (score, _) in tests.items()} for s, tests in by_test(out).items()}
    assert scores == {s: {t: float(p) for t, p in points.items()} for s, points in EXPECTED.items()}


@pytest.mark.slow
def test_a_second_run_into_the_same_database_keeps_one_row_per_student(server, graded, tmp_path: Path):
    out, url = graded
    again = run_cli("grade", "--assignment", paths.ASSIGNMENT, "--out", str(out), "--db", url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(EXPECTED)} submissions already judged" in again.stdout
    assert rows_per_student(server, "gradebook") == dict.fromkeys(EXPECTED, 1)
    assert gradebook_totals(url) == TOTALS == nbgrader_totals(out / "grades.csv")
    assert exported_totals(out, tmp_path / "export.csv") == TOTALS


def _start_grading(submissions: Path, out: Path, url: str, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "grader", "grade", str(submissions), "--out", str(out), "--db", url,
               "--jobs", "1"]
    with open(log, "w") as f:
        return subprocess.Popen(command, cwd=paths.REPO, env=tool_env(), stdout=f, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_two_runs_at_once_take_turns(server, tmp_path: Path):
    """Two classes graded at once into one new database (nbgrader creates its tables then, which
    two writers at once break): each run waits for the course's lock, so both succeed."""
    url = server.create_database("together")
    submissions = tmp_path / "class"
    submissions.mkdir()
    for student in TOGETHER:
        (submissions / f"{student}.ipynb").write_bytes((paths.REPO / paths.SAMPLE_DIR / f"{student}.ipynb").read_bytes())
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    runs = []
    try:
        with database.write_lock(database.gradebook_url(url)):  # both runs meet it held
            runs = [_start_grading(submissions, tmp_path / f"out{i}", url, log) for i, log in enumerate(logs)]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and any(r.poll() is None for r in runs):
                if all("Waiting for another grading run" in log.read_text() for log in logs):
                    break
                time.sleep(0.2)
            assert all("Waiting for another grading run" in log.read_text() for log in logs), \
                "\n".join(log.read_text()[-2000:] for log in logs)
        for run in runs:
            run.wait(timeout=600)
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert [run.returncode for run in runs] == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    expected = {student: TOTALS[student] for student in TOGETHER}
    assert rows_per_student(server, "together") == dict.fromkeys(TOGETHER, 1)
    assert gradebook_totals(url) == expected
    for i in range(2):
        assert nbgrader_totals(tmp_path / f"out{i}" / "grades.csv") == expected


@pytest.mark.slow
def test_a_missing_database_or_wrong_password_stops_with_one_line(server, tmp_path: Path):
    for url, reason in [(server.url("no_such_db"), 'database "no_such_db" does not exist'),
                        (server.url("postgres").replace(server.password, "wrong"), "password authentication failed")]:
        result = run_cli("grade", "--assignment", paths.ASSIGNMENT, "--out", str(tmp_path / "out"), "--db", url)
        lines = [line for line in result.stderr.splitlines() if not line.startswith("WARNING")]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith("grading stopped: cannot open the gradebook database") and reason in lines[0]
        assert server.password not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


# No server needed ---------------------------------------------------------------------------------


@pytest.mark.parametrize("given, used", [
    ("postgresql://ta:pw@db.example:5432/grades", "postgresql+psycopg://ta:pw@db.example:5432/grades"),
    ("postgres://ta@db.example/grades", "postgresql+psycopg://ta@db.example/grades"),
    ("postgresql+psycopg2://ta@db.example/grades", "postgresql+psycopg2://ta@db.example/grades"),
    ("sqlite:////srv/grades.db", "sqlite:////srv/grades.db"),
])
def test_plain_postgresql_urls_get_the_psycopg_driver(given: str, used: str, tmp_path: Path):
    assert database.gradebook_url(given) == used
    assert Workspace(tmp_path, given).db_url == used  # the URL its config and its reports get


@pytest.mark.parametrize("url, says", [
    ("postgresql://ta:secret@127.0.0.1:{port}/grades", "Connection refused"),
    ("not a url", "--db is not a database URL"),
    ("nosuchdb://host/grades", "SQLAlchemy knows no database called 'nosuchdb'"),
])
def test_a_database_that_cannot_be_used_is_one_line(url: str, says: str):
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg", exc_type=ImportError)  # it loads the system libpq
    with socket.socket() as taken:  # a port this test holds without listening: connecting is refused
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(database.DatabaseError) as error:
            database.check(database.gradebook_url(url.format(port=taken.getsockname()[1])))
    message = str(error.value)
    assert says in message and "\n" not in message and "secret" not in message
