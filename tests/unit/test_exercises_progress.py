"""Progress in the store, scores, the runner's bookkeeping, and the language choice."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from labctl.command import CommandResult
from labctl.errors import SpecError
from labctl.exercises import grading, runner
from labctl.exercises.checks import CheckResult
from labctl.exercises.progress import ProgressStore, current_step, score, shared
from labctl.i18n import detect, of_args
from tests.unit.exercise_data import exercise, step, text
from tests.unit.fake_connection import FakeConnection


def command_step(step_id: str) -> dict[str, object]:
    run = f"check-{step_id} {{param.user}}"
    check = {"kind": "command", "what": text(step_id), "target": "box", "run": run}
    return step(step_id, check, hints=[text("h1")])


EXERCISE = exercise(
    "demo",
    "system-container",
    command_step("one"),
    command_step("two"),
    setup=[{"target": "box", "run": "prepare {student}"}],
    params={"user": {"kind": "name"}},
)


def store(tmp_path: Path, student: str = "ana") -> ProgressStore:
    return ProgressStore("lab", "main", student, root=tmp_path, store=shared(db(tmp_path)))


def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'labctl.db'}"


def test_progress_starts_empty_and_persists(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.states() == {}
    s.start("demo")
    s.answer("demo", "one", "aarch64")
    again = store(tmp_path).state("demo")
    assert again.step("one").answer == "aarch64" and again.started_at is not None
    s.start("demo")  # the clock started once
    assert [a.kind for a in s.store.attempts("lab")] == ["start", "answer"]


def test_concurrent_hints_are_not_lost(tmp_path: Path) -> None:
    def bump() -> None:
        for _ in range(10):
            store(tmp_path).hint("demo", "one")

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store(tmp_path).state("demo").step("one").hints == 40


@pytest.mark.parametrize("bad", ["", "Ana", "a b", "../x", "x" * 33])
def test_student_ids_are_checked(tmp_path: Path, bad: str) -> None:
    with pytest.raises(SpecError, match="student id"):
        store(tmp_path, bad)


def result(*passed: bool) -> runner.ExerciseResult:
    steps = tuple(
        runner.StepResult(step, i + 1, step, (CheckResult("x", "passed" if ok else "failed", "d"),))
        for i, (step, ok) in enumerate(zip(("one", "two"), passed, strict=True))
    )
    return runner.ExerciseResult("demo", steps)


def test_record_marks_steps_and_completion_once(tmp_path: Path) -> None:
    s = store(tmp_path)
    p = s.record_checks(EXERCISE, result(True, False), s.state("demo"))
    first = p.step("one").first_passed_at
    assert current_step(EXERCISE, p) == 1 and p.completed_at(["one", "two"]) is None
    p = s.record_checks(EXERCISE, result(True, True), p)
    assert p.step("one").first_passed_at == first and p.completed_at(["one", "two"])
    sc = score(EXERCISE, p)
    assert (sc.passed, sc.total, sc.state, p.checks, sc.points) == (2, 2, "completed", 4, 2.0)
    kinds = [(a.kind, a.step, a.passed) for a in s.store.attempts("lab")]
    assert kinds[0] == ("start", None, None) and len(kinds) == 5  # every check kept


def test_after_an_exams_end_a_step_passed_lets_the_student_go_on_without_scoring(
    tmp_path: Path,
) -> None:
    late = ProgressStore(
        "lab", "main", "ana", root=tmp_path, store=shared(db(tmp_path)), scored=False
    )
    p = late.record_checks(EXERCISE, result(True, False), late.state("demo"))
    assert current_step(EXERCISE, p) == 1  # on to step two, for practice
    sc = score(EXERCISE, p)
    assert (sc.passed, sc.points) == (0, 0.0)  # and nothing scored


def test_each_message_names_its_check_by_place(tmp_path: Path) -> None:
    s = store(tmp_path)
    two = runner.StepResult(
        "one", 1, "one", (CheckResult("a", "passed", ""), CheckResult("b", "failed", "no"))
    )
    s.record_checks(EXERCISE, runner.ExerciseResult("demo", (two,)), s.state("demo"))
    (check,) = [a for a in s.store.attempts("lab") if a.kind == "check"]
    assert [(m.what, m.check) for m in check.messages] == [("a", 0), ("b", 1)]


def test_a_step_broken_after_passing_does_not_pass_now(tmp_path: Path) -> None:
    s = store(tmp_path)
    p = s.record_checks(EXERCISE, result(True, True), s.state("demo"))
    p = s.record_checks(EXERCISE, result(False, True), p)
    sc = score(EXERCISE, p)
    assert (sc.passed, sc.now, sc.broken) == (2, 1, ("one",))
    assert sc.state == "completed"  # it was completed; the progress view says what broke


def test_reset_clears_steps_and_answers_but_keeps_hints(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.hint("demo", "one")
    s.answer("demo", "one", "x")
    s.record_checks(EXERCISE, result(True, True), s.state("demo"))
    s.reset("demo")
    p = s.state("demo")
    assert p.completed_at(["one", "two"]) is None and p.resets == 1
    assert p.step("one").answer is None and p.step("one").first_passed_at is None
    assert score(EXERCISE, p).hints == 1


def test_exit_codes_of_a_check_run() -> None:
    assert result(True, True).exit_code == 0
    assert result(True, False).exit_code == 1
    errors = runner.ExerciseResult(
        "demo", (runner.StepResult("one", 1, "one", (CheckResult("x", "error", "down"),)),)
    )
    assert errors.exit_code == 2


class Guest(FakeConnection):
    """A guest whose ``touch`` creates a file that ``test -e`` then finds."""

    def __init__(self) -> None:
        super().__init__(respond=self._answer)
        self.marks: set[str] = set()

    def _answer(self, command: str) -> CommandResult:
        if command.startswith("test -e "):
            return CommandResult(command, 0 if command[8:] in self.marks else 1, "", "")
        if command.startswith("touch "):
            self.marks.add(command[6:])
        return CommandResult(command, 0, "ok\n", "")


def test_setup_runs_once_per_guest_lifetime() -> None:
    guest = Guest()
    values = {"student": "ana"}
    assert runner.ensure_setup(EXERCISE, lambda _t: guest, values)
    assert not runner.ensure_setup(EXERCISE, lambda _t: guest, values)
    assert guest.commands.count("prepare ana") == 1


def test_run_checks_renders_per_student_and_reports_steps() -> None:
    guest = Guest()
    values = {"student": "ana", "param.user": "aluxyz"}
    out = runner.run_checks(EXERCISE, lambda _t: guest, values, "en", {})
    assert [s.step for s in out.steps] == ["one", "two"] and out.passed
    assert guest.commands == ["check-one aluxyz", "check-two aluxyz"]


def test_a_check_whose_placeholder_has_no_value_is_an_error() -> None:
    out = runner.run_checks(EXERCISE, lambda _t: Guest(), {"student": "ana"}, "en", {})
    assert {r.status for s in out.steps for r in s.results} == {"error"}
    assert out.exit_code == 2


@pytest.mark.parametrize(
    ("env", "flag", "lang"),
    [
        ({"LANG": "es_ES.UTF-8"}, None, "es"),
        ({"LANG": "es_ES.UTF-8", "LC_ALL": "C.UTF-8"}, None, "en"),
        ({"LC_MESSAGES": "es_AR.UTF-8", "LANG": "en_US.UTF-8"}, None, "es"),
        ({}, None, "en"),
        ({"LANG": "es_ES.UTF-8"}, "en", "en"),
        ({}, "ES", "es"),
        # a locale naming no language leaves it to $LABCTL_LANG (a class's, for its students)
        ({"LANG": "C.UTF-8", "LABCTL_LANG": "es"}, None, "es"),
        ({"LC_ALL": "POSIX", "LANG": "en_GB.UTF-8", "LABCTL_LANG": "es"}, None, "es"),
        ({"LABCTL_LANG": "es"}, None, "es"),
        ({"LANG": "en_GB.UTF-8", "LABCTL_LANG": "es"}, None, "en"),  # the student's own wins
        ({"LANG": "C.UTF-8", "LABCTL_LANG": "es"}, "en", "en"),
    ],
)
def test_language_from_flag_or_locale(env: dict[str, str], flag: str | None, lang: str) -> None:
    assert detect(flag, env) == lang


@pytest.mark.parametrize("flag", ["fr", "esperanto", "english"])
def test_an_unknown_language_is_refused(flag: str) -> None:
    with pytest.raises(SpecError, match="unknown language"):
        detect(flag, {})
    assert detect("es_ES.UTF-8", {}) == "es" and detect("en-GB", {}) == "en"


@pytest.mark.parametrize(
    ("args", "env", "lang"),
    [
        (["exercise", "check", "x", "--lang", "es"], {}, "es"),
        (["exercise", "check", "x", "--lang=en"], {"LANG": "es_ES.UTF-8"}, "en"),
        (["exec", "box", "--", "echo", "--lang", "es"], {}, "en"),  # the guest's command's
        (["status"], {"LANG": "es_ES.UTF-8"}, "es"),
        (["exercise", "list", "--lang", "fr"], {"LANG": "es_ES.UTF-8"}, "es"),  # refused later
    ],
)
def test_a_command_lines_language(args: list[str], env: dict[str, str], lang: str) -> None:
    assert of_args(args, env) == lang


def test_check_says_a_step_that_passed_once_fails_now() -> None:
    import io

    from rich.console import Console

    from labctl.cli import exercise_view as view

    broken = runner.ExerciseResult(
        "demo", (runner.StepResult("one", 1, "one", (CheckResult("x", "failed", "gone"),)),)
    )
    said = io.StringIO()
    got = grading.Score("demo", 2, 2, 0, 60.0, True, now=1, broken=("one",))
    view.print_check(Console(file=said, width=100), EXERCISE, broken, got, "ana", "es")
    assert "pasos: 2/2 (1 falla ahora)." in said.getvalue()


def test_an_exercises_time_runs_to_its_completion_else_to_the_last_thing_done() -> None:
    from datetime import datetime, timedelta, timezone

    from labctl.store.model import ExerciseState, StepState

    t0 = datetime(2026, 12, 6, 10, 0, tzinfo=timezone.utc)
    minute = timedelta(minutes=1)
    one = StepState("one", first_passed_at=t0 + minute, reached_at=t0 + minute)
    working = ExerciseState("lab", "main", "ana", "demo", {"one": one}, t0, last_at=t0 + 3 * minute)
    assert score(EXERCISE, working).seconds == 180  # not until now: a report a day later agrees
    two = StepState("two", first_passed_at=t0 + 5 * minute, reached_at=t0 + 5 * minute)
    done = ExerciseState(
        "lab", "main", "ana", "demo", {"one": one, "two": two}, t0, last_at=t0 + 9 * minute
    )
    assert score(EXERCISE, done).seconds == 300  # checks after completion add nothing
