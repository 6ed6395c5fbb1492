"""``labctl class plan/up/status/verify/reset/down``: a roster in, one isolated lab per student."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

import typer
from rich.markup import escape

from labctl import console
from labctl.classroom import capacity, roster
from labctl.classroom import down as class_down
from labctl.classroom import forget as class_forget
from labctl.classroom import lifecycle as class_lifecycle
from labctl.classroom import state as class_state
from labctl.classroom.server import find as find_server
from labctl.cli import tables
from labctl.cli.app import app
from labctl.cli.lab import resolve_lab
from labctl.errors import ExitCode, LabctlError
from labctl.instance.naming import DEFAULT_LAB
from labctl.store import Forgotten

class_app = typer.Typer(help="Class mode: one isolated lab instance per student of a roster.")
app.add_typer(class_app, name="class")

RosterArg = typer.Argument(
    ..., metavar="ROSTER", help="CSV with the header id,name[,email][,ssh_key]."
)
LabArg = typer.Argument(DEFAULT_LAB, metavar="LAB", help="Lab name or file.")
CLASS_NAME_HELP = "Class name: 1-5 lowercase letters and digits, starting with a letter."
ClassOpt = typer.Option(None, "--class", "-c", help="Class name; default: the only class.")
JsonOpt = tables.JsonOpt


def _plan_lines(p: capacity.Plan) -> list[tuple[str, str]]:
    c, h = p.cost, p.host
    return [
        (
            "lab",
            f"{p.lab}: {tables.plural(c.guests, 'guest')}, "
            f"{tables.plural(c.vcpus, 'virtual CPU')} in VMs",
        ),
        ("per student", f"{c.memory_mib} MiB memory, {c.disk_mib} MiB disk (upper bounds)"),
        (
            "host",
            f"{h.memory_available_mib} MiB available, {h.disk_free_mib} MiB disk free, "
            f"{h.cores} cores",
        ),
        (
            "kept for host",
            f"{capacity.RESERVE_MEMORY_MIB} MiB memory, {capacity.RESERVE_DISK_MIB} MiB disk",
        ),
        ("KSM", h.ksm.summary),
        (
            "fit",
            f"{tables.plural(p.fit, 'student')} (memory {p.fit_memory}, disk {p.fit_disk}"
            + (f", inotify instances {p.fit_inotify}" if p.fit_inotify is not None else "")
            + f"; {p.limit} is the limit)",
        ),
        (
            "roster",
            f"{tables.plural(p.students, 'student')}: {'fits' if p.fits else 'does NOT fit'}; "
            f"{p.cpu_share:.2f} cores each, {p.vcpus_per_core:.1f} vCPUs per core",
        ),
    ]


@class_app.command("plan")
def plan_(
    roster_file: Path = RosterArg,
    lab_ref: str = LabArg,
    class_name: str = typer.Option(
        "class", "--class", "-c", help=CLASS_NAME_HELP + " As class up will be given."
    ),
    json_out: bool = JsonOpt,
) -> None:
    """What one student's lab costs on this host and how many students fit."""
    roster.check_class(class_name)
    accounts = class_lifecycle.HostAccounts()
    # an id that is an account of this host is listed with the roster's other problems
    r = roster.load(roster_file, account=class_lifecycle.account_check(class_name, None, accounts))
    lab, _ = resolve_lab(lab_ref)
    # what class up refuses without changing anything is refused here the same way
    class_lifecycle.check_roster(r, class_name, accounts=accounts)
    p = capacity.plan(lab, len(r.students))
    if json_out:
        console.print_json(
            {
                "lab": p.lab,
                "students": p.students,
                "cost": p.cost,
                "host": p.host,
                "fit": p.fit,
                "fit_memory": p.fit_memory,
                "fit_disk": p.fit_disk,
                "fit_inotify": p.fit_inotify,
                "limit": p.limit,
                "fits": p.fits,
                "cpu_share": round(p.cpu_share, 3),
                "vcpus_per_core": round(p.vcpus_per_core, 2),
                "advice": p.advice(),
            }
        )
    else:
        console.out.print(tables.pairs((k, escape(v)) for k, v in _plan_lines(p)))
        for note in p.advice():
            console.out.print(f"[yellow]Advice:[/yellow] {escape(note)}")
    if not p.fits:
        raise typer.Exit(ExitCode.FAILED)


class _Lines:
    """``class up``'s progress: a line per lab-wide stage and per student's milestones."""

    def __call__(self, who: str, step: str, detail: str) -> None:
        if not who:
            console.err.print(f"[bold]▸ {escape(step)}[/bold] {escape(detail)}")
        elif step in ("done", "failed", "validate", "guests") or step.endswith(" done"):
            colour = {"done": "green", "failed": "red"}.get(step, "")
            tag = f"[{colour}]{step}[/{colour}]" if colour else escape(step)
            console.err.print(f"  {escape(who)}: {tag} {escape(detail)}".rstrip())


@class_app.command("up")
def up(
    roster_file: Path = RosterArg,
    lab_ref: str = LabArg,
    class_name: str = typer.Option("class", "--class", "-c", help=CLASS_NAME_HELP),
    max_parallel: int | None = typer.Option(
        None,
        "--max-parallel",
        min=1,
        max=64,
        help="Students' labs brought up at once on each host (default: one per core).",
        show_default=False,
    ),
    max_students: int | None = typer.Option(
        None, "--max-students", min=1, help="Refuse a roster longer than this."
    ),
    window_start: str | None = typer.Option(
        None,
        "--window-start",
        help="Exam window's start, ISO 8601 (no zone: UTC): exercises hidden before.",
    ),
    window_end: str | None = typer.Option(
        None,
        "--window-end",
        help="Exam window's end, ISO 8601 (no zone: UTC): attempts after it do not score.",
    ),
    hosts: Path | None = typer.Option(
        None,
        "--hosts",
        help="An Ansible inventory (INI or YAML): spread the class over these lab hosts.",
    ),
    replace_failed: bool = typer.Option(
        False, "--replace-failed", help="With --hosts: move a failed host's students elsewhere."
    ),
    forks: int = typer.Option(10, "--forks", min=1, max=100, help="With --hosts: hosts at once."),
    lang: str | None = typer.Option(
        None,
        "--lang",
        help="The access sheets' language, es or en (default: the class's, else the locale's).",
        show_default=False,
    ),
    json_out: bool = JsonOpt,
) -> None:
    """One lab instance per student; a rerun finishes what is missing."""
    from labctl.classroom import window as exam

    ends = None
    if window_start or window_end:  # a bad time is refused before anything is read or made
        ends = exam.given(window_start, window_end, ("--window-start", "--window-end"))
    sheets = class_state.ClassDir(class_name).lang(lang)
    if hosts is not None:
        from labctl.cli import class_fleet

        class_fleet.up(
            roster_file,
            lab_ref,
            class_name,
            hosts,
            max_parallel=max_parallel,
            replace_failed=replace_failed,
            forks=forks,
            window=ends,
            max_students=max_students,
            lang=sheets,
            json_out=json_out,
        )
        return
    from labctl.host.accel import detect
    from labctl.images.registry import store

    roster.check_class(class_name)
    server = find_server()  # once: every student's sheet names the server alike
    accounts = class_lifecycle.HostAccounts(server.name, sheets)
    r = roster.load(roster_file, account=class_lifecycle.account_check(class_name, None, accounts))
    lab, path = resolve_lab(lab_ref)
    result = class_lifecycle.up(
        r,
        class_name,
        lab,
        path,
        store(),
        detect(),
        max_parallel=max_parallel or max(1, os.cpu_count() or 1),
        max_students=max_students,
        report=_Lines() if not json_out else lambda *a: None,
        window=ends,
        accounts=accounts,
        lang=sheets,
    )
    from labctl.cli.class_serve import restate_sheets

    restate_sheets(class_state.ClassDir(class_name))  # their progress page's part too
    note = server.note()
    if json_out:
        console.print_json(
            {
                "class": result.name,
                "lab": result.lab,
                "server": server.name,
                "students": result.results,
                "not_in_roster": result.kept,  # their labs kept as they were
            }
        )
    else:
        t = tables.table("student", "instance", "result", "seconds")
        for s in result.results:
            state = "[green]up[/green]" if s.ok else "[red]failed[/red]"
            t.add_row(escape(s.student), escape(s.instance), state, f"{s.seconds:.1f}")
        console.out.print(t)
        from labctl.cli import class_fleet

        failed = [(s.student, s.error) for s in result.failed]
        class_fleet.print_labs_up(result.name, len(result.results), failed)
        for who in result.kept:  # never removed for being left out: said, and how to
            console.err.print(
                f"[yellow]{escape(who)}[/yellow] is in the class but not in this roster: kept "
                f"(labctl class down --class {result.name} --student {escape(who)} removes "
                "them)",
                soft_wrap=True,
            )
    if note is not None:  # labctl guessed the name: say which, and how to change it
        colour = "yellow" if server.source == "unreachable" else "bold"
        console.err.print(f"[{colour}]{escape(note)}[/{colour}]", soft_wrap=True)
    if result.failed:
        console.err.print("Hint: fix the cause and run the same `labctl class up` again.")
        raise typer.Exit(ExitCode.FAILED)


@class_app.command("status")
def status(class_name: str | None = ClassOpt, json_out: bool = JsonOpt) -> None:
    """One row per student: guests ready, exercises done, last activity."""
    from labctl.classroom.status import status as class_status
    from labctl.cli import class_fleet

    folder = class_state.pick(class_name)
    st = folder.require()
    spread = class_fleet.of(folder)
    if spread is not None:
        try:
            class_fleet.status(folder, spread, json_out)
        finally:  # a host that did not answer ends it with exit 1: the window is still said
            if not json_out:
                _exam_line(st)
        return
    rows = class_status(st)
    if json_out:
        console.print_json({"class": st.name, "lab": st.lab, "students": rows})
        return
    class_fleet.print_status(rows, "name", [r.name for r in rows], f"Class {st.name}, lab {st.lab}")
    # as labctl status says it: a VM whose lab asks for KVM runs under TCG here (every lab's)
    for note in dict.fromkeys(n for r in rows for n in r.accel_notes):
        console.out.print(f"[yellow]Note:[/yellow] {escape(note)}", soft_wrap=True)
    _exam_line(st)


def _exam_line(st: class_state.ClassState) -> None:
    """The exam window and its state now, whole, under a status table (none: nothing)."""
    from labctl.classroom.window import window_of

    window = window_of(st)
    if (now := window.state(datetime.now(timezone.utc))) is not None:
        console.out.print(f"Exam window {window.summary} ({now}).", soft_wrap=True)


@class_app.command("verify")
def verify(class_name: str | None = ClassOpt, json_out: bool = JsonOpt) -> None:
    """Prove isolation on the live class: no student reaches another's guests or the host."""
    from labctl.classroom import verify as probe

    st = class_state.pick(class_name).require()
    report = probe.verify(st)
    if json_out:
        console.print_json(
            {
                "class": st.name,
                "isolated": report.isolated,
                "verdict": probe.verdict(report),
                "leaks": report.leaks,
                "broken": report.broken,
                "errors": report.errors,
                "probes": report.probes,
            }
        )
    else:
        bad = report.leaks + report.broken
        if bad:
            t = tables.table("from", "to", "probe", "problem")
            for p in bad:
                t.add_row(
                    escape(f"{p.student}/{p.source}"),
                    escape(p.target),
                    escape(p.what),
                    "[red]LEAK[/red]" if p.leak else "[yellow]own guest unreachable[/yellow]",
                )
            console.out.print(t)
        if report.errors:
            t = tables.table("student", "what", "not verified: why")
            for e in report.errors:
                why = e.reason + (f" (hint: {e.hint})" if e.hint else "")
                t.add_row(escape(e.student), escape(e.source), f"[red]{escape(why)}[/red]")
            console.out.print(t)
        said = probe.verdict(report)
        colour = "red" if report.leaks else "yellow" if not report.isolated else ""
        verdict = f"[{colour}]{said}[/{colour}]" if colour else said
        console.out.print(f"Class {st.name}: {verdict} ({', '.join(probe.summary(report))}).")
    if not report.isolated:
        raise typer.Exit(ExitCode.FAILED)


@class_app.command("reset")
def reset(
    student: str = typer.Argument(..., metavar="STUDENT", help="Student id."),
    exercise: str | None = typer.Option(None, "--exercise", "-e", help="Reset this exercise."),
    guest: str | None = typer.Option(None, "--guest", "-g", help="Re-create this guest."),
    class_name: str | None = ClassOpt,
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Do not ask before an exercise's passed steps are taken back."
    ),
) -> None:
    """Put one student's exercise, guest or whole lab back as new; others untouched."""
    from labctl.classroom.reset import passed_steps
    from labctl.classroom.reset import reset as do_reset

    def report(who: str, step: str, detail: str) -> None:
        console.err.print(f"▸ {who} {step} {detail}".replace("  ", " ").strip())

    folder = class_state.pick(class_name)
    passed = passed_steps(folder, student, exercise) if exercise and not guest else 0
    if passed and not yes:  # an exercise starting over takes its points back: said first
        lost = (
            f"{student} has passed {tables.plural(passed, 'step')} of {exercise}: its reset "
            "takes them back (the attempts stay recorded)"
        )
        if sys.stdin is not None and sys.stdin.isatty():
            tables.confirm(f"{lost}. Go on?", "Nothing reset.")
        else:
            again = f"labctl class reset {student} --class {folder.name}"
            raise LabctlError(
                lost,
                f"to reset it all the same: {again} --exercise {exercise} --yes; to give "
                f"{student} a fresh guest and keep the points: {again} --guest GUEST",
                ExitCode.USAGE,
            )
    said = do_reset(folder, student, exercise, guest, report)
    console.out.print(escape(said))


def _on_a_terminal() -> bool:
    """Someone at a terminal to ask: stdin is one (stderr may be a log, ``2>&1 | tee``: the
    question goes there, but the homes do not go unasked)."""
    return sys.stdin is not None and sys.stdin.isatty()


def _ask_before_down(
    folder: class_state.ClassDir, student: str | None, spread: bool, forget: bool
) -> None:
    """What goes, said before it goes: each account's home holds the student's own files,
    and ``--forget`` takes the progress records no export kept.

    Only on a terminal (as Vagrant's destroy): a script takes the class down as asked, and
    the controller, having asked, runs each lab host's part with ``--yes``."""
    if not _on_a_terminal():
        return
    state = folder.load()
    seats = state.seats if state is not None else {}
    records = " and their progress records" if forget else " (their progress stays, for grading)"
    if spread:
        what = f"the labs and accounts of every student of class {folder.name}, on each lab host"
        what += f" it uses, with the files in their home folders{records}"
    elif student is not None and student in seats:
        what = f"the lab and account of {student} of class {folder.name}, with the files in "
        what += f"their home folder{records}"
    elif student is None and seats:
        count = tables.plural(len(seats), "student")
        what = f"the labs and accounts of {count} of class {folder.name}, with the files in "
        what += f"their home folders{records}"
    elif forget:  # nothing here any more: the records are what goes
        whose = f"{student} of class {folder.name}" if student else f"class {folder.name}"
        what = f"the progress records of {whose}: export the grades first"
    else:
        return  # nothing here to remove: down says so
    tables.confirm(f"This removes {what}. Go on?", "Nothing removed.")


def _nothing_removed(
    why: str, json_out: bool, forget: bool = False, forgotten: Forgotten | None = None
) -> None:
    """``class down`` of a class not here: done, as ``labctl down`` of a lab never seen;
    with ``--forget``, what was forgotten of it (None: no class named)."""
    if json_out:
        console.print_json(
            {"students": [], "found": False} | ({"forgotten": forgotten} if forget else {})
        )
        return
    if forgotten is None:
        console.err.print(f"{escape(why)}: nothing removed.")
    else:  # "nothing removed" and then "forgot ..." would read as a contradiction
        console.err.print(f"{escape(why)}: no lab or account to remove.")
        console.err.print(escape(class_forget.said(forgotten)))
    if forgotten is not None and not forgotten.nothing:
        console.err.print(
            "This server's store only: a class that ran over lab hosts keeps its students' "
            "records on each host until class down --forget runs there too."
        )
    if forgotten is None and forget:
        console.err.print("Nothing forgotten: name the class to forget with --class NAME.")


def _again(name: str, student: str | None) -> str:
    """The ``class down --forget`` that forgets what a ``class down`` kept."""
    who = f" --student {student}" if student else ""
    return f"labctl class down --class {name}{who} --forget"


#: how long ``class down`` waits for the class's dashboard to end after SIGTERM
SERVE_STOP_SECONDS = 10


@contextmanager
def _dashboard_goes_with(folder: class_state.ClassDir, json_out: bool) -> Iterator[None]:
    """The class's running ``class serve`` is stopped (SIGTERM to the PID its record names,
    checked by start time) once the class is gone: it served only errors."""
    from labctl.dashboard.serving import current

    server = current(folder.root)
    yield
    if server is None or folder.load() is not None or not server.running:
        return
    with suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + SERVE_STOP_SECONDS  # said stopped once it has
    while server.running and time.monotonic() < deadline:
        time.sleep(0.1)
    if json_out:
        return
    if server.running:
        console.err.print(
            f"Its dashboard (labctl class serve, pid {server.pid}) was asked to stop "
            f"(SIGTERM) and still runs after {SERVE_STOP_SECONDS} s: kill {server.pid}"
        )
    else:
        console.err.print(f"Its dashboard (labctl class serve, pid {server.pid}) stopped too.")


@class_app.command("down")
def down(
    class_name: str | None = ClassOpt,
    student: str | None = typer.Option(None, "--student", "-s", help="Only this student."),
    forget: bool = typer.Option(
        False,
        "--forget",
        help="Also remove the students' progress and seats from the progress store (after "
        "exporting grades); a student whose lab could not be removed keeps theirs.",
    ),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Do not ask on a terminal before the accounts and homes go."
    ),
    json_out: bool = JsonOpt,
) -> None:
    """Remove the class's labs, accounts and keys (or one student's), and nothing else;
    with --forget, their records in the progress store too. On a terminal it asks first."""

    def report(who: str, step: str, detail: str) -> None:
        if not json_out:
            console.err.print(f"▸ {who} {step} {detail}".replace("  ", " ").strip())

    from labctl.cli import class_fleet

    try:
        folder = class_state.pick(class_name)
    except class_state.NoClass:  # no class on this host at all
        _nothing_removed("There is no class on this host", json_out, forget)
        return
    spread = class_fleet.of(folder)
    if spread is not None and student is not None:
        raise LabctlError(
            f"class {folder.name} runs over lab hosts: --student is for a class on one host",
            "take the whole class down, or run labctl class down --student there",
        )
    if not (yes or json_out):
        _ask_before_down(folder, student, spread is not None, forget)
    if spread is not None:
        with _dashboard_goes_with(folder, json_out):
            class_fleet.down(folder, spread, json_out, forget)
        return
    here = folder.load() is not None
    with _dashboard_goes_with(folder, json_out):
        result = class_down.down(folder, student, report, forget=forget)
    if not here:  # never here, or taken down already: nothing to do but forget
        why = f"Nothing of class {folder.name} is here"
        _nothing_removed(why, json_out, forget, result.forgotten)
        return
    done = result.seats
    if json_out:
        said = {"students": done, "found": True}
        console.print_json(said | ({"forgotten": result.forgotten} if forget else {}))
        return
    kept = [d for d in done if d.progress_kept]
    labs = "1 student's lab" if len(done) == 1 else f"{len(done)} students' labs"
    console.err.print(f"{labs} removed, with their accounts and keys.")
    if result.forgotten is not None:
        console.err.print(escape(class_forget.said(result.forgotten)))
    elif kept:
        console.err.print(
            f"Progress of {tables.plural(len(kept), 'student')} "
            f"({escape(', '.join(d.student for d in kept))}) kept for grading (in the "
            f"progress store: labctl class report; {_again(folder.name, student)} "
            "removes it)."
        )
