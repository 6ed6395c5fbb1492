"""Each guest of an ``up`` brought up, in parallel: created, started and waited for, every
step recorded in the state file at once (``StateBox``), so an interrupted ``up`` resumes.

A guest already running and ready is left as it is; one given another lab key than this
one's is restarted where it learns keys only at boot (a VM); a guest whose name another
instance's guest holds is refused, never used (``refuse_foreign``).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace

from labctl import cancel
from labctl.backends.base import BOOTED, RESTORED, RESUMED, RUNNING, Backend, GuestPlan, Started
from labctl.errors import EngineError, HostError, LabctlError, ReadyTimeout
from labctl.instance.state import GuestRecord, LabState
from labctl.lab import plan
from labctl.private import SavedState
from labctl.stages import Reporter


class StateBox(SavedState[LabState]):
    """The lab state shared by worker threads; every change is saved at once."""

    def put(self, record: GuestRecord) -> None:
        self.change(lambda state: state.with_guest(record))

    def set(self, state: LabState) -> None:
        self.change(lambda _: state)


def refuse_foreign(backend: Backend, resource: str, lab: str, instance: str) -> None:
    """An engine's guest named as one of ours but made for another (see Backend.foreign)."""
    whose = backend.foreign(resource, lab, instance)
    if whose is not None:
        raise EngineError(
            f"{backend.daemon()} already has a guest named {resource}, {whose}: "
            f"lab {lab} (instance {instance}) neither uses nor removes it",
            "names are labctl-LAB-INSTANCE-GUEST, so names with dashes can meet: give this "
            f"instance another name (--instance); or, if nothing needs {resource}, remove it "
            "and run the same command again",
        )


def needs_key(rec: GuestRecord | None, key_id: str) -> bool:
    """The guest was given another lab key than this one (None: not known, taken as this)."""
    return rec is not None and rec.key_id not in (None, key_id)


def known_boot(rec: GuestRecord) -> float | None:
    """A whole boot the record knows: its own, or its ready time when up booted it (a record
    written before boot_seconds existed)."""
    return rec.boot_seconds or (rec.ready_seconds if rec.started == BOOTED else None)


def bring_up(
    plans: dict[str, GuestPlan],
    engines: dict[str, Backend],
    box: StateBox,
    accel: dict[str, plan.AccelChoice],
    timeout: int,
    report: Reporter,
    sequential: bool,
    key_id: str,
) -> dict[str, LabctlError]:
    # TCG guests are CPU-bound: boot at most one per core at a time; containers are cheap.
    vm_slots = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
    failed: dict[str, LabctlError] = {}

    def one(name: str) -> None:
        p = plans[name]
        backend = engines[p.engine]
        heavy = p.engine == "libvirt"
        try:
            if heavy:
                vm_slots.acquire()
            try:
                _guest_up(name, p, backend, box, accel, timeout, report, key_id)
            finally:
                if heavy:
                    vm_slots.release()
        except (LabctlError, OSError) as exc:
            # A full disk or a file the host refuses fails this guest, as an engine would.
            error = exc if isinstance(exc, LabctlError) else HostError(f"{name}: {exc}")
            failed[name] = error
            # recorded with its error, for status (a guest another instance's holds has none)
            rec = box.state.guests.get(name) or GuestRecord(name, p.engine, p.resource)
            box.put(replace(rec, error=error.message))
            report(name, "failed", error.message.splitlines()[0])

    cancel.in_parallel(one, list(plans), 1 if sequential else len(plans), "up")
    return failed


def _guest_up(
    name: str,
    p: GuestPlan,
    backend: Backend,
    box: StateBox,
    accel: dict[str, plan.AccelChoice],
    timeout: int,
    report: Reporter,
    key_id: str,
) -> None:
    t0 = time.monotonic()
    rec = before = box.state.guests.get(name)
    engine_state = backend.state(p.resource)
    if engine_state != "absent":
        refuse_foreign(backend, p.resource, p.lab, p.instance)
    new_key = needs_key(rec, key_id)
    if new_key and engine_state in ("running", "paused") and backend.key_at_boot:
        report(name, "stop", "it learns the new lab key when it boots")
        backend.power_off(p.resource)
        t0 = time.monotonic()  # its start is timed, not the power-off
    elif rec is not None and rec.stage == "ready" and engine_state == "running" and not new_key:
        outdated = backend.outdated(p)
        known = known_boot(rec)
        if (outdated, known) != (rec.outdated, rec.boot_seconds):  # and a record of before
            box.put(replace(rec, outdated=outdated, boot_seconds=known))
        report(name, "ready", "already running" + (", defined before a change" if outdated else ""))
        return
    cancel.check()  # Ctrl-C: no new engine work starts (what runs gives up at its next check)
    report(name, "create", backend.creating(p) or "")
    had = before.key_id if before is not None else None  # until it is given this one
    rec = replace(backend.create(p), uuid=p.uuid, mac=p.mac, host_port=p.host_port, key_id=had)
    choice = accel.get(name)
    if choice is not None:
        rec = replace(rec, accel=choice.accel, accel_note=choice.note)
    box.put(rec)
    cancel.check()
    report(name, "start", "")
    started = backend.start(p)
    # running already (create left it as it was): its definition may predate a change
    outdated = backend.outdated(p) if started.how in (RUNNING, RESUMED) else None
    if started.how == RUNNING and before is not None and before.started:  # an earlier up did
        started = Started(before.started, before.start_note, known_boot(before))
    rec = replace(rec, started=started.how, start_note=started.note, outdated=outdated)
    box.put(replace(rec, stage="started", error=None))
    report(name, "ready", f"{started.how}, waiting")
    deadline = time.monotonic() + timeout
    try:
        ready = backend.wait_ready(p, deadline)
    except ReadyTimeout as exc:
        if time.monotonic() < deadline:  # refused at once (a key): no bound to blame
            raise
        raise ReadyTimeout(
            f"not ready within {timeout} s (the lab's ready_timeout, or --ready-timeout): "
            f"{exc.message}",
            exc.hint,
        ) from exc
    seconds = round(time.monotonic() - t0, 1)
    boot = started.boot_seconds
    if boot is None and started.how == BOOTED:
        boot = seconds  # this start was a whole boot
    if boot is None and before is not None:
        boot = before.boot_seconds  # resumed, or found running: its boot is as it was
    # a VM learns the key only when it boots (or is restored, given it by its settings)
    given = not backend.key_at_boot or started.how in (BOOTED, RESTORED)
    box.put(
        replace(
            rec,
            stage="ready",
            address=ready.address,
            port=ready.port,
            connect=ready.connect,
            ready_seconds=seconds,
            boot_seconds=boot,
            key_id=key_id if given else rec.key_id,  # else still the one it had
            error=None,
        )
    )
    report(name, "done", f"{started.how}, {time.monotonic() - t0:.1f} s")


__all__ = ["StateBox", "bring_up", "known_boot", "needs_key", "refuse_foreign"]
