"""``labctl doctor``: one truthful table of what this host can run."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from labctl import console
from labctl.cli import tables
from labctl.cli.app import app
from labctl.errors import LabctlError
from labctl.host import doctor
from labctl.host.probe import TemplatesInfo
from labctl.lab.plan import lab_images

_STYLE = {
    doctor.Status.OK: "green",
    doctor.Status.WARN: "yellow",
    doctor.Status.FAIL: "bold red",
    doctor.Status.UNKNOWN: "magenta",
}


def _table(checks: list[doctor.Check], wide: bool = False) -> Table:
    """Check, verdict and detail; --wide adds what to do as a fourth column."""
    table = tables.table("check", "status", "detail", *(["what to do"] if wide else []))
    table.title = "labctl doctor"
    for c in checks:
        style = _STYLE[c.status]
        cells = [c.name, f"[{style}]{c.status.value}[/{style}]", escape(c.detail)]
        if wide:
            cells.append(escape(_hint(c)))
        table.add_row(*cells)
    return table


def _hint(c: doctor.Check) -> str:
    return c.hint if c.hint and c.status is not doctor.Status.OK else ""


def _templates() -> TemplatesInfo:
    """The VM templates as the engine that keeps them lists them."""
    from labctl.cli.images import built, keeper

    try:
        made = keeper().templates(built())
    except LabctlError as exc:  # libvirt down: its own row says so
        return TemplatesInfo(error=exc.message.splitlines()[0])
    stale = [t for t in made if t.stale]
    return TemplatesInfo(
        len(made), sum(t.size for t in made), len(stale), sum(t.size for t in stale)
    )


@app.command("doctor")
def doctor_command(
    json_out: bool = tables.json_option("Print the checks as a JSON list."),
    wide: bool = tables.WideOpt,
) -> None:
    """Check the host: CPU and KVM, QEMU, libvirt, Docker, LXD, Ansible, disk, memory, images.

    Exits 0 when the default lab can run (warnings allowed), 3 when a check failed. What to
    do about each problem is listed below the table (--wide: in a column of its own).
    """
    try:
        images: list[str] | None = lab_images()
    except LabctlError:  # a broken lab file or profile: the rows below say what is wrong
        images = None
    checks = doctor.evaluate(doctor.gather(images, _templates))
    if json_out:
        console.print_json([c.as_dict() for c in checks])
    else:
        console.out.print(_table(checks, wide))
        todo = [(c.name, escape(_hint(c))) for c in checks if _hint(c)]
        if todo and not wide:
            console.out.print("\nWhat to do:")
            console.out.print(tables.pairs(todo))
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
