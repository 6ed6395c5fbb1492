"""Where labctl keeps its cache (built images) and its state (running labs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from labctl.errors import HostError, SpecError

#: where a wheel installs playbooks/, labs/ and images/ (setup.py's data_files), under sys.prefix
DATA_PREFIX = Path("share") / "labctl"


def data_root(package: Path | None = None) -> Path:
    """Where labctl's playbooks, labs and image recipes are.

    The checkout that holds the package (a clone, or ``pip install -e .``), else the data a
    wheel installed under ``<prefix>/share/labctl`` (a lab host's ``/opt/labctl/venv``).
    """
    checkout = (package or Path(__file__).resolve().parent).parent
    if (checkout / "playbooks").is_dir():
        return checkout
    return Path(sys.prefix) / DATA_PREFIX


REPO_ROOT = data_root()
IMAGES_DIR = REPO_ROOT / "images"
PLAYBOOKS_DIR = REPO_ROOT / "playbooks"
LABS_DIR = REPO_ROOT / "labs"


def shown(path: Path) -> str:
    """``path`` as a message names it: relative to the working directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def known_labs() -> list[str]:
    """The names of the labs shipped with labctl (``labs/<name>/lab.yaml``)."""
    return sorted(p.name for p in LABS_DIR.iterdir() if (p / "lab.yaml").is_file())


def cache_dir() -> Path:
    """Image cache; ``LABCTL_CACHE`` overrides ``/var/cache/labctl``."""
    return Path(os.environ.get("LABCTL_CACHE", "/var/cache/labctl"))


def state_dir() -> Path:
    """Lab state (state, keys, disks, logs); ``LABCTL_STATE`` overrides ``/var/lib/labctl``."""
    return Path(os.environ.get("LABCTL_STATE", "/var/lib/labctl"))


#: written by ``labctl host setup``: the URL of the host's apt cache for the guests
GUEST_APT_PROXY_FILE = Path("/etc/labctl/guest-apt-proxy")


def guest_apt_proxy() -> str | None:
    """The apt proxy guests use (``LABCTL_GUEST_APT_PROXY``, else host setup's), or None."""
    value = os.environ.get("LABCTL_GUEST_APT_PROXY")
    if value is None:
        try:
            value = GUEST_APT_PROXY_FILE.read_text()
        except OSError:
            return None
    return value.strip() or None


#: where ``labctl host setup`` starts Podman's Docker-compatible API (playbooks/vars/host.yml)
PODMAN_SOCKET = Path("/run/podman/podman.sock")


def podman_socket() -> Path:
    """Podman's API socket: ``LABCTL_PODMAN_SOCKET``, else the one host setup starts."""
    return Path(os.environ.get("LABCTL_PODMAN_SOCKET") or PODMAN_SOCKET)


def podman_set_up() -> bool:
    """Whether Podman's API socket exists here (host setup started it); nothing is asked of it."""
    return podman_socket().is_socket()


def _host_setting(variable: str, path: Path) -> tuple[str, str] | None:
    """A host-wide setting: ``$variable``, else the file that says it; (value, where), or None."""
    value = os.environ.get(variable)
    if value is not None:
        return value.strip(), variable
    try:
        return path.read_text().strip(), str(path)
    except OSError:
        return None


#: written by ``labctl host setup``: which engine runs the system containers (lxd or incus)
SYSTEM_CONTAINERS_FILE = Path("/etc/labctl/system-containers")
SYSTEM_CONTAINERS = ("lxd", "incus")
#: what host setup records on a host that runs no system containers (one that is itself a
#: container, such as a simulated lab host)
NO_SYSTEM_CONTAINERS = "none"


def system_containers() -> str | None:
    """The system-container engine host setup chose, or None where nothing chose one.

    ``LABCTL_SYSTEM_CONTAINERS``, else ``/etc/labctl/system-containers``. With none chosen,
    labctl takes whichever of LXD and Incus answers first (``labctl.lxd_client``);
    :data:`NO_SYSTEM_CONTAINERS` says this host runs none.
    """
    found = _host_setting("LABCTL_SYSTEM_CONTAINERS", SYSTEM_CONTAINERS_FILE)
    if found is None:
        return None
    value, source = found
    if value not in (*SYSTEM_CONTAINERS, NO_SYSTEM_CONTAINERS):
        raise HostError(
            f"{source} says the system containers run on {value!r}: neither lxd nor incus",
            "run: labctl host setup --system-containers lxd (or incus)",
        )
    return value


#: written by ``labctl host setup --test-tools``: the other system-container engine, started
#: beside the chosen one (the test suite runs the system container on both)
SECOND_SYSTEM_CONTAINERS_FILE = Path("/etc/labctl/second-system-containers")


def second_system_containers() -> str | None:
    """The engine host setup started beside the chosen one (``lxd`` or ``incus``), or None.

    Labs never use it unless a command names it (``LABCTL_SYSTEM_CONTAINERS``); doctor shows
    it and the test suite insists on it.
    """
    try:
        value = SECOND_SYSTEM_CONTAINERS_FILE.read_text().strip()
    except OSError:
        return None
    if value not in SYSTEM_CONTAINERS:
        raise HostError(
            f"{SECOND_SYSTEM_CONTAINERS_FILE} names {value!r}: neither lxd nor incus",
            "remove it, or run: labctl host setup --test-tools",
        )
    return value


#: written for hosts that should run the small VM images (a Vagrant VM under TCG, a laptop)
VM_PROFILE_FILE = Path("/etc/labctl/vm-profile")
VM_PROFILES = ("debian", "tiny")


def vm_profile() -> str:
    """Which VM images labs get on this host: ``debian`` (complete systems) or ``tiny``.

    ``LABCTL_VM_PROFILE``, else ``/etc/labctl/vm-profile``, else ``debian``. With ``tiny``
    a guest whose image is ``vm-amd64`` runs ``vm-amd64-tiny`` (busybox init, boots in
    seconds). A host-wide setting, so every command on the host sees the same images.
    """
    found = _host_setting("LABCTL_VM_PROFILE", VM_PROFILE_FILE)
    if found is None:
        return VM_PROFILES[0]
    value, source = found
    value = value or VM_PROFILES[0]
    if value not in VM_PROFILES:
        raise HostError(
            f"{source} says {value!r}: not a VM profile",
            f"use one of: {', '.join(VM_PROFILES)}",
        )
    return value


def within(base: Path, name: str) -> Path:
    """``base / name``, refused unless ``name`` is one plain path component inside ``base``.

    Every path built from user input (lab, instance, student) goes through here, so a value
    like ``../../etc`` can never make labctl read, write or remove outside its directories.
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise SpecError(
            f"{name!r} cannot name a file or directory inside {base}",
            "use only lowercase letters, digits and dashes in lab, instance and student names",
        )
    return base / name
