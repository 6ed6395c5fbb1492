"""Attempts as JSON between stores: a lab host's ``class report --attempts --format json``
read into the controller's store (a class over several hosts, ``labctl.fleet``).

The lab host's store is where its students' checks write; the controller's copy of one
instance's attempts is replaced as a whole in one transaction, so collecting twice, or after
a student's exercise was reset on the host, leaves exactly what the host has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from labctl.store import schema
from labctl.store.model import KINDS, Attempt, Kind, Message, NewAttempt
from labctl.store.store import Store


def to_json(a: Attempt) -> dict[str, Any]:
    """One attempt as plain JSON values, by its field names (its time in ISO 8601, UTC)."""
    return {"id": a.id, **asdict(a), "at": a.at.isoformat()}


def from_json(data: Mapping[str, Any]) -> NewAttempt:
    """An attempt read back, at its own time; ValueError for anything malformed."""
    kind = str(data["kind"])
    if kind not in KINDS:
        raise ValueError(f"unknown attempt kind {kind!r}")
    return NewAttempt(
        lab=str(data["lab"]),
        instance=str(data["instance"]),
        student=str(data["student"]),
        exercise=str(data["exercise"]),
        kind=cast(Kind, kind),
        step=data.get("step"),
        answer=data.get("answer"),
        passed=data.get("passed"),
        answer_passed=data.get("answer_passed"),
        messages=tuple(Message(**m) for m in data.get("messages", [])),
        scored=bool(data.get("scored", True)),
        made_by=data.get("made_by"),
        at=datetime.fromisoformat(str(data["at"])),
    )


def replace_instances(
    store: Store, pairs: Iterable[tuple[str, str]], rows: list[NewAttempt]
) -> int:
    """Make the store's attempts of each (lab, instance) in ``pairs`` exactly ``rows``'."""
    t = schema.attempts
    pairs = set(pairs) | {(a.lab, a.instance) for a in rows}
    with store.write() as conn:
        for lab, instance in pairs:
            conn.execute(sa.delete(t).where(t.c.lab == lab, t.c.instance == instance))
        if rows:
            store.record(*rows, conn=conn)
    return len(rows)
