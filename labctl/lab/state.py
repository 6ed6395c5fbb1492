"""The state file of a lab instance: what exists, written atomically, guarded by a lock."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from filelock import FileLock, Timeout

from labctl.errors import LabctlError
from labctl.paths import state_dir


@dataclass(frozen=True)
class GuestRecord:
    """What labctl knows about one guest after its last lifecycle step."""

    name: str
    engine: str
    resource: str
    stage: str = "planned"  # planned -> created -> started -> ready
    accel: str | None = None  # accelerator actually in use (kvm/tcg) for VMs
    accel_note: str | None = None  # why, when it is not what the spec asked for
    devices: str | None = None  # e.g. "ide + e1000 (emulated)"
    address: str | None = None
    port: int | None = None
    connect: str | None = None  # how a student reaches it
    console_log: str | None = None
    ready_seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class LabState:
    """A lab instance: its spec, its network and its guests."""

    lab: str
    instance: str
    spec_path: str
    subnet: str | None = None
    network: str | None = None
    bridge: str | None = None
    docker_network: str | None = None
    guests: dict[str, GuestRecord] = field(default_factory=dict)

    def with_guest(self, record: GuestRecord) -> LabState:
        """A copy with ``record`` replacing the guest of the same name."""
        return replace(self, guests={**self.guests, record.name: record})

    def to_json(self) -> str:
        """Serialise for the state file."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LabState:
        """Read a state file's content."""
        data = json.loads(text)
        data["guests"] = {k: GuestRecord(**v) for k, v in data.get("guests", {}).items()}
        return cls(**data)


class InstanceDir:
    """``<state>/<lab>-<instance>/``: key and progress (kept) and ``run/`` (removed by down)."""

    def __init__(self, lab: str, instance: str, root: Path | None = None) -> None:
        self.lab = lab
        self.instance = instance
        self.path = (root or state_dir()) / f"{lab}-{instance}"

    @property
    def run(self) -> Path:
        """Disks, console logs and the state file of the running lab."""
        return self.path / "run"

    @property
    def state_file(self) -> Path:
        """The state file."""
        return self.run / "state.json"

    @property
    def key(self) -> Path:
        """The lab's private SSH key."""
        return self.path / "id_ed25519"

    def load(self) -> LabState | None:
        """The saved state, or None when the lab is not up."""
        try:
            return LabState.from_json(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise LabctlError(
                f"state file {self.state_file} is damaged: {exc}",
                "run `labctl down` to remove what the lab created, then `labctl up`",
            ) from exc

    def save(self, state: LabState) -> None:
        """Write the state atomically (temp file + rename)."""
        self.run.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".state.{os.getpid()}.tmp")
        tmp.write_text(state.to_json())
        os.replace(tmp, self.state_file)

    @contextmanager
    def locked(self, wait: float = 30.0) -> Iterator[None]:
        """Hold the instance lock; a second labctl waits ``wait`` seconds, then refuses."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path / "lock"))
        try:
            lock.acquire(timeout=wait)
        except Timeout as exc:
            raise LabctlError(
                f"another labctl is working on lab {self.lab} (instance {self.instance})",
                "wait for it to finish, or use another --instance",
            ) from exc
        try:
            yield
        finally:
            lock.release()
