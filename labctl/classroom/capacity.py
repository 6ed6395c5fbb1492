"""Capacity before anything: what one student's lab costs on this host, and how many fit.

Memory is what the lab file gives each guest plus what its engine costs beside it (QEMU's
own process, LXD's monitor, Docker's shim), measured on the reference host; disk is what
each guest writes beside its shared image (a VM's qcow2 overlay, an LXD container's copy of
its rootfs in a ``dir`` pool, a Docker container's layer). Both are upper bounds: an idle
guest rarely touches all its memory. Identical VMs may share pages when the kernel's KSM
runs, which the plan reports but never counts on.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from labctl.errors import HostError
from labctl.paths import state_dir
from labctl.spec.model import Lab, LibvirtGuest

#: MiB an engine needs per guest beside the guest's own memory (measured: a 384 MiB TCG VM's
#: QEMU has ~335 MiB resident once booted, of which up to ~48 MiB is QEMU itself; an idle
#: system container's monitor and init ~16 MiB; a Docker shim ~8 MiB; Podman's conmon is counted
#: as Docker's shim, not measured apart).
ENGINE_MEMORY_MIB = {"libvirt": 48, "lxd": 16, "docker": 8, "podman": 8}
#: MiB each guest writes beside its shared image: a VM's overlay (grows with the student's
#: writes), a system container's rootfs copy (LXD's ``dir`` pool copies ~160 MiB), a Docker
#: container's writable layer.
ENGINE_DISK_MIB = {"libvirt": 256, "lxd": 200, "docker": 16, "podman": 16}
#: Left to the host itself (engines' daemons, page cache, labctl).
RESERVE_MEMORY_MIB = 1024
RESERVE_DISK_MIB = 2048
#: inotify instances charged to root per system container (its systemd, logind, getty and
#: D-Bus: 7-8 once booted, more while booting): with Linux's default of 128, a class of 15
#: containers-only students lost one and a class of 16 two ("dnsmasq: failed to create
#: inotify: Too many open files"); with 1024, 16 came up whole.
INOTIFY_PER_SYSTEM_CONTAINER = 10
INOTIFY_LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")
#: Above this many virtual CPUs per core, booting a class under TCG crawls (advice only).
VCPUS_PER_CORE = 4

KSM = Path("/sys/kernel/mm/ksm")


@dataclass(frozen=True)
class StudentCost:
    """What one student's lab takes on this host."""

    memory_mib: int
    disk_mib: int
    vcpus: int  # the lab's VMs' virtual CPUs (containers share the host's)
    guests: int
    inotify: int = 0  # inotify instances its system containers charge to root


@dataclass(frozen=True)
class Ksm:
    """The kernel's same-page merging: on or off, and what it saves now."""

    available: bool
    running: bool
    saved_mib: int  # pages_sharing: pages that would exist without KSM

    @property
    def summary(self) -> str:
        """One line for the plan."""
        if not self.available:
            return "not available in this kernel"
        if not self.running:
            return "off (identical VM pages are not shared; the plan does not count on it)"
        return f"on, saving {self.saved_mib} MiB now (not counted in the plan)"


@dataclass(frozen=True)
class HostCapacity:
    """What the host has free now."""

    memory_available_mib: int
    disk_free_mib: int
    cores: int
    ksm: Ksm
    inotify_free: int | None = None  # root's inotify instances left (None: not known)


@dataclass(frozen=True)
class Plan:
    """A class on this host: per-student cost, what is free, how many fit."""

    lab: str
    students: int  # students that still need their lab created
    cost: StudentCost
    host: HostCapacity

    @property
    def fit_memory(self) -> int:
        """Students whose labs fit in the available memory, the host's reserve kept."""
        return max(0, self.host.memory_available_mib - RESERVE_MEMORY_MIB) // max(
            1, self.cost.memory_mib
        )

    @property
    def fit_disk(self) -> int:
        """Students whose labs fit on the disk of the state directory, a reserve kept."""
        return max(0, self.host.disk_free_mib - RESERVE_DISK_MIB) // max(1, self.cost.disk_mib)

    @property
    def fit_inotify(self) -> int | None:
        """Students whose system containers root's inotify instances allow (None: no limit)."""
        if not self.cost.inotify or self.host.inotify_free is None:
            return None
        return max(0, self.host.inotify_free) // self.cost.inotify

    @property
    def fit(self) -> int:
        """How many students fit: the tightest of memory, disk and inotify instances."""
        return min(f for f in (self.fit_memory, self.fit_disk, self.fit_inotify) if f is not None)

    @property
    def fits(self) -> bool:
        """True when every student needing a lab fits."""
        return self.students <= self.fit

    @property
    def vcpus_per_core(self) -> float:
        """Virtual CPUs per core with every student up."""
        return self.students * self.cost.vcpus / max(1, self.host.cores)

    @property
    def cpu_share(self) -> float:
        """Cores per student when all work at once."""
        return self.host.cores / max(1, self.students)

    @property
    def limit(self) -> str:
        """Which resource caps the class: memory, disk or inotify instances."""
        if self.fit_inotify is not None and self.fit_inotify < min(self.fit_memory, self.fit_disk):
            return "inotify instances"
        return "memory" if self.fit_memory <= self.fit_disk else "disk"

    def advice(self) -> list[str]:
        """What to do when it does not fit, or runs slowly."""
        notes = []
        if not self.fits:
            notes.append(
                f"bring up at most {self.fit} students now (--max-students {self.fit}), "
                "the others on another server or later"
            )
            notes.append("or use a smaller lab (fewer VMs, or less memory per guest)")
        if self.fit_inotify is not None and self.fit_inotify < self.students:
            notes.append(
                "raise root's inotify instances, e.g. sysctl -w fs.inotify.max_user_instances=1024"
                " (LXD's production settings)"
            )
        if self.vcpus_per_core > VCPUS_PER_CORE:
            notes.append(
                f"{self.vcpus_per_core:.1f} virtual CPUs per core: TCG guests will boot slowly; "
                "keep --max-parallel low"
            )
        return notes


def student_cost(lab: Lab) -> StudentCost:
    """The memory, disk and virtual CPUs one instance of ``lab`` takes."""
    memory = disk = vcpus = inotify = 0
    for guest in lab.guests.values():
        memory += guest.memory + ENGINE_MEMORY_MIB[guest.engine]
        disk += ENGINE_DISK_MIB[guest.engine]
        if isinstance(guest, LibvirtGuest):
            vcpus += guest.cpus
        if guest.engine == "lxd":
            inotify += INOTIFY_PER_SYSTEM_CONTAINER
    return StudentCost(memory, disk, vcpus, len(lab.guests), inotify)


def _root_uids(subuid: Path) -> list[range]:
    """Host uids that count as root's: 0 and root's subordinate ranges (its containers)."""
    ranges = [range(0, 1)]
    try:
        for line in subuid.read_text().splitlines():
            user, start, count = (line.split(":") + ["", ""])[:3]
            if user == "root" and start.isdigit() and count.isdigit():
                ranges.append(range(int(start), int(start) + int(count)))
    except OSError:
        pass
    if len(ranges) == 1:
        ranges.append(range(100000, 100000 + 65536))  # LXD's default idmap
    return ranges


def root_inotify_used(proc: Path = Path("/proc"), subuid: Path = Path("/etc/subuid")) -> int:
    """inotify instances charged to root now: its own, and its unprivileged containers'.

    The limit is per user, and an instance made inside a container's user namespace is
    charged to the namespace's owner too (Linux 5.11 and later): every system container's
    systemd counts against root's limit.
    """
    ours = _root_uids(subuid)
    used = 0
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            status = (pid / "status").read_text()
            uid = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Uid:")))
            if not any(uid in r for r in ours):
                continue
            used += sum(
                1 for fd in (pid / "fd").iterdir() if os.readlink(fd) == "anon_inode:inotify"
            )
        except (OSError, StopIteration, ValueError):
            continue  # gone meanwhile, or not ours to read
    return used


def inotify_free(
    limit: Path = INOTIFY_LIMIT, proc: Path = Path("/proc"), subuid: Path = Path("/etc/subuid")
) -> int | None:
    """Root's inotify instances left: the limit minus what root and its containers hold."""
    total = _read_int(limit)
    return total - root_inotify_used(proc, subuid) if total else None


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


def ksm(root: Path = KSM) -> Ksm:
    """KSM's state from ``/sys/kernel/mm/ksm``."""
    if not (root / "run").exists():
        return Ksm(False, False, 0)
    pages = _read_int(root / "pages_sharing")
    return Ksm(True, _read_int(root / "run") == 1, pages * os.sysconf("SC_PAGE_SIZE") // 2**20)


def memory_available_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable in MiB."""
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    raise HostError(f"{meminfo} has no MemAvailable line", "labctl needs Linux 3.14 or later")


def host_capacity(where: Path | None = None) -> HostCapacity:
    """What this host has free now: memory, disk under the state directory, cores, KSM."""
    path = where or state_dir()
    while not path.exists():
        path = path.parent
    return HostCapacity(
        memory_available_mib(),
        shutil.disk_usage(path).free // 2**20,
        os.cpu_count() or 1,
        ksm(),
        inotify_free(),
    )


def plan(lab: Lab, students: int, host: HostCapacity | None = None) -> Plan:
    """The plan for ``students`` new labs of ``lab`` on this host."""
    return Plan(lab.name, students, student_cost(lab), host or host_capacity())


def refuse_overcommit(p: Plan) -> None:
    """Raise before anything is created when the students do not fit, with the numbers."""
    if p.fits:
        return
    c, h = p.cost, p.host
    raise HostError(
        f"{p.students} students do not fit on this host: each lab of {p.lab} takes "
        f"{c.memory_mib} MiB of memory and {c.disk_mib} MiB of disk; the host has "
        f"{h.memory_available_mib} MiB available ({RESERVE_MEMORY_MIB} kept for itself) and "
        f"{h.disk_free_mib} MiB of disk free"
        + (
            f", {h.inotify_free} inotify instances for {c.inotify} each"
            if p.fit_inotify is not None
            else ""
        )
        + f"; {p.fit} fit ({p.limit} is the limit)",
        "; ".join(p.advice()),
    )
