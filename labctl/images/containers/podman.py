"""The same application container images in Podman.

``podman-base`` imports the very rootfs tarball ``docker-base`` built (no second mmdebstrap),
``podman-app`` builds the same recipe on it: the same files and layers in another engine's
store, which is what the Docker/Podman exercises compare. Built by default only where host
setup started Podman (``labctl.lab.plan.lab_images``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from labctl.docker_client import PODMAN, ApiEngine
from labctl.images.containers.docker import APP_REPO, BASE_REPO, DockerApp, DockerBase
from labctl.images.containers.rootfs import ROOTFS, dep_manifest
from labctl.images.recipe import BuildContext


class _InPodman:
    """What Podman's recipes change in Docker's: the engine, and Docker's code in the hash."""

    code_deps: tuple[str, ...] = ("labctl.images.containers.docker",)
    api: ClassVar[ApiEngine] = PODMAN


class PodmanBase(_InPodman, DockerBase):
    """``docker-base``'s rootfs imported into Podman."""

    name = "podman-base"
    description = f"Debian bookworm minbase + busybox in Podman ({BASE_REPO}:<hash>)"
    needs = ("docker-base",)

    def rootfs(self, ctx: BuildContext) -> tuple[Path, Mapping[str, str]]:
        """``docker-base``'s tarball and facts, as built."""
        facts = dep_manifest(ctx, "docker-base").facts
        keep = ("suite", "arch", "debian_version", "unpacked_bytes", "packages")
        return ctx.deps["docker-base"] / ROOTFS, {k: facts[k] for k in keep if k in facts}


class PodmanApp(_InPodman, DockerApp):
    """The lab's web app built into Podman from the same recipe as ``docker-app``."""

    name = "podman-app"
    description = f"web app image in Podman ({APP_REPO}:<hash> and :latest), port 8080"
    needs = ("podman-base",)
    base_image: ClassVar[str] = "podman-base"
