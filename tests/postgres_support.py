"""A throwaway PostgreSQL server for the tests, listening on 127.0.0.1 only.

`postgres_server()` runs `initdb` into a new temporary folder and starts `postgres` from it on a
free port, with no Unix socket, fsync off and a random password; leaving the `with` block stops the
server and removes the folder, also when the test failed; a killed test process takes the server
down with it (the folder then stays in the temporary folder). PostgreSQL refuses to run as root, so
under root the server runs as the `postgres` system user when there is one, else as `nobody`, in a
folder that user owns. `missing()` says why no server can be started here (the reason to skip).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
SERVER_USERS = ("postgres", "nobody")  # who runs the server when the tests run as root
READY_TIMEOUT_S = 30
SETTINGS = """
# Set by tests/postgres_support.py: a throwaway server, reachable over TCP on 127.0.0.1 only.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
dynamic_shared_memory_type = mmap
shared_buffers = 16MB
"""


def server_bin() -> Path | None:
    """The folder of PostgreSQL's server programs: beside `initdb` on PATH, else the newest of Debian's
    /usr/lib/postgresql/VERSION/bin (not on PATH there), else what `pg_config --bindir` says."""
    candidates = []
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).resolve().parent)
    version = lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)]  # noqa: E731
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates += [Path(found.stdout.strip())] if found.returncode == 0 and found.stdout.strip() else []
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "postgres").is_file()), None)


def server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None for this user, or (as root) the first unprivileged user that exists."""
    if os.geteuid() != 0:
        return None
    for name in SERVER_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise LookupError(f"none of the users {SERVER_USERS} exists, and PostgreSQL refuses to run as root")


def missing() -> str | None:
    """Why no PostgreSQL server can be started here, or None."""
    if server_bin() is None:
        return ("PostgreSQL's server programs (initdb, postgres) are not installed: on Debian `apt-get install "
                "postgresql` (scripts/system-deps.sh does it when run as root)")
    try:
        import psycopg  # noqa: F401 - the driver the grader uses; it needs the system libpq
    except ImportError as error:
        return f"the psycopg driver cannot be loaded: {' '.join(str(error).split())}"
    try:
        server_user()
    except LookupError as error:
        return str(error)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    port: int
    user: str
    password: str

    def url(self, database: str, scheme: str = "postgresql") -> str:
        return f"{scheme}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                               dbname=database, connect_timeout=5, autocommit=True)

    def create_database(self, name: str) -> str:
        """Create an empty database; its plain `postgresql://` URL."""
        with self.connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_user(owner: pwd.struct_passwd | None) -> dict:
    """subprocess arguments that run a program as `owner` (nothing when that is us)."""
    return {} if owner is None else {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


def _stop_with_parent() -> None:
    """Run in the server's process before it starts (after it became its user): when the test
    process dies without stopping it (killed), Linux sends the server SIGINT, its fast shutdown."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)


def _start(bin_dir: Path, folder: Path, owner: pwd.struct_passwd | None, env: dict,
           password: str) -> tuple[subprocess.Popen, Server]:
    """Start `postgres` on a free port; a port taken between choosing and binding it is tried again."""
    for _ in range(3):
        port = free_port()
        log = open(folder / "server.log", "w")
        server = subprocess.Popen([str(bin_dir / "postgres"), "-D", str(folder / "data"), "-p", str(port)],
                                  cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  preexec_fn=_stop_with_parent, **_as_user(owner))
        log.close()
        try:
            _wait_until_ready(server, Server(port, "grader", password), folder)
            return server, Server(port, "grader", password)
        except _PortTaken:
            server.wait()
    raise RuntimeError("PostgreSQL found no free port on 127.0.0.1 in three tries")


class _PortTaken(Exception):
    pass


def _wait_until_ready(server: subprocess.Popen, answer: Server, folder: Path) -> None:
    import psycopg

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log = (folder / "server.log").read_text(errors="replace")
            if "could not bind" in log or "Address already in use" in log:
                raise _PortTaken
            raise RuntimeError(f"PostgreSQL stopped at start-up (exit code {server.returncode}):\n{log[-3000:]}")
        try:
            answer.connect().close()
            return
        except psycopg.OperationalError:
            time.sleep(0.1)
    _stop(server)
    raise RuntimeError(f"PostgreSQL did not answer within {READY_TIMEOUT_S} s:\n"
                       f"{(folder / 'server.log').read_text(errors='replace')[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)  # "fast" shutdown: end the sessions, stop
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextmanager
def postgres_server() -> Iterator[Server]:
    """A fresh PostgreSQL cluster with one password-protected superuser, `grader`."""
    bin_dir, owner = server_bin(), server_user()
    if bin_dir is None:
        raise RuntimeError(missing())
    folder = Path(tempfile.mkdtemp(prefix="w3d4-postgres-"))  # in /tmp, which every user can traverse
    server = None
    try:
        password = secrets.token_urlsafe(18)
        (folder / "password").write_text(password + "\n")
        if owner is not None:
            for path in (folder, folder / "password"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "LC_ALL": "C", "LANG": "C",
               "TZ": "UTC"}
        initdb = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(folder / "data"), "--username=grader", f"--pwfile={folder / 'password'}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync"],
            cwd=folder, env=env, capture_output=True, text=True, timeout=120, **_as_user(owner))
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{initdb.stdout[-2000:]}\n{initdb.stderr[-2000:]}")
        with open(folder / "data" / "postgresql.conf", "a") as conf:
            conf.write(SETTINGS)
        server, answer = _start(bin_dir, folder, owner, env, password)
        yield answer
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(folder, ignore_errors=True)
