"""Many students checking at once: every attempt is counted, none fails (SQLite, PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labctl.store import NewAttempt, open_store
from labctl.store import engine as engines

WRITERS, EACH = 8, 40


def _write(url: str, student: str) -> int:
    store = open_store(url)  # every writer migrates too: the first one wins, the others wait
    try:
        for i in range(EACH):
            store.record(
                NewAttempt("virt", student, student, "emu", "answer", "s1", answer=str(i)),
                NewAttempt("virt", student, student, "emu", "check", "s1", passed=i % 2 == 0),
            )
        return EACH * 2
    finally:
        store.close()


def test_processes_write_at_once_and_every_attempt_is_counted(store_url: str) -> None:
    url = store_url  # a new database: the writers also race to migrate it
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        written = pool.starmap(_write, [(url, f"s{n}") for n in range(WRITERS)])
    store = open_store(url)
    got = store.attempts("virt")
    assert len(got) == sum(written) == WRITERS * EACH * 2
    for n in range(WRITERS):
        mine = [a for a in got if a.student == f"s{n}"]
        assert [a.answer for a in mine if a.kind == "answer"] == [str(i) for i in range(EACH)]
    store.close()


def test_threads_share_one_store(store_url: str) -> None:
    store = open_store(store_url)  # SQLite and PostgreSQL alike

    def one(n: int) -> None:
        store.record(NewAttempt("virt", f"t{n % 5}", f"t{n % 5}", "emu", "hint", "s1"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(200)))
    states = store.exercise_states("virt")
    assert sum(s.step("s1").hints for s in states) == 200
    store.close()


class _Cursor:
    """SQLite refusing the WAL switch ``refusals`` times, as it does to a connection opened
    while another one checkpoints the file on closing (no busy wait there)."""

    def __init__(self, refusals: int, error: str = "database is locked") -> None:
        self.refusals = refusals
        self.error = error
        self.mode = "delete"
        self.run: list[str] = []

    def execute(self, sql: str) -> _Cursor:
        self.run.append(sql)
        if self.refusals:
            self.refusals -= 1
            raise sqlite3.OperationalError(self.error)
        if sql.endswith("= WAL"):
            self.mode = "wal"
        return self

    def fetchone(self) -> tuple[str]:
        return (self.mode,)


def test_the_wal_switch_is_tried_again_when_sqlite_refuses_it_at_once() -> None:
    cur = _Cursor(refusals=3)
    engines._wal(cur)  # type: ignore[arg-type]
    assert cur.mode == "wal" and cur.run[-1] == "PRAGMA journal_mode = WAL"
    engines._wal(cur)  # type: ignore[arg-type]
    assert cur.run[-1] == "PRAGMA journal_mode"  # already WAL: only asked
    other = _Cursor(refusals=1, error="disk I/O error")  # any other error: at once
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        engines._wal(other)  # type: ignore[arg-type]
    assert other.run == ["PRAGMA journal_mode"]


def test_opening_the_store_again_keeps_this_process_locks_so_another_sees_it_in_use(
    tmp_path: Path,
) -> None:
    """POSIX drops every lock a process holds on a file when it closes any descriptor of it.
    Opening the store again (as ``class serve`` does beside the exercises' own store) must not
    open the file itself: a student's command closing its last connection would then think
    it the last user, checkpoint and delete the WAL, and this process would read a stale copy
    for good (a walkthrough's dashboard froze so)."""
    path = tmp_path / "labctl.db"
    url = f"sqlite:///{path}"
    first = engines.create(url)
    with first.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    reading = first.connect()  # kept open, as a server's pooled connection is
    reading.exec_driver_sql("SELECT count(*) FROM t").scalar()
    reading.rollback()
    engines.create(url).dispose()  # the store opened again in this process

    other = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
    other += "c.execute('INSERT INTO t VALUES (1)'); c.commit(); c.close()"
    subprocess.run([sys.executable, "-c", other, str(path)], check=True, timeout=60)

    assert path.with_name("labctl.db-wal").exists()  # still in use here: not taken away
    assert reading.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
    reading.close()
    first.dispose()


def test_threads_making_the_file_at_once_leave_one_private_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'labctl.db'}"
    with ThreadPoolExecutor(8) as pool:
        for engine in pool.map(lambda _n: engines.create(url), range(8)):
            engine.dispose()
    assert [p.name for p in tmp_path.iterdir()] == ["labctl.db"]  # nothing made beside it
    assert (tmp_path / "labctl.db").stat().st_mode & 0o777 == 0o600


def test_a_folder_labctl_db_names_is_left_as_it_is(tmp_path: Path) -> None:
    shared_folder = tmp_path / "shared"  # as /tmp or an instructor's home would be
    shared_folder.mkdir(mode=0o755)
    shared_folder.chmod(0o1777)
    engines.create(f"sqlite:///{shared_folder / 'labctl.db'}").dispose()
    assert shared_folder.stat().st_mode & 0o7777 == 0o1777  # not made root-only
    assert (shared_folder / "labctl.db").stat().st_mode & 0o777 == 0o600
    made = tmp_path / "new" / "db"  # a folder made for it is root-only
    engines.create(f"sqlite:///{made / 'labctl.db'}").dispose()
    assert made.stat().st_mode & 0o777 == 0o700
