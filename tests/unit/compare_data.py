"""Synthetic comparison reports for the unit tests of ``labctl.compare``."""

from __future__ import annotations

from collections.abc import Sequence

from labctl.compare.model import HOST, NATIVE, Figure, Gap, HostInfo, Report, Samples, Subject

KVM_HOST = HostInfo("Test CPU", 4, "6.1.0", True, "kvm_intel loaded and the CPU has vmx")
TCG_HOST = HostInfo(
    "Test CPU", 2, "6.1.0", False, "present but unusable: kvm_pvm, guests will run under TCG"
)


def lab_subjects(accel: str = "kvm") -> tuple[Subject, ...]:
    """The default lab's guests plus the host; the x86 VMs under ``accel``."""
    return (
        Subject(HOST, "host", "host", "x86_64", NATIVE, "the host's own disk and NIC"),
        Subject(
            "arm-emulated", "emulation", "libvirt", "aarch64", "tcg", "virtio-blk + virtio-net"
        ),
        Subject("kvm-full", "full-virtualization", "libvirt", "x86_64", accel, "IDE + e1000"),
        Subject("kvm-virtio", "paravirtualization", "libvirt", "x86_64", accel, "virtio"),
        Subject("lxc-system", "system-container", "lxd", "x86_64", NATIVE, "shared kernel"),
        Subject("docker-app", "app-container", "docker", "x86_64", NATIVE, "shared kernel"),
    )


def fig(
    metric: str, subject: str, values: Sequence[float], accel: str = "kvm", note: str | None = None
) -> Figure:
    """A figure with the given counted samples, on its subject's devices."""
    devices = {s.name: s.devices for s in lab_subjects()}.get(subject, "dev")
    return Figure(metric, subject, Samples(tuple(values)), accel, devices, "test method", note)


def report(
    figures: Sequence[Figure],
    accel: str = "kvm",
    host: HostInfo = KVM_HOST,
    gaps: Sequence[Gap] = (),
) -> Report:
    """A report of the default lab with ``figures``; claims not evaluated."""
    return Report(
        lab="virtualization",
        instance="t",
        mode="quick",
        started="2026-01-01T00:00:00+00:00",
        seconds=60.0,
        host=host,
        profile={"name": "quick"},
        subjects=lab_subjects(accel),
        figures=tuple(figures),
        gaps=tuple(gaps),
    )
