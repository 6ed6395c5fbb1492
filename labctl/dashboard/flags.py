"""Marks for the instructor: who is stuck, and which answers look copied (a human decides).

Nothing here changes a score. ``idle`` and ``failing`` say "walk over to this student";
``same-wrong-answer`` and ``seconds-apart`` say "have a look", never "cheated".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from labctl.dashboard.data import ANSWER, CHECK, RESET, Attempt

IDLE, FAILING, SAME_WRONG, SECONDS_APART = "idle", "failing", "same-wrong-answer", "seconds-apart"


@dataclass(frozen=True)
class Rules:
    """When a mark is raised (``class serve`` options)."""

    idle_minutes: float = 10.0
    failures_in_a_row: int = 3
    same_wrong_students: int = 3
    seconds_apart: float = 10.0


@dataclass(frozen=True)
class Flag:
    """One mark: its kind, whom it names, where, and a sentence for the instructor."""

    kind: str
    students: tuple[str, ...]
    exercise: str | None
    step: str | None
    detail: str

    @property
    def copied(self) -> bool:
        """A "looks copied" mark: for a human look only."""
        return self.kind in (SAME_WRONG, SECONDS_APART)


def idle(
    student: str,
    attempts: Sequence[Attempt],
    unfinished: bool,
    now: datetime,
    rules: Rules,
    opened: datetime | None = None,
) -> Flag | None:
    """No progress (a step passed, or the first attempt) for ``idle_minutes`` while work is left.

    A student who did nothing at all is marked once the exam window (``opened``) has been open
    that long; without a window, not (the class may not have begun).
    """
    if not unfinished:
        return None
    attempts = [a for a in attempts if a.made_by is None]  # an instructor's reset is not theirs
    if not attempts:
        if opened is None or (now - opened).total_seconds() / 60 < rules.idle_minutes:
            return None
        minutes = (now - opened).total_seconds() / 60
        return Flag(IDLE, (student,), None, None, f"nothing done in {minutes:.0f} min")
    progress = [a.at for a in attempts if a.kind in (CHECK, ANSWER) and a.passed]
    since = max(progress) if progress else attempts[0].at
    minutes = (now - since).total_seconds() / 60
    if minutes < rules.idle_minutes:
        return None
    return Flag(IDLE, (student,), None, None, f"no progress for {minutes:.0f} min")


def failing(
    student: str,
    attempts: Sequence[Attempt],
    rules: Rules,
    order: Mapping[str, Sequence[str]] | None = None,
) -> list[Flag]:
    """Each step whose latest checks (at least ``failures_in_a_row``) all failed.

    ``order``: each exercise's steps in order; then only the step the student is on (the
    first not passed since the exercise last started over) is marked: a check runs every
    step, and those ahead fail until the student gets there.
    """
    runs: dict[tuple[str, str], list[Attempt]] = defaultdict(list)
    passed: dict[str, set[str]] = defaultdict(set)
    for a in attempts:
        if a.late:
            continue  # practice after an exam's end: marks nothing
        if a.kind == RESET:
            for key in [k for k in runs if k[0] == a.exercise]:
                runs[key].clear()
            passed[a.exercise].clear()
        elif a.kind in (CHECK, ANSWER) and a.step is not None and a.passed is not None:
            run = runs[(a.exercise, a.step)]
            if a.passed:
                run.clear()
                passed[a.exercise].add(a.step)
            else:
                run.append(a)
    flags = []
    for (exercise, step), run in runs.items():
        steps = (order or {}).get(exercise, ())
        on = next((s for s in steps if s not in passed[exercise]), None)
        if step in steps and step != on:
            continue  # not the step the student is on
        if len(run) >= rules.failures_in_a_row:
            said = next(iter(run[-1].failing or run[-1].messages), "")
            detail = f"failed {len(run)} times in a row" + (f": {said}" if said else "")
            flags.append(Flag(FAILING, (student,), exercise, step, detail))
    return flags


def same_answer(answer: str) -> str:
    """An answer as compared with others: case and spaces aside."""
    return " ".join(answer.split()).casefold()


def same_wrong_answer(attempts: Iterable[Attempt], rules: Rules) -> list[Flag]:
    """The same wrong answer to one step from ``same_wrong_students`` students or more."""
    who: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    shown: dict[tuple[str, str, str], str] = {}
    for a in attempts:
        if a.answer and a.step is not None and a.passed is False:
            key = (a.exercise, a.step, same_answer(a.answer))
            who[key].add(a.student)
            shown.setdefault(key, a.answer.strip())
    return [
        Flag(
            SAME_WRONG,
            tuple(sorted(students)),
            exercise,
            step,
            f"{len(students)} students gave the same wrong answer {shown[key]!r}",
        )
        for key, students in sorted(who.items())
        if len(students) >= rules.same_wrong_students
        for exercise, step, _ in [key]
    ]


def seconds_apart(attempts: Iterable[Attempt], rules: Rules) -> list[Flag]:
    """Students whose first correct answer to one step came within ``seconds_apart`` s."""
    first: dict[tuple[str, str], dict[str, datetime]] = defaultdict(dict)
    for a in attempts:
        if a.answer and a.step is not None and a.passed:
            seen = first[(a.exercise, a.step)]
            if a.student not in seen or a.at < seen[a.student]:
                seen[a.student] = a.at
    gap = timedelta(seconds=rules.seconds_apart)
    flags = []
    for (exercise, step), seen in sorted(first.items()):
        ordered = sorted(seen.items(), key=lambda kv: kv[1])
        group: list[tuple[str, datetime]] = []
        for item in [*ordered, None]:
            if item is not None and group and item[1] - group[-1][1] <= gap:
                group.append(item)
                continue
            if len(group) >= 2:
                span = (group[-1][1] - group[0][1]).total_seconds()
                flags.append(
                    Flag(
                        SECONDS_APART,
                        tuple(s for s, _ in group),
                        exercise,
                        step,
                        f"{len(group)} correct answers within {span:.0f} s",
                    )
                )
            group = [item] if item is not None else []
    return flags


def copied(attempts: Sequence[Attempt], rules: Rules) -> list[Flag]:
    """Every "looks copied" mark of the class, from the attempts that score (after an exam's
    end, answers given again are practice: the one option left after the wrong ones)."""
    scored = [a for a in attempts if a.scored]
    return same_wrong_answer(scored, rules) + seconds_apart(scored, rules)
