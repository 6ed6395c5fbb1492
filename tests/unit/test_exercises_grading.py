"""Grading: penalties per hint and wrong answer, attempt limits on few-option questions."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from labctl.errors import SpecError
from labctl.exercises import grading
from labctl.exercises.model import load_exercise
from labctl.spec.model import Grading
from labctl.store import ExerciseState, StepState
from tests.unit.exercise_data import exercise, step, text

T = datetime(2026, 3, 1, tzinfo=timezone.utc)


def answer_step(step_id: str, **check: object) -> dict[str, object]:
    truth = check.pop("truth", {"target": "box", "run": "uname -m"})
    return step(step_id, {"kind": "answer", "what": text("w"), "truth": truth, **check})


EXERCISE = exercise(
    "quiz",
    "emulation",
    answer_step("yesno", synonyms={"si": ["si", "yes"], "no": ["no"]}),
    answer_step("abc", synonyms={"a": ["a"], "b": ["b"], "c": ["c"]}),
    answer_step("fact", truth={"target": "box", "fact": "apt-mirror"}),
    answer_step("arch", synonyms={"x86_64": ["amd64"], "aarch64": ["arm64"]}),
    answer_step("secs", match="number", factor=2),
    answer_step("accel", synonyms={"tcg": ["tiny code generator"]}),
    answer_step("accel2", synonyms={"tcg": ["tiny code generator"]}, options=["tcg", "kvm"]),
)


def test_few_options_are_told_from_the_answer_the_model_already_has() -> None:
    few = {s.id: grading.few_options(s.answer_check) for s in EXERCISE.steps if s.answer_check}
    assert few == {
        "yesno": True,
        "abc": True,
        "fact": True,
        "arch": False,
        "secs": False,
        "accel": False,  # words the heuristic cannot tell from an open question
        "accel2": True,  # the same, its options declared
    }


def state(**steps: StepState) -> ExerciseState:
    return ExerciseState("lab", "main", "ana", "quiz", steps=steps)


def test_a_few_option_question_refuses_answers_past_the_limit() -> None:
    limit = Grading(max_attempts=1)
    step = EXERCISE.step("yesno")
    wrong_once = StepState("yesno", wrong=frozenset({"si"}), wrong_attempts=1)
    with pytest.raises(grading.AttemptsExhausted, match="allows 1 answers.*\\(si\\)"):
        grading.require_attempt_left(EXERCISE, step, wrong_once, limit, "en")
    grading.require_attempt_left(EXERCISE, step, StepState("yesno"), limit, "en")
    grading.require_attempt_left(EXERCISE, step, wrong_once, Grading(), "en")  # no limit set
    # an open question has no limit, whatever the lab says
    arch = StepState("arch", wrong=frozenset({"a", "b", "c"}), wrong_attempts=3)
    grading.require_attempt_left(EXERCISE, EXERCISE.step("arch"), arch, limit, "en")


def test_penalties_come_off_each_step_never_below_zero() -> None:
    rules = Grading(hint_penalty=0.25, wrong_penalty=0.5)
    s = state(
        yesno=StepState("yesno", hints=1, first_passed_at=T, passes_now=True),
        abc=StepState(
            "abc", wrong=frozenset({"a", "b"}), wrong_attempts=3, first_passed_at=T, passes_now=True
        ),  # a, b, then b again: three wrong attempts, each costs 0.5
        fact=StepState("fact", hints=4),  # not passed: 0
    )
    sc = grading.score(EXERCISE, s, rules)
    assert (sc.points, sc.passed, sc.hints, sc.wrong) == (0.75, 2, 5, 3)
    one = state(abc=StepState("abc", wrong=frozenset("b"), wrong_attempts=1, first_passed_at=T))
    assert grading.score(EXERCISE, one, rules).points == 0.5


def test_count_now_drops_a_step_that_broke() -> None:
    s = state(yesno=StepState("yesno", first_passed_at=T, passes_now=False))
    assert grading.score(EXERCISE, s, Grading()).points == 1.0
    assert grading.score(EXERCISE, s, Grading(count="now")).points == 0.0


def test_an_exercise_sets_its_own_grading_and_bad_values_point_at_the_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "quiz.yaml"
    text = EXERCISE.model_dump_json(exclude_none=True)
    path.write_text(text[:-1] + ', "grading": {"hint_penalty": 0.1, "max_attempts": 2}}')
    assert load_exercise(path).grading == Grading(hint_penalty=0.1, max_attempts=2)
    path.write_text(text[:-1] + ', "grading": {"hint_penalty": 3}}')
    with pytest.raises(SpecError, match=r"quiz.yaml:1.*hint_penalty"):
        load_exercise(path)


def test_an_answer_that_is_no_mac_address_is_refused_where_one_is_asked() -> None:
    ex = exercise("nic", "full-virtualization", answer_step("mac", match="mac"))
    mac = ex.step("mac")
    grading.require_answerable(ex, mac, "52-54-00-0F-1F-38", "en")  # any notation is one
    with pytest.raises(grading.NotAnOption) as refused:
        grading.require_answerable(ex, mac, "eth0", "en")
    assert refused.value.message == "step mac of nic asks for a MAC address, and “eth0” is none"
