"""Engines that run guests: one small contract (base.py), one module per engine.

Backends are imported lazily by name so a missing library only disables its own engine.
"""

from __future__ import annotations

import functools
import importlib

from labctl.backends.apps import AppEngine
from labctl.backends.base import Backend
from labctl.connection import Connection
from labctl.instance.state import GuestRecord
from labctl.keys import KeyPair
from labctl.paths import podman_set_up

_BACKENDS = {
    "libvirt": "labctl.backends.libvirt:LibvirtBackend",
    "lxd": "labctl.backends.lxd:LxdBackend",
    "docker": "labctl.backends.docker:DockerBackend",
    "podman": "labctl.backends.podman:PodmanBackend",
}


@functools.cache
def get(engine: str) -> Backend:
    """The backend of ``engine`` (``libvirt``, ``lxd``, ``docker`` or ``podman``), one per process.

    Backends keep their engine client open; sharing one avoids a connection per call.
    """
    module, _, cls = _BACKENDS[engine].partition(":")
    backend: Backend = getattr(importlib.import_module(module), cls)()
    return backend


@functools.cache
def app_engine() -> AppEngine:
    """The engine of students' own images and containers (``labctl app``): Docker's."""
    from labctl.backends.docker_apps import DockerApps

    return DockerApps()


def connect(record: GuestRecord, key: KeyPair) -> Connection:
    """The connection to the guest of ``record``, through its engine's backend."""
    return get(record.engine).connect(record, key)


def engines() -> list[str]:
    """Every engine name labctl knows."""
    return list(_BACKENDS)


def engines_here() -> list[str]:
    """The engines this host runs: Podman, an optional engine, only once host setup started it.

    What ``down`` asks when no state file says which engines an instance used.
    """
    return [e for e in _BACKENDS if e != "podman" or podman_set_up()]
