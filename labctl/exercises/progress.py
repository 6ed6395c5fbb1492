"""What each student has done, per lab instance: attempts in the host's store (``labctl.store``).

Every ``start``, ``answer``, ``hint``, ``check`` (one attempt per step checked) and ``reset``
is recorded, not only the last; the state of an exercise (steps passed once and now, the
answer, hints, time) is folded from them. The store outlives ``labctl down`` and ``class
down`` (``class down --forget`` removes a class's). Progress files of older labctl versions
are imported on first use (``legacy``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from labctl.errors import SpecError
from labctl.exercises import legacy
from labctl.exercises.grading import Score, current_step, score
from labctl.exercises.model import Exercise
from labctl.exercises.runner import ExerciseResult
from labctl.instance.state import InstanceDir
from labctl.store import ExerciseState, Judge, Message, NewAttempt, Store, default_url, open_store

__all__ = ["ProgressStore", "Score", "check_student", "current_step", "now", "score", "shared"]

#: ``made_by`` of what an instructor does in a student's class lab (as root: a student's own
#: commands run confined, through ``labctl-student``)
INSTRUCTOR = "instructor"

STUDENT_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")


def check_student(student: str) -> str:
    """Validate a student id (it names a file and seeds the per-student parameters)."""
    if not STUDENT_RE.match(student):
        raise SpecError(
            f"student id {student!r} is not valid",
            "use 1-32 lowercase letters, digits, dots, dashes or underscores, e.g. -s ana.garcia",
        )
    return student


def now() -> str:
    """The current time, ISO 8601 in UTC (what state files store)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_OPEN: dict[str, Store] = {}


def shared(url: str | None = None) -> Store:
    """The store for ``url`` (default: this host's), opened and migrated once per process."""
    key = url or default_url()
    if key not in _OPEN:
        _OPEN[key] = open_store(key)
    return _OPEN[key]


def import_legacy(store: Store, lab: str, instance: str, root: Path | None = None) -> None:
    """Move an instance's progress files of older labctl versions into the store (once)."""
    legacy.import_folder(store, InstanceDir(lab, instance, root).path / "progress")


class ProgressStore:
    """One student's attempts in one lab instance."""

    def __init__(
        self,
        lab: str,
        instance: str,
        student: str,
        root: Path | None = None,
        store: Store | None = None,
        scored: bool = True,
        judge: Judge = list,
        made_by: str | None = None,
    ) -> None:
        """``scored``: False records this student's attempts as not counting (an exam's end);
        ``judge`` marks those that count no more (a class's window as it is now: its end may
        have been moved since), as the class's report does; ``made_by``: who records them
        for the student (:data:`INSTRUCTOR`), None for the student themself."""
        self.scored = scored
        self.judge = judge
        self.made_by = made_by
        self.lab = lab
        self.instance = instance
        self.student = check_student(student)
        self.store = store or shared()
        import_legacy(self.store, lab, instance, root)

    def _new(self, exercise: str, kind: str, step: str | None = None, **kw: object) -> NewAttempt:
        return NewAttempt(
            self.lab,
            self.instance,
            self.student,
            exercise,
            kind,  # type: ignore[arg-type]
            step,
            scored=self.scored,
            made_by=self.made_by,
            **kw,  # type: ignore[arg-type]
        )

    def state(self, exercise: str) -> ExerciseState:
        """One exercise's state (empty when nothing was done yet)."""
        who = (self.lab, self.instance, self.student)
        return self.store.exercise_state(*who, exercise, judge=self.judge)

    def states(self) -> Mapping[str, ExerciseState]:
        """Every exercise touched, by id."""
        return self.store.student_states(self.lab, self.instance, self.student, judge=self.judge)

    def of(self, exercise: str, states: Mapping[str, ExerciseState]) -> ExerciseState:
        """``states[exercise]``, or an empty state."""
        found = states.get(exercise)
        return found or ExerciseState(self.lab, self.instance, self.student, exercise)

    def start(self, exercise: str) -> ExerciseState:
        """Start the exercise's clock unless it runs; its state."""
        state = self.state(exercise)
        if state.started_at is None:
            self.store.record(self._new(exercise, "start"))
            state = self.state(exercise)
        return state

    def hint(self, exercise: str, step: str) -> None:
        """A hint was shown."""
        self.store.record(self._new(exercise, "hint", step))

    def answer(self, exercise: str, step: str, value: str) -> None:
        """An answer was given (the next check judges it)."""
        self.store.record(self._new(exercise, "answer", step, answer=value))

    def reset(self, exercise: str) -> None:
        """The exercise starts over: steps and answers cleared; hints, wrong answers kept."""
        self.store.record(self._new(exercise, "reset"))

    def record_checks(
        self, exercise: Exercise, result: ExerciseResult, state: ExerciseState
    ) -> ExerciseState:
        """One attempt per step checked, with its checks' messages; the new state."""
        new = []
        for step_result in result.steps:
            step = exercise.step(step_result.step)
            given = state.step(step.id).answer
            verdict: bool | None = None
            if step.answer_check is not None and given is not None:
                index = step.checks.index(step.answer_check)
                status = step_result.results[index].status
                verdict = None if status == "error" else status == "passed"
            new.append(
                self._new(
                    exercise.id,
                    "check",
                    step.id,
                    answer=given if verdict is not None else None,
                    passed=step_result.passed,
                    answer_passed=verdict,
                    messages=tuple(
                        Message(r.what, r.status, r.detail, r.note or "", i)
                        for i, r in enumerate(step_result.results)
                    ),
                )
            )
        if state.started_at is None:
            new.insert(0, self._new(exercise.id, "start"))
        self.store.record(*new)
        return self.state(exercise.id)
