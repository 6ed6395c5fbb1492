"""What each student has done, per lab instance: kept beside the lab, not in ``run/``.

``<state>/<lab>-<instance>/progress/<student>.json``: ``labctl down`` removes ``run/`` only,
so progress survives down and up. Every change is made under a lock and written atomically,
readable by root only (students' answers are not for other users of the host).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labctl.errors import LabctlError, SpecError
from labctl.exercises.model import Exercise
from labctl.instance.state import InstanceDir
from labctl.paths import within
from labctl.private import locked, private_dir, write_private

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
    """The current time, ISO 8601 in UTC (what progress files store)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _seconds(start: str, end: str | None) -> float:
    t0 = datetime.fromisoformat(start)
    t1 = datetime.fromisoformat(end) if end else datetime.now(timezone.utc)
    return max(0.0, (t1 - t0).total_seconds())


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StepProgress(_Model):
    """One step: when it first passed, the answer given, the hints taken."""

    passed_at: str | None = None
    answer: str | None = None
    answered_at: str | None = None
    hints: int = 0


class ExerciseProgress(_Model):
    """One exercise: started, completed, steps, how many checks and resets."""

    started_at: str | None = None
    completed_at: str | None = None
    checks: int = 0
    last_check_at: str | None = None
    resets: int = 0
    steps: dict[str, StepProgress] = Field(default_factory=dict)

    def step(self, step_id: str) -> StepProgress:
        """The progress of a step, created empty on first use."""
        return self.steps.setdefault(step_id, StepProgress())

    def start(self) -> None:
        """Start the clock unless it runs."""
        if self.started_at is None:
            self.started_at = now()

    @property
    def seconds(self) -> float:
        """Time spent: from the first look to completion (or to now)."""
        return _seconds(self.started_at, self.completed_at) if self.started_at else 0.0


class Progress(_Model):
    """Everything one student did in one lab instance."""

    student: str
    lab: str
    instance: str
    exercises: dict[str, ExerciseProgress] = Field(default_factory=dict)

    def of(self, exercise_id: str) -> ExerciseProgress:
        """The progress of an exercise, created empty on first use."""
        return self.exercises.setdefault(exercise_id, ExerciseProgress())


@dataclass(frozen=True)
class Score:
    """How far a student is in one exercise."""

    exercise: str
    passed: int
    total: int
    hints: int
    seconds: float
    started: bool

    @property
    def completed(self) -> bool:
        """All steps passed."""
        return self.passed == self.total

    @property
    def state(self) -> str:
        """not started / in progress / completed."""
        if self.completed:
            return "completed"
        return "in progress" if self.started else "not started"


def score(exercise: Exercise, progress: ExerciseProgress) -> Score:
    """Steps passed (ever, in this instance), hints taken, time spent."""
    passed = sum(1 for s in exercise.steps if progress.step(s.id).passed_at)
    hints = sum(progress.step(s.id).hints for s in exercise.steps)
    return Score(
        exercise.id,
        passed,
        len(exercise.steps),
        hints,
        progress.seconds,
        progress.started_at is not None,
    )


def current_step(exercise: Exercise, progress: ExerciseProgress) -> int:
    """Index of the first step not passed yet (the last step when all passed)."""
    for i, step in enumerate(exercise.steps):
        if not progress.step(step.id).passed_at:
            return i
    return len(exercise.steps) - 1


class ProgressStore:
    """The progress file of one student in one lab instance."""

    def __init__(self, lab: str, instance: str, student: str, root: Path | None = None) -> None:
        self.lab = lab
        self.instance = instance
        self.student = check_student(student)
        self.instance_dir = InstanceDir(lab, instance, root).path
        self.dir = self.instance_dir / "progress"
        self.path = within(self.dir, f"{student}.json")

    def load(self) -> Progress:
        """The saved progress, or an empty one."""
        try:
            return Progress.model_validate_json(self.path.read_text())
        except FileNotFoundError:
            return Progress(student=self.student, lab=self.lab, instance=self.instance)
        except (ValidationError, ValueError) as exc:
            raise LabctlError(
                f"progress file {self.path} is damaged: {exc}",
                "fix or remove it (progress starts again from zero)",
            ) from exc

    def _make_dirs(self) -> None:
        private_dir(self.instance_dir)
        private_dir(self.dir)

    def save(self, progress: Progress) -> None:
        """Write atomically (temporary file, then rename), readable by root only."""
        self._make_dirs()
        write_private(self.path, progress.model_dump_json(indent=2) + "\n")

    @contextmanager
    def update(self) -> Iterator[Progress]:
        """Load, let the caller change it, save: all under the student's lock."""
        self._make_dirs()

        def refuse() -> LabctlError:
            return LabctlError(
                f"another labctl is saving the progress of {self.student}", "try again"
            )

        with locked(self.dir / f".{self.student}.lock", 30, refuse):
            progress = self.load()
            yield progress
            self.save(progress)
