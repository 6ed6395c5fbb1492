"""One row per student: guests ready now, exercises completed, last activity.

Guests are asked of the engines (``lab.status``); exercises and activity come from the
students' progress files (``exercises.progress``), read, never written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labctl.classroom.state import ClassState, Seat
from labctl.errors import LabctlError
from labctl.exercises.model import load_exercises
from labctl.exercises.progress import Progress, ProgressStore, check_student
from labctl.instance.state import InstanceDir
from labctl.lab import status as lab_status
from labctl.spec.model import load_lab


@dataclass(frozen=True)
class StudentStatus:
    """One row of ``labctl class status``."""

    student: str
    name: str
    instance: str
    outcome: str  # what the last class up did: pending / up / failed
    guests_ready: int
    guests: int
    exercises_done: int
    exercises: int
    last_activity: str | None  # ISO 8601, UTC
    error: str | None


def _progress(lab: str, instance: str) -> list[Progress]:
    """Every progress file of the instance (the student's, whoever ran the checks)."""
    folder = InstanceDir(lab, instance).path / "progress"
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append(ProgressStore(lab, instance, check_student(path.stem)).load())
        except LabctlError:
            continue  # a damaged or foreign file is exercise's to report, not the class view's
    return found


def last_activity(progress: list[Progress]) -> str | None:
    """The latest time anything was checked, answered or started."""
    stamps = [
        t
        for p in progress
        for e in p.exercises.values()
        for t in (
            e.started_at,
            e.last_check_at,
            e.completed_at,
            *(s.answered_at for s in e.steps.values()),
        )
        if t
    ]
    return max(stamps) if stamps else None


def _exercise_count(spec_path: str) -> int:
    folder = Path(spec_path).parent / "exercises"
    try:
        return len(load_exercises(folder)) if folder.is_dir() else 0
    except LabctlError:
        return 0


def seat_status(state: ClassState, seat: Seat, exercises: int, guests: int) -> StudentStatus:
    """A student's row: the engines asked about each guest, progress read."""
    lab_state = InstanceDir(state.lab, seat.instance).load()
    ready = 0
    error = seat.error
    if lab_state is not None:
        rows = lab_status.status(lab_state)
        ready = sum(1 for r in rows if r.state == "running" and not r.error)
        error = error or next((f"{r.guest}: {r.error}" for r in rows if r.error), None)
    progress = _progress(state.lab, seat.instance)
    done = len({e for p in progress for e, x in p.exercises.items() if x.completed_at})
    return StudentStatus(
        seat.student,
        seat.name,
        seat.instance,
        seat.outcome,
        ready,
        guests,
        done,
        exercises,
        last_activity(progress),
        error,
    )


def status(state: ClassState) -> list[StudentStatus]:
    """Every student of the class, in roster order."""
    exercises = _exercise_count(state.spec_path)
    try:
        guests = len(load_lab(Path(state.spec_path)).guests)
    except (LabctlError, OSError):
        guests = 0
    return [seat_status(state, seat, exercises, guests) for seat in state.seats.values()]
