"""Scores from the store's states and the lab's grading: steps, penalties, attempt limits.

Each step is worth one point. It scores when it first passed (``count: once``, the default)
or only while its last check passes (``count: now``); each hint shown and each wrong attempt
take the lab's penalty off that step, never below zero. A wrong attempt is an answer given
and judged wrong by the check after it (``labctl.store.StepState``): giving the same wrong
answer again is a second one, running ``check`` again without a new answer is not. A question
with few options (declared ``options``, or yes/no and a/b/c told from its synonyms) allows
``max_attempts`` wrong attempts when the lab sets it, then refuses more answers: without a
limit, trying every option would always win. An answer outside a question's ``options`` is
refused before it is recorded, so it is no attempt at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from labctl.errors import ExitCode, LabctlError
from labctl.exercises.answers import parse_mac, parse_number
from labctl.exercises.model import AnswerCheck, Exercise, Step
from labctl.i18n import Lang, tr
from labctl.spec.model import Grading
from labctl.store import ExerciseState, StepState

#: the keys of a yes/no question's synonyms (the answers' own normal form)
YES_NO = frozenset({"si", "sí", "no", "yes"})
DEFAULT = Grading.model_validate({})


def few_options(check: AnswerCheck) -> bool:
    """A question whose right answer is one of a few options anyone can list.

    One that declares its ``options``; else a named fact (its values are yes/no), or a text
    answer whose accepted values (the keys of its synonyms) are all yes/no words or all single
    letters (a/b/c).
    """
    if check.match != "text":
        return False
    if check.options is not None or check.truth.fact is not None:
        return True
    keys = {k.strip().lower() for k in check.synonyms}
    return bool(keys) and (keys <= YES_NO or all(len(k) == 1 for k in keys))


def attempts_allowed(step: Step, grading: Grading) -> int | None:
    """How many wrong attempts the step allows (None: no limit)."""
    check = step.answer_check
    if check is None or grading.max_attempts is None or not few_options(check):
        return None
    return grading.max_attempts


class AttemptsExhausted(LabctlError):
    """A question with few options was answered wrong as many times as the lab allows."""


class NotAnOption(LabctlError):
    """An answer outside the question's options: refused, not recorded. Exit 2."""

    code = ExitCode.USAGE


def option_list(check: AnswerCheck) -> str:
    """The options for people: ``si (yes, y, s) | no (n)``."""
    return " | ".join(f"{o} ({', '.join(s)})" if s else o for o, s in check.spellings().items())


#: what an answer must hold where its check matches more than text: how it is read, what the
#: step asks for (es, en), how an answer without it is said (es, en) and what to answer
_FORMS: dict[str, tuple[Callable[[str], object], tuple[str, ...], tuple[str, str]]] = {
    "number": (
        parse_number,
        ("un número", "no lo tiene", "a number", "has none"),
        ("responde con un número", "answer with a number"),
    ),
    "mac": (
        parse_mac,
        ("una dirección MAC", "no lo es", "a MAC address", "is none"),
        ("escríbela como 52:54:00:12:34:56", "write it as 52:54:00:12:34:56"),
    ),
}


def _not_taken(lang: Lang, problem: tuple[str, str], then: tuple[str, str]) -> NotAnOption:
    """An answer refused before anything is recorded: what is wrong, and what to answer."""
    recorded = tr(
        lang,
        "no se ha guardado ni cuenta como intento; ",
        "it was not recorded and does not count as an attempt; ",
    )
    return NotAnOption(tr(lang, *problem), recorded + tr(lang, *then), lang=lang)


def require_answerable(exercise: Exercise, step: Step, answer: str, lang: Lang) -> None:
    """Refuse an answer the step cannot take: none of its options, or no number (no MAC
    address) where it asks for one (nothing is recorded, nothing counts)."""
    check = step.answer_check
    if check is None:
        return
    if check.match in _FORMS:
        read, (what_es, not_es, what_en, not_en), then = _FORMS[check.match]
        if read(answer) is None:
            where = f"{step.id} de {exercise.id}", f"{step.id} of {exercise.id}"
            problem = (
                f"el paso {where[0]} pide {what_es} y «{answer}» {not_es}",
                f"step {where[1]} asks for {what_en}, and “{answer}” {not_en}",
            )
            raise _not_taken(lang, problem, then)
    if check.is_option(answer):
        return
    problem = (
        f"«{answer}» no es una de las opciones del paso {step.id} de {exercise.id}: "
        f"{option_list(check)}",
        f"“{answer}” is not one of the options of step {step.id} of {exercise.id}: "
        f"{option_list(check)}",
    )
    raise _not_taken(lang, problem, ("responde una de ellas", "answer one of them"))


def require_attempt_left(
    exercise: Exercise, step: Step, state: StepState, grading: Grading, lang: Lang
) -> None:
    """Refuse a new answer when the step allows no more (a step already passed may not change)."""
    allowed = attempts_allowed(step, grading)
    if allowed is None or state.passed_once or state.wrong_attempts < allowed:
        return
    tried = ", ".join(sorted(state.wrong))
    raise AttemptsExhausted(
        tr(
            lang,
            f"el paso {step.id} de {exercise.id} admite {allowed} respuestas y ya diste "
            f"{state.wrong_attempts} incorrectas ({tried})",
            f"step {step.id} of {exercise.id} allows {allowed} answers and you gave "
            f"{state.wrong_attempts} wrong ones ({tried})",
        ),
        tr(lang, "pide ayuda a tu profesor", "ask your instructor"),
        lang=lang,
    )


def step_points(state: StepState, grading: Grading) -> float:
    """One step's points: 1 when it counts as passed, less its penalties, at least 0."""
    done = state.passes_now and state.passed_once if grading.count == "now" else state.passed_once
    if not done:
        return 0.0
    penalty = grading.hint_penalty * state.hints + grading.wrong_penalty * state.wrong_attempts
    return max(0.0, 1.0 - penalty)


@dataclass(frozen=True)
class Score:
    """How far a student is in one exercise."""

    exercise: str
    passed: int  # steps passed at least once since the exercise last started over
    total: int
    hints: int
    seconds: float
    started: bool
    now: int = 0  # steps whose last check passed
    broken: tuple[str, ...] = ()  # steps that passed once and fail now
    wrong: int = 0  # wrong attempts (answers given and judged wrong)
    points: float = 0.0  # after penalties, out of ``total``
    completed_at: datetime | None = None

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


def score(exercise: Exercise, state: ExerciseState, grading: Grading = DEFAULT) -> Score:
    """Steps passed (once and now), hints, wrong answers, time and points of one exercise."""
    ids = [s.id for s in exercise.steps]
    steps = [state.step(i) for i in ids]
    completed = state.completed_at(ids)
    seconds = 0.0
    if state.started_at is not None:
        # from the start to its completion, else to the last thing done in it: the same
        # figure whenever it is asked (a report made a day later), as the dashboard shows
        end = completed or state.last_at or state.started_at
        seconds = max(0.0, (end - state.started_at).total_seconds())
    return Score(
        exercise=exercise.id,
        passed=sum(s.passed_once for s in steps),
        total=len(ids),
        hints=sum(s.hints for s in steps),
        seconds=seconds,
        started=state.started_at is not None,
        now=sum(s.passes_now for s in steps),
        broken=tuple(s.step for s in steps if s.broken),
        wrong=sum(s.wrong_attempts for s in steps),
        points=round(sum(step_points(s, grading) for s in steps), 2),
        completed_at=completed,
    )


def current_step(exercise: Exercise, state: ExerciseState) -> int:
    """Index of the first step not passed yet (the last step when all passed); a step passed
    after an exam's end, not scored, is passed here: the student goes on, for practice."""
    for i, step in enumerate(exercise.steps):
        if state.step(step.id).reached_at is None:
            return i
    return len(exercise.steps) - 1
