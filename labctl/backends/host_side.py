"""What a guest costs the host, read from /proc and the file system, not from the engine.

Shared by the backends: a QEMU process's resident memory and open disk images, a file's
allocated size, a directory's ``du``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from labctl.errors import LabctlError
from labctl.procs import output

MIB = 1024 * 1024
QEMU_PIDS = Path("/var/run/libvirt/qemu")


def qemu_pid(resource: str, pid_dir: Path = QEMU_PIDS) -> int:
    """The pid of the QEMU process running domain ``resource`` (from libvirt's pid file)."""
    pid_file = pid_dir / f"{resource}.pid"
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError) as exc:
        raise LabctlError(f"no QEMU process for {resource} ({pid_file}: {exc})") from exc


def vm_rss_bytes(resource: str, pid_dir: Path = QEMU_PIDS, proc: Path = Path("/proc")) -> int:
    """Resident memory of the QEMU process running domain ``resource``."""
    pid = qemu_pid(resource, pid_dir)
    try:
        status = (proc / str(pid) / "status").read_text()
    except OSError as exc:
        raise LabctlError(f"no QEMU process for {resource} (pid {pid}: {exc})") from exc
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


def replaced_images(pid: int, proc: Path = Path("/proc")) -> list[str]:
    """Disk images the QEMU process ``pid`` has open that were replaced or removed on disk.

    A qcow2 overlay refers to its base image by path. If the image cache rebuilt the base
    while the guest ran, QEMU still reads the old file; a cold boot would open the new one
    under the old overlay and corrupt the guest's file system.
    """
    replaced = []
    for fd in (proc / str(pid) / "fd").iterdir():
        try:
            target = os.readlink(fd)
            if not target.endswith((".qcow2", ".qcow2 (deleted)", ".img", ".img (deleted)")):
                continue
            if target.endswith(" (deleted)"):
                replaced.append(target.removesuffix(" (deleted)"))
            elif os.stat(fd).st_ino != os.stat(target).st_ino:
                replaced.append(target)
        except OSError:
            continue
    return sorted(set(replaced))


def allocated_bytes(path: Path) -> int:
    """Bytes the file really occupies on disk (sparse parts not counted)."""
    return os.stat(path).st_blocks * 512


def du_bytes(path: Path) -> int:
    """``du -sx`` of a directory, in bytes."""
    return int(output(["du", "-sxB1", str(path)]).split()[0])


def qcow2_backing(path: Path) -> Path | None:
    """The backing file of a qcow2 image, if it has one (``qemu-img info``)."""
    try:
        info = json.loads(output(["qemu-img", "info", "-U", "--output=json", str(path)]))
    except (LabctlError, ValueError):
        return None
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    return Path(backing) if backing else None
