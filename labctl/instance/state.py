"""The state file of a lab instance: what exists, written atomically, guarded by a lock.

Everything under an instance's directory (state, disks, key, progress) is readable by root
only. Whoever holds the lock writes its pid and command beside it, so a second labctl can
say whom it is waiting for.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from labctl.errors import ExitCode, LabctlError
from labctl.instance.naming import DEFAULT_LAB
from labctl.paths import LABS_DIR, known_labs, shown, state_dir, within
from labctl.private import locked, private_dir, read_saved, write_private


class NotUp(LabctlError):
    """The lab instance has no state file: nothing of it runs. Exit 2: nothing could run."""

    code = ExitCode.NOTHING_RAN

    def __init__(self, lab: str, instance: str, consequence: tuple[str, str] = ("", "")) -> None:
        """``consequence``: what follows, in English and Spanish (": nothing to check")."""
        states = list(saved_states())
        elsewhere = sorted(s.lab for s in states if s.instance == instance and s.lab != lab)
        up = up_command(lab, instance)
        hint, hint_es = f"run: {up}", f"ejecuta: {up}"
        labs = sorted({*known_labs(), *(s.lab for s in states)})
        close = difflib.get_close_matches(lab, labs, n=1) if lab not in labs else []
        if close:  # a lab's name mistyped, more likely than a lab of one's own
            hint = f"did you mean --lab {close[0]}? labs here: {', '.join(labs)}; or {hint}"
            hint_es = (
                f"¿querías decir --lab {close[0]}? laboratorios: {', '.join(labs)}; o {hint_es}"
            )
        elif elsewhere:  # the instance of another lab was meant, more likely than a new one
            other = elsewhere[0]
            hint = (
                f"instance {instance} is up in lab {', '.join(elsewhere)}: add --lab {other}; "
                f"or, for lab {lab}, {hint}"
            )
            hint_es = (
                f"la instancia {instance} está en marcha en el laboratorio "
                f"{', '.join(elsewhere)}: añade --lab {other}; o, para el laboratorio {lab}, "
                f"{hint_es}"
            )
        super().__init__(
            f"lab {lab} (instance {instance}) is not up{consequence[0]}",
            hint,
            es=(
                f"el laboratorio {lab} (instancia {instance}) no está en marcha{consequence[1]}",
                hint_es,
            ),
        )


def saved_states(root: Path | None = None) -> Iterator[LabState]:
    """The state of every lab instance on this host (a damaged one is skipped)."""
    base = root or state_dir()
    for state_file in sorted(base.glob("*/run/state.json")):
        try:
            yield LabState.from_json(state_file.read_text())
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # its own commands say it is damaged


def up_command(lab: str, instance: str, spec_path: str | None = None) -> str:
    """``labctl up`` of this lab instance, as its user types it (``spec_path``: the lab file
    it came up from, named when it is not the lab's own ``labs/<lab>/lab.yaml``)."""
    shipped = known_labs()
    up = ["labctl up", *([lab] if lab != DEFAULT_LAB else [])]
    if spec_path and Path(spec_path).resolve() != (LABS_DIR / lab / "lab.yaml").resolve():
        up = ["labctl up", shown(Path(spec_path))]
        shipped = [lab]  # named by its file: nothing more to say
    elif lab not in shipped:  # a lab of one's own is brought up from its file
        up = ["labctl up", "LAB_FILE"]
    up += [f"--instance {instance}"] if instance != "main" else []
    said = " ".join(up)
    if lab not in shipped:
        said += f" (the file that names lab {lab}; labs shipped: {', '.join(shipped)})"
    return said


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
    started: str | None = None  # how up last started it: booted, restored, resumed, running
    #: a whole boot (firmware, kernel, init) measured on this host: ready_seconds when up
    #: booted it, the boot that made its template when up restored it
    boot_seconds: float | None = None
    #: the lab key the guest was last given (``KeyPair.id``); None: recorded before labctl
    #: kept it; ``lost``: the key it knows is gone, it must be given the new one
    key_id: str | None = None
    start_note: str | None = None  # why, when it is not what up meant (a template that failed)
    #: how the running guest differs from what the lab defines now (up defines a stopped one anew)
    outdated: str | None = None
    error: str | None = None
    # Identities chosen once, recorded before the engine object exists, reused ever after:
    # a domain redefined with another UUID is refused, a new MAC or port surprises the user.
    uuid: str | None = None  # libvirt domain UUID
    mac: str | None = None  # the VM's NIC
    host_port: int | None = None  # port published on 127.0.0.1 (app containers)


@dataclass(frozen=True)
class LabState:
    """A lab instance: its spec, its network and its guests."""

    lab: str
    instance: str
    spec_path: str
    subnet: str | None = None  # the libvirt network's
    network: str | None = None
    bridge: str | None = None
    docker_network: str | None = None
    docker_subnet: str | None = None
    podman_network: str | None = None  # Podman's own network (netavark bridge), beside Docker's
    podman_subnet: str | None = None
    lxd_network: str | None = None  # the LXD network (and bridge) of the containers
    lxd_subnet: str | None = None
    guests: dict[str, GuestRecord] = field(default_factory=dict)
    vm_profile: str | None = None  # the VM images it was brought up with: kept until down

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


@dataclass(frozen=True)
class Owner:
    """Whose instance this is in class mode: its class, its student, the student's SSH key
    and seat slot.

    Written by ``class up`` before the student's lab exists; every guest gets the class and
    student as labels and, where students log in, the key beside the lab's own.
    """

    class_name: str
    student: str
    public_key: str
    uid: int | None = None  # the student's account: kept confined to this instance
    #: the student's seat slot in the class (``class up``): their exercises' ports come from it
    slot: int | None = None

    def to_json(self) -> str:
        """The owner file's content."""
        return json.dumps(asdict(self), indent=2)


class InstanceDir:
    """``<state>/<lab>-<instance>/``: key and progress (kept) and ``run/`` (removed by down)."""

    def __init__(self, lab: str, instance: str, root: Path | None = None) -> None:
        self.lab = lab
        self.instance = instance
        self.path = within(root or state_dir(), f"{lab}-{instance}")
        #: disks, console logs and the state file of the running lab
        self.run = self.path / "run"
        self.state_file = self.run / "state.json"
        #: the lab's private SSH key
        self.key = self.path / "id_ed25519"
        #: whose instance this is (class mode), kept until the instance is removed
        self.owner_file = self.path / "owner.json"

    def remove_leftovers(self) -> bool:
        """Remove the instance's folder when only what labctl leaves in it is there (its lock
        files, an empty progress folder); True when it is gone (or never was)."""
        if not self.path.is_dir():
            return True
        for leftover in ("lock", "lock.holder"):
            (self.path / leftover).unlink(missing_ok=True)
        for folder in (self.path / "progress", self.path):
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                return False  # something else is in it: not ours to remove
        return True

    def owner(self) -> Owner | None:
        """The instance's :class:`Owner`, or None outside class mode."""
        return read_saved(
            self.owner_file,
            lambda text: Owner(**json.loads(text)),
            str(self.owner_file),
            "run `labctl class up` again: it writes the file anew",
        )

    def save_owner(self, owner: Owner) -> None:
        """Record the instance's owner (root only)."""
        private_dir(self.path)
        write_private(self.owner_file, owner.to_json())

    def load(self) -> LabState | None:
        """The saved state, or None when the lab is not up."""
        state = read_saved(
            self.state_file,
            LabState.from_json,
            f"state file {self.state_file}",
            f"{up_command(self.lab, self.instance)} sets it aside and rebuilds it from the "
            "guests that run (nothing of theirs is lost)",
        )
        if state is None:
            return None
        if (state.lab, state.instance) != (self.lab, self.instance):
            # lab "net" instance "adv-1" and lab "net-adv" instance "1" share a directory
            raise LabctlError(
                f"{self.state_file} belongs to lab {state.lab} instance {state.instance}, "
                f"not to lab {self.lab} instance {self.instance}",
                "names are LAB-INSTANCE, so names with dashes can meet: give this instance "
                f"another name (--instance), or, for that one, use --lab {state.lab} "
                f"--instance {state.instance}; labctl touches nothing of another instance",
            )
        return state

    @property
    def holder_file(self) -> Path:
        """Who holds the lock: ``{"pid": N, "command": "labctl up"}``."""
        return self.path / "lock.holder"

    def make_dirs(self) -> None:
        """The instance and run directories, readable by root only."""
        private_dir(self.path)
        private_dir(self.run)

    def save(self, state: LabState) -> None:
        """Write the state atomically (temp file + rename), readable by root only."""
        self.make_dirs()
        write_private(self.state_file, state.to_json())

    def holder(self) -> str:
        """Who holds the lock, as ``labctl (pid N: labctl up)``; from its holder file."""
        try:
            data = json.loads(self.holder_file.read_text())
            return f"labctl (pid {int(data['pid'])}: {data['command']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another labctl"

    @contextmanager
    def locked(
        self,
        wait: float = 30.0,
        command: str | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> Iterator[None]:
        """Hold the instance lock; a second labctl waits ``wait`` seconds, then refuses.

        ``command`` is what this process is doing (``labctl up``), written beside the lock;
        when the lock is taken, ``on_wait`` hears once whom we wait for: ``labctl (pid N:
        labctl up) working on lab X instance Y``.
        """
        private_dir(self.path)

        def busy() -> None:
            if on_wait is not None:
                on_wait(f"{self.holder()} working on lab {self.lab} instance {self.instance}")

        def refuse() -> LabctlError:
            return LabctlError(
                f"{self.holder()} is still working on lab {self.lab} "
                f"(instance {self.instance}) after {wait:g} s",
                "wait for it to finish, or use another --instance",
            )

        with locked(self.path / "lock", wait, refuse, busy):
            me = {"pid": os.getpid(), "command": command or " ".join(sys.argv[:2])}
            write_private(self.holder_file, json.dumps(me))
            try:
                yield
            finally:
                self.holder_file.unlink(missing_ok=True)
