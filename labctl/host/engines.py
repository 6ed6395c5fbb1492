"""Probes of the engine daemons: libvirt, Docker (or Podman) and LXD (or Incus).

Like every probe (see ``labctl.host.probe``) they never raise: a daemon that does not
answer comes back as ``reachable=False`` with the library's own error text. Every daemon is
found and connected to by the client module the backend and the image builders use
(``labctl.libvirt_client``, ``labctl.docker_client``, ``labctl.lxd_client``), so doctor looks
where labctl will.
"""

from __future__ import annotations

import grp
import pwd
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from labctl.errors import EngineError
from labctl.host.probe import DEV_KVM, error_line
from labctl.paths import podman_set_up, podman_socket

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
#: Debian and Ubuntu run libvirt's QEMU as this user unless qemu.conf says otherwise.
DEFAULT_QEMU_USER = "libvirt-qemu"

_TIMEOUT = 10.0


# --- libvirt ------------------------------------------------------------------------------


def qemu_conf_user(path: Path = QEMU_CONF) -> tuple[str, str | None]:
    """The ``user`` and ``group`` libvirt runs QEMU as, from qemu.conf."""
    user, group = DEFAULT_QEMU_USER, None
    try:
        text = path.read_text()
    except OSError:
        return user, group
    for line in text.splitlines():
        m = re.match(r'\s*(user|group)\s*=\s*"([^"]*)"', line)
        if m and m.group(1) == "user":
            user = m.group(2)
        elif m:
            group = m.group(2)
    return user, group


def _ids(user: str, group: str | None) -> tuple[int, set[int]] | None:
    """Uid and all gids of ``user`` (plus ``group``), or None if the user does not exist."""
    try:
        # qemu.conf accepts "+N" for a numeric uid
        pw = pwd.getpwuid(int(user[1:])) if user.startswith("+") else pwd.getpwnam(user)
    except (KeyError, ValueError):
        return None
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem}
    if group:
        try:
            gids.add(grp.getgrnam(group).gr_gid)
        except KeyError:
            pass
    return pw.pw_uid, gids


def can_rw(path: Path, uid: int, gids: set[int]) -> bool:
    """True if a process with ``uid``/``gids`` may read and write ``path``."""
    if uid == 0:
        return True
    st = path.stat()
    if st.st_uid == uid:
        bits = st.st_mode >> 6
    elif st.st_gid in gids:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & 0o6 == 0o6


@dataclass(frozen=True)
class LibvirtInfo:
    """Whether libvirtd answers, its versions, and what decides its capability-cache speed."""

    uri: str
    reachable: bool
    version: str | None = None
    hypervisor_version: str | None = None
    caps_seconds: float | None = None  # time of one getCapabilities() call
    qemu_user: str = DEFAULT_QEMU_USER
    kvm_accessible: bool | None = None  # can libvirt's QEMU user open /dev/kvm? None: no /dev/kvm
    error: str | None = None


def libvirt_probe(uri: str | None = None) -> LibvirtInfo:
    """Open ``uri`` (default: labctl's) and time getCapabilities() (slow when libvirt re-probes)."""
    user, group = qemu_conf_user()
    accessible: bool | None = None
    if DEV_KVM.exists():
        ids = _ids(user, group)
        accessible = ids is not None and can_rw(DEV_KVM, *ids)
    base = LibvirtInfo(uri or "", reachable=False, qemu_user=user, kvm_accessible=accessible)
    try:
        from labctl import libvirt_client
    except ImportError as exc:
        return replace(base, error=f"libvirt-python missing: {exc}")
    base = replace(base, uri=uri or libvirt_client.URI)
    try:
        with libvirt_client.connection(base.uri) as conn:
            started = time.monotonic()
            conn.getCapabilities()
            seconds = time.monotonic() - started
            if seconds > 2.0:
                # the first call after a daemon start may probe QEMU once; the trap is every call
                started = time.monotonic()
                conn.getCapabilities()
                seconds = time.monotonic() - started
            return replace(
                base,
                reachable=True,
                version=libvirt_client.version(conn.getLibVersion()),
                hypervisor_version=libvirt_client.version(conn.getVersion()),
                caps_seconds=round(seconds, 3),
            )
    except EngineError as exc:  # the library's own words, not labctl's sentence around them
        return replace(base, error=error_line(exc.__cause__ or exc))
    except Exception as exc:
        return replace(base, error=error_line(exc))


# --- Docker -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DockerInfo:
    """Whether a Docker-compatible API answers (dockerd or Podman) and its version."""

    reachable: bool
    engine: str | None = None
    version: str | None = None
    api_version: str | None = None
    error: str | None = None
    set_up: bool = True  # Podman: host setup started its API service (its socket exists)


def docker_probe(podman: bool = False) -> DockerInfo:
    """Ping the Docker API from the environment (``DOCKER_HOST`` or the default socket).

    ``podman``: Podman's API on its own socket instead, where host setup started it.
    """
    if podman and not podman_set_up():
        return DockerInfo(False, error=f"no API socket at {podman_socket()}", set_up=False)
    try:
        from labctl import docker_client
    except ImportError as exc:
        return DockerInfo(False, error=f"docker-py missing: {exc}")
    api = docker_client.PODMAN if podman else docker_client.DOCKER
    try:
        client = docker_client.connect(timeout=int(_TIMEOUT), engine=api)
    except EngineError as exc:  # the library's own words, not labctl's sentence around them
        return DockerInfo(False, error=error_line(exc.__cause__ or exc))
    try:
        info = client.version()
    except Exception as exc:
        return DockerInfo(False, error=error_line(exc))
    finally:
        client.close()
    names = [c.get("Name", "") for c in info.get("Components", [])]
    engine = "Podman Engine" if "Podman Engine" in names else "Docker Engine"
    return DockerInfo(True, engine, info.get("Version"), info.get("ApiVersion"))


# --- LXD / Incus --------------------------------------------------------------------------


@dataclass(frozen=True)
class LxdInfo:
    """Whether LXD or Incus answers on its socket, and whether it was initialised."""

    socket: str | None
    reachable: bool
    server: str | None = None  # "lxd" or "incus"
    version: str | None = None
    initialised: bool = False  # the default profile has a root disk and a NIC
    error: str | None = None
    none_chosen: bool = False  # host setup chose no system-container engine for this host


def lxd_probe(candidates: list[Path] | None = None, engine: str | None = None) -> LxdInfo:
    """Connect as labctl does (``lxd_client``'s sockets, in its order); read the default profile.

    ``engine`` (``lxd`` or ``incus``): that engine's own sockets only, whatever was chosen.
    """
    try:
        from labctl import lxd_client
    except ImportError as exc:
        return LxdInfo(None, False, error=f"pylxd missing: {exc}")
    if engine is not None:
        candidates = list(lxd_client.ENGINE_SOCKETS[engine])
    try:
        path, client = lxd_client.connect_socket(candidates, timeout=_TIMEOUT)
    except EngineError as exc:
        chose_none = candidates is None and isinstance(exc, lxd_client.NoSystemContainers)
        return LxdInfo(None, False, error=error_line(exc), none_chosen=chose_none)
    try:
        env = client.host_info.get("environment", {})
        devices = client.profiles.get("default").devices
    except Exception as exc:
        return LxdInfo(str(path), False, error=error_line(exc))
    types = {d.get("type") for d in devices.values()}
    has_root = any(d.get("type") == "disk" and d.get("path") == "/" for d in devices.values())
    return LxdInfo(
        socket=str(path),
        reachable=True,
        server=env.get("server", "lxd"),
        version=env.get("server_version"),
        initialised=has_root and "nic" in types,
    )
