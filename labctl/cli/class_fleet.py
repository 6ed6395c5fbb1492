"""``class up/status/down`` for a class spread over lab hosts (``--hosts INVENTORY``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from labctl import console
from labctl.classroom import forget as class_forget
from labctl.classroom import roster
from labctl.classroom.state import ClassDir
from labctl.classroom.window import Window
from labctl.cli import tables
from labctl.console import plural
from labctl.errors import ExitCode
from labctl.fleet import down as fleet_down
from labctl.fleet import inventory as fleet_inventory
from labctl.fleet import remote
from labctl.fleet import state as fleet_state
from labctl.fleet import status as fleet_status
from labctl.fleet import up as fleet_up
from labctl.fleet import window as fleet_window
from labctl.fleet.state import FleetState
from labctl.i18n import Lang
from labctl.stages import quiet

if TYPE_CHECKING:
    from labctl.classroom.status import StudentStatus
    from labctl.fleet.status import FleetRow


def _lines(who: str, step: str, detail: str) -> None:
    if not who:
        console.err.print(f"[bold]▸ {escape(step)}[/bold] {escape(detail)}")
        return
    colour = {"failed": "red", "placed": "green"}.get(step, "")
    tag = f"[{colour}]{step}[/{colour}]" if colour else escape(step)
    console.err.print(f"  {escape(who)}: {tag} {escape(detail)}".rstrip())


def _runner(folder: ClassDir, inv: fleet_inventory.Inventory, forks: int) -> remote.Runner:
    return remote.ansible_runner_for(inv, forks, folder.root / remote.ANSIBLE_LOG)


def up(
    roster_file: Path,
    lab_ref: str,
    class_name: str,
    inventory_file: Path,
    *,
    max_parallel: int | None,
    replace_failed: bool,
    forks: int,
    window: Window | None,
    max_students: int | None,
    lang: Lang,
    json_out: bool,
) -> None:
    """``labctl class up ROSTER LAB --hosts INVENTORY``."""
    from labctl.cli.lab import resolve_lab
    from labctl.images.registry import store

    roster.check_class(class_name)
    r = roster.load(roster_file)
    lab, path = resolve_lab(lab_ref)
    inv = fleet_inventory.load(inventory_file)
    folder = ClassDir(class_name)
    result = fleet_up.up(
        r,
        inv,
        class_name,
        lab,
        path,
        store(),
        _runner(folder, inv, forks),
        max_parallel=max_parallel,
        replace_failed=replace_failed,
        window=window,
        max_students=max_students,
        lang=lang,
        report=_lines if not json_out else lambda *a: None,
    )
    from labctl.cli.class_serve import restate_sheets

    restate_sheets(folder)  # the sheets came back from the hosts: their progress page's part
    if json_out:
        console.print_json(
            {
                "class": result.name,
                "lab": result.lab,
                "hosts": result.hosts,
                "students": result.seats,
            }
        )
    else:
        t = tables.table("host", "address", "state", "students", "why")
        for h in result.hosts:
            n = sum(1 for s in result.seats if s.host == h.name)
            state = "[green]ready[/green]" if h.status == "ready" else f"[red]{h.status}[/red]"
            why = f"{h.stage}: {h.error}" if h.error else ""
            t.add_row(escape(h.name), escape(h.address), state, str(n), escape(why))
        console.out.print(t)
        ready = sum(h.status == "ready" for h in result.hosts)
        print_labs_up(
            result.name,
            len(result.seats),
            [(f"{s.student} ({s.host})", s.error) for s in result.failed],
            f" on {ready} of {plural(len(result.hosts), 'host')}",
        )
    lost_host = any(h.status == "failed" for h in result.hosts)
    # as ansible-playbook: a host that failed fails the run, even with every student up,
    # unless the instructor has just moved its students away (--replace-failed)
    if result.failed or (lost_host and not replace_failed):
        hint = "fix the cause and run the same `labctl class up` again"
        if lost_host and result.failed:
            hint += ", or add --replace-failed to move a failed host's students to the others"
        console.err.print(f"Hint: {hint}.")
        raise typer.Exit(ExitCode.FAILED)


def of(folder: ClassDir) -> FleetState | None:
    """The class's lab hosts, or None for a class on this host alone."""
    return fleet_state.load(folder)


def status(folder: ClassDir, state: FleetState, json_out: bool) -> None:
    """``labctl class status`` of a class over lab hosts; attempts collected on the way."""
    inv = fleet_inventory.load(Path(state.inventory))
    rows = fleet_status.status(folder, state, _runner(folder, inv, 10), fleet_status.collect)
    if json_out:
        console.print_json({"class": folder.name, "students": rows})
        return
    title = f"Class {folder.name}, over {plural(len(state.hosts), 'lab host')}"
    print_status(rows, "host", [r.host or "-" for r in rows], title)


def print_labs_up(
    name: str, total: int, failed: list[tuple[str, str | None]], where: str = ""
) -> None:
    """After ``class up``: each student whose lab failed, and why; then how many are up."""
    for who, error in failed:
        console.out.print(f"[red]{escape(who)}[/red]" + (f": {escape(error)}" if error else ""))
    console.err.print(f"Class {name}: {total - len(failed)} of {total} labs up{where}.")


def print_status(
    rows: Sequence[StudentStatus | FleetRow], column: str, cells: list[str], title: str
) -> None:
    """``class status``'s table under ``title``: a row per student, its second ``column``
    holding ``cells`` (the student's name, or their lab host), then the errors and the
    outdated guests."""
    columns = ("student", column, "guests", "exercises", "last activity", "state")
    t = tables.table(*columns, title=escape(title))
    for r, cell in zip(rows, cells, strict=True):
        ready = f"{r.guests_ready}/{r.guests}"
        if r.guests_ready < r.guests or not r.guests:
            ready = f"[yellow]{ready}[/yellow]"
        t.add_row(
            escape(r.student),
            escape(cell),
            ready,
            f"{r.exercises_done}/{r.exercises}",
            (r.last_activity or "-").replace("T", " ")[:16],
            escape(r.outcome),
        )
    console.out.print(t)
    errors = [(escape(r.student), escape(r.error)) for r in rows if r.error]
    if errors:
        console.out.print(tables.pairs(errors))
    _print_outdated([(r.student, r.outdated) for r in rows])


def _print_outdated(rows: list[tuple[str, tuple[str, ...]]]) -> None:
    """Each student's guests that run as defined before a change, and how to apply it."""
    changed = [(escape(student), escape("; ".join(o))) for student, o in rows if o]
    if changed:
        console.out.print(
            "\nRunning as defined before a change (each guest powered off, then labctl class up "
            "defines it anew, its disk kept):"
        )
        console.out.print(tables.pairs(changed))


def collect(folder: ClassDir, state: FleetState) -> dict[str, str]:
    """Every host's attempts into this store; the students whose host did not answer."""
    inv = fleet_inventory.load(Path(state.inventory))
    rows = fleet_status.status(folder, state, _runner(folder, inv, 10), fleet_status.collect)
    return {r.student: r.error or "no answer" for r in rows if not r.answered}


def window(
    folder: ClassDir, state: FleetState, start: str | None, end: str | None
) -> fleet_window.FleetWindow:
    """``labctl class window --start/--end`` of a class over lab hosts."""
    inv = fleet_inventory.load(Path(state.inventory))
    return fleet_window.set_window(folder, _runner(folder, inv, 10), start, end)


def down(folder: ClassDir, state: FleetState, json_out: bool, forget: bool = False) -> None:
    """``labctl class down`` of a class over lab hosts: every host, or say which is left."""
    inv = fleet_inventory.load(Path(state.inventory))
    report = quiet if json_out else _lines
    result = fleet_down.down(folder, state, _runner(folder, inv, 10), report, forget)
    if json_out:
        said = {"class": result.name, "cleaned": result.cleaned, "left": result.left}
        console.print_json(said | ({"forgotten": result.forgotten} if forget else {}))
    else:
        console.err.print(f"Class {result.name} is down on {plural(len(result.cleaned), 'host')}.")
        if result.forgotten is not None:
            console.err.print(escape(class_forget.said(result.forgotten)))
            console.err.print("Each of those hosts forgot its own students' records too.")
            if result.left:
                console.err.print("The students of the hosts left keep theirs, here and there.")
    if result.left:
        for host, why in result.left.items():
            console.err.print(f"[red]{escape(host)}[/red]: {escape(why)}")
        console.err.print("Hint: when those hosts answer again, run the same class down.")
        raise typer.Exit(ExitCode.FAILED)
