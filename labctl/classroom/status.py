"""One row per student: guests ready now, exercises completed, last activity.

Guests are asked of the engines (``lab.status``); exercises and activity come from the
attempts in the store (``labctl.store``), read, never written. A seat that the last
``class up`` left up but whose guests are not all running now says so (``down``,
``incomplete``); the class state is not changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labctl.classroom.state import DOWN, UP, ClassState, Seat
from labctl.classroom.window import Window, window_of
from labctl.errors import LabctlError
from labctl.exercises import progress as exercise_progress
from labctl.exercises.lab_exercises import of_lab
from labctl.instance.state import InstanceDir, LabState
from labctl.lab import status as lab_status
from labctl.spec.model import load_lab
from labctl.store import ExerciseState

#: some of the guests of a seat left up are not running now
INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class StudentStatus:
    """One row of ``labctl class status``."""

    student: str
    name: str
    instance: str
    #: what the last class up did (pending / up / failed, down: removed by an unfinished
    #: class down), but up only while every guest runs: else down or incomplete
    outcome: str
    guests_ready: int
    guests: int
    exercises_done: int
    exercises: int
    last_activity: str | None  # ISO 8601, UTC
    error: str | None
    #: "guest: what differs" of each running guest defined before a change (Backend.outdated)
    outdated: tuple[str, ...] = ()
    #: "guest: why" of each VM that runs under another accelerator than its lab file asks
    accel_notes: tuple[str, ...] = ()


def _progress(lab: str, instance: str, window: Window) -> list[ExerciseState]:
    """Every exercise state of the instance (the student's, whoever ran the checks), judged by
    the class's window as it is now (as the report and the dashboard judge them)."""
    store = exercise_progress.shared()
    try:
        exercise_progress.import_legacy(store, lab, instance)
    except LabctlError:
        pass  # a damaged old progress file is exercise's to report, not the class view's
    return store.exercise_states(lab, [instance], judge=window.judged)


def last_activity(states: list[ExerciseState]) -> str | None:
    """The latest time the student checked, answered, asked or started anything (an
    instructor's reset of their exercise is not theirs)."""
    stamps = [s.active_at for s in states if s.active_at is not None]
    return max(stamps).isoformat(timespec="seconds") if stamps else None


def _exercise_steps(spec_path: str) -> dict[str, list[str]]:
    """Each exercise's step ids, by exercise id."""
    try:
        found = of_lab(Path(spec_path)).exercises
    except LabctlError:
        return {}
    return {e.id: [s.id for s in e.steps] for e in found}


def _outcome(seat: Seat, lab_state: LabState | None, ready: int, guests: int) -> str:
    """The seat's outcome, or what its lab is now when the seat says up and it is not."""
    if seat.outcome != UP:
        return seat.outcome
    if lab_state is None or not ready:
        return DOWN
    return INCOMPLETE if ready < guests else UP


def seat_status(
    state: ClassState, seat: Seat, steps: dict[str, list[str]], guests: int
) -> StudentStatus:
    """A student's row: the engines asked about each guest, progress read."""
    lab_state = InstanceDir(state.lab, seat.instance).load()
    ready = 0
    error = seat.error
    outdated: tuple[str, ...] = ()
    accel_notes: tuple[str, ...] = ()
    if lab_state is not None:
        rows = lab_status.status(lab_state)
        ready = sum(1 for r in rows if r.state == "running" and not r.error)
        error = error or next((f"{r.guest}: {r.error}" for r in rows if r.error), None)
        outdated = tuple(f"{r.guest}: {r.outdated}" for r in rows if r.outdated)
        accel_notes = tuple(f"{r.guest}: {r.accel_note}" for r in rows if r.accel_note)
    progress = _progress(state.lab, seat.instance, window_of(state))
    done = sum(1 for x in progress if x.exercise in steps and x.completed_at(steps[x.exercise]))
    return StudentStatus(
        seat.student,
        seat.name,
        seat.instance,
        _outcome(seat, lab_state, ready, guests),
        ready,
        guests,
        done,
        len(steps),
        last_activity(progress),
        error,
        outdated,
        accel_notes,
    )


def status(state: ClassState) -> list[StudentStatus]:
    """Every student of the class, in roster order."""
    steps = _exercise_steps(state.spec_path)
    try:
        guests = len(load_lab(Path(state.spec_path)).guests)
    except (LabctlError, OSError):
        guests = 0
    return [seat_status(state, seat, steps, guests) for seat in state.seats.values()]
