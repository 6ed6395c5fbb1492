"""The progress store: every attempt of every student, in SQLite (default) or PostgreSQL.

One database per host (``<state>/labctl.db``, root-only) unless ``LABCTL_DB`` gives a URL
(``postgresql+psycopg://...``). It holds students, lab instances and every attempt, not only
the last: who (lab, instance, student), what (exercise, step, kind ``start|check|answer|hint|
reset``, the answer given or judged, passed, the checks' messages), when, and whether it
scored. States are folded from the attempts, the same way on both engines: a step records
both "passes now" (its last check) and "first passed at".

Reading, for the CLI, the class report and the dashboard::

    store = open_store()                         # LABCTL_DB or the host's SQLite file
    store.attempts(lab, instances=[...], student=..., exercise=..., after_id=N)
    store.exercise_states(lab, instances=[...])  # -> list[ExerciseState]
    store.student_states(lab, instance, student) # -> {exercise: ExerciseState}
    # either with judge=window.judged: attempts after a class's exam window count no more

Writing: ``store.record(NewAttempt(...), ...)`` in one transaction. A class is a lab plus
its students' instances (``labctl.classroom.state``): pass those instances to the queries.
``class up`` also records each seat (``store.add_seat``), so ``store.seats(class_name)``
still knows the class, with names and emails (``store.students``), after ``class down``;
``store.forget(class_name, students, instances)`` removes them (``class down --forget``).
Scores (steps, penalties) need the exercises and live above, in ``labctl.exercises.grading``.
This package imports nothing above ``paths``, ``private`` and ``errors``.
"""

from __future__ import annotations

from labctl.store.engine import ENV, default_url, own_url
from labctl.store.fold import fold
from labctl.store.model import (
    KINDS,
    Attempt,
    ExerciseState,
    Forgotten,
    Kind,
    Message,
    NewAttempt,
    SeatRecord,
    StepState,
    StudentRecord,
)
from labctl.store.schema import VERSION
from labctl.store.store import Judge, Store, open_store

__all__ = [
    "ENV",
    "KINDS",
    "VERSION",
    "Attempt",
    "ExerciseState",
    "Forgotten",
    "Judge",
    "Kind",
    "Message",
    "NewAttempt",
    "SeatRecord",
    "StepState",
    "Store",
    "StudentRecord",
    "default_url",
    "fold",
    "open_store",
    "own_url",
]
