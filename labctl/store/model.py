"""What the store holds and answers, as frozen dataclasses: attempts, and states folded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

#: What a student did: ``start`` (opened the exercise: its clock starts), ``check`` (the
#: checks of one step ran), ``answer`` (an answer recorded, judged by the next check),
#: ``hint`` (a hint shown), ``reset`` (the exercise starts over).
Kind = Literal["start", "check", "answer", "hint", "reset"]
KINDS: tuple[Kind, ...] = ("start", "check", "answer", "hint", "reset")


@dataclass(frozen=True)
class Message:
    """One check's result inside a ``check`` attempt: what it looked at, its status, why."""

    what: str
    status: str  # passed / failed / error
    detail: str = ""
    note: str = ""  # the teacher's note shown with a failure
    #: its place among the step's checks: names the check whatever language ``what`` is in
    check: int | None = None


@dataclass(frozen=True)
class NewAttempt:
    """An attempt to record (the store gives it an id and, unless given, the time)."""

    lab: str
    instance: str
    student: str
    exercise: str
    kind: Kind
    step: str | None = None
    answer: str | None = None  # answer: the value given; check: the answer judged, if any
    passed: bool | None = None  # check: every check of the step passed
    answer_passed: bool | None = None  # check: the answer check's own verdict (None: not judged)
    messages: tuple[Message, ...] = ()
    scored: bool = True  # False: recorded for the record only (e.g. after an exam's end)
    #: who made it for the student (``class reset``: ``instructor``); None: the student
    made_by: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Attempt(NewAttempt):
    """One recorded attempt: what was recorded, with the id the store gave it and its time."""

    id: int
    at: datetime  # aware, UTC


@dataclass(frozen=True)
class StepState:
    """One step of one student's exercise, since the exercise last started over.

    ``passes_now`` is the result of its last check; ``first_passed_at`` when it first passed
    in a scored check, ``reached_at`` when it first passed at all (after an exam's end too:
    the student goes on from there, for practice). A step that passed once and fails now is
    ``broken``: it has a first pass but does not pass.
    Hints and wrong answers count over every run: a reset does not give them back.

    A wrong attempt is an answer given (an ``answer`` attempt) that the next scored check
    judged wrong: the same wrong answer given again is another one; checking again without
    answering again is not (the same answer, judged again).
    """

    step: str
    checks: int = 0
    passes_now: bool = False
    first_passed_at: datetime | None = None
    reached_at: datetime | None = None
    last_checked_at: datetime | None = None
    answer: str | None = None
    answered_at: datetime | None = None
    hints: int = 0
    wrong: frozenset[str] = frozenset()  # the different answers a check judged wrong, every run
    wrong_attempts: int = 0  # answers given and judged wrong, every run (see above)
    judged_at: datetime | None = None  # when the answer a check last judged was given

    @property
    def passed_once(self) -> bool:
        """Passed at some check since the exercise last started over."""
        return self.first_passed_at is not None

    @property
    def broken(self) -> bool:
        """Passed once, fails now."""
        return self.passed_once and not self.passes_now


@dataclass(frozen=True)
class ExerciseState:
    """One student's exercise in one lab instance: its steps and its clock."""

    lab: str
    instance: str
    student: str
    exercise: str
    steps: dict[str, StepState] = field(default_factory=dict)
    started_at: datetime | None = None
    last_at: datetime | None = None
    active_at: datetime | None = None  # the student's own last attempt (not an instructor's)
    attempts: int = 0  # every attempt of the exercise, resets and late ones included
    checks: int = 0  # check attempts (one per step checked)
    resets: int = 0

    def step(self, step_id: str) -> StepState:
        """The state of a step (empty when nothing happened to it yet)."""
        return self.steps.get(step_id) or StepState(step_id)

    @property
    def hints(self) -> int:
        """Hints taken in every step."""
        return sum(s.hints for s in self.steps.values())

    def completed_at(self, step_ids: Sequence[str]) -> datetime | None:
        """When the last of ``step_ids`` first passed, if every one has."""
        firsts = [self.step(s).first_passed_at for s in step_ids]
        if not firsts or any(t is None for t in firsts):
            return None
        return max(t for t in firsts if t is not None)


@dataclass(frozen=True)
class SeatRecord:
    """A student's seat in a class: the lab instance that is theirs."""

    class_name: str
    student: str
    lab: str
    instance: str
    spec_path: str | None = None  # the lab file the class came up from


@dataclass(frozen=True)
class StudentRecord:
    """A student as the store knows them (the roster's name and email when class mode set it)."""

    student: str
    name: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Forgotten:
    """What ``Store.forget`` removed of a class (``class down --forget``), all in one go.

    ``files``: progress files of an older labctl removed beside it (by the caller: the store
    keeps no files).
    """

    class_name: str
    students: tuple[str, ...] = ()  # whose seat or attempts went, by id
    attempts: int = 0
    seats: int = 0
    records: int = 0  # students' own rows (name, email): no other class's seat names them
    files: int = 0

    @property
    def nothing(self) -> bool:
        """Nothing was there to forget (a second run)."""
        return not (self.attempts or self.seats or self.records or self.files)
