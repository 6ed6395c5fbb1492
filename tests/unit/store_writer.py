"""A writer to kill: batches of attempts through labctl's store API, each reported once committed.

``python -m tests.unit.store_writer URL TAG [LAB STUDENT]`` records batch after batch into lab
``LAB`` (default ``kill``), instance ``TAG``, by ``STUDENT`` (default ``TAG``), each batch
``SIZE`` attempts in one transaction (``Store.record``). Before each it prints ``begin N`` and after
``record`` returned ``done N``, flushed at once, so whoever kills it knows which batches were
committed and whether the kill landed inside a write.
"""

from __future__ import annotations

import sys

from labctl.store import Message, NewAttempt, open_store

SIZE = 20
#: each check carries messages this long, so a batch is tens of kilobytes: a kill lands in writes
DETAIL = "x" * 1500


def batch(tag: str, n: int, lab: str = "kill", student: str = "") -> list[NewAttempt]:
    """Batch ``n`` of writer ``tag``: its attempts are told apart by their answer."""
    return [
        NewAttempt(
            lab,
            tag,
            student or tag,
            "emu",
            "check",
            "s1",
            answer=f"{tag}:{n}:{i}",
            passed=i % 2 == 0,
            messages=(Message("uname -m", "failed", DETAIL),),
        )
        for i in range(SIZE)
    ]


def main(url: str, tag: str, lab: str = "kill", student: str = "") -> None:
    """Write batches until killed."""
    store = open_store(url)
    print("open", flush=True)
    n = 0
    while True:
        print(f"begin {n}", flush=True)
        store.record(*batch(tag, n, lab, student))
        print(f"done {n}", flush=True)
        n += 1


if __name__ == "__main__":
    main(*sys.argv[1:5])
