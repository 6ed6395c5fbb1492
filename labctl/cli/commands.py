"""The labctl commands an exercise's text names, made to reach the lab instance in use.

An exercise file says ``labctl ssh lxc-system`` or ``labctl app ls``, as for the default lab's
main instance. A student working in another (``-i walk``, ``--lab net``) who pasted it
reached someone else's lab, or none. :func:`in_text` puts this instance's options right
after each command the text names (``labctl ssh -i walk lxc-system``), and only those each
command takes (``-s`` goes to the exercise and app commands alone); options the text gives
itself come later on the line and win. A class's student gets the text as written: labctl
puts in their own.
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from typing import Any

import typer
from typer.core import TyperGroup

from labctl import console
from labctl.cli.app import app
from labctl.instance.naming import DEFAULT_INSTANCE, DEFAULT_LAB, options
from labctl.paths import LABS_DIR

#: ``labctl`` as a word of the text (not ``labctl/webapp``), then up to two words
_COMMAND = re.compile(r"(?<![\w/.-])labctl ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?")
#: the word after a command, up to a space or the end of its code span
_ARGUMENT = re.compile(r" +([^\s`'\"]+)")
#: the rest of the command's line, before ``--`` (a guest command's own options follow it),
#: already names an instance or a lab
_NAMED = re.compile(r"(?:(?! -- )[^`\n])*?(?<!\S)(-i|--instance|-l|--lab)(?=[\s=])")
#: the commands whose ``--lab`` (``up``: ``LAB``) may be a lab file or folder, not only a name
_LAB_FILES = frozenset({"exercise", "app", "up"})


@cache
def _tree() -> TyperGroup:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    return root


def _command(first: str, second: str | None) -> tuple[Any, bool] | None:
    """The command the words name and whether it took the second word; None if none."""
    found = _tree().commands.get(first)
    if isinstance(found, TyperGroup):
        sub = found.commands.get(second or "")
        return (sub, True) if sub is not None else None
    return (found, False) if found is not None else None


def _takes(command: Any) -> set[str]:
    """The command's options, and ``LAB`` when it takes the lab as an argument."""
    named = {name for p in command.params for name in getattr(p, "opts", ())}
    return named | ({"LAB"} if any(p.name == "lab_ref" for p in command.params) else set())


def _names_lab(text: str, at: int) -> bool:
    """Whether the word after ``labctl up`` (at ``at``) is a lab (a path, a lab file, a lab
    under ``labs/``) rather than the sentence going on ("labctl up to start it")."""
    found = _ARGUMENT.match(text, at)
    word = found.group(1).rstrip(".,;:)") if found else ""
    if not word or word.startswith("-"):
        return False
    return "/" in word or word.endswith((".yaml", ".yml")) or (LABS_DIR / word).is_dir()


def in_text(
    text: str, lab: str, instance: str, student: str | None = None, lab_ref: str | None = None
) -> str:
    """``text`` with this lab instance's options after every labctl command it names that
    works on a lab instance (``--instance``); ``labctl up`` naming no lab gets this one.

    ``lab`` is the lab's name; ``lab_ref``, as typed (a file or folder), goes to the commands
    that read a lab file (``exercise``, ``app``, ``up``). A command whose line already names
    an instance or a lab is left as written (a hint labctl built, or the text's own choice).
    """
    if console.CONFINED or (lab == DEFAULT_LAB and instance == DEFAULT_INSTANCE and not student):
        return text

    def place(m: re.Match[str]) -> str:
        found = _command(m.group(1), m.group(2))
        takes = _takes(found[0]) if found is not None else set()
        if found is None or "--instance" not in takes or _NAMED.match(text, m.end()):
            return m.group(0)
        both = found[1]
        ref = lab_ref if lab_ref is not None and m.group(1) in _LAB_FILES else lab
        given = options(
            ref if "--lab" in takes else DEFAULT_LAB,
            instance,
            student if "--student" in takes else None,
        )
        if "LAB" in takes and lab != DEFAULT_LAB and not _names_lab(text, m.end(1)):
            given = f" {shlex.quote(ref)}{given}"
        words = f"{m.group(1)} {m.group(2)}" if both else m.group(1)
        rest = "" if both or m.group(2) is None else f" {m.group(2)}"
        return f"labctl {words}{given}{rest}"

    return _COMMAND.sub(place, text)
