"""A class's lab hosts, as the controller last saw them: ``<class dir>/fleet.json``.

Written before anything is created on any host and after every stage, so a rerun of ``class
up --hosts`` knows which hosts are ready, which failed (at which stage, why) and where each
student's lab is (``Seat.host`` in the class state).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from labctl.classroom.state import ClassDir
from labctl.private import private_dir, read_saved, write_private

PENDING, READY, FAILED = "pending", "ready", "failed"


@dataclass(frozen=True)
class HostRecord:
    """One lab host: how to reach it, and how far ``class up`` got there."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    status: str = PENDING  # pending -> ready | failed
    stage: str | None = None  # the stage it failed at
    error: str | None = None
    fits: int | None = None  # more students it can take, from its own ``class plan``
    done: tuple[str, ...] = ()  # stages completed on it (setup, install, images, ...)

    def failed_at(self, stage: str, error: str) -> HostRecord:
        """This host, failed at ``stage`` for ``error``."""
        return replace(self, status=FAILED, stage=stage, error=error)


@dataclass(frozen=True)
class FleetState:
    """The inventory a class was placed with, and each of its hosts."""

    inventory: str
    lab_ref: str  # the lab as each host names it (the shipped lab directory)
    hosts: dict[str, HostRecord] = field(default_factory=dict)
    install_key: str | None = None

    def with_host(self, host: HostRecord) -> FleetState:
        """A copy with ``host`` replaced."""
        return replace(self, hosts={**self.hosts, host.name: host})

    @property
    def failed(self) -> list[str]:
        """The hosts that failed, by name."""
        return [h for h, r in self.hosts.items() if r.status == FAILED]

    def to_json(self) -> str:
        """Serialise for the file."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> FleetState:
        """Read the file's content."""
        data = json.loads(text)
        data["hosts"] = {
            k: HostRecord(**{**v, "done": tuple(v.get("done", ()))})
            for k, v in data.get("hosts", {}).items()
        }
        return cls(**data)


def fleet_path(folder: ClassDir) -> Path:
    """Where a class keeps its lab hosts."""
    return folder.root / "fleet.json"


def load(folder: ClassDir) -> FleetState | None:
    """The class's hosts, or None for a class on this host alone."""
    return read_saved(
        fleet_path(folder),
        FleetState.from_json,
        f"fleet file {fleet_path(folder)}",
        "it lists the class's lab hosts: restore it, or take the labs down on each host "
        f"(labctl class down --class {folder.name} there)",
    )


def save(folder: ClassDir, state: FleetState) -> None:
    """Write atomically, root only."""
    private_dir(folder.root)
    write_private(fleet_path(folder), state.to_json())


def forget(folder: ClassDir) -> None:
    """The class is down on every host."""
    fleet_path(folder).unlink(missing_ok=True)
