"""The ``labctl`` command line: command groups are registered here; errors rendered once."""

from __future__ import annotations

import inspect
import os
import sys

import typer
from rich.markup import escape
from typer.exceptions import TyperException

from labctl import console
from labctl.cli.app import app
from labctl.errors import ExitCode, HostError, LabctlError

# Each command group lives in its own module; importing it adds its commands to ``app``.
from labctl.cli import classroom, compare, doctor, exercise, host, images, inventory, lab  # noqa: F401  isort: skip
from labctl.cli import class_report  # noqa: F401  isort: skip
from labctl.cli import class_serve  # noqa: F401  isort: skip
from labctl.cli import apps  # noqa: F401  isort: skip

__all__ = ["app", "main", "render_error"]


def _reflow_help(group: typer.Typer) -> None:
    """Each command's help as paragraphs that the terminal wraps: typer's rich help keeps a
    docstring's line breaks, which cut sentences in the middle at 80 columns."""
    for info in group.registered_commands:
        doc = info.help or (inspect.getdoc(info.callback) if info.callback else None)
        if doc:
            info.help = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflow_help(sub.typer_instance)


_reflow_help(app)


def render_error(exc: LabctlError) -> None:
    """Print a user error as ``Error:`` and ``Hint:`` lines on stderr (``Pista:`` when it is
    said in Spanish)."""
    message, hint = exc.said(console.LANG)
    spanish = exc.spanish(console.LANG)
    console.err.print(f"[bold red]Error:[/bold red] {escape(message)}", soft_wrap=True)
    if hint:
        label = "Pista:" if spanish else "Hint:"
        console.err.print(f"[yellow]{label}[/yellow] {escape(hint)}", soft_wrap=True)
    console.json_error(message, hint, int(exc.code))


def _interrupted() -> None:
    console.err.print("Interrupted.")
    console.json_error("interrupted", None, ExitCode.INTERRUPTED)


def main(prog_name: str | None = None) -> None:
    """Console-script entry point: run the app, render labctl errors without a traceback.

    ``prog_name``: what usage lines call the program (None: Click's guess from the command
    line).
    """
    try:
        # Without standalone mode, typer returns a command's exit code instead of exiting.
        code = app(standalone_mode=False, prog_name=prog_name)
    except LabctlError as exc:
        if console.VERBOSE and exc.__cause__ is not None:  # -v: what it came from
            console.err.print_exception()
        render_error(exc)
        sys.exit(exc.code)
    except OSError as exc:  # the host refused a file (not root, a full disk): said, no traceback
        if console.VERBOSE:  # -v: where it came from, for a bug report
            console.err.print_exception()
        not_root = isinstance(exc, PermissionError) and os.geteuid() != 0
        hint = "labctl keeps its labs and images as root's: run it as root" if not_root else None
        render_error(HostError(str(exc), hint))
        sys.exit(ExitCode.HOST)
    except (KeyboardInterrupt, typer.Abort):
        _interrupted()
        sys.exit(ExitCode.INTERRUPTED)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except TyperException as exc:  # usage errors: typer explains them itself
        show = getattr(exc, "show", None)
        if show:
            show()
        else:
            console.err.print(f"Error: {escape(exc.format_message())}")
        sys.exit(exc.exit_code)
    if code == ExitCode.INTERRUPTED:  # typer turns Ctrl-C into this code and says nothing
        _interrupted()
    sys.exit(code if isinstance(code, int) else 0)
