"""Which accelerator the lab's "KVM" guests get: real KVM, or TCG (pure emulation).

``/dev/kvm`` alone proves nothing: on some hosts it belongs to ``kvm_pvm`` (PVM, a
software nested hypervisor that runs only guest kernels built for it), so QEMU reports
KVM as enabled and a stock kernel then hangs. KVM counts as usable only when the vendor
module is loaded *and* the CPU shows the matching flag. Backends must say so when a guest
meant for KVM runs under TCG; this module gives them the words.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from labctl.host import probe

#: KVM vendor module -> the CPU flag it needs.
VENDOR_MODULES = {"kvm_intel": "vmx", "kvm_amd": "svm"}
PVM_MODULE = "kvm_pvm"
TCG_SUFFIX = "guests will run under TCG"


@dataclass(frozen=True)
class AccelProbe:
    """Whether KVM can really boot the lab's guests, which module backs it, and why."""

    usable: bool
    module: str | None
    reason: str

    @property
    def accel(self) -> str:
        """The accelerator the lab should default to: ``kvm`` or ``tcg``."""
        return "kvm" if self.usable else "tcg"


def decide(
    arch: str,
    modules: Iterable[str],
    virt_flags: Iterable[str],
    dev_kvm_exists: bool,
    dev_kvm_rw: bool,
) -> AccelProbe:
    """Apply the rules to the facts (pure, so tests can feed any host)."""
    loaded = set(modules)
    flags = set(virt_flags)
    vendor = next((m for m in VENDOR_MODULES if m in loaded), None)
    module = vendor or (PVM_MODULE if PVM_MODULE in loaded else None)
    if module is None and "kvm" in loaded:
        module = "kvm"

    def tcg(why: str, detail: str = "") -> AccelProbe:
        return AccelProbe(
            False, module, f"{why}, {TCG_SUFFIX}" + (f" ({detail})" if detail else "")
        )

    if arch == "aarch64":
        # arm64 KVM has no cpuinfo flag; the built-in "kvm" module plus /dev/kvm is the sign
        if "kvm" in loaded and dev_kvm_exists and dev_kvm_rw:
            return AccelProbe(True, "kvm", "arm64 KVM is available")
        return tcg("no usable KVM on this arm64 host")
    if arch != "x86_64":
        return tcg(f"KVM is not supported by labctl on {arch}")

    if vendor is not None and VENDOR_MODULES[vendor] in flags:
        flag = VENDOR_MODULES[vendor]
        if not dev_kvm_exists:
            return tcg(f"{vendor} is loaded but /dev/kvm is missing")
        if not dev_kvm_rw:
            return tcg(f"{vendor} is loaded but /dev/kvm is not readable and writable here")
        return AccelProbe(True, vendor, f"{vendor} loaded and the CPU has {flag}")
    if PVM_MODULE in loaded:
        return tcg(
            f"present but unusable: {PVM_MODULE}",
            "PVM runs only guest kernels built for it; the CPU has no vmx/svm",
        )
    if flags:
        flag = min(flags)
        wanted = "kvm_intel" if flag == "vmx" else "kvm_amd"
        return tcg(f"the CPU has {flag} but {wanted} is not loaded")
    if dev_kvm_exists:
        return tcg(f"present but unusable: {module or '/dev/kvm'}", "the CPU has no vmx/svm flag")
    return tcg("no /dev/kvm and the CPU has no vmx/svm flag")


def detect() -> AccelProbe:
    """Probe this host: kernel modules, CPU flags and /dev/kvm (never /dev/kvm alone)."""
    info = probe.cpu()
    exists = probe.DEV_KVM.exists()
    return decide(
        arch=info.arch,
        modules=probe.kernel_modules(),
        virt_flags=info.virt_flags,
        dev_kvm_exists=exists,
        dev_kvm_rw=exists and os.access(probe.DEV_KVM, os.R_OK | os.W_OK),
    )
