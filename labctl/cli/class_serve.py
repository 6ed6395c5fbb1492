"""``labctl class serve`` (the live dashboard) and ``labctl class window`` (the exam window)."""

from __future__ import annotations

import errno
import os
import signal
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from labctl import console
from labctl.classroom import sheet
from labctl.classroom import state as class_state
from labctl.classroom import window as exam
from labctl.cli import tables
from labctl.cli.classroom import ClassOpt, JsonOpt, class_app
from labctl.errors import ExitCode, HostError, LabctlError

if TYPE_CHECKING:
    from labctl.fleet.window import FleetWindow


def _check_port(host: str, port: int) -> None:
    """Refuse before anything starts when the address is taken (uvicorn would only log it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            hint = "choose another with --port" if exc.errno == errno.EADDRINUSE else None
            raise HostError(f"cannot listen on {host}:{port}: {exc.strerror}", hint) from exc


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _url(host: str, port: int) -> str:
    shown = socket.getfqdn() if host in ("0.0.0.0", "::") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


@class_app.command("serve")
def serve(
    class_name: str | None = ClassOpt,
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to listen on; any other than loopback opens it to the network.",
    ),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="TCP port."),
    idle_minutes: float = typer.Option(
        10.0, "--idle-minutes", min=1, help="Mark a student after this long without progress."
    ),
    refresh: float = typer.Option(5.0, "--refresh", min=1, help="Seconds between page updates."),
) -> None:
    """The live dashboard of a class: grid, students, exercises, resets; token printed once."""
    import uvicorn

    from labctl.classroom.reset import reset
    from labctl.dashboard.app import Settings, create_app
    from labctl.dashboard.auth import TokenFile
    from labctl.dashboard.data import StoreSource, class_data, exercises_of
    from labctl.dashboard.flags import Rules
    from labctl.dashboard.health import Watch
    from labctl.dashboard.serving import Server, claim, release
    from labctl.spec.model import load_lab
    from labctl.store import open_store

    folder = class_state.pick(class_name)
    state = folder.require()
    url = _url(host, port)
    pid = os.getpid()
    claim(folder.root, state.name, Server.this_process(url, datetime.now(timezone.utc).isoformat()))
    watch = Watch(folder.require)
    store = None
    before = signal.getsignal(signal.SIGTERM)
    try:
        _check_port(host, port)
        tokens = TokenFile(folder.root)
        token = tokens.new_instructor()
        exercises = exercises_of(state.spec_path)
        seats = class_data(state, exercises).seats
        made = tokens.ensure_students(seats, url, tunnel_host(folder), state.lang)
        try:
            guests = tuple(load_lab(Path(state.spec_path)).guests)
        except (LabctlError, OSError):
            guests = ()
        store = open_store()

        def instances() -> list[str]:
            return [s.instance for s in folder.require().seats.values()]

        settings = Settings(
            load=lambda: class_data(folder.require(), exercises),
            source=StoreSource(store, state.lab, instances),
            tokens=tokens.load(),
            health=watch.snapshot,
            notice=watch.notice,
            rules=Rules(idle_minutes=idle_minutes),
            reset=lambda student, ex, guest: reset(folder, student, ex, guest),
            guests=guests,
            refresh_seconds=refresh,
        )
        watch.start()
        # whole lines (a path or a token cut by the terminal's width is copied wrong)
        console.out.print(f"Dashboard of class {escape(state.name)}: {escape(url)}", soft_wrap=True)
        console.out.print(f"Instructor token (shown once, stored hashed): {token}", soft_wrap=True)
        access = folder.root / "access"
        console.out.print(
            f"Students' tokens: in their access sheets ({escape(str(access))}/ID.txt); "
            f"{len(made)} new.",
            soft_wrap=True,
        )
        if host not in ("127.0.0.1", "::1", "localhost"):
            console.err.print(
                f"[yellow]Note:[/yellow] listening on {escape(host)}: reachable from the network."
            )
        # uvicorn stops on SIGTERM, then raises it again: let it end here, through finally
        signal.signal(signal.SIGTERM, _interrupted)
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
    finally:
        try:
            watch.stop()
            release(folder.root, pid)
            if store is not None:
                store.close()
        finally:  # called in-process (tests), it leaves SIGTERM as it found it
            signal.signal(signal.SIGTERM, before)


def restate_sheets(folder: class_state.ClassDir) -> None:
    """After ``class up`` rewrote the sheets: the running ``class serve``'s section in each,
    said again in the class's language (its tokens kept; the next serve gives new students
    theirs)."""
    from labctl.dashboard.auth import TokenFile
    from labctl.dashboard.serving import current

    server, cls = current(folder.root), folder.load()
    if server is None or cls is None:
        return
    seats = tuple(cls.seats.values())
    TokenFile(folder.root).ensure_students(seats, server.url, tunnel_host(folder), cls.lang, False)


def tunnel_host(folder: class_state.ClassDir) -> str | None:
    """The ssh_config ``Host`` of the students' sheets through which a page on this server's
    loopback is reached; None for a class over lab hosts, whose sheets' Host is the student's
    lab host, not this controller."""
    from labctl.fleet import state as fleet_state

    return None if fleet_state.load(folder) is not None else sheet.ssh_host(folder.name)


@class_app.command("window")
def window(
    class_name: str | None = ClassOpt,
    start: str | None = typer.Option(
        None, "--start", help="ISO 8601 (no zone: UTC); exercises hidden before; - for none."
    ),
    end: str | None = typer.Option(
        None, "--end", help="ISO 8601 (no zone: UTC); attempts after it do not score; - for none."
    ),
    clear: bool = typer.Option(False, "--clear", help="Remove the window: always open."),
    json_out: bool = JsonOpt,
) -> None:
    """Show or set the class's exam window (no option: show it)."""
    folder = class_state.pick(class_name)
    if clear and (start or end):
        raise LabctlError("give --clear or --start/--end, not both", code=ExitCode.USAGE)
    spread: FleetWindow | None = None  # a class over lab hosts: each host given the window
    if clear or start or end:
        from labctl.cli import class_fleet

        if clear:
            start = end = exam.OPEN
        names = ("--start", "--end")
        exam.given(start, end, names)  # a bad time is refused before anything is read
        fleet = class_fleet.of(folder)
        if fleet is not None:  # the hosts judge the attempts: each is given the window
            spread = class_fleet.window(folder, fleet, start, end)
        else:
            with folder.held("labctl class window") as st:
                new = exam.changed(st, start, end, names)
                folder.save(exam.with_window(st, new.start, new.end))
    st = folder.require()
    w = exam.window_of(st)
    now = w.state(datetime.now(timezone.utc))  # open, not open yet, ended; None: no window
    hosts = {"set_on": spread.set_on, "left": spread.left} if spread else {}
    if json_out:
        shown = {"class": st.name, "start": exam.iso(w.start), "end": exam.iso(w.end)}
        console.print_json({**shown, "now": now, **hosts})
    else:
        rows = [
            ("class", escape(st.name)),
            ("start", exam.stamp(w.start)),
            ("end", exam.stamp(w.end)),
            ("window", escape(w.summary)),
            ("now", now or "no exam window: always open"),
        ]
        if spread is not None:
            rows.append(("set on", escape(", ".join(spread.set_on) or "no host")))
        console.out.print(tables.pairs(rows))
    if end and end != exam.OPEN and now == "ended" and not json_out:
        console.err.print(
            "[yellow]Note:[/yellow] that end has passed already: every attempt made after it, "
            "those made already included, is late (recorded, not scored)."
        )
    if spread is not None and spread.left:
        for host, why in spread.left.items():
            console.err.print(f"[red]{escape(host)}[/red]: {escape(why)}")
        console.err.print(
            "Hint: those hosts judge their students' attempts by their old window; when they "
            "answer again, run the same class window."
        )
        raise typer.Exit(ExitCode.FAILED)
