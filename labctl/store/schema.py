"""The store's tables and its numbered migrations, applied in order under a version table.

Each migration is a function of a connection, run once, in the same transaction that records
its number; a store opened by a newer labctl finds the steps it lacks and applies only those.
Two processes opening a new store at once are serialised: SQLite's write lock is taken first
(``BEGIN IMMEDIATE``), PostgreSQL's by an advisory lock held for the transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import sqlalchemy as sa

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.String(40), nullable=False),
)

students = sa.Table(
    "students",
    metadata,
    sa.Column("student", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200)),
    sa.Column("email", sa.String(320)),
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("lab", sa.String(64), primary_key=True),
    sa.Column("instance", sa.String(64), primary_key=True),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("lab", sa.String(64), nullable=False),
    sa.Column("instance", sa.String(64), nullable=False),
    sa.Column(
        "student", sa.String(64), sa.ForeignKey("students.student"), nullable=False, index=True
    ),
    sa.Column("exercise", sa.String(64), nullable=False),
    sa.Column("step", sa.String(64)),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("answer", sa.Text),
    sa.Column("passed", sa.Boolean),
    sa.Column("answer_passed", sa.Boolean),
    sa.Column("messages", sa.JSON, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("scored", sa.Boolean, nullable=False),
    #: version 3: who made the attempt for the student (NULL: the student)
    sa.Column("made_by", sa.String(64)),
    sa.ForeignKeyConstraint(["lab", "instance"], ["instances.lab", "instances.instance"]),
    sa.CheckConstraint(
        "kind IN ('start', 'check', 'answer', 'hint', 'reset')", name="attempt_kind"
    ),
    sa.Index("attempts_by_instance", "lab", "instance", "student", "exercise"),
)

#: version 2: which class an instance belongs to, and whose it is (kept after ``class down``)
seats = sa.Table(
    "seats",
    metadata,
    sa.Column("class_name", sa.String(64), primary_key=True),
    sa.Column("student", sa.String(64), sa.ForeignKey("students.student"), primary_key=True),
    sa.Column("lab", sa.String(64), nullable=False),
    sa.Column("instance", sa.String(64), nullable=False),
    sa.Column("spec_path", sa.String(1000)),
    sa.ForeignKeyConstraint(["lab", "instance"], ["instances.lab", "instances.instance"]),
)

imported = sa.Table(
    "imported",
    metadata,
    sa.Column("source", sa.String(1000), primary_key=True),
    sa.Column("at", sa.String(40), nullable=False),
)


def _v1(conn: sa.Connection) -> None:
    """Students, instances, attempts, and the record of imported progress files."""
    for table in (students, instances, attempts, imported):
        table.create(conn, checkfirst=True)


def _v2(conn: sa.Connection) -> None:
    """Class seats: a class's roster outlives its state file, so it can be graded after down."""
    seats.create(conn, checkfirst=True)


def _v3(conn: sa.Connection) -> None:
    """Who made an attempt for the student (an instructor's reset is not the student's work)."""
    if "made_by" not in {c["name"] for c in sa.inspect(conn).get_columns("attempts")}:
        conn.execute(sa.text("ALTER TABLE attempts ADD COLUMN made_by VARCHAR(64)"))


#: The migrations, in order: ``MIGRATIONS[n - 1]`` brings the store to version ``n``.
MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1, _v2, _v3]
VERSION = len(MIGRATIONS)


def current(conn: sa.Connection) -> int:
    """The store's version (0: empty)."""
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    return int(found or 0)


def migrate(conn: sa.Connection) -> list[int]:
    """Apply the missing migrations inside the caller's transaction; the versions applied."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7362519)"))  # labctl's store
    schema_version.create(conn, checkfirst=True)
    done = current(conn)
    applied = []
    for number, step in enumerate(MIGRATIONS, 1):
        if number <= done:
            continue
        step(conn)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        conn.execute(sa.insert(schema_version).values(version=number, applied_at=stamp))
        applied.append(number)
    return applied
