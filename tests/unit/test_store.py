"""The progress store on SQLite and on a real PostgreSQL: migrations, attempts, folded states."""

from __future__ import annotations

import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from labctl.errors import HostError
from labctl.store import VERSION, Message, NewAttempt, Store, open_store, schema
from labctl.store import engine as engines

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def new(kind: str, step: str | None = None, minute: int = 0, **kw: object) -> NewAttempt:
    base: dict[str, object] = {
        "lab": "virt",
        "instance": "ana",
        "student": "ana",
        "exercise": "emu",
        "kind": kind,
        "step": step,
        "at": at(minute),
    }
    return NewAttempt(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture
def store(store_url: str) -> Store:
    s = open_store(store_url)
    yield s
    s.close()


def test_migrations_run_once_and_record_their_version(store_url: str) -> None:
    first = open_store(store_url, migrate=False)
    assert first.version() == 0
    assert first.migrate() == list(range(1, VERSION + 1))
    assert first.migrate() == []  # idempotent
    second = open_store(store_url)
    assert second.version() == VERSION
    second.close()
    with first.engine.connect() as conn:
        assert sa.inspect(conn).has_table("attempts")
    first.close()


def test_every_attempt_is_kept_with_its_messages(store: Store) -> None:
    msgs = (
        Message("uname -m", "failed", "x86_64 ≠ aarch64", "look again", 1),
        Message("ñandú", "passed"),
    )
    store.record(
        new("start"),
        new("answer", "arch", 1, answer="x86_64"),
        new("check", "arch", 2, answer="x86_64", passed=False, answer_passed=False, messages=msgs),
    )
    store.record(new("check", "arch", 3, passed=True, scored=False))
    got = store.attempts("virt", student="ana")
    assert [a.kind for a in got] == ["start", "answer", "check", "check"]
    assert got[2].messages == msgs and got[2].passed is False and got[2].answer == "x86_64"
    assert got[2].at == at(2) and got[2].at.tzinfo is not None
    assert got[3].scored is False
    assert [a.id for a in store.attempts("virt", after_id=got[1].id)] == [got[2].id, got[3].id]
    assert store.attempts("virt", instances=["other"]) == []
    assert store.last_activity("virt", "ana") == at(3)
    assert [s.student for s in store.students()] == ["ana"]


def test_passes_now_and_first_passed_at_are_both_kept(store: Store) -> None:
    store.record(
        new("check", "svc", 1, passed=True),
        new("check", "svc", 5, passed=False),  # broken afterwards
        new("check", "cfg", 6, passed=True),
    )
    state = store.exercise_state("virt", "ana", "ana", "emu")
    svc = state.step("svc")
    assert svc.first_passed_at == at(1) and not svc.passes_now and svc.broken
    assert state.step("cfg").passes_now and not state.step("cfg").broken
    assert state.completed_at(["svc", "cfg"]) == at(6)
    assert state.completed_at(["svc", "cfg", "other"]) is None
    assert state.checks == 3 and state.started_at == at(1)


def test_reset_starts_over_but_keeps_hints_and_wrong_answers(store: Store) -> None:
    store.record(
        new("hint", "arch", 1),
        new("answer", "arch", 2, answer="si"),
        new("check", "arch", 3, answer="si", passed=False, answer_passed=False),
        new("check", "arch", 4, answer="si", passed=False, answer_passed=False),  # same answer
        new("answer", "arch", 5, answer="no"),
        new("check", "arch", 6, answer="no", passed=True, answer_passed=True),
        new("reset", None, 7),
    )
    state = store.exercise_state("virt", "ana", "ana", "emu")
    step = state.step("arch")
    assert step.hints == 1 and step.wrong == {"si"} and step.wrong_attempts == 1
    assert step.answer is None and step.first_passed_at is None and not step.passes_now
    assert state.resets == 1 and state.started_at == at(7) and state.attempts == 7


def test_every_wrong_answer_given_is_an_attempt_and_a_recheck_is_not(store: Store) -> None:
    wrong = {"passed": False, "answer_passed": False}
    store.record(
        new("answer", "arch", 1, answer="si"),
        new("check", "arch", 2, answer="si", **wrong),
        new("check", "arch", 3, answer="si", **wrong),  # checked again: the same attempt
        new("answer", "arch", 4, answer="si"),  # the same wrong answer, given again
        new("check", "arch", 5, answer="si", **wrong),
        new("answer", "arch", 6, answer="no"),
        new("check", "arch", 7, answer="no", **wrong),
        new("answer", "arch", 8, answer="x"),
        new("check", "arch", 9, answer="x", passed=False, answer_passed=None),  # not judged
        new("answer", "arch", 10, answer="tal"),
        new("check", "arch", 11, answer="tal", scored=False, **wrong),  # late: not counted
    )
    step = store.exercise_state("virt", "ana", "ana", "emu").step("arch")
    assert step.wrong_attempts == 3 and step.wrong == {"si", "no"}
    # a reset keeps them; answers after it count on
    store.record(
        new("reset", None, 12),
        new("answer", "arch", 13, answer="si"),
        new("check", "arch", 14, answer="si", **wrong),
    )
    step = store.exercise_state("virt", "ana", "ana", "emu").step("arch")
    assert step.wrong_attempts == 4 and step.wrong == {"si", "no"}


def test_a_late_pass_does_not_score_but_is_reached(store: Store) -> None:
    store.record(new("check", "a", 1, passed=True, scored=False))
    step = store.exercise_state("virt", "ana", "ana", "emu").step("a")
    assert step.passes_now and step.first_passed_at is None and step.reached_at == at(1)
    store.record(new("check", "a", 2, passed=True))  # scored later: both kept from the first
    step = store.exercise_state("virt", "ana", "ana", "emu").step("a")
    assert step.first_passed_at == at(2) and step.reached_at == at(1)


def test_states_per_student_and_per_instance(store: Store) -> None:
    store.record(new("start"), new("start", student="bea", instance="bea"))
    store.record(new("hint", "x", 2, exercise="pv", student="bea", instance="bea"))
    states = store.exercise_states("virt", instances=["ana", "bea"])
    assert {(s.student, s.exercise) for s in states} == {
        ("ana", "emu"),
        ("bea", "emu"),
        ("bea", "pv"),
    }
    assert set(store.student_states("virt", "bea", "bea")) == {"emu", "pv"}
    empty = store.exercise_state("virt", "ana", "ana", "nothing")
    assert empty.attempts == 0 and empty.step("x").hints == 0


def test_students_keep_their_roster_name_and_email(store: Store) -> None:
    store.add_student("ana", "Ana Núñez", "ana@example.org")
    store.add_student("ana")  # a plain record later does not erase them
    assert store.students(["ana"])[0].email == "ana@example.org"


def test_the_sqlite_file_is_root_only_and_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "state" / "labctl.db"
    store = open_store(f"sqlite:///{db}")
    store.record(new("start"))
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.close()


def test_the_default_is_one_file_in_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(engines.ENV, raising=False)
    monkeypatch.setenv("LABCTL_STATE", str(tmp_path))
    assert engines.default_url() == f"sqlite:///{tmp_path / 'labctl.db'}"
    monkeypatch.setenv(engines.ENV, "postgresql+psycopg://u@h/db")
    assert engines.default_url() == "postgresql+psycopg://u@h/db"
    engines.remember_url()  # what class up does: the students' entry point has no LABCTL_DB
    assert stat.S_IMODE((tmp_path / "database-url").stat().st_mode) == 0o600
    monkeypatch.delenv(engines.ENV)
    assert engines.default_url() == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url"])
def test_a_database_the_store_cannot_use_is_refused(url: str) -> None:
    with pytest.raises(HostError):
        engines.create(url)


def test_an_unreachable_database_is_a_host_error(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://nobody@/x?host={tmp_path}&port=1"
    with pytest.raises(HostError, match="progress store"):
        open_store(url)


def test_a_kind_outside_the_list_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        store.record(new("cheat"))


def test_the_schema_lists_its_migrations_in_order() -> None:
    assert schema.VERSION == len(schema.MIGRATIONS) >= 1


def test_class_seats_outlive_the_class(store: Store) -> None:
    store.add_seat("so", "ana", "virt", "so-ana", "Ana", "ana@example.org", "/labs/v/lab.yaml")
    store.add_seat("so", "ana", "virt", "so-ana", "Ana", "ana@example.org", "/labs/v/lab.yaml")
    seats = store.seats("so")
    assert [(s.student, s.instance, s.spec_path) for s in seats] == [
        ("ana", "so-ana", "/labs/v/lab.yaml")
    ]
    assert store.seats("other") == []


def _class_so(store: Store) -> None:
    """Class so (ana, bo) and class b (bo again), each with attempts in their instances."""
    store.add_seat("so", "ana", "virt", "so-ana", "Ana", "ana@example.org")
    store.add_seat("so", "bo", "virt", "so-bo", "Bo")
    store.add_seat("b", "bo", "virt", "b-bo", "Bo")
    store.record(
        new("start", instance="so-ana"),
        new("check", "s", 1, instance="so-ana", passed=True),
        new("start", instance="so-bo", student="bo"),
        new("start", instance="b-bo", student="bo"),
    )


def _instances(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.scalars(sa.select(schema.instances.c.instance)))


def test_forget_removes_a_class_s_seats_and_attempts_and_nothing_else(store: Store) -> None:
    from labctl.store import Forgotten

    _class_so(store)
    pairs = [("virt", "so-ana"), ("virt", "so-bo")]
    gone = store.forget("so", ["ana", "bo"], pairs)
    assert gone == Forgotten("so", ("ana", "bo"), attempts=3, seats=2, records=1)
    assert store.seats("so") == [] and [s.class_name for s in store.seats("b")] == ["b"]
    assert [a.instance for a in store.attempts("virt")] == ["b-bo"]
    assert [s.student for s in store.students()] == ["bo"]  # class b's seat still names bo
    assert _instances(store) == ["b-bo"]
    again = store.forget("so", ["ana", "bo"], pairs)  # idempotent: nothing left to forget
    assert again == Forgotten("so") and again.nothing


def test_forget_of_one_student_leaves_the_others(store: Store) -> None:
    _class_so(store)
    gone = store.forget("so", ["ana"], [("virt", "so-ana")])
    assert (gone.students, gone.attempts, gone.seats) == (("ana",), 2, 1)
    assert [s.student for s in store.seats("so")] == ["bo"]
    assert sorted(a.instance for a in store.attempts("virt")) == ["b-bo", "so-bo"]
    assert store.students(["ana"]) == []


def test_forget_is_one_transaction_and_drops_the_imported_notes(store: Store) -> None:
    _class_so(store)
    with store.write() as conn:
        store.mark_imported("/state/virt-so-ana/progress/ana.json", conn)
        store.mark_imported("/state/virt-so-anabel/progress/anabel.json", conn)
    with pytest.raises(TypeError):  # fails after the deletes began: every one rolled back
        store.forget("so", ["ana"], [("virt", "so-ana")], [None])  # type: ignore[list-item]
    assert len(store.attempts("virt", ["so-ana"])) == 2 and len(store.seats("so")) == 2
    store.forget("so", ["ana"], [("virt", "so-ana")], ["/state/virt-so-ana/progress/"])
    assert not store.was_imported("/state/virt-so-ana/progress/ana.json")
    assert store.was_imported("/state/virt-so-anabel/progress/anabel.json")


def test_a_version_2_store_learns_who_made_an_attempt(store_url: str) -> None:
    old = open_store(store_url)
    old.record(new("start"))
    with old.write() as conn:  # back to version 2: the column did not exist
        conn.execute(sa.text("ALTER TABLE attempts DROP COLUMN made_by"))
        conn.execute(sa.delete(schema.schema_version).where(schema.schema_version.c.version == 3))
    old.close()
    store = open_store(store_url)
    assert store.version() == 3
    store.record(new("reset", minute=5, made_by="instructor"))
    found = store.attempts("virt")
    assert [(a.kind, a.made_by) for a in found] == [("start", None), ("reset", "instructor")]
    state = store.exercise_state("virt", "ana", "ana", "emu")
    # the instructor's reset puts the exercise back as never started; the student was last
    # active before it, and their next attempt starts its clock
    assert (state.started_at, state.last_at, state.active_at) == (None, at(5), at(0))
    store.record(new("hint", "arch", minute=9))
    again = store.exercise_state("virt", "ana", "ana", "emu")
    assert (again.started_at, again.active_at, again.resets) == (at(9), at(9), 1)
    store.close()
