"""Podman as an application-container engine: the Docker backend on Podman's API socket.

``podman system service`` answers Docker's API, so docker-py drives it unchanged; only the
socket, the engine's name in messages and the students' command differ. The lab's network
is Podman's own (netavark's bridge), recorded apart from Docker's in the state file.
"""

from __future__ import annotations

from typing import ClassVar

import docker

from labctl.backends.docker import BRIDGE_OPTION, DockerBackend
from labctl.docker_client import PODMAN, ApiEngine
from labctl.instance import naming
from labctl.instance.state import LabState


class PodmanBackend(DockerBackend):
    """Application containers run by Podman (rootful), through its Docker-compatible API."""

    engine = "podman"
    api: ClassVar[ApiEngine] = PODMAN
    cli: ClassVar[str] = "podman"
    network_field: ClassVar[str] = "podman_network"
    subnet_field: ClassVar[str] = "podman_subnet"

    def _network_options(self, state: LabState) -> dict[str, str]:
        """Name the bridge ourselves, so that isolation knows it (see ``_bridge``)."""
        return {BRIDGE_OPTION: naming.podman_bridge(state.lab, state.instance)}

    def _bridge(self, state: LabState, net: docker.models.networks.Network) -> str:
        """The bridge named at creation (Podman's inspect through Docker's API does not say)."""
        return naming.podman_bridge(state.lab, state.instance)
