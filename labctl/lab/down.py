"""``labctl down`` as data: a stage list run by :mod:`labctl.stages`.

Whatever the engines hold under the instance's names goes, whether or not the state file
(:mod:`labctl.lab.lifecycle` writes it at every step of ``up``) still names it; a guest named
as this instance's but labelled as another's is left where it is.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from labctl import backends
from labctl.backends.base import Backend
from labctl.instance import isolation
from labctl.instance.reservations import Reservations
from labctl.instance.state import InstanceDir, LabState
from labctl.lab.lifecycle import waiting
from labctl.stages import Reporter, Stage, execute
from labctl.stages import quiet as _quiet


@dataclass
class _Down:
    """What ``down``'s stages share."""

    lab: str
    instance: str
    report: Reporter
    state: LabState | None = None
    engines: dict[str, Backend] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    @property
    def inst(self) -> InstanceDir:
        return InstanceDir(self.lab, self.instance)


def _down_lock(c: _Down) -> AbstractContextManager[object]:
    return c.inst.locked(command="labctl down", on_wait=waiting(c.report))


def _read_state(c: _Down) -> None:
    c.state = c.inst.load() or LabState(c.lab, c.instance, "")
    used = {r.engine for r in c.state.guests.values()}
    # a network is saved before any guest record: its engine must clean up too
    nets = {
        "libvirt": c.state.network,
        "lxd": c.state.lxd_network,
        "docker": c.state.docker_network,
        "podman": c.state.podman_network,
    }
    used |= {engine for engine, net in nets.items() if net}
    names = sorted(used or backends.engines_here())
    c.engines = {e: backends.get(e) for e in names}


def _destroy_guests(c: _Down) -> None:
    assert c.state is not None
    # Whatever the engines hold under our prefix goes too: a crash may have left it before
    # the state file was written.
    targets: list[tuple[Backend, str]] = []
    for backend in c.engines.values():
        for name in backend.list_guests(c.lab, c.instance):
            targets.append((backend, name))
    for rec in c.state.guests.values():
        backend = c.engines[rec.engine]
        if (backend, rec.resource) in targets:
            continue
        whose = backend.foreign(rec.resource, c.lab, c.instance)
        if whose is None:  # gone already, or ours without our labels' listing
            targets.append((backend, rec.resource))
        else:  # named as ours, made for another: left as it is
            c.report(rec.resource, "kept", f"{whose}: not this instance's")

    def destroy(item: tuple[Backend, str]) -> None:
        backend, name = item
        if backend.destroy(name):
            c.report(name, "removed", backend.engine)
            c.removed.append(name)

    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        list(pool.map(destroy, targets))


def _remove_networks(c: _Down) -> None:
    assert c.state is not None
    isolation.forget(c.lab, c.instance)  # its guests are gone: nothing left to keep apart
    for backend in c.engines.values():
        c.report("", "cleanup", backend.engine)
        backend.cleanup(c.state)


def _forget_instance(c: _Down) -> None:
    shutil.rmtree(c.inst.run, ignore_errors=True)
    Reservations().release(c.lab, c.instance)


#: ``labctl down``: every guest, network, rule and reservation of the instance, nothing else.
DOWN_STAGES: tuple[Stage[_Down], ...] = (
    Stage("lock", hold=_down_lock, silent=True),
    Stage("read state", _read_state, silent=True),
    Stage("guests", _destroy_guests, silent=True),
    Stage("networks", _remove_networks, silent=True),
    Stage("forget", _forget_instance, silent=True),
)


def down(lab_name: str, instance: str, report: Reporter = _quiet) -> list[str]:
    """Remove every guest and network of the instance; return the names removed.

    An instance never seen here (no directory, no guest in any engine, no reservation, no
    firewall element) is left alone: not even a lock file is made for it. A subnet is
    reserved before its network is made, so a network left behind has its reservation.
    """
    c = _Down(lab_name, instance, report)
    if not (
        c.inst.path.exists()
        or Reservations().holds(lab_name, instance)
        or not isolation.owned(lab_name, instance).empty
        or any(backends.get(e).list_guests(lab_name, instance) for e in backends.engines_here())
    ):
        return []
    return execute(DOWN_STAGES, c, report).removed
