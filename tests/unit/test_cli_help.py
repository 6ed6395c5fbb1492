"""Every command's --help reads in an 80-column terminal: paragraphs wrap, none is cut."""

from __future__ import annotations

import inspect

import pytest
import typer
from typer.testing import CliRunner

from labctl.cli import app


def _commands(group: typer.Typer, words: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [(*words, info.name or info.callback.__name__) for info in group.registered_commands]  # type: ignore[union-attr]
    for sub in group.registered_groups:
        assert sub.typer_instance is not None and sub.name
        found += _commands(sub.typer_instance, (*words, sub.name))
    return found


COMMANDS = _commands(app)


def test_every_command_is_found() -> None:
    assert len(COMMANDS) > 30 and ("class", "up") in COMMANDS and ("status",) in COMMANDS


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_help_paragraphs_wrap_at_80_columns_and_arguments_are_named(
    words: tuple[str, ...],
) -> None:
    said = CliRunner().invoke(
        app, [*(w.rstrip("_") for w in words), "--help"], env={"COLUMNS": "80"}
    )
    assert said.exit_code == 0, said.output
    lines = said.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    usage = next(line for line in lines if "Usage:" in line)
    assert not any(
        c.islower() for c in usage.split("[OPTIONS]")[-1].replace("[", "").strip("{} .")
    ), usage
    # a line of help prose never ends mid-sentence on a short line followed by more prose
    prose = [line.strip() for line in lines if line.startswith(" ") and "│" not in line]
    for this, after in zip(prose, prose[1:], strict=False):
        if this and after and not this.endswith((".", ":", ")")):
            assert len(this) > 60, f"a sentence cut short: {this!r} / {after!r}"


def test_the_reflow_keeps_paragraphs_apart() -> None:
    info = next(
        i for i in app.registered_commands if i.callback and i.callback.__name__ == "status"
    )
    assert info.help is not None and "\n\n" in info.help
    assert "\n" not in info.help.split("\n\n")[1]
    assert inspect.getdoc(info.callback)  # the docstring itself is untouched
