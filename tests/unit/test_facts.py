"""The lab and the scripted student decide "does apt reach the mirror?" from apt's output.

The outputs are real (``data/apt-update/README.md`` says how each was produced); apt's exit
code is 0 in three of the four cases where nothing was fetched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.command import CommandResult
from labctl.exercises import facts
from labctl.exercises.answers import check_answer
from labctl.exercises.model import AnswerCheck
from tests.unit.fake_connection import FakeConnection

DATA = Path(__file__).parent / "data" / "apt-update"

#: capture -> (apt's exit code, reached the mirror?)
CAPTURES = {
    "unreachable-timeout.txt": (0, False),
    "no-default-route.txt": (100, False),
    "apt-cache-upstream-fails.txt": (0, False),
    "through-apt-cache.txt": (0, True),
    "through-apt-cache-again.txt": (0, True),
}


def answering(rc: int, output: str) -> FakeConnection:
    """A guest whose every command exits ``rc`` after printing ``output``."""
    return FakeConnection(respond=lambda command: CommandResult(command, rc, output, ""))


def test_every_capture_is_listed() -> None:
    assert {p.name for p in DATA.glob("*.txt")} == set(CAPTURES)


@pytest.mark.parametrize(("name", "expected"), [(k, v) for k, v in CAPTURES.items()])
def test_decision_reads_what_apt_printed(name: str, expected: tuple[int, bool]) -> None:
    rc, reached = expected
    output = (DATA / name).read_text()
    assert facts.apt_reached_mirror(output) is reached
    assert facts.measure("apt-mirror", answering(rc, output)) == ("si" if reached else "no")


def test_exit_code_zero_alone_is_not_reaching() -> None:
    # The bug this replaces: `apt-get update && echo si` said "si" with no mirror at all.
    output = (DATA / "unreachable-timeout.txt").read_text()
    assert facts.measure("apt-mirror", answering(0, output)) == "no"


def test_an_interrupted_update_is_not_reaching() -> None:
    output = (DATA / "through-apt-cache.txt").read_text()
    assert facts.measure("apt-mirror", answering(124, output)) == "no"


def test_one_failing_source_among_good_ones_is_not_reaching() -> None:
    good = (DATA / "through-apt-cache.txt").read_text()
    bad = (DATA / "unreachable-timeout.txt").read_text()
    assert not facts.apt_reached_mirror(good + bad)


def test_silence_is_not_reaching() -> None:
    assert not facts.apt_reached_mirror("Reading package lists...\n")


def test_the_fact_runs_apt_in_the_c_locale() -> None:
    guest = answering(0, (DATA / "through-apt-cache.txt").read_text())
    facts.measure("apt-mirror", guest)
    assert guest.commands == [facts.APT_UPDATE] and guest.commands[0].startswith("LC_ALL=C ")


@pytest.mark.parametrize(
    ("capture", "answer", "passes"),
    [
        ("unreachable-timeout.txt", "no", True),
        ("unreachable-timeout.txt", "yes", False),
        ("through-apt-cache.txt", "si", True),
        ("through-apt-cache.txt", "no", False),
    ],
)
def test_answer_check_with_a_fact_truth(capture: str, answer: str, passes: bool) -> None:
    check = AnswerCheck.model_validate(
        {
            "kind": "answer",
            "what": {"es": "¿Llega apt?", "en": "Does apt reach it?"},
            "truth": {"target": "lxc-system", "fact": "apt-mirror"},
            "synonyms": {"si": ["si", "yes"], "no": ["no"]},
        }
    )
    output = (DATA / capture).read_text()

    def connect(target: str) -> FakeConnection:
        assert target == "lxc-system"
        return answering(0, output)

    assert check_answer(check, connect, "en", answer).passed is passes


@pytest.mark.parametrize(
    "truth",
    [
        {"target": "lxc-system"},
        {"target": "lxc-system", "run": "echo si", "fact": "apt-mirror"},
        {"target": "lxc-system", "fact": "no-such-fact"},
    ],
)
def test_a_truth_has_exactly_one_of_run_and_fact(truth: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        AnswerCheck.model_validate(
            {"kind": "answer", "what": {"es": "x", "en": "x"}, "truth": truth}
        )
