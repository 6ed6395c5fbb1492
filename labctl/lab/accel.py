"""Which accelerator each VM gets: never a silent fallback from KVM to TCG."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from labctl.errors import HostError
from labctl.spec.model import LibvirtGuest


class KvmProbe(Protocol):
    """What the host probe says about KVM."""

    @property
    def usable(self) -> bool: ...

    @property
    def module(self) -> str | None: ...

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class AccelChoice:
    """The accelerator a guest will use, and why when it differs from the spec."""

    accel: str  # kvm or tcg
    note: str | None = None


def choose(guest: LibvirtGuest, probe: KvmProbe, require_kvm: bool, name: str) -> AccelChoice:
    """Resolve ``guest.accel`` (kvm/tcg/auto) against what the host can really run."""
    if guest.accel == "tcg" or guest.arch != "x86_64":
        return AccelChoice("tcg")
    if probe.usable:
        return AccelChoice("kvm")
    if require_kvm:
        raise HostError(
            f"{name} needs KVM, and KVM cannot run guests on this host: {probe.reason}",
            "run without --require-kvm to use TCG (slower, and labelled as such everywhere), "
            "or use a host with VT-x/AMD-V",
        )
    why = f"{probe.module} loaded but unusable" if probe.module else "no usable KVM"
    if guest.accel == "auto":
        return AccelChoice("tcg", f"auto: {why} on this host, running under TCG")
    return AccelChoice("tcg", f"KVM requested, {why} on this host: running under TCG")
