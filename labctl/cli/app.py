"""The root typer application and its global options."""

from __future__ import annotations

import os
import sys

import typer

from labctl import __version__, console

app = typer.Typer(
    name="labctl",
    help="Bring up a virtualization lab (emulation, KVM, VirtIO, LXC, Docker) "
    "and guide students through it.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console.out.print(f"labctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(
        False,
        "-v",
        "--verbose",
        help="Show each host command and stage with its time, and an error's traceback.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """labctl: one live example of each kind of virtualization, and exercises to explore them."""
    console.VERBOSE = verbose
    from labctl.i18n import of_args

    console.reset(of_args(sys.argv[1:]))  # what the refusals below, or the command, speak
    if os.geteuid() != 0:  # a class's student: their commands run through the sudo entry point
        from labctl.classroom.access import reexec_argv

        argv = reexec_argv(sys.argv[1:], os.geteuid())
        if argv is not None:
            sys.stdout.flush()
            os.execv(argv[0], argv)
