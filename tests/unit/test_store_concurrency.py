"""Many students checking at once: every attempt is counted, none fails (SQLite, PostgreSQL)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

from labctl.store import NewAttempt, open_store

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
