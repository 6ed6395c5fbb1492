"""``labctl up/status/ssh/exec/down`` and ``labctl lab validate/schema``."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.markup import escape

from labctl import console
from labctl.cli import tables
from labctl.cli.app import app
from labctl.cli.options import InstanceOpt, LabNameOpt
from labctl.cli.progress import Steps
from labctl.errors import ExitCode, LabctlError
from labctl.instance import naming
from labctl.instance.naming import (
    DEFAULT_LAB,
    check_instance,
    check_lab_name,
)
from labctl.instance.state import InstanceDir, LabState, saved_states, up_command
from labctl.lab import down as lab_down
from labctl.lab import lifecycle
from labctl.lab import status as lab_status
from labctl.lab.plan import (
    READY_TIMEOUT_ENV,
    READY_TIMEOUT_RANGE,
    image_of,
    images_of,
    instance_profile,
)
from labctl.spec.model import Lab, find_lab, json_schema, load_lab

lab_app = typer.Typer(help="Check and describe lab files.")
app.add_typer(lab_app, name="lab")


def resolve_lab(ref: str) -> tuple[Lab, Path]:
    """A lab by path (file or directory) or by name under ``labs/``, loaded."""
    path = find_lab(ref)
    return load_lab(path), path


def lab_name(ref: str) -> str:
    """The name a lab's instances are recorded under: given, or read from the lab file or
    directory ``ref`` names (as ``up`` took it)."""
    if Path(ref).exists():
        return resolve_lab(ref)[0].name
    return check_lab_name(ref)


class _UpView:
    """Visible stages and one line per guest."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps

    def __call__(self, guest: str, step: str, detail: str) -> None:
        if not guest:
            self.steps.say(f"[bold]▸ {escape(step)}[/bold] {escape(detail)}".rstrip())
            return
        done = step in ("done", "failed") or detail.startswith("already running")
        self.steps.step(guest, f"{step} {detail}".strip(), done)


@app.command()
def up(
    lab_ref: str = typer.Argument(DEFAULT_LAB, metavar="LAB", help="Lab name or file."),
    instance: str = InstanceOpt,
    require_kvm: bool = typer.Option(
        False, "--require-kvm", help="Refuse instead of running the KVM guests under TCG."
    ),
    ready_timeout: int | None = typer.Option(
        None,
        "--ready-timeout",
        min=READY_TIMEOUT_RANGE[0],
        max=READY_TIMEOUT_RANGE[1],
        metavar="SECONDS",
        help=f"Seconds each guest may take to become usable (default: ${READY_TIMEOUT_ENV}, "
        "else the lab file's ready_timeout).",
    ),
    json_out: bool = tables.json_option("Print the result as JSON."),
) -> None:
    """Create and start every guest of the lab, wait until each is usable, say how to reach it."""
    from labctl.host.accel import detect
    from labctl.images.registry import store

    lab, path = resolve_lab(lab_ref)
    check_instance(instance)
    probe = detect()
    if not probe.usable and not json_out:
        console.err.print(f"[yellow]Note:[/yellow] KVM cannot run guests here ({probe.reason}).")
    with Steps(console.err, width=14, quiet=json_out) as steps:
        result = lifecycle.up(
            lab,
            path,
            instance,
            store(),
            probe,
            require_kvm=require_kvm,
            ready_timeout=ready_timeout,
            report=_UpView(steps),
        )
    rows = lab_status.status(result.state)
    if json_out:
        console.print_json(
            {"seconds": round(result.seconds, 1), "already_up": result.already_up, "guests": rows}
        )
        return
    outdated = sum(1 for r in rows if r.outdated)
    if result.already_up and outdated:
        console.err.print(
            f"Lab already up; {tables.plural(outdated, 'guest')} defined before a change:"
        )
    _print_status(rows, result.state)
    if result.already_up and not outdated:
        console.err.print(
            f"Lab {lab.name} ({instance}) already up: nothing to do ({result.seconds:.1f} s)."
        )
    else:
        console.err.print(f"Lab {lab.name} ({instance}) up in {result.seconds:.1f} s.")


def options_of(lab: str, instance: str, student: str | None = None) -> str:
    """The options naming this lab instance (and student) in a command typed here, after
    it (`` --lab net -i walk``): none for a class's student (labctl puts in their own), none
    for the default lab's main instance."""
    return "" if console.CONFINED else naming.options(lab, instance, student)


def _which(state: LabState) -> str:
    return options_of(state.lab, state.instance)


def _connect_hint(r: lab_status.GuestStatus, state: LabState) -> str:
    if r.state != "running":  # the notes below the table say what starts it
        return f"- ({r.state})"
    if r.connect and r.connect.startswith("http"):
        return r.connect
    return f"labctl ssh {r.guest}{_which(state)}"


def _outdated_note(guest: str, differs: str, state: LabState, up: str, in_class: bool) -> str:
    """What differs in a guest defined before a change, and who applies it how."""
    how = (
        "your instructor applies it (the guest powered off, then labctl class up)"
        if in_class
        else f"stop it (labctl exec {guest}{_which(state)} -- poweroff) and run "
        f"{up} to define it anew, its disk kept"
    )
    return f"runs as defined before a change ({differs}); {how}"


def _print_status(
    rows: list[lab_status.GuestStatus],
    state: LabState,
    wide: bool = False,
    in_class: bool = False,
) -> None:
    """The guests as a table; narrow: how to connect below it, whole, one guest a line.

    ``in_class``: the instance is a student's (class mode), who cannot run ``labctl up``."""
    up = up_command(state.lab, state.instance, state.spec_path)
    headers = ["guest", "engine", "state", "accel", "address"]
    table = tables.table(*headers, *(["started", "devices", "connect"] if wide else []))
    for r in rows:
        accel = escape(r.accel or "-")
        if r.accel_note:
            accel = f"[yellow]{accel}[/yellow]*"
        now = escape(r.state) if not r.error else f"{escape(r.state)} [red](error)[/red]"
        cells = [escape(r.guest), r.engine, now, accel, escape(r.address or "-")]
        if wide:
            cells += [
                escape(r.started or "-"),
                escape(r.devices or "-"),
                escape(_connect_hint(r, state)),
            ]
        table.add_row(*cells)
    if wide:
        tables.print_unwrapped(console.out, table)
    else:
        console.out.print(table)
        if rows:
            console.out.print("\nConnect:")
        width = max((len(r.guest) for r in rows), default=0)
        for r in rows:
            # soft_wrap: rich never breaks the command; a terminal too narrow wraps it itself.
            line = f"  {r.guest.ljust(width)}   {_connect_hint(r, state)}"
            console.out.print(escape(line), soft_wrap=True)
    notes = [
        f"[yellow]*{escape(r.guest)}[/yellow]: {escape(r.accel_note)}" for r in rows if r.accel_note
    ]
    notes += [
        f"[yellow]{escape(r.guest)}[/yellow]: {escape(r.start_note)}" for r in rows if r.start_note
    ]
    notes += [
        f"[yellow]{escape(r.guest)}[/yellow]: "
        + escape(_outdated_note(r.guest, differs, state, up, in_class))
        for r in rows
        if (differs := r.outdated)
    ]
    notes += [f"[red]{escape(r.guest)}[/red]: {escape(r.error)}" for r in rows if r.error]
    down = [r.guest for r in rows if r.state != "running"]
    if down:
        who = "your instructor's labctl class up starts them" if in_class else f"{up} starts them"
        notes.append(f"[yellow]Not running:[/yellow] {escape(', '.join(down))}; {escape(who)}")
    if notes:
        console.out.print("\n" + "\n".join(notes))


GuestArg = typer.Argument(..., metavar="GUEST", help="A guest of the lab (see labctl status).")


@app.command()
def status(
    lab: str = LabNameOpt,
    instance: str = InstanceOpt,
    json_out: bool = tables.JsonOpt,
    wide: bool = tables.WideOpt,
) -> None:
    """One row per guest: engine, state, accelerator in use, address, how to connect.

    --wide adds how each guest was last started (booted, or restored from its template), the
    device models, and puts the way to connect in the table.
    """
    inst, state = lab_status.load(lab_name(lab), check_instance(instance))
    rows = lab_status.status(state)
    if json_out:
        console.print_json({"lab": state.lab, "instance": state.instance, "guests": rows})
    else:
        _print_status(rows, state, wide, in_class=inst.owner() is not None)


@app.command()
def ssh(guest: str = GuestArg, lab: str = LabNameOpt, instance: str = InstanceOpt) -> None:
    """Open a shell in GUEST (SSH for VMs and the system container, docker exec for the app)."""
    from labctl import backends
    from labctl.keys import KeyPair

    inst, state = lab_status.load(lab_name(lab), check_instance(instance))
    rec = lab_status.record(state, guest)
    with _hints_of(state):
        argv = backends.connect(rec, KeyPair(inst.key)).shell_argv()
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@contextmanager
def _hints_of(state: LabState) -> Iterator[None]:
    """A guest's errors name ``labctl up``; say this instance's (``--instance``, its file)."""
    try:
        yield
    except LabctlError as exc:
        if exc.hint and exc.hint.startswith("labctl up "):
            here = up_command(state.lab, state.instance, state.spec_path)
            exc.hint = here + exc.hint.removeprefix("labctl up")
        raise


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(
    guest: str = GuestArg,
    command: list[str] = typer.Argument(..., metavar="COMMAND", help="Command to run (after --)."),
    lab: str = LabNameOpt,
    instance: str = InstanceOpt,
    stdin: bool = typer.Option(
        False,
        "--stdin",
        help="Pass labctl's standard input (up to 64 MiB) to the command: labctl exec A -- cat "
        "notes.txt | labctl exec --stdin B -- sh -c 'cat > notes.txt'. Without it the command "
        "reads end of file at once.",
    ),
) -> None:
    """Run a command in GUEST; its output and exit code are passed through."""

    from labctl import backends
    from labctl.keys import KeyPair

    if command[0].startswith("-"):  # click hands on an option it does not know as the command
        raise LabctlError(
            f"no such option: {command[0]}",
            f"labctl exec's options go before --, the command after it: labctl exec {guest} "
            + ("" if console.CONFINED else "[--lab LAB] [-i INSTANCE] ")
            + "-- COMMAND",
            ExitCode.USAGE,
        )
    inst, state = lab_status.load(lab_name(lab), check_instance(instance))
    rec = lab_status.record(state, guest)
    line = command[0] if len(command) == 1 else shlex.join(command)
    given = _read_stdin() if stdin else None  # all of it: the command gets it whole
    # No bound on silence: a student's command in a VM may rightly say nothing for long.
    with _hints_of(state):
        result = backends.connect(rec, KeyPair(inst.key)).run(line, timeout=None, stdin=given)
    # byte for byte: `labctl exec A -- cat photo.png > photo.png` keeps the photo
    out = result.stdout.encode() if result.raw_stdout is None else result.raw_stdout
    err = result.stderr.encode() if result.raw_stderr is None else result.raw_stderr
    for stream, data in ((sys.stdout, out), (sys.stderr, err)):
        try:
            stream.flush()
            stream.buffer.write(data)
            stream.buffer.flush()
        except BrokenPipeError:  # the reader had enough (`| head`): not the command's failure
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())  # nothing said at exit
    # not typer.Exit: typer reads 130 as its own Ctrl-C, and a guest command exiting 130
    # would be said "Interrupted."
    sys.exit(result.rc)


#: how much ``exec --stdin`` reads: labctl holds it whole (as root, for a class's student)
STDIN_LIMIT = 64 * 1024 * 1024


def _read_stdin() -> bytes:
    data = sys.stdin.buffer.read(STDIN_LIMIT + 1)
    if len(data) > STDIN_LIMIT:
        raise LabctlError(
            "more than 64 MiB on labctl exec's standard input",
            "copy a file that large with scp or rsync (labctl status says how to reach the guest)",
            ExitCode.USAGE,
        )
    return data


@app.command()
def down(
    lab: str = LabNameOpt,
    instance: str = InstanceOpt,
    keep_images: bool = typer.Option(
        True,
        "--keep-images/--remove-images",
        help="Keep the cached images (default), or remove the ones this lab uses that no "
        "other lab instance runs.",
    ),
    json_out: bool = tables.json_option("Print what was removed as JSON."),
) -> None:
    """Remove every guest, disk and network the lab instance created, and nothing else."""
    import time

    t0 = time.monotonic()

    def report(guest: str, step: str, detail: str) -> None:
        if not json_out:
            console.err.print(f"▸ {step} {guest} {detail}".rstrip())

    # the images it ran (its recorded VM profile), read before its state goes
    name = lab_name(lab)
    profile = instance_profile(InstanceDir(name, check_instance(instance)).load())
    removed = lab_down.down(name, check_instance(instance), report=report)
    forgotten: list[str] = []
    kept: dict[str, list[str]] = {}  # image -> the other instances that run it
    if not keep_images:
        from labctl.images.registry import store

        spec, _ = resolve_lab(lab)
        for other in saved_states():
            if (other.lab, other.instance) != (lab, instance):
                for image in images_of(other):
                    kept.setdefault(image, []).append(f"{other.lab} ({other.instance})")
        s = store()
        for image in sorted({image_of(g, profile) for g in spec.guests.values()}):
            if image in kept:
                report(image, "keep image", f"run by {', '.join(kept[image])}")
                continue
            s.forget(image)
            forgotten.append(image)
            report(image, "forget image", "")
    seconds = time.monotonic() - t0
    never = not InstanceDir(lab, instance).path.exists()  # down keeps an instance's directory
    if json_out:
        console.print_json(
            {
                "removed": removed,
                "seconds": round(seconds, 1),
                "found": not never,
                **({} if keep_images else {"images_removed": forgotten}),
            }
        )
    elif never:
        console.err.print(f"Nothing of lab {lab} (instance {instance}) is here: nothing removed.")
    else:
        console.err.print(
            f"Lab {lab} ({instance}) down in {seconds:.1f} s: "
            f"{tables.plural(len(removed), 'guest')} removed."
        )


@lab_app.command("validate")
def validate(
    lab_ref: str = typer.Argument(DEFAULT_LAB, metavar="LAB"),
    json_out: bool = tables.JsonOpt,
) -> None:
    """Check a lab file and its exercises; errors name the file, the line and the field."""
    from labctl.exercises.lab_exercises import of_lab

    lab, path = resolve_lab(lab_ref)
    found = of_lab(path, lab)
    left_out = [(e.id, list(need)) for e, need in found.left_out]
    if json_out:
        console.print_json(
            {
                "path": str(path),
                "lab": lab.name,
                "guests": list(lab.guests),
                "exercises": [e.id for e in found.exercises],
                "left_out": [{"exercise": e, "needs": need} for e, need in left_out],
            }
        )
        return
    console.out.print(
        f"{escape(str(path))}: valid lab {lab.name!r} with "
        f"{tables.plural(len(lab.guests), 'guest')} and "
        f"{tables.plural(len(found.exercises), 'exercise')}"
    )
    for exercise, need in left_out:
        console.out.print(
            f"  {exercise} is left out: it needs {', '.join(need)}, which this lab does not run"
        )


@lab_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of lab files (for editors)."""
    console.print_json(json_schema())
