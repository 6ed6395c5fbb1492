"""KVM detection: module plus CPU flag, never /dev/kvm alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.host import accel, probe
from labctl.host.accel import decide


def x86(
    modules: set[str], flags: set[str], exists: bool = True, rw: bool = True
) -> accel.AccelProbe:
    return decide("x86_64", modules, flags, exists, rw)


def test_pvm_without_vmx_is_present_but_unusable() -> None:
    a = x86({"kvm", "kvm_pvm"}, set())
    assert not a.usable
    assert a.module == "kvm_pvm"
    assert a.accel == "tcg"
    assert a.reason.startswith("present but unusable: kvm_pvm, guests will run under TCG")


@pytest.mark.parametrize(("module", "flag"), [("kvm_intel", "vmx"), ("kvm_amd", "svm")])
def test_vendor_module_with_its_flag_is_usable(module: str, flag: str) -> None:
    a = x86({"kvm", module}, {flag})
    assert a.usable and a.accel == "kvm"
    assert a.module == module
    assert flag in a.reason


def test_vendor_module_wins_over_pvm() -> None:
    a = x86({"kvm", "kvm_pvm", "kvm_intel"}, {"vmx"})
    assert a.usable and a.module == "kvm_intel"


def test_dev_kvm_alone_is_not_trusted() -> None:
    a = x86({"kvm"}, set())
    assert not a.usable
    assert "present but unusable" in a.reason and "TCG" in a.reason


def test_flag_without_module_says_what_to_load() -> None:
    a = x86({"kvm"}, {"vmx"}, exists=False)
    assert not a.usable
    assert "kvm_intel is not loaded" in a.reason


def test_module_without_device_or_access_falls_to_tcg_loudly() -> None:
    missing = x86({"kvm", "kvm_amd"}, {"svm"}, exists=False)
    assert not missing.usable and "/dev/kvm is missing" in missing.reason
    denied = x86({"kvm", "kvm_amd"}, {"svm"}, rw=False)
    assert not denied.usable and "not readable and writable" in denied.reason


def test_nothing_at_all() -> None:
    a = x86(set(), set(), exists=False)
    assert not a.usable and a.module is None
    assert a.reason.endswith("guests will run under TCG")


def test_arm64_uses_the_kvm_module() -> None:
    assert decide("aarch64", {"kvm"}, set(), True, True).usable
    assert not decide("aarch64", set(), set(), False, False).usable


def test_other_arches_are_tcg() -> None:
    assert not decide("riscv64", {"kvm"}, set(), True, True).usable


def test_kernel_modules_reads_proc_and_sys(tmp_path: Path) -> None:
    (tmp_path / "modules").write_text("kvm_intel 1 0 - Live 0x0\nkvm 2 1 kvm_intel, Live 0x0\n")
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys" / "kvm_pvm").mkdir()
    found = probe.kernel_modules(tmp_path / "modules", tmp_path / "sys")
    assert found == {"kvm_intel", "kvm", "kvm_pvm"}
    # no /proc/modules at all (this machine class): /sys/module still answers
    assert probe.kernel_modules(tmp_path / "absent", tmp_path / "sys") == {"kvm_pvm"}


def test_cpu_flags(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor: 0\nflags\t\t: fpu vme svm hypervisor avx\n")
    cpu = probe.cpu(info)
    assert cpu.virt_flags == ("svm",)
    assert cpu.hypervisor


def test_detect_on_this_host_is_consistent() -> None:
    a = accel.detect()
    assert a.accel in ("kvm", "tcg")
    if "kvm_pvm" in probe.kernel_modules() and not probe.cpu().virt_flags:
        assert not a.usable and a.module == "kvm_pvm"
