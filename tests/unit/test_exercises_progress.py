"""Progress files, scores, the runner's bookkeeping, and the language choice."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from labctl.command import CommandResult
from labctl.errors import LabctlError, SpecError
from labctl.exercises import runner
from labctl.exercises.checks import CheckResult
from labctl.exercises.i18n import detect
from labctl.exercises.model import Exercise
from labctl.exercises.progress import ProgressStore, current_step, score
from tests.unit.fake_connection import FakeConnection

EXERCISE = Exercise.model_validate(
    {
        "id": "demo",
        "technique": "system-container",
        "title": {"es": "Demo", "en": "Demo"},
        "instructions": {"es": "x", "en": "x"},
        "guests": ["box"],
        "setup": [{"target": "box", "run": "prepare {student}"}],
        "steps": [
            {
                "id": step,
                "title": {"es": step, "en": step},
                "instructions": {"es": "x", "en": "x"},
                "hints": [{"es": "h1", "en": "h1"}],
                "checks": [
                    {
                        "kind": "command",
                        "what": {"es": step, "en": step},
                        "target": "box",
                        "run": f"check-{step} {{param.user}}",
                    }
                ],
            }
            for step in ("one", "two")
        ],
        "params": {"user": {"kind": "name"}},
    }
)


def store(tmp_path: Path, student: str = "ana") -> ProgressStore:
    return ProgressStore("lab", "main", student, root=tmp_path)


def test_progress_lives_beside_the_lab_not_in_run(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.path == tmp_path / "lab-main" / "progress" / "ana.json"


def test_progress_starts_empty_and_persists(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.load().exercises == {}
    with s.update() as progress:
        progress.of("demo").start()
        progress.of("demo").step("one").answer = "aarch64"
    again = store(tmp_path).load()
    assert again.of("demo").step("one").answer == "aarch64"
    assert again.of("demo").started_at is not None
    assert [p.name for p in s.dir.iterdir() if p.name.endswith(".tmp")] == []


def test_concurrent_updates_are_not_lost(tmp_path: Path) -> None:
    def bump() -> None:
        for _ in range(10):
            with store(tmp_path).update() as progress:
                progress.of("demo").checks += 1

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store(tmp_path).load().of("demo").checks == 40


def test_a_damaged_file_is_explained(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.dir.mkdir(parents=True)
    s.path.write_text("{not json")
    with pytest.raises(LabctlError, match="is damaged"):
        s.load()


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
    with store(tmp_path).update() as progress:
        p = progress.of("demo")
        runner.record(EXERCISE, p, result(True, False))
        first = p.step("one").passed_at
        assert current_step(EXERCISE, p) == 1 and p.completed_at is None
        runner.record(EXERCISE, p, result(True, True))
        assert p.step("one").passed_at == first and p.completed_at is not None
        s = score(EXERCISE, p)
        assert (s.passed, s.total, s.state, p.checks) == (2, 2, "completed", 2)


def test_reset_clears_steps_and_answers_but_keeps_hints(tmp_path: Path) -> None:
    with store(tmp_path).update() as progress:
        p = progress.of("demo")
        p.step("one").hints = 1
        p.step("one").answer = "x"
        runner.record(EXERCISE, p, result(True, True))
        runner.reset_progress(p)
        assert p.completed_at is None and p.resets == 1
        assert p.step("one").answer is None and p.step("one").passed_at is None
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
    ],
)
def test_language_from_flag_or_locale(env: dict[str, str], flag: str | None, lang: str) -> None:
    assert detect(flag, env) == lang


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(SpecError, match="unknown language"):
        detect("fr", {})


def test_progress_file_is_plain_json(tmp_path: Path) -> None:
    with store(tmp_path).update() as progress:
        progress.of("demo").start()
    data = json.loads(store(tmp_path).path.read_text())
    assert data["student"] == "ana" and "demo" in data["exercises"]
