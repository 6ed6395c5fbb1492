"""What a running lab looks like now: the state file checked against the engines."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from labctl import backends
from labctl.errors import ExitCode, LabctlError
from labctl.instance.state import GuestRecord, InstanceDir, LabState, NotUp


@dataclass(frozen=True)
class GuestStatus:
    """One row of ``labctl status``."""

    guest: str
    engine: str  # the daemon that runs it now: libvirt, docker, podman, lxd or incus
    state: str  # running / paused / stopped / absent, as the engine says now
    accel: str | None  # accelerator QEMU reports for a running VM (kvm/tcg)
    accel_note: str | None
    devices: str | None
    address: str | None
    connect: str | None
    ready_seconds: float | None
    started: str | None  # how up last started it (booted, restored, resumed, running)
    boot_seconds: float | None  # a whole boot measured here (GuestRecord.boot_seconds)
    start_note: str | None
    outdated: str | None  # how it differs from what the lab defines now (see Backend.outdated)
    error: str | None


def load(lab: str, instance: str) -> tuple[InstanceDir, LabState]:
    """The instance's state, or an error saying the lab is not up."""
    inst = InstanceDir(lab, instance)
    state = inst.load()
    if state is None:
        raise NotUp(lab, instance)
    return inst, state


def record(state: LabState, guest: str) -> GuestRecord:
    """The record of ``guest``, or an error listing the lab's guests."""
    try:
        return state.guests[guest]
    except KeyError:
        known = ", ".join(state.guests) or "none"
        close = difflib.get_close_matches(guest, list(state.guests), n=1)
        said = (f"did you mean {close[0]}? " if close else "") + f"guests: {known}"
        said_es = (f"¿querías decir {close[0]}? " if close else "") + f"invitados: {known}"
        raise LabctlError(
            f"no guest {guest!r} in lab {state.lab}",
            said,
            ExitCode.USAGE,
            es=(f"no hay ningún invitado {guest!r} en el laboratorio {state.lab}", said_es),
        ) from None


def status(state: LabState) -> list[GuestStatus]:
    """Ask each engine about each guest of the lab."""
    rows = []
    for rec in state.guests.values():
        backend = backends.get(rec.engine)
        live = backend.state(rec.resource)
        # the daemon answering now: one lab file's "lxd" guest runs on LXD or on Incus
        accel = rec.accel
        if live == "running":  # what the engine says wins over what up chose
            accel = backend.accelerator(rec.resource) or accel
        rows.append(
            GuestStatus(
                guest=rec.name,
                engine=backend.daemon(),
                state=live,
                accel=accel,
                accel_note=rec.accel_note,
                devices=rec.devices,
                # a guest removed behind labctl's back has no address; one not running
                # cannot be connected to
                address=rec.address if live != "absent" else None,
                connect=rec.connect if live == "running" else None,
                ready_seconds=rec.ready_seconds,
                started=rec.started,
                boot_seconds=rec.boot_seconds,
                start_note=rec.start_note,
                outdated=rec.outdated if live == "running" else None,
                error=rec.error,
            )
        )
    return rows
