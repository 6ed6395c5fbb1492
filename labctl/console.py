"""The terminal: one rich console for humans (stderr for progress), JSON for scripts."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, is_dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from labctl.i18n import Lang

#: Tables and results go to stdout; progress and errors to stderr.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

VERBOSE = False
#: a student runs labctl through the class's sudo entry point (``cli/student.py``): hints name
#: no ``--lab``/``--instance``, which labctl puts in for them
CONFINED = False
#: the language of the command's words (``--lang`` of the exercise commands, or the locale
#: there): an error with Spanish words (``LabctlError.es``) is shown in them
LANG: Lang = "en"
#: ``--json`` was given: an error is printed as JSON on stdout too, unless JSON went out already
JSON_ASKED = False
_json_out = False


def reset(lang: Lang = "en") -> None:
    """A new command (the CLI's root callback): its language, no ``--json`` seen yet, no JSON
    written."""
    global LANG, JSON_ASKED, _json_out
    LANG = lang
    JSON_ASKED = _json_out = False


def json_asked(value: bool) -> bool:
    """The ``--json`` options' callback: remember that a script reads stdout."""
    global JSON_ASKED
    JSON_ASKED = JSON_ASKED or value
    return value


def _default(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return str(obj)


def print_json(data: Any) -> None:
    """Print ``data`` (dataclasses included) as indented JSON on stdout."""
    write_json(json.dumps(data, indent=2, default=_default, sort_keys=False))


def write_json(text: str) -> None:
    """Write a JSON document on stdout (an error after it is not written as JSON too)."""
    global _json_out
    sys.stdout.write(text + "\n")
    _json_out = True


def json_error(message: str, hint: str | None, exit_code: int) -> None:
    """Under ``--json``, an error as ``{"error": {...}}`` on stdout, where a script reads;
    nothing when the command wrote its JSON already or ``--json`` was not given."""
    if JSON_ASKED and not _json_out:
        print_json({"error": {"message": message, "hint": hint, "exit_code": exit_code}})


def plural(n: int, word: str) -> str:
    """``1 guest``, ``2 guests``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def table(*headers: str, title: str | None = None) -> Table:
    """A borderless table, kubectl-like, whose every column wraps rather than truncates.

    Borders cost three columns per column; without them five short columns and an address fit
    80 columns with room to spare.
    """
    t = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
    )
    for header in headers:
        t.add_column(header, overflow="fold")
    return t


def debug(message: str) -> None:
    """Print ``message`` on stderr when ``-v`` was given."""
    if VERBOSE:
        err.print(f"[dim]{message}[/dim]")
