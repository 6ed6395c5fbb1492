"""``labctl doctor``: one truthful table of what this host can run."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from labctl import console
from labctl.cli.app import app
from labctl.host import doctor

_STYLE = {
    doctor.Status.OK: "green",
    doctor.Status.WARN: "yellow",
    doctor.Status.FAIL: "bold red",
    doctor.Status.UNKNOWN: "magenta",
}


def _table(checks: list[doctor.Check]) -> Table:
    table = Table(title="labctl doctor")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=3)
    table.add_column("what to do", overflow="fold", ratio=2)
    for c in checks:
        style = _STYLE[c.status]
        table.add_row(
            c.name,
            f"[{style}]{c.status.value}[/{style}]",
            escape(c.detail),
            escape(c.hint) if c.hint and c.status is not doctor.Status.OK else "",
        )
    return table


@app.command("doctor")
def doctor_command(
    json_out: bool = typer.Option(False, "--json", help="Print the checks as a JSON list."),
) -> None:
    """Check the host: CPU and KVM, QEMU, libvirt, Docker, LXD, Ansible, disk, memory, images.

    Exits 0 when the default lab can run (warnings allowed), 3 when a check failed.
    """
    checks = doctor.evaluate(doctor.gather())
    if json_out:
        console.print_json([c.as_dict() for c in checks])
    else:
        console.out.print(_table(checks))
        warns = sum(c.status is doctor.Status.WARN for c in checks)
        failed = [c.name for c in checks if not c.passed]
        if failed:
            console.err.print(
                f"[bold red]The default lab cannot run:[/bold red] {', '.join(failed)} failed."
            )
        else:
            extra = f" ({warns} warning{'s' if warns != 1 else ''})" if warns else ""
            console.err.print(f"[green]The default lab can run{extra}.[/green]")
    raise typer.Exit(doctor.exit_code(checks))
