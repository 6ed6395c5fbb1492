"""``up`` and ``down`` as data: global stages, then per-guest steps run in parallel.

Every step's result is written to the state file at once, so an interrupted ``up`` resumes
where it stopped and ``down`` always knows what to remove. What must never change once
chosen (the networks' subnets, a VM's UUID and MAC, a published port) is reserved and
written before the engine object exists; a lost state file is rebuilt from what the engines
hold for the instance.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from labctl import backends, cancel
from labctl.backends.base import Backend, GuestPlan
from labctl.errors import ExitCode, LabctlError, ReadyTimeout
from labctl.images.cache import ImageStore
from labctl.keys import ensure_keypair
from labctl.lab import isolation, naming, plan
from labctl.lab.accel import KvmProbe
from labctl.lab.reservations import Reservations
from labctl.lab.state import GuestRecord, InstanceDir, LabState
from labctl.spec.model import Lab

UP_STAGES = ("validate", "preflight", "network", "guests")  # "waiting" first if locked
GUEST_STEPS = ("create", "start", "ready")

#: (guest, step, detail) -> None; guest "" means a lab-wide stage
Reporter = Callable[[str, str, str], None]


def _quiet(_guest: str, _step: str, _detail: str) -> None:
    pass


@dataclass(frozen=True)
class UpResult:
    """What ``up`` did."""

    state: LabState
    seconds: float
    already_up: bool
    failed: dict[str, str]


class _StateBox:
    """The lab state shared by worker threads; every change is saved at once."""

    def __init__(self, inst: InstanceDir, state: LabState) -> None:
        self.inst = inst
        self.state = state
        self._lock = threading.Lock()

    def put(self, record: GuestRecord) -> None:
        with self._lock:
            self.state = self.state.with_guest(record)
            self.inst.save(self.state)

    def set(self, state: LabState) -> None:
        with self._lock:
            self.state = state
            self.inst.save(self.state)


def _waiting(report: Reporter) -> Callable[[str], None]:
    """Say whom we wait for when another labctl holds the instance's lock."""
    return lambda holder: report("", "waiting", f"for {holder}")


def exit_code(errors: Iterable[LabctlError]) -> int:
    """TIMEOUT when every failure is a guest that never became ready, else the errors' code.

    Failures of different kinds (an engine refusal and a timeout, say) give ENGINE.
    """
    codes = {e.code for e in errors if not isinstance(e, ReadyTimeout)}
    if not codes:
        return ExitCode.TIMEOUT
    return codes.pop() if len(codes) == 1 else ExitCode.ENGINE


def _backends_for(lab: Lab) -> dict[str, Backend]:
    return {e: backends.get(e) for e in sorted({g.engine for g in lab.guests.values()})}


def up(
    lab: Lab,
    spec_path: Path,
    instance: str,
    store: ImageStore,
    probe: KvmProbe,
    *,
    require_kvm: bool = False,
    ready_timeout: int | None = None,
    report: Reporter = _quiet,
    sequential: bool = False,
) -> UpResult:
    """Bring every guest of ``lab`` to usable; idempotent and resumable.

    ``ready_timeout`` overrides the lab's (see :func:`plan.ready_timeout`); ``sequential``
    boots one guest after another (the naive baseline of ``bench/``).
    """
    started = time.monotonic()
    report("", "validate", f"lab {lab.name}, instance {instance}")
    timeout = plan.ready_timeout(lab, ready_timeout)
    plan.check_images(lab, store)
    accel = plan.accelerators(lab, probe, require_kvm)
    inst = InstanceDir(lab.name, instance)
    with inst.locked(command="labctl up", on_wait=_waiting(report)):
        previous = inst.load()
        engines = _backends_for(lab)
        report("", "preflight", ", ".join(engines))
        for backend in engines.values():
            backend.preflight()
        if previous is None:  # new, or its state file was lost: the engines know what exists
            held = _held(lab, instance, engines)
            if held:
                report("", "adopt", f"no state file: rebuilding it from {', '.join(held)}")
            fresh = [n for n in lab.guests if n not in held]  # held ones have memory and ports
            plan.check_memory(lab, plan.available_memory_mib(), only=fresh)
            plan.check_ports(lab, only=fresh)
        state = previous or LabState(lab.name, instance, str(spec_path.resolve()))
        key = ensure_keypair(inst.key, f"labctl-{lab.name}-{instance}")
        report("", "network", "")
        box = _StateBox(inst, state)
        book = Reservations()
        for backend in engines.values():  # reserved and saved before any network exists
            box.set(backend.reserve_network(box.state, lab, book))
        for backend in engines.values():
            box.set(backend.prepare(box.state, lab))
        bridges = [b for backend in engines.values() for b in backend.bridges(box.state)]
        isolation.apply(lab.name, instance, bridges)  # before any guest exists
        plans = _identify(
            list(lab.guests),
            box,
            engines,
            book,
            lambda st: plan.plans(lab, st, store, inst, key, accel),
            report,
        )
        report("", "guests", f"{len(plans)} guests")
        already = _all_running(box.state, plans, engines)
        failed = _bring_up(plans, engines, box, accel, timeout, report, sequential)
    messages = {g: e.message for g, e in failed.items()}
    result = UpResult(box.state, time.monotonic() - started, already and not failed, messages)
    if failed:
        lines = "\n".join(f"- {g}: {msg}" for g, msg in messages.items())
        raise LabctlError(
            f"{len(failed)} of {len(plans)} guests did not come up:\n{lines}",
            "the other guests were left running; fix the cause and run `labctl up` again",
            exit_code(failed.values()),
        )
    return result


def _held(lab: Lab, instance: str, engines: dict[str, Backend]) -> list[str]:
    """The lab's guests the engines hold for the instance (found by their labels)."""
    found = {r for backend in engines.values() for r in backend.list_guests(lab.name, instance)}
    return [n for n in lab.guests if naming.resource(lab.name, instance, n) in found]


def _identify(
    names: list[str],
    box: _StateBox,
    engines: dict[str, Backend],
    book: Reservations,
    make_plans: Callable[[LabState], dict[str, GuestPlan]],
    report: Reporter,
) -> dict[str, GuestPlan]:
    """Record the guests ``names`` with their lasting identities, then plan with them."""
    first = make_plans(box.state)
    for name in names:  # records in the lab's order, before anything exists
        p = first[name]
        old = box.state.guests.get(name) or GuestRecord(name, p.spec.engine, p.resource)
        rec = engines[p.spec.engine].identify(p, old, book)
        if old.host_port is not None and rec.host_port != old.host_port:
            report(
                "",
                "warning",
                f"{name}: 127.0.0.1:{old.host_port} is taken by another program; "
                f"{name} is now published on 127.0.0.1:{rec.host_port}",
            )
        box.put(rec)
    planned = make_plans(box.state)
    return {n: planned[n] for n in names}


def _all_running(state: LabState, plans: dict[str, GuestPlan], engines: dict[str, Backend]) -> bool:
    return all(
        (rec := state.guests.get(name)) is not None
        and rec.stage == "ready"
        and engines[p.spec.engine].state(p.resource) == "running"
        for name, p in plans.items()
    )


def _bring_up(
    plans: dict[str, GuestPlan],
    engines: dict[str, Backend],
    box: _StateBox,
    accel: dict[str, plan.AccelChoice],
    timeout: int,
    report: Reporter,
    sequential: bool,
) -> dict[str, LabctlError]:
    # TCG guests are CPU-bound: boot at most one per core at a time; containers are cheap.
    vm_slots = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
    failed: dict[str, LabctlError] = {}

    def one(name: str, p: GuestPlan) -> None:
        backend = engines[p.spec.engine]
        heavy = p.spec.engine == "libvirt"
        try:
            if heavy:
                vm_slots.acquire()
            try:
                _guest_up(name, p, backend, box, accel, timeout, report)
            finally:
                if heavy:
                    vm_slots.release()
        except LabctlError as exc:
            failed[name] = exc
            rec = box.state.guests.get(name)
            if rec is not None:
                box.put(replace(rec, error=exc.message))
            report(name, "failed", exc.message.splitlines()[0])

    pool = ThreadPoolExecutor(max_workers=1 if sequential else len(plans), thread_name_prefix="up")
    try:
        futures = [pool.submit(one, n, p) for n, p in plans.items()]
        for f in futures:
            f.result()
    except KeyboardInterrupt:
        cancel.CANCEL.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failed


def _guest_up(
    name: str,
    p: GuestPlan,
    backend: Backend,
    box: _StateBox,
    accel: dict[str, plan.AccelChoice],
    timeout: int,
    report: Reporter,
) -> None:
    t0 = time.monotonic()
    rec = box.state.guests.get(name)
    engine_state = backend.state(p.resource)
    if rec is not None and rec.stage == "ready" and engine_state == "running":
        report(name, "ready", "already running")
        return
    report(name, "create", "")
    rec = replace(backend.create(p), uuid=p.uuid, mac=p.mac, host_port=p.host_port)
    choice = accel.get(name)
    if choice is not None:
        rec = replace(rec, accel=choice.accel, accel_note=choice.note)
    box.put(rec)
    report(name, "start", "")
    backend.start(p)
    box.put(replace(rec, stage="started", error=None))
    report(name, "ready", "waiting")
    ready = backend.wait_ready(p, time.monotonic() + timeout)
    box.put(
        replace(
            rec,
            stage="ready",
            address=ready.address,
            port=ready.port,
            connect=ready.connect,
            ready_seconds=round(time.monotonic() - t0, 1),
            error=None,
        )
    )
    report(name, "done", f"{time.monotonic() - t0:.1f} s")


def down(lab_name: str, instance: str, report: Reporter = _quiet) -> list[str]:
    """Remove every guest and network of the instance; return the names removed."""
    inst = InstanceDir(lab_name, instance)
    removed: list[str] = []
    with inst.locked(command="labctl down", on_wait=_waiting(report)):
        state = inst.load() or LabState(lab_name, instance, "")
        engine_names = sorted({r.engine for r in state.guests.values()} or backends.engines())
        engines = {e: backends.get(e) for e in engine_names}
        # Whatever the engines hold under our prefix goes too: a crash may have left it
        # before the state file was written.
        targets: list[tuple[Backend, str]] = []
        for backend in engines.values():
            for name in backend.list_guests(lab_name, instance):
                targets.append((backend, name))
        for rec in state.guests.values():
            if (engines[rec.engine], rec.resource) not in targets:
                targets.append((engines[rec.engine], rec.resource))

        def destroy(item: tuple[Backend, str]) -> None:
            backend, name = item
            if backend.destroy(name):
                report(name, "removed", backend.engine)
                removed.append(name)

        with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
            list(pool.map(destroy, targets))
        isolation.forget(lab_name, instance)  # its guests are gone: nothing left to keep apart
        for backend in engines.values():
            report("", "cleanup", backend.engine)
            backend.cleanup(state)
        shutil.rmtree(inst.run, ignore_errors=True)
        Reservations().release(lab_name, instance)
    return removed


def recreate_guest(
    lab: Lab,
    spec_path: Path,
    instance: str,
    guest: str,
    store: ImageStore,
    probe: KvmProbe,
    report: Reporter = _quiet,
) -> GuestRecord:
    """Destroy one guest of a running instance and bring it up again, fresh from its image.

    The other guests are not touched. Used by ``labctl exercise reset`` to put a guest back
    into an exercise's starting state.
    """
    if guest not in lab.guests:
        known = ", ".join(lab.guests)
        raise LabctlError(f"no guest {guest!r} in lab {lab.name}", f"guests: {known}")
    plan.check_images(lab, store)
    accel = plan.accelerators(lab, probe, require_kvm=False)
    inst = InstanceDir(lab.name, instance)
    with inst.locked(command=f"labctl: recreating {guest}", on_wait=_waiting(report)):
        state = inst.load()
        if state is None:
            raise LabctlError(
                f"lab {lab.name} (instance {instance}) is not up",
                f"run: labctl up{'' if instance == 'main' else ' --instance ' + instance}",
            )
        backend = backends.get(lab.guests[guest].engine)
        backend.preflight()
        key = ensure_keypair(inst.key, f"labctl-{lab.name}-{instance}")
        report(guest, "destroy", "")
        backend.destroy(naming.resource(lab.name, instance, guest))  # with its disk: fresh
        box = _StateBox(inst, state)
        engines = {backend.engine: backend}
        plans = _identify(
            [guest],
            box,
            engines,
            Reservations(),
            lambda st: plan.plans(lab, st, store, inst, key, accel),
            report,
        )
        failed = _bring_up(
            plans,
            engines,
            box,
            accel,
            plan.ready_timeout(lab),
            report,
            sequential=True,
        )
    if failed:
        raise LabctlError(
            f"{guest} did not come up again: {failed[guest].message}",
            "run `labctl up` to retry",
            exit_code(failed.values()),
        )
    return box.state.guests[guest]
