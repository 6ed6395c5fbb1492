"""Where the store lives and how it is opened: SQLite by default, PostgreSQL by URL.

The default is one SQLite file for the whole host, ``<state>/labctl.db`` (beside the lab
instances and the classes, see :mod:`labctl.paths`), root-only like every file labctl keeps.
``LABCTL_DB`` (or the ``url`` argument) names another database, e.g.
``postgresql+psycopg://labctl@/labctl?host=/run/postgresql`` for a class spread over several
servers; the same code runs on both. SQLite runs in WAL mode (readers never wait for the
writer), with a busy timeout (writers queue instead of failing) and foreign keys on; each
write transaction takes the write lock when it begins (``BEGIN IMMEDIATE``), so two students
checking at once queue in order instead of one failing on a lock upgrade.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import tenacity

from labctl.errors import HostError
from labctl.paths import state_dir
from labctl.private import FILE_MODE, make_private, private_dir, write_private

ENV = "LABCTL_DB"
FILE_NAME = "labctl.db"
#: ``<state>/database-url``: the URL ``LABCTL_DB`` gave when the class came up, root-only, for
#: the commands that run without the instructor's environment (the students' sudo entry point)
URL_FILE = "database-url"
BUSY_TIMEOUT_MS = 30_000


def default_url() -> str:
    """``LABCTL_DB``, else ``<state>/database-url``, else the SQLite file in the state dir."""
    url = os.environ.get(ENV, "").strip()
    if not url:
        try:
            url = (state_dir() / URL_FILE).read_text().strip()
        except OSError:
            url = ""
    return url or f"sqlite:///{state_dir() / FILE_NAME}"


def own_url() -> bool:
    """The store is this host's own SQLite file: every seat in it was recorded here (a
    ``LABCTL_DB`` database may be shared with other servers)."""
    return default_url() == f"sqlite:///{state_dir() / FILE_NAME}"


def remember_url() -> None:
    """Keep ``LABCTL_DB`` in ``<state>/database-url`` (0600) for commands run without it."""
    url = os.environ.get(ENV, "").strip()
    if url:
        write_private(private_dir(state_dir()) / URL_FILE, url + "\n")


def _sqlite_file(url: sa.URL) -> None:
    """Make the database file (and its folder) root-only before SQLite creates it.

    The file itself is never opened here: closing any descriptor of a file drops every POSIX
    lock the process holds on it, SQLite's own connections' too, and another process closing
    its last connection would then take itself for the last user and delete the WAL this
    process still reads (a dashboard froze so, its store opened twice). A missing file is
    made under another name and linked in whole, so no thread of this process connects to
    it while another still holds it open.
    """
    if not url.database or url.database == ":memory:":
        return
    path = Path(url.database)
    if path.parent == state_dir() or not path.parent.exists():
        private_dir(path.parent)  # labctl's own folder; another that LABCTL_DB names (/tmp...)
        # is left as it is: the file is root-only itself
    if not path.exists():
        made = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
        os.close(os.open(made, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE))
        try:
            os.link(made, path)
        except FileExistsError:  # another made it first: theirs is the one
            pass
        finally:
            made.unlink()
    make_private(path)  # by its name (a umask may have narrowed it, another program widened)


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


@tenacity.retry(
    retry=tenacity.retry_if_exception(_locked),
    wait=tenacity.wait_random(0.01, 0.1),
    stop=tenacity.stop_after_delay(BUSY_TIMEOUT_MS / 1000),
    reraise=True,
)
def _wal(cur: sqlite3.Cursor) -> None:
    """Put the file in WAL mode (kept in the file: asked only, once done). SQLite may refuse
    this at once, without its busy timeout ("database is locked": seen with four threads
    opening and closing stores on one new file, 1 run in 7), so it is tried again."""
    if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        cur.execute("PRAGMA journal_mode = WAL")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is turned off: SQLAlchemy's begin() emits BEGIN below
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _wal(cur)
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


#: the execution option that marks a write transaction (see :func:`writer`)
WRITE = "labctl_write"


def _sqlite_begin(conn: sa.Connection) -> None:
    # a writer takes the lock at once; readers stay deferred and never wait (WAL)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")


def create(url: str | None = None) -> sa.Engine:
    """An engine for ``url`` (default :func:`default_url`); refuses a URL it cannot use."""
    text = url or default_url()
    try:
        parsed = sa.make_url(text)
    except sa.exc.ArgumentError as exc:
        raise HostError(
            f"{ENV}={text!r} is not a database URL",
            "e.g. postgresql+psycopg://user:password@host/db, or unset it for SQLite",
        ) from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise HostError(
            f"the progress store runs on SQLite or PostgreSQL, not {backend}",
            "use postgresql+psycopg://... or unset LABCTL_DB",
        )
    if backend == "sqlite":
        _sqlite_file(parsed)
        engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True)


def writer(engine: sa.Engine) -> sa.Engine:
    """The same engine, its transactions marked as writes (SQLite: ``BEGIN IMMEDIATE``)."""
    return engine.execution_options(**{WRITE: True})


def describe(engine: sa.Engine) -> str:
    """The database, for messages: the URL without its password."""
    return engine.url.render_as_string(hide_password=True)
