"""What the dashboard reads: the class, its exercises and every attempt, as frozen dataclasses.

The pages never touch the store or the engines themselves: they get a :class:`ClassData`
(who is in the class, which exercises and steps there are, the exam window), a
:class:`Source` of attempts (the progress store, ``labctl.store``; a list in the tests) and
the guests' health (``class status``, refreshed in the background by ``dashboard.health``).
``dashboard.views`` turns those into the grid, a student's page and an exercise's page.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from labctl.classroom.state import ClassState, Seat
from labctl.classroom.window import Window, window_of
from labctl.errors import LabctlError
from labctl.i18n import Lang
from labctl.store import Attempt as StoreAttempt
from labctl.store import Message, Store

START, CHECK, ANSWER, HINT, RESET = "start", "check", "answer", "hint", "reset"


@dataclass(frozen=True)
class Attempt:
    """One thing a student did: a check of a step, an answer, a hint taken, a reset."""

    student: str
    exercise: str
    step: str | None
    kind: str  # start | check | answer | hint | reset
    at: datetime
    passed: bool | None = None
    answer: str | None = None
    messages: tuple[str, ...] = ()
    scored: bool = True
    failing: tuple[str, ...] = ()  # the messages of the checks that did not pass
    #: those checks as (place among the step's checks, status), where the record says
    failed_checks: tuple[tuple[int, str], ...] = ()
    made_by: str | None = None  # who did it for the student (an instructor's reset)
    answer_passed: bool | None = None  # a check: its answer check's own verdict, if it ran

    @property
    def late(self) -> bool:
        """A check or an answer made after the exam window closed: recorded, not counted (a
        start, a hint or a reset is no attempt, late or not)."""
        return not self.scored and self.kind in (CHECK, ANSWER)

    @property
    def failed(self) -> bool:
        """A check or answer that did not pass."""
        return self.kind in (CHECK, ANSWER) and self.passed is False


class Source(Protocol):
    """Where attempts come from: the progress store, or a list in the tests."""

    def attempts(self, student: str | None = None, exercise: str | None = None) -> list[Attempt]:
        """Attempts of the class (one student's, one exercise's), oldest first."""


def _matching(
    attempts: Iterable[Attempt], student: str | None, exercise: str | None
) -> list[Attempt]:
    """The attempts of ``student`` at ``exercise`` (None: anyone's, any exercise), in order."""
    return [
        a
        for a in attempts
        if (student is None or a.student == student)
        and (exercise is None or a.exercise == exercise)
    ]


@dataclass(frozen=True)
class ListSource:
    """A fixed list of attempts (tests, the browser test's synthetic class)."""

    items: Sequence[Attempt]

    def attempts(self, student: str | None = None, exercise: str | None = None) -> list[Attempt]:
        """The attempts that match, oldest first."""
        return sorted(_matching(self.items, student, exercise), key=lambda a: a.at)


@dataclass(frozen=True)
class StepInfo:
    """A step of an exercise: its id, title and what each of its checks looks at."""

    id: str
    title: str
    checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExerciseInfo:
    """An exercise of the class's lab: id, title, steps in order."""

    id: str
    title: str
    steps: tuple[StepInfo, ...]


@dataclass(frozen=True)
class Health:
    """A student's guests as ``class status`` last saw them."""

    ready: int
    guests: int
    error: str | None = None
    host: str | None = None  # the lab host running the lab (a class over several hosts)

    @property
    def ok(self) -> bool:
        """Every guest running, no error."""
        return self.ready == self.guests and self.error is None


@dataclass(frozen=True)
class ClassData:
    """The class as the dashboard shows it: students, exercises, window."""

    name: str
    lab: str
    seats: tuple[Seat, ...]
    exercises: tuple[ExerciseInfo, ...]
    window: Window = field(default_factory=lambda: Window(None, None))

    def seat(self, student: str) -> Seat | None:
        """The student's seat, or None for someone not in the class."""
        return next((s for s in self.seats if s.student == student), None)

    def exercise(self, exercise_id: str) -> ExerciseInfo | None:
        """The exercise, or None."""
        return next((e for e in self.exercises if e.id == exercise_id), None)


def exercises_of(spec_path: str, lang: Lang = "en") -> tuple[ExerciseInfo, ...]:
    """The exercises beside the class's lab file (``exercises/``), titles in ``lang``."""
    from labctl.exercises.lab_exercises import of_lab

    try:
        found = of_lab(Path(spec_path)).exercises  # those whose guests the lab file has
    except LabctlError:
        return ()  # exercise list reports a broken exercise file; the grid shows none
    return tuple(
        ExerciseInfo(
            e.id,
            e.title.get(lang),
            tuple(
                StepInfo(s.id, s.title.get(lang), tuple(c.what.get(lang) for c in s.checks))
                for s in e.steps
            ),
        )
        for e in found
    )


def class_data(state: ClassState, exercises: tuple[ExerciseInfo, ...]) -> ClassData:
    """The dashboard's view of a class state (read at every request: it is one small file)."""
    seats = tuple(state.seats.values())
    return ClassData(state.name, state.lab, seats, exercises, window_of(state))


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(timezone.utc)


def _said(m: Message) -> str:
    return f"{m.what}: {m.status}" + (f": {m.detail}" if m.detail else "")


def from_store(a: StoreAttempt) -> Attempt:
    """A store attempt as the dashboard shows it (each check's message as one line)."""
    return Attempt(
        a.student,
        a.exercise,
        a.step,
        a.kind,
        a.at,
        a.passed,
        a.answer,
        tuple(_said(m) for m in a.messages),
        a.scored,
        tuple(_said(m) for m in a.messages if m.status != "passed"),
        tuple(
            (m.check, m.status) for m in a.messages if m.status != "passed" and m.check is not None
        ),
        a.made_by,
        a.answer_passed,
    )


class StoreSource:
    """The class's attempts from the progress store, read incrementally.

    The store only ever adds attempts, so each call fetches those after the last id seen and
    keeps them in memory: a page costs one small query however long the class has run. A
    change in the class's instances (a student added) reads everything again.
    """

    def __init__(self, store: Store, lab: str, instances: Callable[[], Sequence[str]]) -> None:
        self.store, self.lab, self._instances = store, lab, instances
        self._seen: tuple[str, ...] = ()
        self._items: list[Attempt] = []
        self._last = 0
        self._lock = threading.Lock()

    def _refresh(self) -> list[Attempt]:
        with self._lock:
            instances = tuple(sorted(self._instances()))
            if instances != self._seen:
                self._seen, self._items, self._last = instances, [], 0
            new = self.store.attempts(self.lab, instances=instances, after_id=self._last)
            if new:
                self._last = new[-1].id
                self._items = self._items + [from_store(a) for a in new]
            return self._items

    def attempts(self, student: str | None = None, exercise: str | None = None) -> list[Attempt]:
        """Attempts of the class (one student's, one exercise's), oldest first."""
        return _matching(self._refresh(), student, exercise)
