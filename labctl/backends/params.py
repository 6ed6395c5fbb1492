"""What the lab file says of one guest, in its engine's own terms.

``labctl.lab.plan`` makes these from the validated spec; a backend receives them inside its
:class:`~labctl.backends.base.GuestPlan` (or :class:`~labctl.backends.base.Copy`) and never
sees the spec itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeVar


@dataclass(frozen=True)
class Params:
    """Base of each engine's parameters."""

    engine: ClassVar[str]


@dataclass(frozen=True)
class LibvirtParams(Params):
    """A virtual machine: its CPU, memory and device models."""

    engine: ClassVar[str] = "libvirt"

    arch: str  # libvirt's name: x86_64 or aarch64
    cpus: int
    memory: int  # MiB
    disk_bus: str  # virtio, ide or sata
    nic_model: str  # virtio or e1000


@dataclass(frozen=True)
class LxdParams(Params):
    """A system container."""

    engine: ClassVar[str] = "lxd"

    memory: int  # MiB, the container's limit


@dataclass(frozen=True)
class DockerParams(Params):
    """An application container with one published port."""

    engine: ClassVar[str] = "docker"

    port: int  # the app's port in the container
    host_port: int | None  # fixed by the lab file; None: a free port chosen at ``up``
    memory: int  # MiB, the container's limit
    http_path: str  # answers HTTP 200 once the app is ready


@dataclass(frozen=True)
class PodmanParams(DockerParams):
    """The same application container, run by Podman."""

    engine: ClassVar[str] = "podman"


P = TypeVar("P", bound=Params)
