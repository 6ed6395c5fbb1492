"""``class down`` of a class over several lab hosts: every host cleaned, then forgotten here.

With ``forget`` each host runs ``class down --forget`` (its own store's records go), and this
controller's copy of a student's records (``fleet.status.collect``) goes once their host is
clean; a host left keeps its students' records here too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from labctl.classroom import forget as records
from labctl.classroom.state import ClassDir
from labctl.fleet import state as fleet_state
from labctl.fleet.remote import REMOTE_LABCTL, REMOTE_STATE, Runner, remote_dir
from labctl.fleet.state import FleetState
from labctl.stages import Reporter, quiet
from labctl.store import Forgotten


@dataclass(frozen=True)
class FleetDownResult:
    """What ``class down`` did on each host."""

    name: str
    cleaned: tuple[str, ...]
    left: dict[str, str]  # host -> why its labs are still there
    forgotten: Forgotten | None = None  # this controller's records removed (None: not asked)

    @property
    def complete(self) -> bool:
        """Every host is clean."""
        return not self.left


def script(name: str, forget: bool = False) -> str:
    """What each host runs: its part of the class down (``forget``: its records too).

    ``--yes``: Ansible's SSH gives the command a terminal, on which class down would ask
    a question nobody is there to answer (the controller asked before)."""
    state = f"{REMOTE_STATE}/classes/{name}/class.json"
    there = f"test -e {state}"
    if forget:  # a host whose class went before still holds its students' records
        there += f" || test -x {REMOTE_LABCTL}"
        command = f"{REMOTE_LABCTL} class down --class {name} --yes --forget"
    else:
        command = f"{REMOTE_LABCTL} class down --class {name} --yes"
    return f"if {there}; then {command}; fi && rm -rf {remote_dir(name)}"


def _forget_here(folder: ClassDir, left: dict[str, str]) -> Forgotten:
    """This controller's records of the students whose host is clean (and of the class's
    seats whose labs went before)."""
    cls = folder.load()
    gone, held = [], set()
    if cls is not None:
        seats = cls.seats.values()
        gone = [records.Target(s.student, cls.lab, s.instance) for s in seats if s.host not in left]
        held = {s.student for s in seats}
    earlier = records.went_before(folder.name, here=held)
    return records.forget(folder.name, gone + earlier)


def down(
    folder: ClassDir,
    fleet: FleetState,
    run: Runner,
    report: Reporter = quiet,
    forget: bool = False,
) -> FleetDownResult:
    """Take the class down on every host it used, and forget it here once all are clean."""
    name = folder.name
    with folder.locked("labctl class down --hosts"):
        result = run(list(fleet.hosts), module="shell", args=script(name, forget))
        left = {}
        for host, o in result.hosts.items():
            if o.ok:
                report(host, "done", "nothing of the class is left")
            else:
                left[host] = o.failure
                report(host, "failed", left[host].splitlines()[0])
        cleaned = tuple(h for h in fleet.hosts if h not in left)
        forgotten = _forget_here(folder, left) if forget else None
        if left:
            kept = {h: r for h, r in fleet.hosts.items() if h in left}
            fleet_state.save(folder, replace(fleet, hosts=kept))
            cls = folder.load()
            if cls is not None:
                folder.save(
                    replace(cls, seats={k: v for k, v in cls.seats.items() if v.host in left})
                )
            return FleetDownResult(name, cleaned, left, forgotten)
        files = folder.root / "fleet-files"
        if files.is_dir():
            for child in files.iterdir():
                child.unlink()
            files.rmdir()
        fleet_state.forget(folder)  # the rest of the folder goes with the class (below)
    folder.remove()
    return FleetDownResult(name, cleaned, {}, forgotten)
