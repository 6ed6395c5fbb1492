"""Per-student parameters and placeholders."""

from __future__ import annotations

import re

import pytest

from labctl.errors import SpecError
from labctl.exercises import params, template
from labctl.exercises.model import ParamSpec, Text, load_exercises
from labctl.paths import LABS_DIR

NAME = ParamSpec(kind="name", prefix="alu")
PORT = ParamSpec(kind="port", min=8100, max=8199)
TOKEN = ParamSpec(kind="token", length=10)


def test_the_same_student_always_gets_the_same_values() -> None:
    specs = {"user": NAME, "port": PORT, "token": TOKEN}
    assert params.derive(specs, "lab", "ex", "ana") == params.derive(specs, "lab", "ex", "ana")


def test_two_students_get_different_values() -> None:
    specs = {"user": NAME, "token": TOKEN}
    students = [f"alumno{i:02d}" for i in range(30)]
    users = {params.derive(specs, "lab", "ex", s)["user"] for s in students}
    tokens = {params.derive(specs, "lab", "ex", s)["token"] for s in students}
    assert len(users) == len(tokens) == 30


def test_values_depend_on_lab_and_exercise_too() -> None:
    assert params.value(TOKEN, "lab", "a", "t", "ana") != params.value(
        TOKEN, "lab", "b", "t", "ana"
    )
    assert params.value(TOKEN, "x", "a", "t", "ana") != params.value(TOKEN, "y", "a", "t", "ana")


def test_values_have_their_shape_and_are_shell_safe() -> None:
    for student in ("ana", "bea.garcia", "x_1"):
        user = params.value(NAME, "lab", "ex", "user", student)
        port = int(params.value(PORT, "lab", "ex", "port", student))
        token = params.value(TOKEN, "lab", "ex", "token", student)
        assert re.fullmatch(r"alu[a-z]{5}", user)
        assert 8100 <= port <= 8199
        assert re.fullmatch(r"[0-9a-f]{10}", token)


def test_a_port_range_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="min must not be above max"):
        ParamSpec(kind="port", min=9000, max=8000)


VALUES = {"student": "ana", "param.user": "aluxyz", "guest.lxc-system.address": "10.0.0.5"}


def test_placeholders_are_filled() -> None:
    text = "ssh {param.user}@{guest.lxc-system.address} # {student}"
    assert template.render(text, VALUES) == "ssh aluxyz@10.0.0.5 # ana"


def test_shell_and_regex_braces_pass_through() -> None:
    text = "awk '{print $1}' ${HOME} \\d{3} {{.State.Pid}} {unknown}"
    assert template.render(text, VALUES) == text


def test_a_missing_value_raises_or_stays_visible() -> None:
    with pytest.raises(template.TemplateError, match="no value for {guest.kvm-full.address}"):
        template.render("{guest.kvm-full.address}", VALUES)
    assert template.render("{guest.kvm-full.address}", VALUES, strict=False) == (
        "{guest.kvm-full.address}"
    )


def test_names_lists_the_placeholders() -> None:
    assert template.names("{student} {param.a} {guest.g-1.port} {x}") == [
        "student",
        "param.a",
        "guest.g-1.port",
    ]


def test_render_model_renders_every_string_field() -> None:
    text = Text(es="Hola {param.user}", en="Hello {param.user}")
    assert template.render_model(text, VALUES) == Text(es="Hola aluxyz", en="Hello aluxyz")


@pytest.mark.parametrize("lab", ["virtualization", "virtualization-full"])
def test_every_seat_a_lab_s_port_ranges_hold_gets_ports_no_other_seat_has(lab: str) -> None:
    exercises = load_exercises(LABS_DIR / lab / "exercises")
    keys = params.port_keys(exercises)
    specs = {(e.id, n): e.params[n] for e in exercises for _, n in params.port_keys([e])}
    seats = min(params.slots_in(specs[k], keys, k) for k in keys)
    assert len(keys) >= 4 and seats >= 150
    ports = [
        params.Seat("so", f"s{slot}", slot, keys).port(specs[k], *k)
        for slot in range(seats)
        for k in keys
    ]
    assert len(set(ports)) == len(ports) == seats * len(keys)
    assert all(specs[k].min <= p <= specs[k].max for p, k in zip(ports, keys * seats, strict=True))


def test_a_seat_beyond_its_parameter_s_range_is_refused() -> None:
    keys = (("a", "web"), ("b", "port"))
    seat = params.Seat("so", "ana", 50, keys)
    with pytest.raises(SpecError, match=r"\{param.port\} \(8100-8199\) has no port left"):
        seat.port(PORT, "b", "port")
    assert params.Seat("so", "ana", 49, keys).port(PORT, "b", "port") == 8101 + 49 * 2
