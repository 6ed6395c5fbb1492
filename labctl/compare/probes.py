"""What each guest costs the host, read on the host side: memory and disk.

VMs: the QEMU process (found through libvirt's pid file) and the qcow2 overlay in the
instance's run directory. Containers: their cgroup's memory usage as the engine reports it,
and the disk the engine keeps for the instance.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from labctl import backends
from labctl.compare.model import Figure, Samples, Subject
from labctl.errors import EngineError, LabctlError
from labctl.lab.state import GuestRecord
from labctl.procs import output

MIB = 1024 * 1024
QEMU_PIDS = Path("/var/run/libvirt/qemu")

MEMORY_METHOD = {
    "libvirt": "VmRSS of the QEMU process (/proc/PID/status, PID from libvirt's pid file)",
    "lxd": "cgroup memory usage of the container (LXD state().memory.usage, page cache included)",
    "docker": "cgroup memory usage of the container (docker stats memory_stats.usage, "
    "page cache included)",
}


def vm_rss_bytes(resource: str, pid_dir: Path = QEMU_PIDS) -> int:
    """Resident memory of the QEMU process running domain ``resource``."""
    pid_file = pid_dir / f"{resource}.pid"
    try:
        pid = int(pid_file.read_text().strip())
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, ValueError) as exc:
        raise LabctlError(f"no QEMU process for {resource} ({pid_file}: {exc})") from exc
    return parse_vmrss(status)


def parse_vmrss(status: str) -> int:
    """Bytes of ``VmRSS`` in the text of /proc/PID/status."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit.lower() != "kb":
                raise LabctlError(f"unexpected VmRSS unit {unit!r}")
            return int(value) * 1024
    raise LabctlError("no VmRSS line in /proc/PID/status")


def _lxd_memory(resource: str) -> int:
    from labctl.backends.lxd import LxdBackend
    from labctl.lxd_client import engine_errors

    backend = backends.get("lxd")
    assert isinstance(backend, LxdBackend)
    with engine_errors(f"read the memory use of {resource}"):
        usage = (backend.client.instances.get(resource).state().memory or {}).get("usage")
    if not usage:
        raise EngineError(f"LXD reports no memory usage for {resource}")
    return int(usage)


def _docker_memory(resource: str) -> int:
    from labctl.backends.docker import DockerBackend
    from labctl.docker_client import engine_errors

    backend = backends.get("docker")
    assert isinstance(backend, DockerBackend)
    with engine_errors(f"read the memory use of {resource}"):
        stats = backend.client.containers.get(resource).stats(stream=False, one_shot=True)
    usage = (stats.get("memory_stats") or {}).get("usage")
    if not usage:
        raise EngineError(f"Docker reports no memory usage for {resource}")
    return int(usage)


def memory_reader(record: GuestRecord) -> Callable[[], int]:
    """A function that reads the guest's current host-side memory use in bytes."""
    if record.engine == "libvirt":
        return lambda: vm_rss_bytes(record.resource)
    if record.engine == "lxd":
        return lambda: _lxd_memory(record.resource)
    if record.engine == "docker":
        return lambda: _docker_memory(record.resource)
    raise LabctlError(f"no memory probe for engine {record.engine}")


def memory(
    records: dict[str, GuestRecord],
    subjects: dict[str, Subject],
    samples: int,
    interval: float = 1.0,
) -> tuple[list[Figure], dict[str, str]]:
    """Sample every guest's memory ``samples`` times; figures, and errors by guest."""
    readers = {name: memory_reader(rec) for name, rec in records.items()}
    values: dict[str, list[float]] = {name: [] for name in readers}
    errors: dict[str, str] = {}
    for i in range(samples):
        if i:
            time.sleep(interval)
        for name, read in readers.items():
            if name in errors:
                continue
            try:
                values[name].append(read() / MIB)
            except LabctlError as exc:
                errors[name] = exc.message
    figures = []
    for name, vals in values.items():
        if name in errors or not vals:
            continue
        rec, subject = records[name], subjects[name]
        note = None
        if rec.engine == "libvirt":
            note = "the guest's RAM as QEMU has touched it, plus QEMU itself (TCG code cache)"
        figures.append(
            Figure(
                "memory",
                name,
                Samples(tuple(vals)),
                subject.accel,
                subject.devices,
                f"{MEMORY_METHOD[rec.engine]}, {samples} samples {interval:g} s apart, idle",
                note,
            )
        )
    return figures, errors


# -- disk footprint ------------------------------------------------------------------------


def allocated_bytes(path: Path) -> int:
    """Bytes the file really occupies on disk (sparse parts not counted)."""
    return os.stat(path).st_blocks * 512


def du_bytes(path: Path) -> int:
    """``du -sx`` of a directory, in bytes."""
    return int(output(["du", "-sxB1", str(path)]).split()[0])


def _qcow2_backing(path: Path) -> Path | None:
    try:
        info = json.loads(output(["qemu-img", "info", "-U", "--output=json", str(path)]))
    except (LabctlError, ValueError):
        return None
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    return Path(backing) if backing else None


def _vm_footprint(record: GuestRecord, run_dir: Path) -> tuple[int, str, str]:
    disk = run_dir / f"{record.name}.qcow2"
    if not disk.exists():
        raise LabctlError(f"no overlay disk {disk}")
    note = None
    backing = _qcow2_backing(disk)
    if backing and backing.exists():
        shared = allocated_bytes(backing) / MIB
        note = (
            f"the shared base image {backing.name} ({shared:.0f} MiB) is not counted; blocks the "
            "guest has written once stay allocated even after it deletes the file"
        )
    return allocated_bytes(disk), f"allocated size of the qcow2 overlay {disk}", note or ""


def _lxd_footprint(record: GuestRecord) -> tuple[int, str, str]:
    from labctl.backends.lxd import LxdBackend
    from labctl.lxd_client import engine_errors

    backend = backends.get("lxd")
    assert isinstance(backend, LxdBackend)
    with engine_errors(f"find the storage of {record.resource}"):
        instance = backend.client.instances.get(record.resource)
        pool_name = (instance.expanded_devices.get("root") or {}).get("pool", "default")
        pool = backend.client.storage_pools.get(pool_name)
    source = (pool.config or {}).get("source")
    if pool.driver != "dir" or not source:
        raise LabctlError(f"storage pool {pool_name} ({pool.driver}): only dir pools are measured")
    path = Path(source) / "containers" / record.resource
    note = "a dir pool keeps a full copy of the image's rootfs for each container"
    return du_bytes(path), f"du -sx {path} (LXD dir pool)", note


def _docker_footprint(record: GuestRecord) -> tuple[int, str, str]:
    from labctl.backends.docker import DockerBackend
    from labctl.docker_client import engine_errors

    backend = backends.get("docker")
    assert isinstance(backend, DockerBackend)
    with engine_errors(f"read the size of {record.resource}"):
        found = backend.client.api.containers(
            all=True, filters={"name": record.resource}, size=True
        )
    rows = [c for c in found if f"/{record.resource}" in c.get("Names", [])]
    if not rows:
        raise LabctlError(f"Docker does not list {record.resource}")
    size_rw = int(rows[0].get("SizeRw") or 0)  # omitted by the daemon when 0
    with_image = int(rows[0].get("SizeRootFs") or 0)
    note = f"with the (shared) image layers: {with_image / MIB:.0f} MiB"
    return size_rw, "the container's writable layer (docker ps --size, SizeRw)", note


def footprint(record: GuestRecord, subject: Subject, run_dir: Path) -> Figure:
    """Disk the guest's instance occupies on the host, beyond what it shares with others."""
    if record.engine == "libvirt":
        size, method, note = _vm_footprint(record, run_dir)
    elif record.engine == "lxd":
        size, method, note = _lxd_footprint(record)
    elif record.engine == "docker":
        size, method, note = _docker_footprint(record)
    else:
        raise LabctlError(f"no disk probe for engine {record.engine}")
    return Figure(
        "footprint",
        record.name,
        Samples((size / MIB,)),
        subject.accel,
        subject.devices,
        method,
        note or None,
    )
