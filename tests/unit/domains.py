"""A libvirt domain's parameters for the tests: a guest of the default lab, ready to render."""

from __future__ import annotations

from pathlib import Path

from labctl.backends.domain_xml import DomainParams
from labctl.backends.params import LibvirtParams
from labctl.lab import plan
from labctl.paths import LABS_DIR
from labctl.spec.model import load_lab

LAB = load_lab(LABS_DIR / "virtualization")


def domain_params(guest_name: str, accel: str = "tcg") -> DomainParams:
    """The domain of the default lab's VM ``guest_name`` in instance ``main``."""
    guest = plan.params(LAB.guests[guest_name])
    assert isinstance(guest, LibvirtParams)
    return DomainParams(
        name=f"labctl-virtualization-main-{guest_name}",
        guest=guest,
        accel=accel,
        kernel=Path("/c/vmlinuz"),
        initrd=Path("/c/initrd.img"),
        disk=Path("/s/disk.qcow2"),
        console_log=Path("/s/console.log"),
        network="labctl-virtualization-main",
        mac="52:54:00:aa:bb:cc",
        hostname=guest_name,
        address="10.210.0.10/24",
        gateway="10.210.0.1",
        authorized_key="ssh-ed25519 AAAAkey labctl",
        labels={"labctl.lab": "virtualization", "labctl.instance": "main"},
    )
