"""What compare measures of a running VM: accelerator, devices, memory, disk, a cold boot.

The libvirt backend answers its measuring part of the contract with these functions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import libvirt

from labctl import cancel, libvirt_client
from labctl.backends import base, host_side
from labctl.backends.domain_xml import live_devices
from labctl.backends.vm_files import overlays
from labctl.connection import Connection
from labctl.errors import EngineError, NotFoundError, ReadyTimeout
from labctl.instance.state import GuestRecord
from labctl.keys import KeyPair
from labctl.ssh import SshTarget, wait_for_login


def accelerator(resource: str) -> str | None:
    """The accelerator QEMU really uses for a running domain (asks QEMU itself)."""
    import libvirt_qemu

    with libvirt_client.connection() as conn:
        dom = libvirt_client.domain(conn, resource)
        if libvirt_client.domain_state(dom, resource) in ("stopped", "absent"):
            return None
        try:
            reply = libvirt_qemu.qemuMonitorCommand(dom, '{"execute":"query-kvm"}', 0)
        except libvirt.libvirtError:
            return None
    enabled = json.loads(reply).get("return", {}).get("enabled")
    return "kvm" if enabled else "tcg"


def _live_xml(resource: str) -> str:
    with libvirt_client.connection() as conn:
        dom = libvirt_client.domain(conn, resource)
        if dom is None:
            raise NotFoundError(f"domain {resource} does not exist", "run: labctl up")
        return libvirt_client.xml(dom, resource)


def devices(resource: str) -> base.Devices:
    """Disk bus, NIC model and disk cache of the domain, from the XML libvirt keeps."""
    return live_devices(_live_xml(resource))


def memory(resource: str) -> base.HostUse:
    """VmRSS of the domain's QEMU process."""
    return base.HostUse(
        host_side.vm_rss_bytes(resource),
        "VmRSS of the QEMU process (/proc/PID/status, PID from libvirt's pid file)",
        "the guest's RAM as QEMU has touched it, plus QEMU itself (TCG code cache)",
    )


def footprint(resource: str) -> base.HostUse:
    """Allocated size of the domain's qcow2 overlay (its base image is shared, not counted)."""
    found = overlays(_live_xml(resource))
    if not found or not found[0].exists():
        raise EngineError(f"{resource} has no overlay disk in its lab's run directory")
    disk = found[0]
    note = shared_note(disk)
    method = f"allocated size of the qcow2 overlay {disk}"
    return base.HostUse(host_side.allocated_bytes(disk), method, note)


def shared_note(disk: Path) -> str | None:
    """What a VM's footprint leaves out: the shared images under its overlay, all of them."""
    chain: list[Path] = []  # nearest first
    backing = host_side.qcow2_backing(disk)
    while backing is not None and backing.exists() and backing not in chain and len(chain) < 8:
        chain.append(backing)
        backing = host_side.qcow2_backing(backing)
    if not chain:
        return None
    shared = sum(host_side.allocated_bytes(b) for b in chain) / host_side.MIB
    names = " on ".join(b.name for b in chain)
    what = "image is" if len(chain) == 1 else "images are"
    return (
        f"the shared base {what} not counted: {names} ({shared:.0f} MiB); blocks "
        "the guest has written once stay allocated even after it deletes the file"
    )


def restart(
    record: GuestRecord, key: KeyPair, guest: Connection, timeout: float, ready_means: str
) -> base.StartTimes:
    """Power the VM off from inside (through ``guest``), start it, time it to SSH login."""
    assert record.address
    replaced = host_side.replaced_images(host_side.qemu_pid(record.resource))
    if replaced:
        raise EngineError(
            f"{record.name} was not restarted: its image changed on disk since it started "
            f"({', '.join(replaced)}); a cold boot would put its overlay on the new base and "
            "corrupt its file system",
            "take the lab down and up again to use the rebuilt images",
        )
    try:
        # The guest's own poweroff works on both architectures (the aarch64 one has no ACPI).
        poweroff = "nohup sh -c 'sleep 1; poweroff' >/dev/null 2>&1 &"
        guest.run(poweroff)
    except OSError as exc:
        raise EngineError(f"{record.name}: could not ask it to power off: {exc}") from exc
    again = "run `labctl up` for this instance to start it again"
    with libvirt_client.connection() as conn:
        dom = libvirt_client.domain(conn, record.resource)
        if dom is None:
            raise NotFoundError(f"domain {record.resource} does not exist", again)
        try:
            deadline = time.monotonic() + 90
            while dom.isActive():
                if time.monotonic() >= deadline:
                    raise ReadyTimeout(f"{record.name} did not power off in 90 s", again)
                cancel.check()
                time.sleep(0.1)
            t0 = time.monotonic()
            dom.create()
        except libvirt.libvirtError as exc:
            raise libvirt_client.error(f"restart {record.resource}", exc, again) from exc
    target = SshTarget(record.address, record.port or 22, "root", key.private)
    wait_for_login(target, t0 + timeout, command="true", poll=0.3)
    return base.StartTimes(
        (time.monotonic() - t0,),
        "cold boot of the lab's VM (powered off from inside, started by libvirt) until "
        + ready_means,
        "one sample: a VM boot is too long to repeat",
    )
