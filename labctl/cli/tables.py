"""Tables that read in an 80-column terminal: the essentials by default, the rest with --wide.

Names, addresses and commands are never cut with "…". The narrow views leave the long columns
out of the table and print them below it, one per line, where the terminal has room for them
whole; a column that must still shrink wraps (or folds a word too long for it). A wide view
either wraps its prose within the terminal or, for a table of names and commands, prints each
row on one line as kubectl does.
"""

from __future__ import annotations

from collections.abc import Iterable

import click
import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from labctl.console import json_asked
from labctl.console import plural as plural  # for the CLI's modules, as table
from labctl.console import table as table  # the house's table, for the CLI's modules
from labctl.i18n import Lang, tr


def json_option(help: str = "Print as JSON.") -> bool:
    """A command's ``--json``: its errors are JSON on stdout too (``{"error": {...}}``)."""
    return typer.Option(False, "--json", help=help, callback=json_asked)


JsonOpt = json_option()
WideOpt = typer.Option(
    False,
    "--wide",
    "-w",
    help="Show every column (as kubectl's -o wide); default: what fits 80 columns.",
)


_UNBOUNDED = 10_000


def print_unwrapped(con: Console, t: Table) -> None:
    """Print ``t`` one line per row at its natural width, however narrow the terminal.

    kubectl's ``-o wide`` does the same: a line longer than the terminal is the terminal's to
    wrap (or ``less -S``'s to scroll), and every cell stays one piece that can be copied.
    """
    for column in t.columns:
        column.no_wrap = True
    natural = Measurement.get(con, con.options.update_width(_UNBOUNDED), t).maximum
    if natural <= con.width:
        con.print(t)
        return
    Console(
        file=con.file,
        width=natural,
        color_system=con.color_system,  # type: ignore[arg-type]
        force_terminal=con.is_terminal,
        highlight=False,
    ).print(t)


def pairs(rows: Iterable[tuple[str, str]]) -> Table:
    """Two columns without a header, indented: ``name  text`` lines printed below a table."""
    grid = Table.grid(padding=(0, 3, 0, 0), pad_edge=False)
    grid.add_column(overflow="fold")
    grid.add_column(overflow="fold")
    for left, right in rows:
        grid.add_row(f"  {left}", right)
    return grid


#: what a yes and a no may be typed as, in either language (an empty answer is no)
_YES, _NO = {"y", "yes", "s", "si", "sí"}, {"n", "no"}


def confirm(question: str, declined: str = "Nothing done.", lang: Lang = "en") -> None:
    """Ask on the terminal (default no); a "no" says ``declined`` and exits 1, nothing done.

    Either language's yes and no are taken (``s``/``sí`` as ``y``/``yes``); ``lang`` says
    the choices and asks again after anything else. Not ``typer.confirm(abort=True)``: its
    Abort reads as Ctrl-C ("Interrupted.", 130).
    """

    def answer(value: str) -> bool:
        word = value.strip().lower()
        if word in _YES or word in _NO or not word:
            return word in _YES
        raise typer.BadParameter(tr(lang, "responde s (sí) o n (no)", "answer y (yes) or n (no)"))

    suffix = tr(lang, " [s/N]: ", " [y/N]: ")
    try:
        said = typer.prompt(
            question,
            default="",
            show_default=False,
            value_proc=answer,
            prompt_suffix=suffix,
            err=True,
        )
    except (click.exceptions.Abort, typer.Abort) as exc:
        if not isinstance(exc.__context__, EOFError):
            raise  # Ctrl-C: "Interrupted.", 130
        said = None  # end of input (Ctrl-D) is no answer: a no, on a line of its own
    if not said:
        from labctl import console

        console.err.print(declined if said is not None else f"\n{declined}")
        raise typer.Exit(1)
