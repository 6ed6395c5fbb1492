"""``up`` and a guest's re-creation as data: stage lists run by :mod:`labctl.stages`
(``down``'s are in :mod:`labctl.lab.down`).

``up``'s last stage brings every guest up in parallel (create, start, ready: ``guest_up``).

Every step's result is written to the state file at once, so an interrupted ``up`` resumes
where it stopped and ``down`` always knows what to remove. What must never change once
chosen (the networks' subnets, a VM's UUID and MAC, a published port) is reserved and
written before the engine object exists; a lost state file is rebuilt from what the engines
hold for the instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path

from labctl import backends
from labctl.backends.base import Backend, GuestPlan
from labctl.errors import ExitCode, LabctlError, ReadyTimeout
from labctl.images.cache import ImageStore
from labctl.instance import isolation, naming
from labctl.instance.reservations import Reservations
from labctl.instance.state import GuestRecord, InstanceDir, LabState, NotUp, up_command
from labctl.keys import KeyPair, ensure_keypair
from labctl.lab import plan
from labctl.lab.accel import KvmProbe
from labctl.lab.guest_up import StateBox, bring_up, needs_key, refuse_foreign
from labctl.paths import vm_profile
from labctl.private import Damaged
from labctl.spec.model import Lab
from labctl.stages import Reporter, Stage, execute
from labctl.stages import quiet as _quiet

__all__ = ["RECREATE_STAGES", "UP_STAGES", "Reporter", "UpResult", "up"]


@dataclass(frozen=True)
class UpResult:
    """What ``up`` did."""

    state: LabState
    seconds: float
    already_up: bool
    failed: dict[str, str]


def waiting(report: Reporter) -> Callable[[str], None]:
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


@dataclass
class _Up:
    """What ``up``'s stages share; filled in stage by stage."""

    lab: Lab
    spec_path: Path
    instance: str
    store: ImageStore
    probe: KvmProbe
    report: Reporter
    require_kvm: bool = False
    ready_timeout: int | None = None
    sequential: bool = False
    only: list[str] | None = None  # recreate_guest: just these guests, after destroying them
    timeout: int = 0
    accel: dict[str, plan.AccelChoice] = field(default_factory=dict)
    engines: dict[str, Backend] = field(default_factory=dict)
    box: StateBox | None = None
    key: KeyPair | None = None
    plans: dict[str, GuestPlan] = field(default_factory=dict)
    already: bool = False
    failed: dict[str, LabctlError] = field(default_factory=dict)
    profile: str = "debian"  # the VM profile: recorded by the instance, else this host's

    @property
    def inst(self) -> InstanceDir:
        return InstanceDir(self.lab.name, self.instance)

    @property
    def names(self) -> list[str]:
        return self.only if self.only is not None else list(self.lab.guests)

    @property
    def state(self) -> StateBox:
        assert self.box is not None, "the preflight stage opened the state"
        return self.box


def _validate(c: _Up) -> None:
    c.timeout = plan.ready_timeout(c.lab, c.ready_timeout)
    try:
        saved = c.inst.load()
    except Damaged:
        saved = None  # the preflight sets it aside, under the instance's lock
    c.profile = plan.instance_profile(saved)
    if c.profile != vm_profile():
        c.report(
            "",
            "warning",
            f"instance {c.instance} keeps the {c.profile} VM images it came up "
            "with (labctl down, then up, to change)",
        )
    plan.check_engines(c.lab)
    for image in plan.check_images(c.lab, c.store, c.profile):
        c.report("", "warning", f"image {image} is older than its recipe: labctl images build")
    c.accel = plan.accelerators(c.lab, c.probe, c.require_kvm)


def _lock(command: str) -> Callable[[_Up], AbstractContextManager[object]]:
    return lambda c: c.inst.locked(command=command, on_wait=waiting(c.report))


def _preflight(c: _Up) -> None:
    names = {c.lab.guests[n].engine for n in c.names}
    c.engines = {e: backends.get(e) for e in sorted(names)}
    for backend in c.engines.values():
        backend.preflight()
    try:
        previous = c.inst.load()
    except Damaged as exc:  # the engines still know what runs: set it aside, adopt them
        if c.only is not None:
            raise  # an exercise's reset: its hint says that labctl up mends it
        aside = c.inst.state_file.with_name(f"state.json.damaged-{int(time.time())}")
        c.inst.state_file.rename(aside)
        c.report("", "adopt", f"{exc.message}; kept as {aside.name}")
        previous = None
    if previous is None and c.only is not None:
        raise NotUp(c.lab.name, c.instance)
    if previous is None:  # new, or its state file was lost: the engines know what exists
        held = _held(c.lab, c.instance, c.engines)
        if held:
            c.report("", "adopt", f"no state file: rebuilding it from {', '.join(held)}")
        fresh = [n for n in c.lab.guests if n not in held]  # held ones have memory and ports
        plan.check_memory(c.lab, plan.available_memory_mib(), only=fresh)
        plan.check_ports(c.lab, only=fresh)
    state = previous or LabState(c.lab.name, c.instance, str(c.spec_path.resolve()))
    if state.vm_profile is None:  # new (or recorded before profiles existed)
        state = replace(state, vm_profile=c.profile)
    if state.guests and not c.inst.key.is_file():  # the guests know only the lost key
        c.report("", "key", "the lab key is gone: a new one goes to every guest")
        lost = {n: replace(r, key_id=LOST_KEY) for n, r in state.guests.items()}
        state = replace(state, guests=lost)
        c.inst.save(state)  # until each guest has the new key, whatever stops this run
    c.key = ensure_keypair(c.inst.key, f"labctl-{c.lab.name}-{c.instance}")
    c.box = StateBox(state, c.inst.save)


LOST_KEY = "lost"  # GuestRecord.key_id of a guest whose lab key is gone


def _network(c: _Up) -> None:
    book = Reservations()
    box = c.state
    for backend in c.engines.values():  # reserved and saved before any network exists
        box.set(backend.reserve_network(box.state, c.lab.network.pool, book))
    for backend in c.engines.values():
        box.set(backend.prepare(box.state))
    bridges = [b for backend in c.engines.values() for b in backend.bridges(box.state)]
    isolation.apply(c.lab.name, c.instance, bridges)  # before any guest exists


def _destroy_chosen(c: _Up) -> None:
    for name in c.names:  # with its disk: a fresh start from the image
        c.report(name, "destroy", "")
        engine = c.engines[c.lab.guests[name].engine]
        resource = naming.resource(c.lab.name, c.instance, name)
        refuse_foreign(engine, resource, c.lab.name, c.instance)
        engine.destroy(resource)


def _identify_guests(c: _Up) -> None:
    assert c.key is not None
    key = c.key
    c.plans = _identify(
        c.names,
        c.state,
        c.engines,
        Reservations(),
        lambda st: plan.plans(c.lab, st, c.store, c.inst, key, c.accel),
        c.report,
    )
    ports = [r.host_port for r in c.state.state.guests.values() if r.host_port is not None]
    isolation.publish(c.lab.name, c.instance, ports)  # students reach only their own
    owner = c.inst.owner()
    if owner is not None and owner.uid is not None:  # class mode: the student's own lab again
        isolation.admit(c.lab.name, c.instance, owner.uid)


def _guests(c: _Up) -> None:
    assert c.key is not None
    c.already = _all_running(c.state.state, c.plans, c.engines, c.key.id)
    c.failed = bring_up(
        c.plans,
        c.engines,
        c.state,
        c.accel,
        c.timeout,
        c.report,
        c.sequential or bool(c.only),
        c.key.id,
    )


def _engines_named(c: _Up) -> str:
    return ", ".join(sorted({c.lab.guests[n].engine for n in c.names}))


#: ``labctl up``: converge the instance to "every guest usable", from whatever it finds.
UP_STAGES: tuple[Stage[_Up], ...] = (
    Stage("validate", _validate, describe=lambda c: f"lab {c.lab.name}, instance {c.instance}"),
    Stage("lock", hold=_lock("labctl up"), silent=True),
    Stage("preflight", _preflight, describe=_engines_named),
    Stage("network", _network, describe=lambda c: "one per engine, kept from other instances"),
    Stage("identify", _identify_guests, silent=True),
    Stage("guests", _guests, describe=lambda c: f"{len(c.names)} guest{'s' * (len(c.names) != 1)}"),
)


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
    c = _Up(lab, spec_path, instance, store, probe, report, require_kvm, ready_timeout, sequential)
    execute(UP_STAGES, c, report)
    messages = {g: e.message for g, e in c.failed.items()}
    result = UpResult(
        c.state.state, time.monotonic() - started, c.already and not c.failed, messages
    )
    if c.failed:
        lines = "\n".join(f"- {g}: {msg}" for g, msg in messages.items())
        advice = [f"{g}: {e.hint}" for g, e in c.failed.items() if e.hint]  # each guest's own
        raise LabctlError(
            f"{len(c.failed)} of {len(c.plans)} guests did not come up:\n{lines}",
            "; ".join(
                [
                    *advice,
                    "the other guests were left running; fix the cause and run "
                    f"{up_command(c.lab.name, c.instance, str(c.spec_path))} again",
                ]
            ),  # fmt: skip
            exit_code(c.failed.values()),
        )
    return result


def _held(lab: Lab, instance: str, engines: dict[str, Backend]) -> list[str]:
    """The lab's guests the engines hold for the instance (found by their labels)."""
    found = {r for backend in engines.values() for r in backend.list_guests(lab.name, instance)}
    return [n for n in lab.guests if naming.resource(lab.name, instance, n) in found]


def _identify(
    names: list[str],
    box: StateBox,
    engines: dict[str, Backend],
    book: Reservations,
    make_plans: Callable[[LabState], dict[str, GuestPlan]],
    report: Reporter,
) -> dict[str, GuestPlan]:
    """Record the guests ``names`` with their lasting identities, then plan with them.

    A guest whose name another instance's guest holds gets none: its port, UUID or MAC
    would be taken from that one (its ``up`` then refuses it, see :func:`refuse_foreign`).
    """
    first = make_plans(box.state)
    for name in names:  # records in the lab's order, before anything exists
        p = first[name]
        if engines[p.engine].foreign(p.resource, p.lab, p.instance) is not None:
            continue
        old = box.state.guests.get(name) or GuestRecord(name, p.engine, p.resource)
        rec = engines[p.engine].identify(p, old, book)
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


def _all_running(
    state: LabState, plans: dict[str, GuestPlan], engines: dict[str, Backend], key_id: str
) -> bool:
    return all(
        (rec := state.guests.get(name)) is not None
        and rec.stage == "ready"
        and not needs_key(rec, key_id)
        and engines[p.engine].state(p.resource) == "running"
        for name, p in plans.items()
    )


#: ``labctl exercise reset``: one guest destroyed with its disk and brought up again.
RECREATE_STAGES: tuple[Stage[_Up], ...] = (
    Stage("validate", _validate, silent=True),
    Stage("lock", hold=lambda c: _lock(f"labctl: recreating {', '.join(c.names)}")(c), silent=True),
    Stage("preflight", _preflight, silent=True),
    Stage("destroy", _destroy_chosen, silent=True),
    Stage("identify", _identify_guests, silent=True),
    Stage("guests", _guests, silent=True),
)


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
        raise LabctlError(
            f"no guest {guest!r} in lab {lab.name}", f"guests: {known}", ExitCode.USAGE
        )
    c = _Up(lab, spec_path, instance, store, probe, report, only=[guest])
    execute(RECREATE_STAGES, c, report)
    if c.failed:
        raise LabctlError(
            f"{guest} did not come up again: {c.failed[guest].message}",
            f"run {up_command(lab.name, instance, str(spec_path))} to retry",
            exit_code(c.failed.values()),
        )
    return c.state.state.guests[guest]
