"""A class's grades: one row per student, a score per exercise and a total, from the store.

The class is read from its state file while it is up, else from the seats ``class up``
recorded in the store (so a class can be graded after ``class down``). Scores follow the lab's
grading (``labctl.exercises.grading``): a point per step, less penalties. Attempts made after
the class's exam window closed (``classroom.window``, as it is now) are late: kept, counted
apart, never scored.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from labctl.classroom.state import ClassDir, NoClass, classes
from labctl.classroom.window import Window, window_of
from labctl.errors import LabctlError
from labctl.exercises import grading
from labctl.exercises.grading import Score
from labctl.exercises.lab_exercises import of_lab
from labctl.exercises.model import Exercise
from labctl.exercises.progress import shared
from labctl.spec.model import Grading, load_lab
from labctl.store import Attempt, ExerciseState, SeatRecord, Store, fold
from labctl.store.fold import times_done


@dataclass(frozen=True)
class ExerciseColumn:
    """A grade item: an exercise, its steps (each worth a point) and its rules."""

    id: str
    title: str
    steps: int
    grading: Grading


@dataclass(frozen=True)
class StudentGrades:
    """One row of the report."""

    student: str
    name: str | None
    email: str | None
    instance: str
    scores: dict[str, Score]
    attempts: int  # answers given and checks run (``store.fold.times_done``)
    late: int = 0  # of those, the ones after the exam window closed: kept, not scored

    @property
    def total(self) -> float:
        """Points over every exercise."""
        return round(sum(s.points for s in self.scores.values()), 2)


@dataclass(frozen=True)
class ClassGrades:
    """The whole report: the class, its grade items and a row per student."""

    class_name: str
    lab: str
    generated_at: datetime
    exercises: tuple[ExerciseColumn, ...]
    students: tuple[StudentGrades, ...]
    window: Window = Window(None, None)
    #: the class is up here, and its window judges the attempts; else (down) as recorded
    live: bool = True

    def judged(self, attempts: list[Attempt]) -> list[Attempt]:
        """The attempts as these grades count them."""
        return self.window.judged(attempts) if self.live else attempts

    @property
    def max_total(self) -> int:
        """Points a student could get."""
        return sum(e.steps for e in self.exercises)

    @property
    def key(self) -> str:
        """The identifier column: email when every student has one, else the student id."""
        return "email" if self.students and all(s.email for s in self.students) else "id"


@dataclass(frozen=True)
class _Seat:
    student: str
    name: str | None
    email: str | None
    instance: str


def _seats(class_name: str, store: Store) -> tuple[str, str, list[_Seat], Window | None]:
    """Lab, lab file, seats and exam window: from the live class, else from the store (no
    window then: the attempts are as recorded)."""
    state = ClassDir(class_name).load()
    if state is not None:
        seats = [_Seat(s.student, s.name, s.email, s.instance) for s in state.seats.values()]
        for s in seats:
            store.add_seat(
                class_name, s.student, state.lab, s.instance, s.name, s.email, state.spec_path
            )
        # a student taken down alone (class down --student) is graded all the same
        here = {s.student for s in seats}
        gone = [r for r in store.seats(class_name) if r.student not in here and r.lab == state.lab]
        return state.lab, state.spec_path, seats + _recorded(store, gone), window_of(state)
    recorded = store.seats(class_name)
    if not recorded:
        known = sorted({*classes(), *store.class_names()})  # up here, or down and recorded
        raise NoClass(
            f"no class {class_name!r} on this host, and none in the progress store",
            f"classes here: {', '.join(known)}"
            if known
            else f"labctl class up ROSTER [LAB] --class {class_name} brings one up",
        )
    return (
        recorded[0].lab,
        recorded[0].spec_path or "",
        _recorded(store, recorded),
        None,
    )


def _recorded(store: Store, recorded: list[SeatRecord]) -> list[_Seat]:
    """Seats as the store recorded them, each with the student's name and email."""
    people = {p.student: p for p in store.students([s.student for s in recorded])}
    return [
        _Seat(s.student, people[s.student].name, people[s.student].email, s.instance)
        for s in recorded
    ]


def _exercises(lab: str, spec_path: str) -> tuple[list[Exercise], Grading]:
    if not spec_path:
        from labctl.spec.model import find_lab

        try:
            spec_path = str(find_lab(lab))
        except LabctlError as exc:
            raise LabctlError(
                f"class of lab {lab} is down and its lab file cannot be found: {exc.message}",
                "run the report from the checkout that holds the lab",
            ) from exc
    path = Path(spec_path)
    lab_spec = load_lab(path)
    return list(of_lab(path, lab_spec).exercises), lab_spec.grading


def class_grades(class_name: str, store: Store | None = None) -> ClassGrades:
    """Every student's scores in a class, in roster order (by id once the class is down)."""
    store = store or shared()
    lab, spec_path, seats, window = _seats(class_name, store)
    exercises, lab_grading = _exercises(lab, spec_path)
    columns = tuple(
        ExerciseColumn(e.id, e.title.en, len(e.steps), e.grading or lab_grading) for e in exercises
    )
    found = store.attempts(lab, [s.instance for s in seats])
    judged = window.judged(found) if window is not None else found
    mine: dict[tuple[str, str], list[Attempt]] = defaultdict(list)
    for a in judged:
        mine[(a.instance, a.student)].append(a)
    states: dict[tuple[str, str, str], ExerciseState] = {
        (x.instance, x.student, x.exercise): x for x in fold(judged).values()
    }
    rows = []
    for seat in seats:
        scores = {}
        for ex, col in zip(exercises, columns, strict=True):
            st = states.get((seat.instance, seat.student, ex.id))
            st = st or ExerciseState(lab, seat.instance, seat.student, ex.id)
            scores[ex.id] = grading.score(ex, st, col.grading)
        done = mine[(seat.instance, seat.student)]
        late = times_done([a for a in done if not a.scored])
        rows.append(
            StudentGrades(
                seat.student, seat.name, seat.email, seat.instance, scores, times_done(done), late
            )
        )
    now = datetime.now(timezone.utc)
    known = window or Window(None, None)
    return ClassGrades(class_name, lab, now, columns, tuple(rows), known, window is not None)
