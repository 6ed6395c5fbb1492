"""The store: record attempts, read them back, fold them into states. One class, two engines."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime, timezone
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from labctl.errors import HostError
from labctl.store import engine as engines
from labctl.store import schema
from labctl.store.fold import fold
from labctl.store.model import (
    KINDS,
    Attempt,
    ExerciseState,
    Forgotten,
    Message,
    NewAttempt,
    SeatRecord,
    StudentRecord,
)

T = TypeVar("T")
#: what marks the attempts that count no more before they are folded (a class's exam window)
Judge = Callable[[Sequence[Attempt]], list[Attempt]]


def utc(at: datetime) -> datetime:
    """``at`` as an aware UTC time (SQLite hands times back without their zone)."""
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def _messages(raw: Any) -> tuple[Message, ...]:
    items = json.loads(raw) if isinstance(raw, str) else raw or []
    return tuple(
        Message(m["what"], m["status"], m.get("detail", ""), m.get("note", ""), m.get("check"))
        for m in items
    )


def _attempt(row: sa.Row[Any]) -> Attempt:
    """An attempts row: its columns are the Attempt's fields, three of them stored otherwise."""
    converted = {"messages": _messages(row.messages), "at": utc(row.at), "scored": bool(row.scored)}
    return Attempt(**{**row._mapping, **converted})


class Store:
    """Students, lab instances and every attempt, in one database (see :mod:`labctl.store`)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._writer = engines.writer(engine)
        self.url = engines.describe(engine)

    # -- plumbing ---------------------------------------------------------------------------

    def _guard(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except sa.exc.OperationalError as exc:
            raise HostError(
                f"the progress store ({self.url}) failed: {exc.orig}",
                "is the database reachable and its disk not full? (LABCTL_DB names it)",
            ) from exc
        except sa.exc.IntegrityError as exc:  # another labctl changed the same rows meanwhile
            raise HostError(
                f"the progress store ({self.url}) refused a change: {exc.orig}",
                "another labctl wrote the same records at the same time: run the command again",
            ) from exc

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction (committed at the end, rolled back on an error)."""
        with self._writer.begin() as conn:
            yield conn

    def migrate(self) -> list[int]:
        """Bring the schema up to date; the migration numbers applied (none: it was)."""

        def run() -> list[int]:
            with self.write() as conn:
                return schema.migrate(conn)

        return self._guard(run)

    def version(self) -> int:
        """The schema version of the database."""
        with self.engine.connect() as conn:
            return schema.current(conn)

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def _upsert(self, conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows whose primary key is not there yet (a race with another writer is fine)."""
        if not rows:
            return
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(table).values(rows).on_conflict_do_nothing())

    # -- writing ----------------------------------------------------------------------------

    def add_student(self, student: str, name: str | None = None, email: str | None = None) -> None:
        """Record a student (roster name and email); an existing one gets the new values."""

        def run() -> None:
            with self.write() as conn:
                self._upsert(conn, schema.students, [{"student": student}])
                if name is not None or email is not None:
                    conn.execute(
                        sa.update(schema.students)
                        .where(schema.students.c.student == student)
                        .values(name=name, email=email)
                    )

        self._guard(run)

    def add_seat(
        self,
        class_name: str,
        student: str,
        lab: str,
        instance: str,
        name: str | None = None,
        email: str | None = None,
        spec_path: str | None = None,
    ) -> None:
        """Record a class's student, their roster name and email, and their instance."""
        self.add_student(student, name, email)

        def run() -> None:
            with self.write() as conn:
                self._upsert(conn, schema.instances, [{"lab": lab, "instance": instance}])
                t = schema.seats
                conn.execute(
                    sa.delete(t).where(t.c.class_name == class_name, t.c.student == student)
                )
                conn.execute(
                    sa.insert(t).values(
                        class_name=class_name,
                        student=student,
                        lab=lab,
                        instance=instance,
                        spec_path=spec_path,
                    )
                )

        self._guard(run)

    def seats(self, class_name: str) -> list[SeatRecord]:
        """A class's seats as ``class up`` recorded them, by student id."""
        t = schema.seats
        query = sa.select(t).where(t.c.class_name == class_name).order_by(t.c.student)

        def run() -> list[SeatRecord]:
            with self.engine.connect() as conn:
                return [
                    SeatRecord(r.class_name, r.student, r.lab, r.instance, r.spec_path)
                    for r in conn.execute(query)
                ]

        return self._guard(run)

    def class_names(self) -> list[str]:
        """The classes whose seats ``class up`` recorded, by name."""
        query = sa.select(schema.seats.c.class_name).distinct().order_by(schema.seats.c.class_name)

        def run() -> list[str]:
            with self.engine.connect() as conn:
                return [str(name) for name in conn.scalars(query)]

        return self._guard(run)

    def record(self, *new: NewAttempt, conn: sa.Connection | None = None) -> list[Attempt]:
        """Record attempts, in order, in one transaction (``conn``: the caller's)."""
        if conn is None:

            def run() -> list[Attempt]:
                with self.write() as c:
                    return self.record(*new, conn=c)

            return self._guard(run)
        for a in new:
            if a.kind not in KINDS:
                raise ValueError(f"unknown attempt kind {a.kind!r}")
        self._upsert(conn, schema.students, [{"student": s} for s in {a.student for a in new}])
        pairs = {(a.lab, a.instance) for a in new}
        self._upsert(conn, schema.instances, [{"lab": lab, "instance": i} for lab, i in pairs])
        now = datetime.now(timezone.utc)
        out = []
        for a in new:
            # an attempt is what was asked to be recorded, at its time, with the id it got
            at = utc(a.at or now)
            # NewAttempt's fields: an Attempt given again is recorded anew, with a new id
            recorded = {f.name: getattr(a, f.name) for f in fields(NewAttempt)} | {"at": at}
            row = recorded | {
                "messages": [m.__dict__ for m in a.messages],
                "at": at if conn.dialect.name == "postgresql" else at.replace(tzinfo=None),
            }
            new_id = conn.execute(sa.insert(schema.attempts).values(row)).inserted_primary_key
            assert new_id is not None
            out.append(Attempt(id=int(new_id[0]), **recorded))
        return out

    def forget(
        self,
        class_name: str,
        students: Iterable[str],
        instances: Iterable[tuple[str, str]],
        imported_under: Iterable[str] = (),
    ) -> Forgotten:
        """Remove the class's seats of ``students`` and every attempt of ``instances`` (lab,
        instance) in one transaction: all of it or, on an error, nothing.

        The instances' rows and the students' own rows (name, email) go too where no seat or
        attempt left names them (another class's seat keeps its student); ``imported_under``:
        folders whose imported progress files are no longer noted. Plain deletes: the same
        on SQLite and PostgreSQL. A second call finds nothing (``Forgotten.nothing``).
        """
        who = sorted(set(students))
        pairs = sorted(set(instances))
        a, s, i, st = schema.attempts, schema.seats, schema.instances, schema.students

        def run() -> Forgotten:
            with self.write() as conn:
                whose = set(who) & set(
                    conn.scalars(
                        sa.select(s.c.student).where(
                            s.c.class_name == class_name, s.c.student.in_(who)
                        )
                    )
                )
                seats = conn.execute(
                    sa.delete(s).where(s.c.class_name == class_name, s.c.student.in_(who))
                ).rowcount
                attempts = 0
                for lab, instance in pairs:
                    mine = sa.and_(a.c.lab == lab, a.c.instance == instance)
                    whose |= set(conn.scalars(sa.select(a.c.student).where(mine).distinct()))
                    attempts += conn.execute(sa.delete(a).where(mine)).rowcount
                    named = sa.or_(
                        sa.exists().where(s.c.lab == lab, s.c.instance == instance),
                        sa.exists().where(mine),
                    )
                    conn.execute(
                        sa.delete(i).where(i.c.lab == lab, i.c.instance == instance, ~named)
                    )
                records = 0
                for student in sorted(whose | set(who)):
                    named = sa.or_(
                        sa.exists().where(s.c.student == student),
                        sa.exists().where(a.c.student == student),
                    )
                    records += conn.execute(
                        sa.delete(st).where(st.c.student == student, ~named)
                    ).rowcount
                for folder in imported_under:
                    t = schema.imported
                    conn.execute(sa.delete(t).where(t.c.source.startswith(folder, autoescape=True)))
            return Forgotten(class_name, tuple(sorted(whose)), attempts, seats, records)

        return self._guard(run)

    # -- reading ----------------------------------------------------------------------------

    def attempts(
        self,
        lab: str | None = None,
        instances: Iterable[str] | None = None,
        student: str | None = None,
        exercise: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
    ) -> list[Attempt]:
        """Attempts matching every filter given, oldest first (``after_id``: newer ones only)."""
        t = schema.attempts
        query = sa.select(t).where(t.c.id > after_id).order_by(t.c.id)
        if lab is not None:
            query = query.where(t.c.lab == lab)
        if instances is not None:
            query = query.where(t.c.instance.in_(list(instances)))
        if student is not None:
            query = query.where(t.c.student == student)
        if exercise is not None:
            query = query.where(t.c.exercise == exercise)
        if limit is not None:
            query = query.limit(limit)

        def run() -> list[Attempt]:
            with self.engine.connect() as conn:
                return [_attempt(r) for r in conn.execute(query)]

        return self._guard(run)

    def exercise_states(
        self,
        lab: str,
        instances: Iterable[str] | None = None,
        student: str | None = None,
        exercise: str | None = None,
        judge: Judge = list,
    ) -> list[ExerciseState]:
        """The state of every (instance, student, exercise) with attempts, in first-seen order.

        ``judge`` marks, before they are folded, the attempts that count no more (a class's
        exam window as it is now: ``classroom.window.Window.judged``)."""
        found = self.attempts(lab, instances, student, exercise)
        return list(fold(judge(found)).values())

    def exercise_state(
        self, lab: str, instance: str, student: str, exercise: str, judge: Judge = list
    ) -> ExerciseState:
        """One student's exercise (empty when nothing was done yet)."""
        found = self.exercise_states(lab, [instance], student, exercise, judge)
        return found[0] if found else ExerciseState(lab, instance, student, exercise)

    def student_states(
        self, lab: str, instance: str, student: str, judge: Judge = list
    ) -> dict[str, ExerciseState]:
        """Every exercise a student touched in one instance, by exercise id."""
        return {s.exercise: s for s in self.exercise_states(lab, [instance], student, None, judge)}

    def students(self, ids: Sequence[str] | None = None) -> list[StudentRecord]:
        """The students the store knows (``ids``: only those), by id."""
        t = schema.students
        query = sa.select(t).order_by(t.c.student)
        if ids is not None:
            query = query.where(t.c.student.in_(list(ids)))

        def run() -> list[StudentRecord]:
            with self.engine.connect() as conn:
                return [StudentRecord(r.student, r.name, r.email) for r in conn.execute(query)]

        return self._guard(run)

    def last_activity(self, lab: str, instance: str) -> datetime | None:
        """The time of the instance's latest attempt, by anyone."""
        t = schema.attempts
        query = sa.select(sa.func.max(t.c.at)).where(t.c.lab == lab, t.c.instance == instance)

        def run() -> datetime | None:
            with self.engine.connect() as conn:
                found = conn.execute(query).scalar()
            return utc(found) if found is not None else None

        return self._guard(run)

    # -- imports of older progress ----------------------------------------------------------

    def was_imported(self, source: str, conn: sa.Connection | None = None) -> bool:
        """Whether a file (by its path) was already imported."""
        query = sa.select(schema.imported.c.source).where(schema.imported.c.source == source)
        if conn is not None:
            return conn.execute(query).first() is not None
        with self.engine.connect() as c:
            return c.execute(query).first() is not None

    def mark_imported(self, source: str, conn: sa.Connection) -> None:
        """Note a file as imported, in the transaction that imported it."""
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._upsert(conn, schema.imported, [{"source": source, "at": stamp}])


def open_store(url: str | None = None, migrate: bool = True) -> Store:
    """The store at ``url`` (default: ``LABCTL_DB``, else ``<state>/labctl.db``), migrated."""
    store = Store(engines.create(url))
    if migrate:
        store.migrate()
    return store
