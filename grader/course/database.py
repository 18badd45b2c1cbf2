"""The gradebook's database: the one URL every part of a grading run uses, a check that it answers,
and a lock that keeps two runs from writing one PostgreSQL gradebook at the same time.

`--db` takes a SQLAlchemy URL. A PostgreSQL URL may be written the usual way,
`postgresql://USER:PASSWORD@HOST:PORT/DATABASE` (or `postgres://...`, which SQLAlchemy rejects):
`gradebook_url` rewrites it, here and nowhere else, to `postgresql+psycopg://...`, so that SQLAlchemy
uses psycopg 3, the driver requirements.txt installs, whatever its version (2.1 picks psycopg 3 for a
plain URL by itself, 2.0 picks psycopg2). The workspace stores the rewritten URL in its
nbgrader_config.py (which nbgrader's commands and the formgrader read) and hands the same URL to the
reports. A URL that names its driver (`postgresql+psycopg2://...`, `sqlite:///...`) is used as given.
The database itself must exist; nbgrader creates its tables in it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

PSYCOPG = "postgresql+psycopg"
CONNECT_TIMEOUT_S = 10
URL_FORMS = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE or sqlite:////ABSOLUTE/PATH.db"
# One advisory lock per course: every grading run of this course takes it to write the gradebook.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"w3d4 nbgrader gradebook").digest()[:8], "big", signed=True)


class DatabaseError(Exception):
    """The gradebook database cannot be used; the message is one line that says why."""


def gradebook_url(url: str) -> str:
    """The URL as nbgrader and the reports use it: plain PostgreSQL URLs get the psycopg 3 driver."""
    return re.sub(r"^(postgresql|postgres)://", PSYCOPG + "://", url.strip())


def describe(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a URL)"


def _one_line(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error  # the driver's own message, without SQLAlchemy's SQL echo
    return " ".join(str(cause).split()) or type(cause).__name__


@contextmanager
def _connection(url: str) -> Iterator[Connection]:
    """A connection to the database, or DatabaseError with one line saying why there is none."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"--db is not a database URL; expected {URL_FORMS}") from None
    postgres = parsed.get_backend_name() == "postgresql"
    try:
        engine = create_engine(parsed, connect_args={"connect_timeout": CONNECT_TIMEOUT_S} if postgres else {})
    except NoSuchModuleError:
        raise DatabaseError(f"{describe(url)}: SQLAlchemy knows no database called "
                            f"{parsed.drivername!r}; expected {URL_FORMS}") from None
    except ImportError as error:
        hint = " (psycopg, from requirements.txt, also needs the system library libpq: Debian's libpq5)" \
            if parsed.drivername == PSYCOPG else ""
        raise DatabaseError(f"{describe(url)}: the database driver cannot be loaded: {_one_line(error)}{hint}") from None
    try:
        try:
            connection = engine.connect()
        except (SQLAlchemyError, OSError) as error:
            reason = _one_line(error)
            hint = " (create it first, e.g. with `createdb`)" if "does not exist" in reason else ""
            raise DatabaseError(f"cannot open the gradebook database {describe(url)}: {reason}{hint}") from None
        with connection:
            yield connection
    finally:
        engine.dispose()


def check(url: str) -> None:
    """DatabaseError (one line) unless the gradebook database at `url` can be opened."""
    with _connection(url):
        pass


@contextmanager
def write_lock(url: str) -> Iterator[None]:
    """Hold the course's gradebook lock while nbgrader writes to a PostgreSQL gradebook.

    Two runs that grade into one database (two workspaces, or two instructors) then take turns,
    whatever the timing: nbgrader creates its tables and rows without guarding against a second
    writer. The lock is PostgreSQL's session advisory lock, so the server drops it if this process
    dies. SQLite gradebooks are one file per workspace by default and rely on SQLite's own locking."""
    if _backend(url) != "postgresql":
        yield
        return
    with _connection(url) as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar():
            print(f"Waiting for another grading run to finish with the gradebook {describe(url)}", flush=True)
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})


def _backend(url: str) -> str | None:
    """The kind of database (`postgresql`, `sqlite`, ...), or None when the URL does not parse."""
    try:
        return make_url(url).get_backend_name()
    except ArgumentError:
        return None
