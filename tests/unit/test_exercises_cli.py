"""``labctl exercise`` in-process, on a small lab written into tmp_path (no engine needed).

The exercise's checks run on the host only, so ``check`` can pass and fail for real here;
checks in guests are proven on the real lab by tests/integration/test_exercises.py.
"""

from __future__ import annotations

import json
import os
import pwd
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

import labctl.cli as cli
from labctl.cli import app
from labctl.errors import LabctlError
from labctl.exercises import params
from labctl.exercises.model import HOST, STUDENT, ParamSpec
from labctl.exercises.runner import Connections, open_workspace
from labctl.instance.state import GuestRecord, InstanceDir, LabState, Owner
from labctl.store import open_store
from tests.ci import needs
from tests.unit.exercise_data import step, text, write

runner = CliRunner()

LAB = """\
name: mini
guests:
  box:
    engine: lxd
    technique: system-container
    image: lxd-system
"""

EXERCISE = """\
id: notas
technique: system-container
title: {es: Notas, en: Notes}
instructions:
  es: Escribe tu nota en el anfitrión, {student}.
  en: Write your note on the host, {student}.
guests: [box]
params:
  token: {kind: token, length: 6}
steps:
  - id: nota
    title: {es: La nota, en: The note}
    instructions:
      es: "Crea `~/nota.txt` con `{param.token}` (la caja es {guest.box.address})."
      en: "Create `~/nota.txt` with `{param.token}` (the box is {guest.box.address})."
    hints:
      - {es: "Usa echo.", en: "Use echo."}
      - {es: "echo {param.token} > ~/nota.txt", en: "echo {param.token} > ~/nota.txt"}
    checks:
      - kind: file
        what: {es: "La nota", en: "The note"}
        target: host
        path: ~/nota.txt
        contains: "{param.token}"
        note: {es: "Falta tu nota.", en: "Your note is missing."}
  - id: cpus
    title: {es: CPUs, en: CPUs}
    instructions: {es: "¿Cuántas CPU tiene el anfitrión?", en: "How many CPUs has the host?"}
    checks:
      - kind: answer
        what: {es: "CPUs del anfitrión", en: "CPUs of the host"}
        truth: {target: host, run: getconf _NPROCESSORS_ONLN}
        match: number
"""


@dataclass
class Project:
    lab: Path
    home: Path
    state: Path

    def token(self, student: str) -> str:
        return params.value(ParamSpec(kind="token", length=6), "mini", "notas", "token", student)

    def up(self) -> None:
        """A state file as `labctl up` leaves it (nothing here touches the engine)."""
        record = GuestRecord("box", "lxd", "labctl-mini-main-box", "ready", address="10.9.9.9")
        state = LabState("mini", "main", str(self.lab / "lab.yaml"), guests={"box": record})
        InstanceDir("mini", "main", self.state).save(state)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    lab = tmp_path / "labs" / "mini"
    (lab / "exercises").mkdir(parents=True)
    (lab / "lab.yaml").write_text(LAB)
    (lab / "exercises" / "10-notas.yaml").write_text(EXERCISE)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LABCTL_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("LABCTL_STUDENT", raising=False)
    monkeypatch.setenv("LANG", "es_ES.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    return Project(lab, home, tmp_path / "state")


def labctl(project: Project, *args: str) -> tuple[int, str]:
    """Run ``labctl exercise ...``; a LabctlError gives its own exit code and message."""
    result = runner.invoke(app, ["exercise", *args[:1], *args[1:], "-l", str(project.lab)])
    if isinstance(result.exception, LabctlError):
        return result.exception.code, result.exception.message
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout


def test_list_shows_exercises_and_progress(project: Project) -> None:
    code, out = labctl(project, "list")
    assert code == 0 and "notas" in out and "sin empezar" in out
    code, out = labctl(project, "list", "--json", "--lang", "en")
    assert json.loads(out) == [
        {
            "exercise": "notas",
            "steps_passed": 0,
            "steps": 2,
            "hints": 0,
            "seconds": 0,
            "state": "not started",
            "steps_passing_now": 0,
            "broken": [],
            "wrong_answers": 0,
            "points": 0.0,
            "technique": "system-container",
            "title": "Notes",
            "unavailable": None,
        }
    ]


def test_show_renders_the_current_step_for_the_student(project: Project) -> None:
    code, out = labctl(project, "show", "notas", "-s", "ana")
    assert code == 0
    assert "Escribe tu nota en el anfitrión, ana." in out
    assert project.token("ana") in out
    assert "{guest.box.address}" in out  # the lab is not up: the placeholder stays visible
    code, out = labctl(project, "show", "notas", "-s", "bea", "--json", "--lang", "en")
    data = json.loads(out)
    assert data["step"]["number"] == 1 and project.token("bea") in data["step"]["instructions"]
    assert project.token("ana") != project.token("bea")


def test_show_with_the_lab_up_fills_in_the_guests(project: Project) -> None:
    project.up()
    code, out = labctl(project, "show", "notas", "-i", "main", "-s", "ana")
    assert code == 0 and "10.9.9.9" in out


def test_reading_ahead_while_the_lab_is_down_starts_no_clock(project: Project) -> None:
    def state(student: str) -> str:
        listed = json.loads(labctl(project, "list", "--json", "-s", student, "--lang", "en")[1])
        return str(listed[0]["state"])

    assert labctl(project, "show", "notas", "-s", "ana")[0] == 0
    assert state("ana") == "not started"
    project.up()
    assert labctl(project, "show", "notas", "-s", "ana")[0] == 0
    assert state("ana") != "not started"


def test_an_empty_answer_says_how_to_give_one_in_the_students_language(
    project: Project,
) -> None:
    code, message = labctl(project, "answer", "notas", "cpus", " ", "-s", "ana")
    assert code == 2 and message == "la respuesta está vacía"
    result = runner.invoke(
        app, ["exercise", "answer", "notas", "cpus", "", "-l", str(project.lab), "--lang", "en"]
    )
    assert isinstance(result.exception, LabctlError)
    answer = f"labctl exercise answer notas cpus VALUE --lab {project.lab}"  # the lab given
    assert result.exception.hint == f"give the value after the step: {answer}"


def test_hints_come_one_at_a_time_and_are_counted(project: Project) -> None:
    offered = "Pista: labctl exercise hint notas"
    assert offered in labctl(project, "show", "notas", "-s", "ana")[1]
    assert "Usa echo." in labctl(project, "hint", "notas", "-s", "ana")[1]
    second = labctl(project, "hint", "notas", "-s", "ana")[1]
    assert project.token("ana") in second and "no quedan más pistas" in second
    assert offered not in labctl(project, "show", "notas", "-s", "ana")[1]  # none left to offer
    progress = json.loads(labctl(project, "progress", "--json", "-s", "ana")[1])
    assert progress["exercises"][0]["hints"] == 2


def test_check_without_the_lab_up_exits_2(project: Project) -> None:
    code, message = labctl(project, "check", "notas", "-s", "ana")
    assert code == 2 and "is not up" in message


def test_check_fails_then_passes_and_saves_progress(project: Project) -> None:
    project.up()
    code, out = labctl(project, "check", "notas", "-s", "ana")
    assert code == 1
    assert "~/nota.txt no existe en el anfitrión" in out and "Falta tu nota." in out
    assert "todavía no has respondido: labctl exercise answer notas cpus VALOR" in out
    (project.home / "nota.txt").write_text(f"mi nota {project.token('ana')}\n")
    assert labctl(project, "answer", "notas", "2", str(os.cpu_count()), "-s", "ana")[0] == 0
    code, out = labctl(project, "check", "notas", "-s", "ana", "--json")
    data = json.loads(out)
    assert code == 0 and data["passed"] and data["progress"]["state"] == "completed"
    progress = json.loads(labctl(project, "progress", "--json", "-s", "ana")[1])
    assert (progress["score"], progress["completed"]) == (100, 1)


def test_a_check_after_the_exam_ended_says_it_does_not_score(project: Project) -> None:
    from datetime import datetime, timedelta, timezone

    from labctl.classroom.state import ClassDir, ClassState, Seat
    from labctl.classroom.window import with_window

    project.up()
    (project.home / "nota.txt").write_text(f"mi nota {project.token('ana')}\n")
    seats = {"ana": Seat("ana", "Ana", "main")}  # the class's seat of this instance
    ended = datetime.now(timezone.utc) - timedelta(minutes=5)
    klass = ClassState("c1", "mini", str(project.lab / "lab.yaml"), "r.csv", seats)
    ClassDir("c1", project.state).save(with_window(klass, None, ended))
    code, out = labctl(project, "check", "notas", "-s", "ana", "--step", "nota", "--lang", "en")
    assert code == 0 and "what you do is recorded but does not score" in " ".join(out.split())
    data = json.loads(labctl(project, "check", "notas", "-s", "ana", "--json")[1])
    assert data["scored"] is False
    # an answer and the progress say so too
    code, out = labctl(project, "answer", "notas", "cpus", "2", "-s", "ana", "--lang", "en")
    assert code == 0 and "recorded but does not score" in " ".join(out.split())
    code, out = labctl(project, "progress", "-s", "ana", "--lang", "en")
    assert code == 0 and "The exam ended at" in " ".join(out.split())


def test_a_pass_after_an_end_moved_earlier_scores_no_more_in_the_students_progress(
    project: Project,
) -> None:
    from datetime import datetime, timedelta, timezone

    from labctl.classroom.state import ClassDir, ClassState, Seat
    from labctl.classroom.window import with_window

    project.up()
    seats = {"ana": Seat("ana", "Ana", "main")}
    klass = ClassState("c1", "mini", str(project.lab / "lab.yaml"), "r.csv", seats)
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    ClassDir("c1", project.state).save(with_window(klass, None, later))
    (project.home / "nota.txt").write_text(f"mi nota {project.token('ana')}\n")
    assert labctl(project, "check", "notas", "-s", "ana", "--step", "nota")[0] == 0

    def steps_passed() -> int:
        progress = json.loads(labctl(project, "progress", "--json", "-s", "ana")[1])
        return int(progress["steps_passed"])

    assert steps_passed() == 1
    # root working in a student's class lab is the instructor; the student's own commands
    # run confined (labctl-student)
    from labctl import console

    with pytest.MonkeyPatch.context() as confined:
        confined.setattr(console, "CONFINED", True)
        assert labctl(project, "answer", "notas", "cpus", "3", "-s", "ana")[0] == 0
    store = open_store(f"sqlite:///{project.state / 'labctl.db'}")
    try:
        made = [(a.kind, a.made_by) for a in store.attempts("mini", student="ana")]
    finally:
        store.close()
    assert made == [("start", "instructor"), ("check", "instructor"), ("answer", None)]
    # the instructor ends the exam before that check: as in the class's report, it is late
    earlier = datetime.now(timezone.utc) - timedelta(hours=1)
    ClassDir("c1", project.state).save(with_window(klass, None, earlier))
    assert steps_passed() == 0


def test_another_students_note_does_not_pass(project: Project) -> None:
    project.up()
    (project.home / "nota.txt").write_text(f"{project.token('ana')}\n")
    code, out = labctl(project, "check", "notas", "-s", "bea", "--step", "nota")
    assert code == 1 and f"no contiene «{project.token('bea')}»" in out


def test_answer_errors_are_user_errors(project: Project) -> None:
    code, message = labctl(project, "answer", "notas", "nota", "42", "-s", "ana", "--lang", "en")
    assert code == 2 and message == "step nota of notas does not ask for an answer"
    code, message = labctl(project, "answer", "notas", "nota", "42", "-s", "ana")  # LANG es
    assert code == 2 and message == "el paso nota de notas no pide ninguna respuesta"
    code, message = labctl(project, "answer", "notas", "9", "42", "-s", "ana")
    assert code == 2 and "has no step '9'" in message
    code, message = labctl(project, "show", "nada", "-s", "ana")
    assert code == 2 and message == "no exercise 'nada' in lab mini"


def test_the_student_defaults_to_labctl_student_then_the_instance(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    def who() -> list[str]:
        store = open_store(f"sqlite:///{project.state / 'labctl.db'}")
        found = [a.student for a in store.attempts("mini", ["alumno07"], exercise="notas")]
        store.close()
        return found

    labctl(project, "answer", "notas", "cpus", "1", "-i", "alumno07")
    assert set(who()) == {"alumno07"}
    monkeypatch.setenv("LABCTL_STUDENT", "carla")
    labctl(project, "answer", "notas", "cpus", "1", "-i", "alumno07")
    assert set(who()) == {"alumno07", "carla"}


def test_schema_is_json() -> None:
    result = runner.invoke(app, ["exercise", "schema"])
    assert result.exit_code == 0 and json.loads(result.stdout)["title"] == "labctl exercise"


def _quiz(exercises: Path) -> None:
    """A yes/no question answered once, half a point off for a wrong answer."""
    truth = {"target": "host", "run": "echo si"}
    synonyms = {"si": ["si", "yes"], "no": ["no"]}
    check = {"kind": "answer", "what": text("Host"), "truth": truth, "synonyms": synonyms}
    grading = {"max_attempts": 1, "wrong_penalty": 0.5}
    write(
        exercises / "20-quiz.yaml", "quiz", "system-container", step("host", check), grading=grading
    )


def test_a_yes_no_question_refuses_a_second_guess_and_the_penalty_shows(project: Project) -> None:
    _quiz(project.lab / "exercises")
    project.up()
    assert labctl(project, "answer", "quiz", "host", "no", "-s", "ana")[0] == 0
    assert labctl(project, "check", "quiz", "-s", "ana")[0] == 1
    code, message = labctl(project, "answer", "quiz", "host", "si", "-s", "ana", "--lang", "en")
    assert (
        code == 1 and message == "step host of quiz allows 1 answers and you gave 1 wrong ones (no)"
    )
    # another student, right at once, scores the full point
    labctl(project, "answer", "quiz", "host", "yes", "-s", "bea")
    assert labctl(project, "check", "quiz", "-s", "bea")[0] == 0
    bea = json.loads(labctl(project, "progress", "--json", "-s", "bea")[1])
    ana = json.loads(labctl(project, "progress", "--json", "-s", "ana")[1])
    assert bea["exercises"][1]["exercise"] == "quiz" and bea["exercises"][1]["points"] == 1.0
    assert ana["exercises"][1]["points"] == 0.0
    assert ana["exercises"][1]["wrong_answers"] == 1


def test_after_the_exam_a_question_whose_answers_ran_out_may_be_practised(
    project: Project,
) -> None:
    from datetime import datetime, timezone

    from labctl.classroom.state import ClassDir, ClassState, Seat
    from labctl.classroom.window import with_window

    _quiz(project.lab / "exercises")
    project.up()
    assert labctl(project, "answer", "quiz", "host", "no", "-s", "ana")[0] == 0
    assert labctl(project, "check", "quiz", "-s", "ana")[0] == 1
    code, message = labctl(project, "answer", "quiz", "host", "si", "-s", "ana", "--lang", "en")
    assert code == 1 and "allows 1 answers" in message  # the exam runs: no more answers
    seats = {"ana": Seat("ana", "Ana", "main")}
    klass = ClassState("c1", "mini", str(project.lab / "lab.yaml"), "r.csv", seats)
    time.sleep(1.1)  # the window's end is kept to the second
    ended = datetime.now(timezone.utc)  # after the wrong answer's check
    ClassDir("c1", project.state).save(with_window(klass, None, ended))
    assert labctl(project, "answer", "quiz", "host", "si", "-s", "ana")[0] == 0
    assert labctl(project, "check", "quiz", "-s", "ana")[0] == 0  # passes, for practice
    ana = json.loads(labctl(project, "progress", "--json", "-s", "ana")[1])["exercises"][1]
    assert (ana["points"], ana["wrong_answers"]) == (0.0, 1)  # and scores nothing


def _accel(exercises: Path) -> None:
    """Which accelerator, out of two options (one with a synonym), with two answers allowed."""
    check = {
        "kind": "answer",
        "what": text("Accelerator"),
        "truth": {"target": "host", "run": "echo tcg"},
        "synonyms": {"tcg": ["tcg", "tiny code generator"]},
        "options": ["tcg", "kvm"],
    }
    grading = {"max_attempts": 2, "wrong_penalty": 0.25}
    write(
        exercises / "20-accel.yaml",
        "accel",
        "full-virtualization",
        step("accel", check),
        grading=grading,
    )


def _recorded(project: Project, student: str) -> list[tuple[str, str | None]]:
    store = open_store(f"sqlite:///{project.state / 'labctl.db'}")
    try:
        return [(a.kind, a.answer) for a in store.attempts("mini", student=student)]
    finally:
        store.close()


def test_an_answer_outside_the_options_is_refused_and_not_recorded(project: Project) -> None:
    _accel(project.lab / "exercises")
    project.up()
    code, message = labctl(project, "answer", "accel", "accel", "xen", "-s", "ana", "--lang", "en")
    assert code == 2
    assert message == (
        "“xen” is not one of the options of step accel of accel: tcg (tiny code generator) | kvm"
    )
    assert _recorded(project, "ana") == []  # not even the exercise's start
    code, out = labctl(project, "show", "accel", "-s", "ana", "--lang", "en")
    assert code == 0 and "Options: tcg (tiny code generator) | kvm" in " ".join(out.split())
    shown = json.loads(labctl(project, "show", "accel", "-s", "ana", "--json")[1])
    assert shown["step"]["options"] == {"tcg": ["tiny code generator"], "kvm": []}
    # a synonym of an option is an option; a check judges it
    assert labctl(project, "answer", "accel", "accel", "Tiny Code Generator", "-s", "ana")[0] == 0
    assert labctl(project, "check", "accel", "-s", "ana")[0] == 0
    assert ("answer", "Tiny Code Generator") in _recorded(project, "ana")


def test_an_answer_without_a_number_where_one_is_asked_is_refused_and_not_recorded(
    project: Project,
) -> None:
    project.up()
    code, message = labctl(project, "answer", "notas", "cpus", "muchas", "-s", "ana")
    assert code == 2
    assert message == "el paso cpus de notas pide un número y «muchas» no lo tiene"
    assert _recorded(project, "ana") == []
    assert labctl(project, "answer", "notas", "cpus", "unas 4", "-s", "ana")[0] == 0
    assert ("answer", "unas 4") in _recorded(project, "ana")


def test_the_same_wrong_answer_given_again_is_another_attempt(project: Project) -> None:
    _accel(project.lab / "exercises")
    project.up()
    for _ in range(2):  # kvm, checked (twice: one attempt), then kvm again, checked
        assert labctl(project, "answer", "accel", "accel", "kvm", "-s", "ana")[0] == 0
        assert labctl(project, "check", "accel", "-s", "ana")[0] == 1
        assert labctl(project, "check", "accel", "-s", "ana")[0] == 1
    code, message = labctl(project, "answer", "accel", "accel", "tcg", "-s", "ana", "--lang", "en")
    assert code == 1
    assert message == "step accel of accel allows 2 answers and you gave 2 wrong ones (kvm)"
    ana = json.loads(labctl(project, "progress", "--json", "-s", "ana")[1])["exercises"][1]
    assert ana["wrong_answers"] == 2
    # one wrong attempt, then right: 1 - 0.25
    labctl(project, "answer", "accel", "accel", "kvm", "-s", "bea")
    labctl(project, "check", "accel", "-s", "bea")
    labctl(project, "check", "accel", "-s", "bea")  # checking again costs nothing
    labctl(project, "answer", "accel", "accel", "tcg", "-s", "bea")
    assert labctl(project, "check", "accel", "-s", "bea")[0] == 0
    bea = json.loads(labctl(project, "progress", "--json", "-s", "bea")[1])["exercises"][1]
    assert (bea["wrong_answers"], bea["points"]) == (1, 0.75)


def test_a_step_that_breaks_after_passing_is_shown_as_failing_now(project: Project) -> None:
    project.up()
    (project.home / "nota.txt").write_text(f"{project.token('ana')}\n")
    assert labctl(project, "check", "notas", "-s", "ana", "--step", "nota")[0] == 0
    (project.home / "nota.txt").unlink()  # broken afterwards
    assert labctl(project, "check", "notas", "-s", "ana", "--step", "nota")[0] == 1
    code, out = labctl(project, "progress", "-s", "ana")
    text = " ".join(out.split())
    assert code == 0 and "notas 1/2 1 " in text  # one step passed, one of them failing now
    assert "Pasaron una vez y ahora fallan: notas/nota" in text
    data = json.loads(labctl(project, "progress", "--json", "-s", "ana")[1])
    assert (data["steps_passed"], data["steps_passing_now"]) == (1, 0)


@pytest.mark.parametrize("command", ["list", "progress"])
@pytest.mark.parametrize("lang", ["es", "en"])
def test_the_default_labs_tables_fit_80_columns_with_every_id_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, lang: str
) -> None:
    from rich.console import Console

    from labctl import console
    from labctl.exercises.model import load_exercises
    from labctl.paths import LABS_DIR

    monkeypatch.setenv("LABCTL_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(console, "out", Console(width=80, highlight=False))
    lab = LABS_DIR / "virtualization"
    result = runner.invoke(app, ["exercise", command, "-l", str(lab), "--lang", lang, "-s", "ana"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    if command == "list":  # its last line is a command, whole on one line however long
        start = {"es": "Empieza con: ", "en": "Start with: "}[lang]
        assert lines[-1] == f"{start}labctl exercise show ID --lab {lab} -s ana"
        lines = lines[:-1]
    assert max(len(line) for line in lines) <= 80 and "…" not in result.stdout
    firsts = {line.split()[0] for line in lines if line.strip()}
    ids = [e.id for e in load_exercises(lab / "exercises")]
    assert len(ids) > 10 and not set(ids) - firsts  # each id whole at the start of its row
    if command == "list":  # the techniques in the student's language
        named = {"es": "virtualización completa", "en": "full virtualization"}[lang]
        assert named in [line.strip() for line in lines]


@pytest.mark.parametrize("lang", ["es", "en"])
def test_show_ends_with_each_command_whole_on_its_own_line_at_80_columns(
    project: Project, monkeypatch: pytest.MonkeyPatch, lang: str
) -> None:
    from rich.console import Console

    from labctl import console

    monkeypatch.setattr(console, "out", Console(width=80, highlight=False))
    out = labctl(project, "show", "notas", "-s", "ana", "--lang", lang)[1]
    check, hint = out.rstrip("\n").splitlines()[-2:]
    same = f"--lab {project.lab} -s ana"  # the options given: the command reaches the same lab
    assert check.endswith(f": labctl exercise check notas {same}") and check.startswith(
        {"es": "Comprueba tu trabajo", "en": "Check your work"}[lang]
    )
    assert hint == {"es": "Pista", "en": "Hint"}[lang] + f": labctl exercise hint notas {same}"


def test_reset_without_a_terminal_to_ask_on_wants_yes(project: Project) -> None:
    project.up()
    code, message = labctl(project, "reset", "notas", "-s", "ana", "--lang", "en")  # stdin: a pipe
    assert code == 2
    assert message == (
        "exercise reset removes what was done in box, and there is no terminal to ask"
    )
    code, message = labctl(project, "reset", "notas", "-s", "ana")
    assert message == "exercise reset borra lo hecho en box y no hay terminal donde preguntar"
    assert InstanceDir("mini", "main", project.state).load() is not None  # nothing removed
    # the command it suggests resets this lab instance for this student, not the default ones
    result = runner.invoke(
        app, ["exercise", "reset", "notas", "-l", str(project.lab), "-s", "bea", "--lang", "en"]
    )
    assert isinstance(result.exception, LabctlError) and result.exception.hint == (
        f"add --yes: labctl exercise reset notas --yes --lab {project.lab} -s bea"
    )


def test_printed_commands_name_the_instance_unless_labctl_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from labctl import console
    from labctl.cli.lab import options_of

    assert options_of("virtualization", "main", None) == ""  # the defaults
    assert options_of("virtualization", "walk", None) == " -i walk"
    assert options_of("net", "walk", "ana") == " --lab net -i walk -s ana"
    assert options_of("/tmp/my lab", "main", None) == " --lab '/tmp/my lab'"
    monkeypatch.setattr(console, "CONFINED", True)  # a class's student: labctl adds theirs
    assert options_of("net", "so24a-ana", None) == ""


@needs(os.geteuid() == 0, "commands run as another account only from root (labctl's own way)")
def test_a_students_checks_on_the_host_run_as_the_student_in_class_mode(project: Project) -> None:
    project.up()
    ws = open_workspace(str(project.lab), "main")
    alone = Connections(ws)  # a lab of one's own: "student" is whoever runs labctl
    assert alone(STUDENT).run("id -u").stdout == alone(HOST).run("id -u").stdout == "0\n"
    # class mode: the instance's owner is the overflow uid's account (nobody)
    InstanceDir("mini", "main", project.state).save_owner(
        Owner("so", "ana", "ssh-ed25519 AAAA x", uid=65534)
    )
    ws = open_workspace(str(project.lab), "main")
    conns = Connections(ws)
    nobody = pwd.getpwuid(65534)
    assert conns(STUDENT).run('id -u; echo "$HOME"').stdout == f"65534\n{nobody.pw_dir}\n"
    assert conns(HOST).run("id -u").stdout == "0\n"  # the lab host's own facts: as root


def test_errors_speak_the_students_language(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def said(*args: str) -> str:
        monkeypatch.setattr(sys, "argv", ["labctl", "exercise", *args, "-l", str(project.lab)])
        with pytest.raises(SystemExit) as done:
            cli.main()
        assert done.value.code == 2
        return capsys.readouterr().err

    # LANG is es_ES.UTF-8 here
    assert said("show", "notsa") == (
        "Error: no hay ningún ejercicio 'notsa' en el laboratorio mini\n"
        f"Pista: ¿querías decir notas? labctl exercise list --lab {project.lab} muestra los "
        "ejercicios del laboratorio\n"
    )
    assert "Error: el ejercicio notas no tiene ningún paso 'tres'\nPista: pasos: 1 (nota)" in (
        said("answer", "notas", "tres", "x")
    )
    assert said("check", "notas").startswith(
        "Error: el laboratorio mini (instancia main) no está en marcha: no hay nada que comprobar"
    )
    assert said("show", "notsa", "--lang", "en").startswith(
        "Error: no exercise 'notsa' in lab mini\nHint: did you mean notas?"
    )
    # an error made in the student's language (not one carrying both) is labelled in it too
    assert "\nPista: no se ha guardado ni cuenta como intento" in said(
        "answer", "notas", "cpus", "muchas"
    )
    assert "\nHint: it was not recorded" in said("answer", "notas", "cpus", "x", "--lang", "en")


def test_the_commands_a_text_names_reach_the_instance_in_use(project: Project) -> None:
    said = "Create `~/nota.txt` with `{param.token}`"
    text = EXERCISE.replace(said, f"{said}; look with `labctl ssh box`")
    (project.lab / "exercises" / "10-notas.yaml").write_text(text)
    args = ("show", "notas", "-i", "walk", "--json", "--lang", "en")
    step = json.loads(labctl(project, *args)[1])["step"]
    # ssh takes the lab's name (the path given to exercise show is for lab files)
    assert "look with `labctl ssh --lab mini -i walk box`" in step["instructions"]
