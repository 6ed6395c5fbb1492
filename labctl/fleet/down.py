"""``class down`` of a class over several lab hosts: every host cleaned, then forgotten here."""

from __future__ import annotations

from dataclasses import dataclass, replace

from labctl.classroom.state import ClassDir
from labctl.fleet import state as fleet_state
from labctl.fleet.remote import REMOTE_LABCTL, REMOTE_STATE, Runner, remote_dir
from labctl.fleet.state import FleetState
from labctl.stages import Reporter, quiet


@dataclass(frozen=True)
class FleetDownResult:
    """What ``class down`` did on each host."""

    name: str
    cleaned: tuple[str, ...]
    left: dict[str, str]  # host -> why its labs are still there

    @property
    def complete(self) -> bool:
        """Every host is clean."""
        return not self.left


def down(
    folder: ClassDir, fleet: FleetState, run: Runner, report: Reporter = quiet
) -> FleetDownResult:
    """Take the class down on every host it used, and forget it here once all are clean."""
    name = folder.name
    remote = remote_dir(name)
    state = f"{REMOTE_STATE}/classes/{name}/class.json"
    script = (
        f"if test -e {state}; then {REMOTE_LABCTL} class down --class {name}; fi && rm -rf {remote}"
    )
    with folder.locked("labctl class down --hosts"):
        result = run(list(fleet.hosts), module="shell", args=script)
        left = {}
        for host, o in result.hosts.items():
            if o.ok:
                report(host, "done", "nothing of the class is left")
            else:
                left[host] = o.failure
                report(host, "failed", left[host].splitlines()[0])
        cleaned = tuple(h for h in fleet.hosts if h not in left)
        if left:
            kept = {h: r for h, r in fleet.hosts.items() if h in left}
            fleet_state.save(folder, replace(fleet, hosts=kept))
            cls = folder.load()
            if cls is not None:
                folder.save(
                    replace(cls, seats={k: v for k, v in cls.seats.items() if v.host in left})
                )
            return FleetDownResult(name, cleaned, left)
        files = folder.root / "fleet-files"
        if files.is_dir():
            for child in files.iterdir():
                child.unlink()
            files.rmdir()
        fleet_state.forget(folder)  # the rest of the folder goes with the class (below)
    folder.remove()
    return FleetDownResult(name, cleaned, {})
