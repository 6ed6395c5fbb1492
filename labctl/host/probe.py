"""Facts about the host, one small probe each, returned as frozen dataclasses.

Probes never raise: a missing binary or an engine that does not answer is a fact like
any other, and the doctor's rules (``labctl.host.doctor``) decide what it means. The
engine daemons' probes (libvirt, Docker, LXD) live in ``labctl.host.engines``.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labctl import procs
from labctl.errors import LabctlError
from labctl.paths import cache_dir

#: Distributions ``labctl host setup`` supports, as (os-release ID, VERSION_ID).
SUPPORTED_DISTROS = (("debian", "12"), ("ubuntu", "22.04"), ("ubuntu", "24.04"))

DEV_KVM = Path("/dev/kvm")

_TIMEOUT = 10.0


def error_line(exc: BaseException) -> str:
    """One line for an exception: its message, or its type when it has none."""
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
        proc = procs.run([binary, "--version"], timeout=_TIMEOUT, check=False)
    except (OSError, LabctlError) as exc:  # not runnable, or no answer in time
        return QemuInfo(arch, binary, None, error_line(exc))
    out = proc.stdout.decode(errors="replace")
    match = re.search(r"version (\S+)", out)
    if proc.returncode != 0 or match is None:
        said = proc.stderr.decode(errors="replace") or out
        return QemuInfo(arch, binary, None, said.strip()[:200])
    return QemuInfo(arch, binary, match.group(1))


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
    except Exception as exc:
        return AnsibleInfo(False, core, error=f"ansible-runner missing: {error_line(exc)}")
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
    return MemoryInfo(
        values.get("MemTotal", 0), values.get("MemAvailable", values.get("MemFree", 0))
    )


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


def images_probe(names: Sequence[str] | None = None) -> ImagesInfo:
    """Compare the recipe hash of each image (``names`` and what they need; default: all)
    with its cached manifest."""
    try:
        from labctl.images.registry import store

        s = store()
        hashes = s.hashes(s.recipes if names is None else names)
    except Exception as exc:
        return ImagesInfo(False, error=f"{type(exc).__name__}: {error_line(exc)}")
    states = []
    for name, recipe_hash in hashes.items():
        try:
            status = s.status(name, recipe_hash)
        except Exception:  # an engine that cannot be asked: the doctor reports it elsewhere
            status = "unknown"
        states.append(ImageState(name, status))
    return ImagesInfo(True, tuple(states))


@dataclass(frozen=True)
class TemplatesInfo:
    """The VM templates kept on this host (``labctl images templates``): how many, their own
    bytes, and of those the stale ones, which no guest will start from again."""

    kept: int = 0
    size: int = 0
    stale: int = 0
    stale_size: int = 0
    error: str | None = None  # why they could not be listed


def is_root() -> bool:
    """True when running as root."""
    return os.geteuid() == 0


@dataclass(frozen=True)
class AptCacheInfo:
    """The guests' apt cache: where host setup put it, and whether it reaches the mirror."""

    proxy: str | None  # the URL guests use, from host setup (None: no cache configured)
    answers: bool = False
    reaches_mirror: bool = False
    error: str | None = None


def apt_cache_probe() -> AptCacheInfo:
    """Fetch the mirror's Release file through the guests' cache, on loopback."""
    from urllib.parse import urlsplit

    import requests

    from labctl.images.debian import SUITE, mirror
    from labctl.paths import guest_apt_proxy

    proxy = guest_apt_proxy()
    if proxy is None:
        return AptCacheInfo(None)
    port = urlsplit(proxy).port or 3142
    url = f"{mirror().rstrip('/')}/dists/{SUITE}/InRelease"
    try:
        answer = requests.get(url, proxies={"http": f"http://127.0.0.1:{port}"}, timeout=30)
    except requests.RequestException as exc:
        return AptCacheInfo(proxy, error=error_line(exc))
    if answer.status_code != 200:
        return AptCacheInfo(proxy, True, error=f"HTTP {answer.status_code} for {url}")
    return AptCacheInfo(proxy, True, True)


BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


def runs_arm64_programs() -> bool:
    """Whether the kernel hands arm64 programs to qemu-user (binfmt_misc, registered, enabled).

    Building the arm64 Debian VM image runs its packages' maintainer scripts that way. An
    arm64 host runs them itself.
    """
    if platform.machine() == "aarch64":
        return True
    try:
        return (BINFMT_DIR / "qemu-aarch64").read_text().splitlines()[0] == "enabled"
    except (OSError, IndexError):
        return False
