"""Container images, built from Debian packages because no image registry is reachable.

One module per engine: :mod:`.rootfs` (the Debian trees), :mod:`.lxd` (the system container
image), :mod:`.docker` (the application container images) and :mod:`.podman` (the same in
Podman). Each recipe's hash covers its
own module, so editing one engine's builder rebuilds that engine's images only.
"""

from __future__ import annotations

from labctl.images.containers.docker import APP_REPO, BASE_REPO, DockerApp, DockerBase
from labctl.images.containers.lxd import LXD_ALIAS, LxdSystem
from labctl.images.containers.podman import PodmanApp, PodmanBase
from labctl.images.containers.rootfs import ROOTFS, SystemRootfs
from labctl.images.recipe import Recipe

__all__ = [
    "APP_REPO",
    "BASE_REPO",
    "LXD_ALIAS",
    "ROOTFS",
    "DockerApp",
    "DockerBase",
    "LxdSystem",
    "PodmanApp",
    "PodmanBase",
    "SystemRootfs",
    "recipes",
]


def recipes() -> list[Recipe]:
    """The container images, dependencies first."""
    return [SystemRootfs(), LxdSystem(), DockerBase(), DockerApp(), PodmanBase(), PodmanApp()]
