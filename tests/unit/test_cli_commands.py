"""The labctl commands an exercise's text names reach the lab instance in use."""

from __future__ import annotations

import pytest

import labctl.cli  # noqa: F401  (every command registered)
from labctl import console
from labctl.cli.commands import in_text
from labctl.cli.tables import confirm
from labctl.i18n import Lang


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


def test_a_lab_given_as_a_path_reaches_only_the_commands_that_read_lab_files() -> None:
    text = "`labctl ssh box`, `labctl exercise check x`, `labctl up`"
    assert in_text(text, "virtualization", "main", lab_ref="labs/virtualization") == text
    assert in_text(text, "net", "walk", lab_ref="labs/net") == (
        "`labctl ssh --lab net -i walk box`, `labctl exercise check --lab labs/net -i walk x`, "
        "`labctl up labs/net -i walk`"
    )


def test_a_command_that_names_its_instance_or_lab_is_left_as_written() -> None:
    text = "run `labctl up net --instance walk` again, or `labctl ssh -l other box`"
    assert in_text(text, "net", "walk") == text
    # a guest command's own -l or -i, after --, names nothing of labctl's
    assert in_text("labctl exec box -- ls -l /srv", "net", "walk") == (
        "labctl exec --lab net -i walk box -- ls -l /srv"
    )


def test_up_gets_the_lab_only_when_the_text_names_none() -> None:
    assert in_text("`labctl up`", "net", "walk") == "`labctl up net -i walk`"
    assert in_text("`labctl up labs/x/s390x.yaml`", "net", "walk") == (
        "`labctl up -i walk labs/x/s390x.yaml`"
    )
    assert in_text("run labctl up.", "virtualization", "walk") == "run labctl up -i walk."
    # the sentence going on is not a lab; a lab's name under labs/ is
    assert in_text("run labctl up to start it", "net", "walk") == (
        "run labctl up net -i walk to start it"
    )
    assert in_text("`labctl up virtualization-full`", "net", "walk") == (
        "`labctl up -i walk virtualization-full`"
    )


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


@pytest.mark.parametrize(
    ("typed", "lang", "yes"),
    [
        ("s\n", "es", True),
        ("Sí\n", "es", True),
        ("y\n", "es", True),  # either language's yes
        ("yes\n", "en", True),
        ("si\n", "en", True),
        ("\n", "es", False),  # no answer: no
        ("n\n", "en", False),
        ("quizá\nno\n", "es", False),  # anything else: asked again
    ],
)
def test_a_confirmation_takes_a_yes_or_no_in_either_language(
    typed: str, lang: Lang, yes: bool
) -> None:
    import typer
    from typer.testing import CliRunner

    ask = typer.Typer()

    @ask.command()
    def main() -> None:
        confirm("¿Seguir?", "Nada.", lang)
        print("done")

    result = CliRunner().invoke(ask, [], input=typed)
    assert (result.exit_code, "done" in result.stdout) == ((0, True) if yes else (1, False))
    assert ("[s/N]" if lang == "es" else "[y/N]") in result.output
    if typed.startswith("quizá"):
        assert "responde s (sí) o n (no)" in result.output


def test_a_code_blocks_lines_are_printed_whole_at_any_width() -> None:
    import io

    from rich.console import Console

    from labctl.cli.exercise_view import print_markdown

    command = "labctl exec -i walk arm-emulated -- base64 /bin/busybox | base64 -d > ~/b"
    said = io.StringIO()
    text = f"Copy it:\n\n```sh\nmkdir -p ~/x\n{command}\n```\n\nThen look at it."
    print_markdown(Console(file=said, width=40), text)
    lines = [line.strip() for line in said.getvalue().splitlines()]
    assert command in lines and "mkdir -p ~/x" in lines  # one line each, past the width
    assert lines[0] == "Copy it:" and lines[-1] == "Then look at it."


def test_inline_commands_are_never_cut_while_the_prose_around_them_wraps() -> None:
    import io

    from rich.console import Console

    from labctl.cli.exercise_view import print_markdown

    command = "labctl exec -i walk kvm-full -- grep -c -wE 'vmx|svm' /proc/cpuinfo"
    prose = "A paragraph of plain words, long enough to be wrapped at forty columns."
    text = (
        f"# Title\n\n{prose}\n\nRun `{command}` and compare it with the host's.\n\n"
        f"1. First `{command}` and then more words in the item\n2. Then `ls -l`\n\n"
        "```sh\nls -l\n```\n"
    )
    said = io.StringIO()
    print_markdown(Console(file=said, width=40), text)
    lines = said.getvalue().splitlines()
    # the command stands whole on a line of its own (a list item's under its text)
    assert lines.count(command) == 1 and lines.count(f"   {command}") == 1, lines
    assert all(len(line) <= 40 for line in lines if command not in line)
    assert "Run" in lines and "and compare it with the host's." in lines  # wrapped around it
    assert " 1 First" in lines and "   and then more words in the item" in lines
    assert " 2 Then ls -l" in lines and "    ls -l" in lines


def test_a_short_command_and_one_over_a_line_break_of_the_text_stay_whole() -> None:
    import io

    from rich.console import Console

    from labctl.cli.exercise_view import print_markdown

    text = (
        "# Run `labctl app run`\n\n"  # a heading is centred by rich, not laid out here
        "Words enough to reach the end of the line: `labctl app run` then the module\n"
        "list, `ls /sys/module\n  | grep -e kvm` and the end."
    )
    said = io.StringIO()
    print_markdown(Console(file=said, width=40), text)
    out = said.getvalue()
    assert "labctl app run" in out and "ls /sys/module | grep -e kvm" in out, out
    assert all(len(line) <= 40 for line in out.splitlines())


def test_a_recorded_lab_is_named_by_its_name_file_or_directory_as_up_took_it() -> None:
    from labctl.cli.lab import lab_name
    from labctl.errors import LabctlError
    from labctl.paths import LABS_DIR

    mini = LABS_DIR / "fleet-mini"
    assert lab_name(str(mini / "lab.yaml")) == lab_name(str(mini)) == "fleet-mini"
    assert lab_name("virtualization") == "virtualization"
    with pytest.raises(LabctlError, match="lab name 'labs/nope.yaml' is not valid"):
        lab_name("labs/nope.yaml")  # no such file: then it is no name either
