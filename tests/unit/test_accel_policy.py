"""KVM or TCG per guest: never a silent fallback."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from labctl.errors import HostError
from labctl.lab.accel import choose
from labctl.spec.model import LibvirtGuest


@dataclass(frozen=True)
class Probe:
    usable: bool
    module: str | None = "kvm_pvm"
    reason: str = "kvm_pvm cannot boot stock kernels"


def guest(**kw: object) -> LibvirtGuest:
    image = "vm-arm64" if kw.get("arch") == "aarch64" else "vm-amd64"
    return LibvirtGuest(engine="libvirt", technique="full-virtualization", image=image, **kw)  # type: ignore[arg-type]


def test_kvm_when_usable() -> None:
    assert choose(guest(accel="kvm"), Probe(True), False, "g").accel == "kvm"
    assert choose(guest(accel="auto"), Probe(True), False, "g").note is None


def test_unusable_kvm_runs_tcg_and_says_why() -> None:
    choice = choose(guest(accel="kvm"), Probe(False), False, "kvm-full")
    assert choice.accel == "tcg"
    assert choice.note and "kvm_pvm" in choice.note and "TCG" in choice.note


def test_require_kvm_refuses() -> None:
    with pytest.raises(HostError, match="kvm-full needs KVM"):
        choose(guest(accel="kvm"), Probe(False), True, "kvm-full")


def test_tcg_and_foreign_arch_are_always_tcg_without_a_note() -> None:
    assert choose(guest(accel="tcg"), Probe(True), True, "g").accel == "tcg"
    arm = guest(arch="aarch64", accel="tcg")
    assert choose(arm, Probe(True), True, "arm").accel == "tcg"
