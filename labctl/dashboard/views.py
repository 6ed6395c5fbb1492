"""The dashboard's three pages as data: the class grid, a student's page, an exercise's page.

Pure functions of the class (:class:`ClassData`), its attempts (oldest first), the guests'
health and the time: the templates only lay them out, and the tests check them without a
server. A step counts as done once a scored check passed it since the exercise last started
over (what ``labctl.store`` folds too); late attempts are shown, and counted apart.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from labctl.classroom.state import Seat
from labctl.dashboard import flags as marks
from labctl.dashboard.data import (
    ANSWER,
    CHECK,
    HINT,
    RESET,
    Attempt,
    ClassData,
    ExerciseInfo,
    Health,
    StepInfo,
)
from labctl.dashboard.flags import Flag, Rules
from labctl.store.fold import times_done

NOT_STARTED, IN_PROGRESS, STUCK, DONE = "not-started", "in-progress", "stuck", "done"


@dataclass(frozen=True)
class Cell:
    """One student's exercise in the grid."""

    exercise: str
    done: int
    steps: int
    attempts: int
    hints: int
    seconds: float
    state: str  # not-started | in-progress | stuck | done
    late: int = 0

    @property
    def label(self) -> str:
        """``2/5``."""
        return f"{self.done}/{self.steps}"


@dataclass(frozen=True)
class Row:
    """One student in the grid."""

    seat: Seat
    health: Health | None
    cells: tuple[Cell, ...]
    flags: tuple[Flag, ...]
    last_at: datetime | None  # their own last attempt (an instructor's reset is not theirs)

    @property
    def done(self) -> int:
        """Exercises completed."""
        return sum(1 for c in self.cells if c.state == DONE)


@dataclass(frozen=True)
class Page:
    """What every page shows: the class, as read at ``at``."""

    data: ClassData
    at: datetime


@dataclass(frozen=True)
class Grid(Page):
    """The class page: a row per student, a cell per exercise, the "looks copied" marks."""

    rows: tuple[Row, ...]
    copied: tuple[Flag, ...]
    attempts: int


@dataclass(frozen=True)
class StudentPage(Page):
    """A student's page: their row and every attempt in order."""

    row: Row
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True)
class StepStats:
    """How the class does on one step."""

    id: str
    title: str
    passed: int  # students who passed it
    tried: int  # students who checked or answered it
    failures: int  # failed checks and answers, every student
    stuck: tuple[str, ...]  # students whose current step it is and who failed it
    common: tuple[tuple[str, int], ...]  # the most frequent failure messages
    #: the wrong answers most students gave (as first typed), with how many gave each
    wrong_answers: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class ExercisePage(Page):
    """An exercise's page: each step, where students get stuck."""

    exercise: ExerciseInfo
    steps: tuple[StepStats, ...]
    students: int
    completed: int
    copied: tuple[Flag, ...]


def _since_reset(attempts: Sequence[Attempt]) -> list[Attempt]:
    last = max((i for i, a in enumerate(attempts) if a.kind == RESET), default=-1)
    return list(attempts[last + 1 :])


def _passed_steps(attempts: Sequence[Attempt], scored_only: bool = True) -> set[str]:
    """Steps passed since the last reset: in scored checks, or (``scored_only=False``) in any,
    late ones too, which is where a student goes on from (``exercise show`` does so)."""
    return {
        a.step
        for a in _since_reset(attempts)
        if a.kind == CHECK and a.passed and (a.scored or not scored_only) and a.step is not None
    }


def _start(attempts: Sequence[Attempt]) -> datetime | None:
    """When the exercise's clock started, as ``store.fold`` says: the student's own last
    reset, else the first thing done since the last reset (an instructor's reset puts the
    exercise back as never started); None: not started."""
    last = max((i for i, a in enumerate(attempts) if a.kind == RESET), default=-1)
    if last >= 0 and attempts[last].made_by is None:
        return attempts[last].at
    return attempts[last + 1].at if last + 1 < len(attempts) else None


def _seconds(attempts: Sequence[Attempt], steps: Sequence[str]) -> float:
    """From the exercise's start to when every step had passed, else to the last thing done
    in it: as ``exercise progress`` counts it."""
    start = _start(attempts)
    if start is None:
        return 0.0
    passed: set[str] = set()
    for a in _since_reset(attempts):
        if a.kind == CHECK and a.passed and a.scored and a.step is not None:
            passed.add(a.step)
            if steps and passed >= set(steps):
                return (a.at - start).total_seconds()
    return (attempts[-1].at - start).total_seconds()


def cell(exercise: ExerciseInfo, attempts: Sequence[Attempt], failing: set[str]) -> Cell:
    """One student's exercise from its attempts (oldest first)."""
    steps = [s.id for s in exercise.steps]
    done = len(_passed_steps(attempts) & set(steps))
    tries = times_done(attempts)
    hints = sum(1 for a in attempts if a.kind == HINT)
    seconds = _seconds(attempts, steps)
    if _start(attempts) is None:
        state = NOT_STARTED
    elif steps and done == len(steps):
        state = DONE
    elif exercise.id in failing:
        state = STUCK
    else:
        state = IN_PROGRESS
    late = times_done([a for a in attempts if a.late])
    return Cell(exercise.id, done, len(steps), tries, hints, seconds, state, late)


def row(
    data: ClassData,
    seat: Seat,
    attempts: Sequence[Attempt],
    health: Health | None,
    now: datetime,
    rules: Rules,
) -> Row:
    """A student's row from their attempts (oldest first)."""
    by_exercise: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        by_exercise[a.exercise].append(a)
    order = {e.id: [s.id for s in e.steps] for e in data.exercises}
    failing = marks.failing(seat.student, attempts, rules, order)
    stuck = {f.exercise for f in failing if f.exercise}
    cells = tuple(cell(e, by_exercise.get(e.id, []), stuck) for e in data.exercises)
    unfinished = any(c.state != DONE for c in cells)
    idle = marks.idle(seat.student, attempts, unfinished, now, rules, data.window.start)
    found = ([idle] if idle else []) + failing
    own = [a.at for a in attempts if a.made_by is None]  # an instructor's reset is not theirs
    return Row(seat, health, cells, tuple(found), own[-1] if own else None)


def _by_student(attempts: Sequence[Attempt]) -> dict[str, list[Attempt]]:
    found: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        found[a.student].append(a)
    return found


def grid(
    data: ClassData,
    attempts: Sequence[Attempt],
    health: Mapping[str, Health],
    now: datetime,
    rules: Rules,
) -> Grid:
    """The class grid from every attempt of the class (oldest first)."""
    attempts = data.window.judged(attempts)
    mine = _by_student(attempts)
    rows = tuple(
        row(data, s, mine.get(s.student, []), health.get(s.student), now, rules) for s in data.seats
    )
    tried = sum(times_done(theirs) for theirs in mine.values())  # as the cells count them
    return Grid(data, now, rows, tuple(marks.copied(attempts, rules)), tried)


def student_page(
    data: ClassData,
    seat: Seat,
    attempts: Sequence[Attempt],
    health: Health | None,
    now: datetime,
    rules: Rules,
) -> StudentPage:
    """A student's page from their attempts (oldest first)."""
    attempts = data.window.judged(attempts)
    return StudentPage(data, now, row(data, seat, attempts, health, now, rules), tuple(attempts))


def first_failure(attempt: Attempt, step: StepInfo) -> str:
    """The attempt's first failing check, in the dashboard's words where the record names the
    check: students' messages are in their own language and carry their own parameters, so
    the same failure is counted once however each student saw it."""
    for place, status in attempt.failed_checks[:1]:
        if place < len(step.checks):
            return f"{step.checks[place]}: {status}"
    return next(iter(attempt.failing or attempt.messages), "")


def _wrong_answers(judged: Iterable[Attempt], most: int = 3) -> tuple[tuple[str, int], ...]:
    """The wrong answers checks judged, each counted once per student who gave it (the same
    answer however it was spelt: case and spaces aside), the most given first."""
    spelt: dict[str, str] = {}
    students: dict[str, set[str]] = defaultdict(set)
    for a in judged:
        if a.answer is None:
            continue
        key = marks.same_answer(a.answer)
        spelt.setdefault(key, a.answer.strip())
        students[key].add(a.student)
    ranked = sorted(students.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return tuple((spelt[key], len(who)) for key, who in ranked[:most])


def exercise_page(
    data: ClassData,
    exercise: ExerciseInfo,
    attempts: Sequence[Attempt],
    now: datetime,
    rules: Rules,
) -> ExercisePage:
    """An exercise's page from the class's attempts at it (oldest first)."""
    attempts = data.window.judged(attempts)
    here = [a for a in attempts if a.exercise == exercise.id]
    mine = _by_student(here)
    order = [s.id for s in exercise.steps]
    passed: dict[str, set[str]] = {sid: set() for sid in order}
    current: dict[str, str | None] = {}
    failing: dict[str, set[str | None]] = {}  # steps failed since the student's last reset
    completed = 0
    for student, theirs in mine.items():
        done = _passed_steps(theirs)
        for sid in done & set(order):
            passed[sid].add(student)
        reached = _passed_steps(theirs, scored_only=False)
        current[student] = next((sid for sid in order if sid not in reached), None)
        failing[student] = {a.step for a in _since_reset(theirs) if a.failed and a.scored}
        completed += set(order) <= done
    stats = []
    for info in exercise.steps:
        # the exam's own attempts, as ``passed`` counts them: practice after its end is not
        on_step = [a for a in here if a.step == info.id and a.kind in (CHECK, ANSWER) and a.scored]
        failed = [a for a in on_step if a.failed]
        stuck = tuple(
            sorted(s for s, sid in current.items() if sid == info.id and sid in failing[s])
        )
        said = Counter(first_failure(a, info) for a in failed)
        del said[""]
        wrong = _wrong_answers(a for a in on_step if a.kind == CHECK and a.answer_passed is False)
        stats.append(
            StepStats(
                info.id,
                info.title,
                len(passed[info.id]),
                len({a.student for a in on_step}),
                len(failed),
                stuck,
                tuple(said.most_common(3)),
                wrong,
            )
        )
    copied = tuple(f for f in marks.copied(attempts, rules) if f.exercise == exercise.id)
    return ExercisePage(data, now, exercise, tuple(stats), len(data.seats), completed, copied)
