"""What ``up`` mends on the lab's VMs besides starting them.

A lab network destroyed from outside comes back without the running VMs' network cards; a
VM whose lab key was lost learns the new one only when it boots, so it is powered off first.
"""

from __future__ import annotations

import time

import libvirt

from labctl import cancel, libvirt_client
from labctl.backends.domain_xml import taps_on
from labctl.errors import HostError
from labctl.instance.state import LabState
from labctl.procs import run

SHUTDOWN_WAIT = 30.0  # seconds an ACPI shutdown gets before power_off pulls the plug


def replug(conn: libvirt.virConnect, state: LabState, network: str) -> None:
    """Put the running VMs' network cards back on the lab's bridge.

    A network destroyed from outside (``virsh net-destroy``) takes its bridge with it;
    started again, it comes back empty, and libvirt does not plug the running guests' tap
    devices in again: they would run cut off from the lab.
    """
    assert state.bridge
    for rec in state.guests.values():
        dom = libvirt_client.domain(conn, rec.resource) if rec.engine == "libvirt" else None
        if dom is None or not dom.isActive():
            continue
        for tap in taps_on(libvirt_client.xml(dom, rec.resource), network):
            run(["ip", "link", "set", "dev", tap, "master", state.bridge], error=HostError)
            run(["ip", "link", "set", "dev", tap, "up"], error=HostError)


def power_off(resource: str) -> None:
    """ACPI shutdown, given :data:`SHUTDOWN_WAIT` seconds; then the plug is pulled (the
    aarch64 machine has no ACPI, a paused one hears nothing). Its disk is kept."""
    with libvirt_client.connection() as conn:
        dom = libvirt_client.domain(conn, resource)
        if dom is None:
            return
        try:
            if libvirt_client.domain_state(dom, resource) == "running":
                dom.shutdown()
            deadline = time.monotonic() + SHUTDOWN_WAIT
            while dom.isActive() and time.monotonic() < deadline:
                cancel.check()
                time.sleep(0.3)
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError as exc:
            if not libvirt_client.gone(exc):
                raise libvirt_client.error(f"power off {resource}", exc) from exc
