"""Facts about the host, one small probe each, returned as frozen dataclasses.

Probes never raise: an engine that does not answer is a fact like any other, and the
doctor's rules (``labctl.host.doctor``) decide what it means.
"""

from __future__ import annotations

import grp
import os
import platform
import pwd
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from labctl.paths import cache_dir

#: Distributions ``labctl host setup`` supports, as (os-release ID, VERSION_ID).
SUPPORTED_DISTROS = (("debian", "12"), ("ubuntu", "22.04"), ("ubuntu", "24.04"))

#: Where LXD or Incus listen, in the order they are tried.
LXD_SOCKETS = (
    Path("/var/lib/lxd/unix.socket"),
    Path("/var/snap/lxd/common/lxd/unix.socket"),
    Path("/var/lib/incus/unix.socket"),
)

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
#: Debian and Ubuntu run libvirt's QEMU as this user unless qemu.conf says otherwise.
DEFAULT_QEMU_USER = "libvirt-qemu"
DEV_KVM = Path("/dev/kvm")

_TIMEOUT = 10.0


def _error(exc: BaseException) -> str:
    """One line for an exception: its type unless the message says enough."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# --- distribution -------------------------------------------------------------------------


@dataclass(frozen=True)
class Distro:
    """The distribution, from ``/etc/os-release``."""

    id: str
    version_id: str
    pretty: str

    @property
    def supported(self) -> bool:
        """True for the distributions ``labctl host setup`` knows how to prepare."""
        return (self.id, self.version_id) in SUPPORTED_DISTROS


def os_release(path: Path = Path("/etc/os-release")) -> Distro:
    """Read ``ID``, ``VERSION_ID`` and ``PRETTY_NAME`` from os-release."""
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("\"'")
    return Distro(
        id=values.get("ID", "unknown"),
        version_id=values.get("VERSION_ID", ""),
        pretty=values.get("PRETTY_NAME", "unknown distribution"),
    )


# --- CPU and kernel -----------------------------------------------------------------------


@dataclass(frozen=True)
class CpuInfo:
    """Architecture, CPU count and the hardware virtualization flags the CPU shows."""

    arch: str
    count: int
    virt_flags: tuple[str, ...]  # subset of ("vmx", "svm")
    hypervisor: bool  # the "hypervisor" flag: this host is itself a guest


def cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """Read the CPU flags of the first processor."""
    flags: set[str] = set()
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.partition(":")[2].split())
                break
    except OSError:
        pass
    return CpuInfo(
        arch=platform.machine(),
        count=os.cpu_count() or 1,
        virt_flags=tuple(f for f in ("vmx", "svm") if f in flags),
        hypervisor="hypervisor" in flags,
    )


def kernel_modules(
    proc_modules: Path = Path("/proc/modules"), sys_module: Path = Path("/sys/module")
) -> frozenset[str]:
    """Names of loaded kernel modules, from /proc/modules and /sys/module.

    Both are read: some kernels have no /proc/modules, and built-in modules with parameters
    appear only under /sys/module.
    """
    names: set[str] = set()
    try:
        names.update(line.split()[0] for line in proc_modules.read_text().splitlines() if line)
    except OSError:
        pass
    try:
        names.update(p.name for p in sys_module.iterdir())
    except OSError:
        pass
    return frozenset(names)


# --- QEMU ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QemuInfo:
    """One ``qemu-system-<arch>`` binary and its version."""

    arch: str
    binary: str | None
    version: str | None
    error: str | None = None

    @property
    def found(self) -> bool:
        """True when the binary exists and printed its version."""
        return self.binary is not None and self.version is not None


def qemu(arch: str) -> QemuInfo:
    """Find ``qemu-system-<arch>`` on PATH (or /usr/bin) and ask its version."""
    name = f"qemu-system-{arch}"
    binary = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")
    if binary is None:
        return QemuInfo(arch, None, None, f"{name} not found")
    try:
        proc = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return QemuInfo(arch, binary, None, _error(exc))
    match = re.search(r"version (\S+)", proc.stdout)
    if proc.returncode != 0 or match is None:
        return QemuInfo(arch, binary, None, (proc.stderr or proc.stdout).strip()[:200])
    return QemuInfo(arch, binary, match.group(1))


# --- libvirt ------------------------------------------------------------------------------


def _version(n: int) -> str:
    return f"{n // 1_000_000}.{n // 1000 % 1000}.{n % 1000}"


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


def libvirt_probe(uri: str = "qemu:///system") -> LibvirtInfo:
    """Open ``uri`` and time getCapabilities() (slow when libvirt keeps re-probing QEMU)."""
    user, group = qemu_conf_user()
    accessible: bool | None = None
    if DEV_KVM.exists():
        ids = _ids(user, group)
        accessible = ids is not None and can_rw(DEV_KVM, *ids)
    base = {"uri": uri, "qemu_user": user, "kvm_accessible": accessible}
    try:
        import libvirt
    except ImportError as exc:
        return LibvirtInfo(reachable=False, error=f"libvirt-python missing: {exc}", **base)
    # libvirt prints every error on stderr unless a handler swallows it; we report it ourselves.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        return LibvirtInfo(reachable=False, error=_error(exc), **base)
    try:
        started = time.monotonic()
        conn.getCapabilities()
        seconds = time.monotonic() - started
        if seconds > 2.0:
            # the first call after a daemon start may probe QEMU once; the trap is every call
            started = time.monotonic()
            conn.getCapabilities()
            seconds = time.monotonic() - started
        return LibvirtInfo(
            reachable=True,
            version=_version(conn.getLibVersion()),
            hypervisor_version=_version(conn.getVersion()),
            caps_seconds=round(seconds, 3),
            **base,
        )
    except libvirt.libvirtError as exc:
        return LibvirtInfo(reachable=False, error=_error(exc), **base)
    finally:
        conn.close()


# --- Docker -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DockerInfo:
    """Whether a Docker-compatible API answers (dockerd or Podman) and its version."""

    reachable: bool
    engine: str | None = None
    version: str | None = None
    api_version: str | None = None
    error: str | None = None


def docker_probe() -> DockerInfo:
    """Ping the Docker API from the environment (``DOCKER_HOST`` or the default socket)."""
    try:
        import docker
        import docker.errors
    except ImportError as exc:
        return DockerInfo(False, error=f"docker-py missing: {exc}")
    try:
        client = docker.from_env(timeout=int(_TIMEOUT))
    except docker.errors.DockerException as exc:
        return DockerInfo(False, error=_error(exc))
    try:
        client.ping()
        info = client.version()
    except Exception as exc:  # noqa: BLE001  docker-py raises requests' errors too
        return DockerInfo(False, error=_error(exc))
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


def find_lxd_socket() -> Path | None:
    """The first LXD/Incus socket that exists (``LXD_DIR`` first when set)."""
    candidates = list(LXD_SOCKETS)
    if os.environ.get("LXD_DIR"):
        candidates.insert(0, Path(os.environ["LXD_DIR"]) / "unix.socket")
    return next((p for p in candidates if p.is_socket()), None)


def lxd_probe() -> LxdInfo:
    """Connect with pylxd to the detected socket and read the default profile."""
    path = find_lxd_socket()
    if path is None:
        return LxdInfo(None, False, error="no LXD or Incus socket found")
    try:
        import pylxd
    except ImportError as exc:
        return LxdInfo(str(path), False, error=f"pylxd missing: {exc}")
    try:
        client = pylxd.Client(endpoint=str(path), timeout=_TIMEOUT)
        env = client.host_info.get("environment", {})
        devices = client.profiles.get("default").devices
    except Exception as exc:  # noqa: BLE001  pylxd raises its own, requests' and OS errors
        return LxdInfo(str(path), False, error=_error(exc))
    types = {d.get("type") for d in devices.values()}
    has_root = any(d.get("type") == "disk" and d.get("path") == "/" for d in devices.values())
    return LxdInfo(
        socket=str(path),
        reachable=True,
        server=env.get("server", "lxd"),
        version=env.get("server_version"),
        initialised=has_root and "nic" in types,
    )


# --- Ansible ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnsibleInfo:
    """ansible-core and ansible-runner as labctl will use them."""

    available: bool
    core_version: str | None = None
    runner_version: str | None = None
    playbook_binary: str | None = None
    error: str | None = None


def ansible_bin_dir() -> Path:
    """The directory of this interpreter's scripts (the venv's ``bin``)."""
    return Path(sys.executable).parent


def ansible_probe() -> AnsibleInfo:
    """Import ansible and ansible_runner and find ``ansible-playbook``."""
    try:
        from importlib.metadata import version

        from ansible.release import __version__ as core
    except ImportError as exc:
        return AnsibleInfo(False, error=f"ansible-core missing: {exc}")
    try:
        runner = version("ansible-runner")
    except Exception as exc:  # noqa: BLE001  PackageNotFoundError and broken metadata alike
        return AnsibleInfo(False, core, error=f"ansible-runner missing: {_error(exc)}")
    local = ansible_bin_dir() / "ansible-playbook"
    binary = str(local) if local.exists() else shutil.which("ansible-playbook")
    if binary is None:
        return AnsibleInfo(False, core, runner, error="ansible-playbook not found")
    return AnsibleInfo(True, core, runner, binary)


# --- resources ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskInfo:
    """Free space where the image cache lives."""

    path: str
    free_bytes: int


def disk(path: Path | None = None) -> DiskInfo:
    """Free bytes on the filesystem of ``path`` (default: the cache dir or its first parent)."""
    target = path or cache_dir()
    probe_at = target
    while not probe_at.exists() and probe_at != probe_at.parent:
        probe_at = probe_at.parent
    return DiskInfo(str(target), shutil.disk_usage(probe_at).free)


@dataclass(frozen=True)
class MemoryInfo:
    """Total and available memory, from /proc/meminfo."""

    total_bytes: int
    available_bytes: int


def memory(meminfo: Path = Path("/proc/meminfo")) -> MemoryInfo:
    """Read MemTotal and MemAvailable."""
    values: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return MemoryInfo(values.get("MemTotal", 0), values.get("MemAvailable", values.get("MemFree", 0)))


# --- images -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageState:
    """One image of the default lab: ready, missing, outdated or missing from its engine."""

    name: str
    status: str


@dataclass(frozen=True)
class ImagesInfo:
    """The default lab's images, or why they could not be listed."""

    known: bool
    images: tuple[ImageState, ...] = ()
    error: str | None = None

    def named(self, status: str) -> list[str]:
        """Names of the images with ``status``."""
        return [i.name for i in self.images if i.status == status]


def images_probe() -> ImagesInfo:
    """Compare each recipe's hash with its cached manifest (as ``labctl images list`` does)."""
    try:
        from labctl.images.registry import store

        s = store()
        hashes = s.hashes(s.recipes)
    except Exception as exc:  # noqa: BLE001  the image registry may be half-written or broken
        return ImagesInfo(False, error=f"{type(exc).__name__}: {_error(exc)}")
    states = []
    for name, recipe_hash in hashes.items():
        manifest = s.manifest(name)
        if manifest is None:
            status = "missing"
        elif manifest.recipe_hash != recipe_hash:
            status = "outdated"
        else:
            try:
                status = "ready" if s.recipes[name].present(manifest) else "missing from engine"
            except Exception:  # noqa: BLE001  an engine that is down cannot confirm the image
                status = "unknown"
        states.append(ImageState(name, status))
    return ImagesInfo(True, tuple(states))


def is_root() -> bool:
    """True when running as root."""
    return os.geteuid() == 0
