"""The options several commands share, each worded once."""

from __future__ import annotations

import typer

from labctl.instance.naming import DEFAULT_INSTANCE, DEFAULT_LAB

InstanceOpt = typer.Option(
    DEFAULT_INSTANCE, "--instance", "-i", help="Lab instance (e.g. a student id)."
)
#: a lab whose instance is recorded already: by name, or by its file or directory as up took it
LabNameOpt = typer.Option(
    DEFAULT_LAB, "--lab", "-l", help="Lab name (or its file or directory, as given to up)."
)
#: a lab by name or by the path of its file or directory (the commands that read its files)
LabOpt = typer.Option(DEFAULT_LAB, "--lab", "-l", help="Lab name, file or directory.")
StudentOpt = typer.Option(
    None, "--student", "-s", help="Student id; default: $LABCTL_STUDENT or the instance name."
)
LangOpt = typer.Option(None, "--lang", help="es or en; default: from LC_ALL, LC_MESSAGES or LANG.")
