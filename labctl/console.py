"""The terminal: one rich console for humans (stderr for progress), JSON for scripts."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, is_dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

#: Tables and results go to stdout; progress and errors to stderr.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

VERBOSE = False


def _default(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return str(obj)


def print_json(data: Any) -> None:
    """Print ``data`` (dataclasses included) as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=_default, sort_keys=False) + "\n")


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
