"""The backend contract: what labctl asks of every engine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, Literal, TypeVar

from labctl.backends.params import P
from labctl.connection import Connection
from labctl.errors import NotSupported
from labctl.images.recipe import Manifest
from labctl.instance import naming
from labctl.instance.reservations import Reservations
from labctl.instance.state import GuestRecord, LabState, Owner
from labctl.keys import KeyPair

#: a paused guest (virsh suspend, lxc pause, docker pause) answers nothing: not running for
#: up (whose start resumes it), said as it is by status
EngineState = Literal["running", "paused", "stopped", "absent"]
#: the labels (Docker, Podman, libvirt's metadata) naming a guest's lab instance
LAB, INSTANCE = "labctl.lab", "labctl.instance"
ClientT = TypeVar("ClientT")


def up_again(does: str, up: str = "labctl up") -> str:
    """The hint for a guest that is gone or not running: who brings it back (``up``: the
    command of its instance, see ``instance.state.up_command``).

    A student of a class cannot run ``labctl up``; the instructor's ``class up`` does it.
    """
    return f"{up} {does} (for a class's student, the instructor's labctl class up does)"


@dataclass(frozen=True)
class GuestPlan(Generic[P]):
    """Everything a backend needs to create one guest of one lab instance, resolved."""

    name: str
    resource: str
    params: P  # what the lab file says of the guest, in its engine's terms
    lab: str
    instance: str
    image: str
    manifest: Manifest
    image_dir: Path
    run_dir: Path
    key: KeyPair
    accel: str | None = None  # resolved accelerator for VMs: kvm or tcg
    address: str | None = None  # planned address on the lab's VM network
    gateway: str | None = None
    prefix: int | None = None
    network: str | None = None  # engine network the guest joins
    uuid: str | None = None  # identities recorded in the state (GuestRecord) before creation
    mac: str | None = None
    host_port: int | None = None
    owner: Owner | None = None  # class mode: the class, the student and the student's key

    @property
    def engine(self) -> str:
        """The engine that runs the guest."""
        return self.params.engine

    @property
    def labels(self) -> dict[str, str]:
        """Labels put on every engine object, so leftovers can be traced to their lab (and,
        in class mode, to their class and student)."""
        labels = {
            LAB: self.lab,
            INSTANCE: self.instance,
            "labctl.guest": self.name,
        }
        if self.owner is not None:
            labels |= {"labctl.class": self.owner.class_name, "labctl.student": self.owner.student}
        return labels

    @property
    def authorized_keys(self) -> str:
        """Root's ``authorized_keys`` in a guest reached over SSH: the lab key and, in class
        mode, the student's own (ProxyJump from their laptop through the server)."""
        keys = [self.key.public_line]
        if self.owner is not None:  # type and key only: a VM's kernel command line carries it
            keys.append(" ".join(self.owner.public_key.split()[:2]))
        return "\n".join(keys)


@dataclass(frozen=True)
class Ready:
    """How to reach a guest once it answered."""

    address: str
    port: int
    connect: str


#: How :meth:`Backend.start` started a guest (``Started.how``).
BOOTED, RESTORED, RESUMED, RUNNING = "booted", "restored", "resumed", "running"


@dataclass(frozen=True)
class Started:
    """How a guest was started: ``booted`` (its system or process from the beginning),
    ``restored`` (a VM from its template's saved memory), ``resumed`` (it was paused) or
    ``running`` (nothing to do); ``note`` says why it is not what was expected.

    ``boot_seconds``: a whole boot of the guest measured on this host when this start was
    none (a restored VM: the boot that made its template).
    """

    how: str
    note: str | None = None
    boot_seconds: float | None = None


@dataclass(frozen=True)
class VmTemplate:
    """A VM's settled boot, saved once on this host; guests of its kind start from it.

    ``stale`` says why no guest will start from it again (its image was rebuilt, QEMU was
    upgraded, ...); ``labctl images prune`` removes those. ``busy``: another labctl holds
    it now (making it). ``size``: bytes of its own.
    """

    name: str
    image: str
    devices: str | None
    accel: str | None
    size: int
    made_at: str | None
    boot_seconds: float | None
    stale: str | None
    busy: bool = False


@dataclass(frozen=True)
class Copy(Generic[P]):
    """A guest of a running lab instance, to be started afresh as a throwaway copy."""

    lab: str
    instance: str
    record: GuestRecord
    params: P  # the guest's, as its lab file says
    key: KeyPair
    timeout: float = 60.0  # seconds from one start to usable

    @property
    def labels(self) -> dict[str, str]:
        """The copy's labels: its lab instance (``down`` finds a leftover), a guest of its own."""
        guest = f"{self.record.name}-compare"
        return {LAB: self.lab, INSTANCE: self.instance, "labctl.guest": guest}

    def new_name(self) -> str:
        """A name no other object has: the guest's resource name and a random suffix."""
        return naming.throwaway(self.lab, self.instance, self.record.name)


@dataclass(frozen=True)
class StartTimes:
    """Seconds from start to usable, one per start, in the order they ran."""

    seconds: tuple[float, ...]
    method: str  # what was started, and what usable means
    note: str | None = None


@dataclass(frozen=True)
class HostUse:
    """Bytes of memory or disk a guest costs the host, and how they were read."""

    bytes: int
    method: str
    note: str | None = None


@dataclass(frozen=True)
class Devices:
    """The device models a guest really runs with, as the engine reports them."""

    summary: str  # "virtio-blk + virtio-net (paravirtual)", "shared host kernel"
    disk_cache: str | None = None  # QEMU's cache mode of the root disk (VMs)


class Backend(ABC, Generic[P]):
    """One engine. Every method is idempotent; errors are labctl EngineErrors with hints.

    Nothing outside ``labctl/backends`` talks to an engine: what the lab, the exercises and
    ``compare`` need of one is a method here, answered with plain values.
    """

    engine: ClassVar[str]
    ready_means: ClassVar[str]  # what wait_ready waits for, in words
    #: the guest learns the lab key only when it boots (a VM: its kernel command line);
    #: ``create`` gives it to the others at once
    key_at_boot: ClassVar[bool] = False

    @abstractmethod
    def preflight(self) -> None:
        """Fail fast, saying what to install or start, if the engine cannot be used."""

    @abstractmethod
    def reserve_network(self, state: LabState, pool: str, book: Reservations) -> LabState:
        """Choose the lab network's subnet, creating nothing; the caller saves it at once.

        An existing network's real subnet wins, then the recorded one, then a new reservation.
        """

    @abstractmethod
    def prepare(self, state: LabState) -> LabState:
        """Create the lab's shared engine objects (networks) as reserved; return the state."""

    def identify(self, plan: GuestPlan[P], record: GuestRecord, book: Reservations) -> GuestRecord:
        """Choose the guest's lasting identities before it exists; the caller saves them.

        Those of an existing engine object win, then the recorded ones, then new ones.
        """
        return record

    def creating(self, plan: GuestPlan[P]) -> str | None:
        """What :meth:`create` will do beyond the usual, in words to show while it runs (a
        VM's template is made first); None when there is nothing to say."""
        return None

    @abstractmethod
    def create(self, plan: GuestPlan[P]) -> GuestRecord:
        """Create the guest (stopped) unless it exists; return its record."""

    @abstractmethod
    def start(self, plan: GuestPlan[P]) -> Started:
        """Start the guest unless it runs; say how."""

    def outdated(self, plan: GuestPlan[P]) -> str | None:
        """How the running guest's definition differs from what :meth:`create` would define
        from ``plan`` now (the lab file or labctl changed since it was defined), in words;
        None when it does not, or the engine has nothing it keeps until a new definition."""
        return None

    @abstractmethod
    def wait_ready(self, plan: GuestPlan[P], deadline: float) -> Ready:
        """Wait (until ``deadline``, monotonic) until the guest is really usable."""

    @abstractmethod
    def state(self, resource: str) -> EngineState:
        """What the engine says about the guest named ``resource``."""

    @abstractmethod
    def destroy(self, resource: str) -> bool:
        """Remove the guest and its volumes; False if there was nothing to remove."""

    @abstractmethod
    def labels_of(self, resource: str) -> dict[str, str] | None:
        """The labels on the engine's guest named ``resource`` (empty when it has none);
        None when the engine has no such guest."""

    def foreign(self, resource: str, lab: str, instance: str) -> str | None:
        """Whose the guest named ``resource`` is when it exists and is not this lab
        instance's (``lab net (instance 1)``, ``not labctl``); None when it is ours or absent.

        Names can meet: lab ``net`` instance ``adv-1`` and lab ``net-adv`` instance ``1``
        name a guest ``www`` alike. Such a guest is never taken over, given keys or removed.
        """
        labels = self.labels_of(resource)
        if labels is None:
            return None
        owner = labels.get(LAB), labels.get(INSTANCE)
        if owner == (lab, instance):
            return None
        return f"lab {owner[0]} (instance {owner[1]})" if owner[0] else "not labctl"

    @abstractmethod
    def cleanup(self, state: LabState) -> None:
        """Remove the lab's shared engine objects created by :meth:`prepare`."""

    @abstractmethod
    def bridges(self, state: LabState) -> list[str]:
        """Linux bridges of the instance's networks that exist now (see instance/isolation.py)."""

    @abstractmethod
    def connect(self, record: GuestRecord, key: KeyPair) -> Connection:
        """The connection to the guest of ``record`` (see labctl/connection.py).

        Its ``run`` is the lab's one way to run a command in the guest: the checks, the
        answers' truths, ``labctl exec``/``ssh`` and compare's workloads all go through it.
        Nothing is contacted until it is used.
        """

    @abstractmethod
    def list_guests(self, lab: str, instance: str) -> list[str]:
        """Names of the guests the engine holds for this lab instance (found by label)."""

    def daemon(self) -> str:
        """The engine that runs this backend's guests here, as ``labctl status`` names it.

        The backend's own name, except where one backend speaks to two engines (LXD or Incus).
        """
        return self.engine

    # -- what compare measures -------------------------------------------------------

    def accelerator(self, resource: str) -> str | None:
        """The accelerator a running guest really uses (``kvm``, ``tcg``), asked of the engine.

        None when no accelerator is involved: a container's code runs on the host's CPU.
        """
        return None

    @abstractmethod
    def devices(self, resource: str) -> Devices:
        """The device models the guest really runs with, read from the engine now."""

    @abstractmethod
    def memory(self, resource: str) -> HostUse:
        """Host memory the running guest uses now, read on the host side."""

    @abstractmethod
    def footprint(self, resource: str) -> HostUse:
        """Host disk the guest occupies beyond what it shares with other guests."""

    @abstractmethod
    def fresh_start(self, copy: Copy[P], starts: int) -> StartTimes:
        """Start a throwaway copy of the guest ``starts`` times, each timed to usable.

        The copy comes from the guest's image, is named and labelled for the lab instance, is
        stopped between starts (its creation is not timed) and is removed in every case.
        :class:`NotSupported` where the engine cannot copy the guest cheaply.
        """

    def power_off(self, resource: str) -> None:
        """Stop the running guest so that its next start is a boot (its disk is kept)."""
        raise NotSupported(f"{self.engine} guests are not powered off by labctl")

    def restart(self, record: GuestRecord, key: KeyPair, timeout: float) -> StartTimes:
        """Power the lab's own guest off and start it again, timed to usable (one start).

        What runs inside is lost. Engines whose guests are copied instead do not offer it.
        """
        raise NotSupported(
            f"{self.engine} guests are not restarted in place; a throwaway copy is timed instead"
        )

    # -- what the engine keeps between labs ------------------------------------------------

    def templates(self, recipes: Mapping[str, str]) -> list[VmTemplate]:
        """The saved starts this engine keeps on the host (VM templates), each judged
        against the recipe hashes of the images built now (image name -> hash). None by
        default."""
        return []

    def prune_templates(self, recipes: Mapping[str, str]) -> list[VmTemplate]:
        """Remove the stale ones (no guest will start from them again); those removed."""
        return []


class ClientBackend(Backend[P], Generic[P, ClientT]):
    """A backend that talks to its engine through one client, connected on first use."""

    def __init__(self, client: ClientT | None = None) -> None:
        """``client``: one already made (tests pass a fake at the library boundary)."""
        self._client = client

    @property
    def client(self) -> ClientT:
        """The engine's client, connected on first use."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    @abstractmethod
    def _connect(self) -> ClientT:
        """A new client of the engine; fails, with a hint, if the daemon does not answer."""
