"""The labctl commands an exercise's text names reach the lab instance in use."""

from __future__ import annotations

import pytest

import labctl.cli  # noqa: F401  (every command registered)
from labctl import console
from labctl.cli.commands import in_text


def test_each_command_gets_the_options_it_takes_right_after_its_words() -> None:
    text = (
        "`labctl ssh lxc-system`, `labctl status --json`, `labctl exec docker-app -- ps`, "
        "`labctl app ls`, `labctl exercise check emu-x`"
    )
    assert in_text(text, "net", "walk", "ana") == (
        "`labctl ssh --lab net -i walk lxc-system`, `labctl status --lab net -i walk --json`, "
        "`labctl exec --lab net -i walk docker-app -- ps`, "
        "`labctl app ls --lab net -i walk -s ana`, "
        "`labctl exercise check --lab net -i walk -s ana emu-x`"
    )


def test_up_gets_the_lab_only_when_the_text_names_none() -> None:
    assert in_text("`labctl up`", "net", "walk") == "`labctl up net -i walk`"
    assert in_text("`labctl up labs/x/s390x.yaml`", "net", "walk") == (
        "`labctl up -i walk labs/x/s390x.yaml`"
    )
    assert in_text("run labctl up.", "virtualization", "walk") == "run labctl up -i walk."


@pytest.mark.parametrize(
    "text",
    [
        "labctl/webapp:latest",  # an image's name
        "lo eligió labctl para tu instancia",  # the word, no command after it
        "`labctl doctor`, `labctl class down`",  # commands of no lab instance
        "/usr/local/bin/labctl ssh x",  # a path
    ],
)
def test_what_is_not_a_command_of_an_instance_is_left_as_written(text: str) -> None:
    assert in_text(text, "net", "walk", "ana") == text


def test_the_default_instance_and_a_class_student_get_the_text_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = "`labctl ssh lxc-system`"
    assert in_text(text, "virtualization", "main") == text
    monkeypatch.setattr(console, "CONFINED", True)  # labctl puts in their own
    assert in_text(text, "net", "walk") == text
