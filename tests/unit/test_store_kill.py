"""A writer SIGKILLed mid-write, again and again: the store reopens whole (SQLite WAL, PostgreSQL).

Each round starts a real child process (``tests/unit/store_writer.py``) that records batches
of attempts through ``Store.record`` and says ``begin N`` / ``done N`` around each; the test
kills it by its PID at a random moment. The rounds go on until several kills landed inside a
write (``begin`` without its ``done``). Then the database is opened again: SQLite's
``integrity_check`` says ok, every batch the writers reported done is there, and every batch
is all there or not at all.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from labctl.store import open_store
from tests.unit.store_writer import DETAIL, SIZE

ROOT = Path(__file__).resolve().parents[2]
MID_WRITE_KILLS, MIN_ROUNDS, MAX_ROUNDS = 3, 5, 30


def _kill_one(url: str, tag: str, rng: random.Random) -> list[str]:
    """Start a writer, SIGKILL it at a random moment after it opened the store; what it said."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.unit.store_writer", url, tag],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    said: list[str] = []
    opened = threading.Event()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            said.append(line.strip())
            opened.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert opened.wait(60), f"the writer never opened the store: {child.stderr!r}"
        time.sleep(rng.uniform(0.05, 0.8))
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        reader.join(10)
        assert child.stderr is not None
        err = child.stderr.read()
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()
    assert "Traceback" not in err, err  # it died of the kill, not of an error
    return said


def test_writers_killed_mid_write_leave_a_whole_store(store_url: str) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    done: dict[str, set[int]] = {}
    begun: dict[str, int] = {}
    mid_write = rounds = 0
    while rounds < MIN_ROUNDS or mid_write < MID_WRITE_KILLS:
        assert rounds < MAX_ROUNDS, f"only {mid_write} kills inside a write (seed {seed})"
        tag = f"w{rounds}"
        said = _kill_one(store_url, tag, rng)
        done[tag] = {int(x.split()[1]) for x in said if x.startswith("done ")}
        starts = [int(x.split()[1]) for x in said if x.startswith("begin ")]
        begun[tag] = max(starts, default=-1)
        mid_write += bool(said) and said[-1].startswith("begin ")
        rounds += 1

    store = open_store(store_url)  # reopened after the last kill: recovers, migrates nothing
    try:
        if store_url.startswith("sqlite"):
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        got = store.attempts("kill")  # every row read back as an Attempt: none half-written
    finally:
        store.close()
    batches: dict[tuple[str, int], list[int]] = defaultdict(list)
    for a in got:
        assert a.answer is not None and a.student == a.instance
        tag, n, i = a.answer.split(":")
        assert a.messages[0].detail == DETAIL, "a message cut short"
        batches[(tag, int(n))].append(int(i))
    for (tag, n), items in batches.items():
        assert sorted(items) == list(range(SIZE)), f"batch {tag}:{n} half there (seed {seed})"
        assert n <= begun[tag], f"{tag}:{n} was never begun"
    for tag, ns in done.items():
        missing = sorted(n for n in ns if (tag, n) not in batches)
        assert not missing, f"{tag}: batches reported committed are gone: {missing} (seed {seed})"
    # what is there beyond the reports is at most the one batch killed between commit and "done"
    for tag in done:
        extra = {n for t, n in batches if t == tag} - done[tag]
        assert extra <= {begun[tag]}, (tag, extra)
    assert sum(len(ns) for ns in done.values()) > 0, "no writer ever committed"
    assert mid_write >= MID_WRITE_KILLS and rounds >= MIN_ROUNDS
