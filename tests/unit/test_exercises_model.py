"""Exercise files: the shipped ones are complete; bad ones fail with file, line and field."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from labctl.errors import SpecError
from labctl.exercises import model
from labctl.exercises.model import (
    HOST,
    STUDENT,
    TECHNIQUES,
    AnswerCheck,
    load_exercise,
    load_exercises,
)
from labctl.paths import LABS_DIR
from labctl.spec.model import load_lab

LAB = LABS_DIR / "virtualization"

GOOD = """\
id: demo
technique: system-container
title: {es: Demo, en: Demo}
instructions: {es: Hola, en: Hello}
guests: [lxc-system]
params:
  user: {kind: name}
steps:
  - id: one
    title: {es: Uno, en: One}
    instructions: {es: "Crea {param.user}", en: "Create {param.user}"}
    checks:
      - kind: command
        what: {es: "{param.user} existe", en: "{param.user} exists"}
        target: lxc-system
        run: id -u {param.user}
"""


def write(tmp_path: Path, text: str, name: str = "10-demo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problem(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpecError) as err:
        load_exercise(write(tmp_path, text))
    return err.value.message


def test_the_lab_ships_at_least_three_exercises_per_technique() -> None:
    exercises = load_exercises(LAB / "exercises")
    per = Counter(e.technique for e in exercises)
    assert set(per) == set(TECHNIQUES)
    assert min(per.values()) >= 3, per


def test_shipped_exercises_name_only_guests_of_the_lab() -> None:
    guests = set(load_lab(LAB).guests)
    for exercise in load_exercises(LAB / "exercises"):
        assert set(exercise.guests) <= guests, exercise.id


def test_shipped_exercises_are_complete_in_both_languages() -> None:
    for exercise in load_exercises(LAB / "exercises"):
        texts = [exercise.title, exercise.instructions]
        for step in exercise.steps:
            texts += [step.title, step.instructions, *step.hints]
            texts += [c.what for c in step.checks]
        for text in texts:
            assert text.es.strip() and text.en.strip(), exercise.id
            # Identical texts are only fine for short titles and code-only hints.
            same_ok = len(text.es) < 60 or text.es.strip().startswith("`")
            assert text.es != text.en or same_ok, (exercise.id, text.es)


def test_every_shipped_answer_check_measures_its_truth_in_the_lab() -> None:
    for exercise in load_exercises(LAB / "exercises"):
        for step in exercise.steps:
            check = step.answer_check
            if check is not None:
                assert check.truth.fact or (check.truth.run or "").strip()
                assert check.truth.target in {*exercise.guests, HOST, STUDENT}


def test_a_good_file_loads(tmp_path: Path) -> None:
    exercise = load_exercise(write(tmp_path, GOOD))
    assert exercise.id == "demo" and exercise.steps[0].checks[0].kind == "command"
    assert exercise.step("1") is exercise.step("one")


def test_unknown_key_names_file_line_and_field(tmp_path: Path) -> None:
    text = GOOD.replace(
        "        run: id -u {param.user}\n", "        run: id\n        colour: red\n"
    )
    path = tmp_path / "10-demo.yaml"
    assert f"{path}:17: steps.0.checks.0.colour: unknown key" in problem(tmp_path, text)


def test_both_languages_are_required(tmp_path: Path) -> None:
    text = GOOD.replace("instructions: {es: Hola, en: Hello}", "instructions: {es: Hola}")
    assert ":4: instructions.en: missing (required)" in problem(tmp_path, text)


def test_a_check_must_target_a_guest_of_the_exercise_or_the_host(tmp_path: Path) -> None:
    text = GOOD.replace("        target: lxc-system", "        target: kvm-full")
    message = problem(tmp_path, text)
    assert ":15: steps.0.checks.0.target: 'kvm-full' is not one of this exercise's guests" in (
        message
    )
    assert "(lxc-system, host or student)" in message


def test_a_placeholder_must_name_a_parameter(tmp_path: Path) -> None:
    text = GOOD.replace("run: id -u {param.user}", "run: id -u {param.usr}")
    assert ":16: steps.0.checks.0.run: {param.usr}: no parameter 'usr'" in problem(tmp_path, text)


def test_a_placeholder_must_name_a_guest_and_a_field(tmp_path: Path) -> None:
    text = GOOD.replace("run: id -u {param.user}", "run: ping {guest.lxc-system.ip}")
    assert "{guest.lxc-system.ip}: a guest has address" in problem(tmp_path, text)


def test_a_regular_expression_must_compile(tmp_path: Path) -> None:
    text = GOOD + "        stdout: ^(unclosed\n"
    assert "steps.0.checks.0.command.stdout" in problem(tmp_path, text) or (
        "steps.0.checks.0.stdout" in problem(tmp_path, text)
    )


def test_a_step_asks_one_answer_at_most(tmp_path: Path) -> None:
    answer = (
        "      - kind: answer\n"
        "        what: {es: a, en: a}\n"
        "        truth: {target: lxc-system, run: uname -r}\n"
    )
    message = problem(tmp_path, GOOD + answer + answer)
    assert "at most one answer check" in message


def test_yaml_booleans_are_caught_not_turned_into_answers(tmp_path: Path) -> None:
    answer = (
        "      - kind: answer\n"
        "        what: {es: a, en: a}\n"
        "        truth: {target: lxc-system, run: echo si}\n"
        "        synonyms: {si: [yes, s]}\n"  # YAML 1.1 reads `yes` as true
    )
    assert ":20: steps.0.checks.1.synonyms.si.0: Input should be a valid string" in problem(
        tmp_path, GOOD + answer
    )


def test_numeric_tolerances_need_a_number_match(tmp_path: Path) -> None:
    answer = (
        "      - kind: answer\n"
        "        what: {es: a, en: a}\n"
        "        truth: {target: host, run: nproc}\n"
        "        factor: 2\n"
    )
    assert "tolerance, margin and factor need match: number" in problem(tmp_path, GOOD + answer)
    assert "remeasure needs match: number" in problem(
        tmp_path, GOOD + answer.replace("factor: 2", "remeasure: 1")
    )
    assert "remeasure" in problem(tmp_path, GOOD + answer + "        remeasure: 6\n")


def _with_options(options: str, extra: str = "", truth: str = "run: uname -m") -> str:
    return GOOD + (
        "      - kind: answer\n"
        "        what: {es: a, en: a}\n"
        f"        truth: {{target: lxc-system, {truth}}}\n"
        f"{extra}"
        f"        options: {options}\n"
    )


@pytest.mark.parametrize(
    ("options", "extra", "truth", "said"),
    [
        ("[tcg]", "", "run: uname -m", "List should have at least 2 items"),
        ("[tcg, kvm]", "        match: number\n", "run: nproc", "options need match: text"),
        ('[tcg, "TCG"]', "", "run: uname -m", "option 'TCG' is empty or the same as 'tcg'"),
        (
            "[tcg, kvm]",
            "        synonyms: {hvf: [hvf]}\n",
            "run: uname -m",
            "synonyms key 'hvf' is not one of the options (tcg, kvm)",
        ),
        (
            "[tcg, kvm]",
            "        synonyms: {tcg: [tcg, qemu], kvm: [qemu]}\n",
            "run: uname -m",
            "'qemu' would count as 'tcg' and as 'kvm'",
        ),
        ('["si", "tal vez"]', "", "fact: apt-mirror", "it can measure no: not among the options"),
        (
            "[tcg, kvm]",
            "        synonyms: {tcg: [tcg, kvm]}\n",
            "run: uname -m",
            "'kvm' would count as 'kvm' and as 'tcg'",
        ),
    ],
)
def test_options_are_checked_at_their_line(
    tmp_path: Path, options: str, extra: str, truth: str, said: str
) -> None:
    message = problem(tmp_path, _with_options(options, extra, truth))
    line = 20 + extra.count("\n")
    assert f":{line}: steps.0.checks.1.options: " in message and said in message, message


def test_options_and_their_synonyms_are_the_answers_a_question_takes(tmp_path: Path) -> None:
    text = _with_options('["si", "no"]', '        synonyms: {"si": [si, "yes", s], "no": [n]}\n')
    check = load_exercise(write(tmp_path, text)).steps[0].answer_check
    assert check is not None and check.options == ["si", "no"]
    assert check.spellings() == {"si": ("yes", "s"), "no": ("n",)}
    assert all(check.is_option(a) for a in ("si", "Sí", " YES ", "n", "«no»"))
    assert not any(check.is_option(a) for a in ("quizá", "", "sino"))
    plain = AnswerCheck.model_validate(
        {"kind": "answer", "what": {"es": "a", "en": "a"}, "truth": {"target": "h", "run": "x"}}
    )
    assert plain.is_option("anything") and plain.spellings() == {}


def test_shipped_closed_questions_declare_their_options() -> None:
    """A yes/no or a/b/c question of the shipped labs says so: `options`, not the heuristic."""
    from labctl.exercises import grading

    for lab in ("virtualization", "virtualization-full"):
        for ex in load_exercises(LABS_DIR / lab / "exercises"):
            for step in ex.steps:
                check = step.answer_check
                if check is None or check.match != "text":
                    continue
                keys = {k.lower() for k in check.synonyms}
                closed = check.truth.fact is not None or (
                    keys and (keys <= grading.YES_NO or all(len(k) == 1 for k in keys))
                )
                if closed:
                    assert check.options, f"{lab}: {ex.id}/{step.id} has no options"
                if check.options:
                    assert grading.few_options(check)


def test_the_scripted_wrong_answers_are_among_the_options() -> None:
    """tests/integration's wrong answers must be judged wrong, not refused as no option."""
    from tests.integration import exercise_solutions as sol

    yes_no = ("si", "no")
    # what each answer computed on the real lab can be, whatever the host
    can_be = {
        sol._binary_runs_here: yes_no,
        sol._host_has_vmx: yes_no,
        sol._apt_opposite: yes_no,
        sol._modules_dir_opposite: yes_no,
        sol._sys_module_opposite: yes_no,
        sol._other_accel: ("tcg", "kvm"),
        sol._wrong_explanation: ("b", "c"),
    }
    exercises = {e.id: e for e in load_exercises(LAB / "exercises")}
    checked = 0
    for ex_id, step_id, wrong in (
        (e, step, value) for e, steps in sol.WRONG.items() for step, value in steps.items()
    ):
        check = exercises[ex_id].step(step_id).answer_check
        assert check is not None
        if check.options is None:
            continue
        values = (wrong,) if isinstance(wrong, str) else can_be[wrong]
        assert all(check.is_option(v) for v in values), (ex_id, step_id, values)
        checked += 1
    assert checked == 11


@pytest.mark.parametrize("target", ["host", "student"])
def test_setup_runs_in_guests_not_on_the_host(tmp_path: Path, target: str) -> None:
    setup = f"setup:\n  - {{target: {target}, run: touch /tmp/x}}\nsteps:\n"
    assert "setup.0.target: setup runs in guests only" in problem(
        tmp_path, GOOD.replace("steps:\n", setup)
    )


def test_a_check_may_run_on_the_host_as_the_student(tmp_path: Path) -> None:
    path = tmp_path / "10-demo.yaml"
    path.write_text(GOOD.replace("        target: lxc-system", "        target: student"))
    (check,) = load_exercise(path).steps[0].checks
    assert check.target == "student"


def test_the_id_matches_the_file_name(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="the id must match the file name"):
        load_exercise(write(tmp_path, GOOD, "10-other.yaml"))


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("target: lxc-system", "target: nope").replace("{param.user}", "{param.x}")
    message = problem(tmp_path, text)
    assert message.startswith("6 problems in")


def test_ids_are_unique_in_a_lab(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "10-demo.yaml")
    write(tmp_path, GOOD, "20-demo.yaml")
    with pytest.raises(SpecError, match="already used"):
        load_exercises(tmp_path)


def test_the_schema_describes_every_check_kind() -> None:
    schema = model.json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    kinds = {"CommandCheck", "FileCheck", "ServiceCheck", "PortCheck", "HttpCheck", "AnswerCheck"}
    assert kinds <= set(schema["$defs"])  # type: ignore[arg-type]
    assert AnswerCheck.model_fields["factor"].description


def test_the_published_schema_is_up_to_date() -> None:
    published = json.loads((LABS_DIR / "exercise.schema.json").read_text())
    assert published == model.json_schema(), (
        "regenerate: labctl exercise schema > labs/exercise.schema.json"
    )
