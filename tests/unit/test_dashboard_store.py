"""The dashboard reads the progress store: only the class's instances, new attempts only."""

from __future__ import annotations

from pathlib import Path

from labctl.dashboard.data import StoreSource
from labctl.store import Message, NewAttempt, open_store
from tests.unit.dashboard_data import at


def new(instance: str, student: str, minute: float, passed: bool) -> NewAttempt:
    return NewAttempt(
        "virtualization",
        instance,
        student,
        "emu",
        "check",
        step="arch",
        answer="x86_64",
        passed=passed,
        messages=(Message("arch", "failed", "not x86_64"),),
        at=at(minute),
    )


def test_the_store_source_reads_the_class_incrementally(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'labctl.db'}")
    try:
        instances = ["c1-ana", "c1-bo"]
        source = StoreSource(store, "virtualization", lambda: instances)
        store.record(new("c1-ana", "ana", 1, False), new("other", "zed", 1, False))
        (a,) = source.attempts()
        assert (a.student, a.kind, a.passed, a.answer) == ("ana", "check", False, "x86_64")
        assert a.messages == ("arch: failed: not x86_64",) and a.at == at(1) and a.scored
        assert a.failing == a.messages
        store.record(new("c1-bo", "bo", 2, True))
        assert [x.student for x in source.attempts()] == ["ana", "bo"]
        assert [x.student for x in source.attempts(student="bo")] == ["bo"]
        assert source.attempts(exercise="kvm") == []
        instances.append("other")  # a new seat: everything read again
        assert [x.student for x in source.attempts()] == ["ana", "zed", "bo"]
    finally:
        store.close()
