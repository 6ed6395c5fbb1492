"""From attempts (oldest first) to the state of each exercise: one pure function, both engines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from labctl.store.model import Attempt, ExerciseState, StepState

Key = tuple[str, str, str, str]  # lab, instance, student, exercise


class _Done(Protocol):
    @property
    def exercise(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def at(self) -> datetime: ...


#: what a student tries: an answer given, a check run
TRIED = ("answer", "check")


def times_done(attempts: Iterable[_Done]) -> int:
    """How many times the student tried (answered, checked): a check records a row per step,
    all at one time, and counts once. The dashboard and ``class report`` count with this,
    their late attempts too (a start, a hint or a reset is no attempt)."""
    return len({(a.exercise, a.kind, a.at) for a in attempts if a.kind in TRIED})


def key_of(a: Attempt) -> Key:
    """Whose exercise an attempt belongs to."""
    return (a.lab, a.instance, a.student, a.exercise)


def _apply(state: ExerciseState, a: Attempt) -> ExerciseState:
    """One attempt more."""
    state = replace(state, attempts=state.attempts + 1, last_at=a.at)
    if a.made_by is None:
        state = replace(state, active_at=a.at)
    if a.kind == "reset":
        # start over: steps, answers and first passes go; hints taken stay counted
        kept = {
            k: StepState(k, hints=s.hints, wrong=s.wrong, wrong_attempts=s.wrong_attempts)
            for k, s in state.steps.items()
            if s.hints or s.wrong_attempts
        }
        # the student's own reset starts the clock again; an instructor's puts the exercise
        # back as never started: the student's next attempt starts it
        started = a.at if a.made_by is None else None
        return replace(state, steps=kept, started_at=started, resets=state.resets + 1)
    if state.started_at is None:
        state = replace(state, started_at=a.at)
    if a.kind == "start" or a.step is None:
        return state
    s = state.step(a.step)
    if a.kind == "hint":
        s = replace(s, hints=s.hints + 1)
    elif a.kind == "answer":
        s = replace(s, answer=a.answer, answered_at=a.at)
    elif a.kind == "check":
        state = replace(state, checks=state.checks + 1)
        passed = bool(a.passed)
        s = replace(
            s,
            checks=s.checks + 1,
            passes_now=passed,
            last_checked_at=a.at,
            first_passed_at=s.first_passed_at or (a.at if passed and a.scored else None),
            reached_at=s.reached_at or (a.at if passed else None),
        )
        # each answer given is one attempt: judged once, however many checks run after it
        # (a check with no answer attempt before it, as old records have, is its own)
        new_answer = s.answered_at is None or s.answered_at != s.judged_at
        if a.answer_passed is not None and a.answer is not None:
            if a.answer_passed is False and a.scored:
                s = replace(s, wrong=s.wrong | {a.answer})
                if new_answer:
                    s = replace(s, wrong_attempts=s.wrong_attempts + 1)
            s = replace(s, judged_at=s.answered_at)
    return replace(state, steps={**state.steps, a.step: s})


def fold(attempts: Iterable[Attempt]) -> dict[Key, ExerciseState]:
    """Every exercise's state from its attempts, in the order they were recorded."""
    states: dict[Key, ExerciseState] = {}
    for a in attempts:
        k = key_of(a)
        state = states.get(k) or ExerciseState(*k)
        states[k] = _apply(state, a)
    return states
