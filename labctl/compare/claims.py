"""The lesson's claims against the figures: a ratio, a threshold and a verdict for each.

Pure functions of the figures. The rules, so a reader can check every verdict:

* An "A beats B" claim is about how many times better A is (``advantage``, > 1 means A is
  better in the metric's own direction). It is **shown** only if the *conservative* advantage,
  taken from the ends of the ranges (A's worst sample against B's best), reaches the
  threshold: the min-max ranges must be that far apart, not just the medians.
* A figure with fewer than :data:`MIN_SAMPLES` samples has no known spread; such a claim is
  shown only if the median advantage reaches :data:`UNKNOWN_SPREAD_MARGIN` times the threshold.
* "Near physical speed" is shown only if the guest's *worst* time is within
  :data:`NEAR_NATIVE` of the host's *best*, with enough samples on both sides.
* A claim about KVM is **not measurable** when the guest that should show it did not run
  under KVM: two emulations compared say nothing about hardware-assisted virtualization.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from labctl.compare.model import (
    HOST,
    NOT_MEASURABLE,
    NOT_SHOWN,
    SHOWN,
    Claim,
    Figure,
    HostInfo,
    Report,
    Subject,
)

SIGNIFICANT = 2.0  # "significantly slower": at least twice the time
NEAR_NATIVE = 1.25  # "near physical speed": at most 25 % slower than the host
DEVICE_GAIN = 1.25  # VirtIO "beats" an emulated device: at least 25 % better (runs vary)
CONTAINER_GAIN = 2.0  # containers start at least twice as fast and use at most half the memory
MIN_SAMPLES = 3
UNKNOWN_SPREAD_MARGIN = 2.0
FRESH_HINT = "labctl compare --restart-guests measures fresh starts of every guest"

LESSON_EMULATION = (
    "su rendimiento suele ser significativamente más bajo en comparación con la "
    "virtualización, donde la CPU ejecuta directamente las instrucciones"
)
LESSON_TYPE1 = "Este enfoque ofrece un rendimiento cercano al de una máquina física."
LESSON_TYPE2 = (
    "Este enfoque introduce una capa adicional que reduce el rendimiento en comparación con "
    "los hipervisores de tipo 1."
)
LESSON_VIRTIO = (
    "La paravirtualización ofrece mayor rendimiento [...] se prefiere la virtualización "
    "completa con dispositivos paravirtualizados (VirtIO)."
)
LESSON_CONTAINERS = (
    "sobre el núcleo del sistema operativo se ejecuta una capa de virtualización que permite "
    "que existan múltiples instancias aisladas de espacios de usuario"
)


def advantage(a: Figure, b: Figure) -> tuple[float, float]:
    """How many times better ``a`` is than ``b``: (from the medians, from the range ends)."""
    sa, sb = a.samples, b.samples
    if a.info.better == "lower":
        median = sb.median / sa.median if sa.median else float("inf")
        conservative = sb.min / sa.max if sa.max else float("inf")
    else:
        median = sa.median / sb.median if sb.median else float("inf")
        conservative = sa.min / sb.max if sb.max else float("inf")
    return median, conservative


def _few(*figures: Figure) -> bool:
    return any(f.samples.n < MIN_SAMPLES for f in figures)


def beats(a: Figure, b: Figure, threshold: float) -> tuple[str, str, float, float]:
    """Verdict and reason for "``a`` is at least ``threshold`` times better than ``b``"."""
    median, conservative = advantage(a, b)
    if _few(a, b):
        need = threshold * UNKNOWN_SPREAD_MARGIN
        few = ", ".join(f"{f.subject} (n={f.samples.n})" for f in (a, b) if f.samples.n < 3)
        if median >= need:
            why = f"{median:.2f}×, above the doubled threshold {need:.2f}× that applies when "
            return SHOWN, why + f"the spread is unknown: {few}", median, conservative
        if median < 1:
            why = f"the other way round here: {b.subject} is {1 / median:.2f}× better"
        else:
            why = f"{median:.2f}×, below the doubled threshold {need:.2f}×"
        return NOT_SHOWN, why + f" (spread unknown: {few})", median, conservative
    if conservative >= threshold:
        return (
            SHOWN,
            f"{a.subject}'s worst run is still {conservative:.2f}× better than {b.subject}'s best",
            median,
            conservative,
        )
    if median >= threshold:
        why = (
            f"the medians differ {median:.2f}×, but the ranges overlap too much "
            f"({conservative:.2f}×)"
        )
    elif median < 1:
        why = f"the other way round here: {b.subject} is {1 / median:.2f}× better"
    else:
        why = f"only {median:.2f}× better, below {threshold:.2f}×"
    return NOT_SHOWN, why, median, conservative


def _claim(
    id: str,
    text: str,
    lesson: str,
    threshold: str,
    evidence: str,
    verdict: str,
    reason: str,
    ratio: float | None = None,
    conservative: float | None = None,
) -> Claim:
    return Claim(
        id=id,
        text=text,
        lesson=lesson,
        evidence=evidence,
        ratio=None if ratio is None else round(ratio, 3),
        conservative=None if conservative is None else round(conservative, 3),
        threshold=threshold,
        verdict=verdict,  # type: ignore[arg-type]
        reason=reason,
    )


def _by_technique(report: Report, *techniques: str) -> Subject | None:
    for technique in techniques:
        found = [s for s in report.subjects if s.technique == technique]
        if found:
            return found[0]
    return None


def _missing(report: Report, metric: str, *names: str) -> str | None:
    """Which of ``names`` have no ``metric`` figure, and why (those with one reason named
    together), or None."""
    missing: dict[str, list[str]] = {}
    for name in names:
        if report.figure(metric, name) is None:
            gap = next((g for g in report.gaps if g.metric == metric and g.subject == name), None)
            why = f": {gap.reason.removeprefix(f'{name}: ')}" if gap else ""
            missing.setdefault(why, []).append(name)
    if not missing:
        return None
    return "; ".join(f"no {metric} figure for {', '.join(n)}{why}" for why, n in missing.items())


def _no_kvm(subject: Subject, host: HostInfo, against: str = "emulation") -> str:
    """Why a claim about KVM cannot be judged: ``subject`` was emulated (``against``: what
    the claim compares it with, emulation or the host's own CPU)."""
    why = host.kvm_reason.split(",")[0] if not host.kvm_usable else "KVM was not used"
    return (
        f"{subject.name} ran under {subject.accel.upper()}, not KVM ({why}); "
        f"the ratio compares emulation with {against}"
    )


def _faster_cpu(
    report: Report,
    claim: Callable[..., Claim],
    fast: str,
    slow: str,
    unmeasurable: str | None = None,
) -> Claim:
    """The claim that ``fast`` runs the CPU workload at least SIGNIFICANT times faster than
    ``slow``; ``unmeasurable`` says why the figures, even when there, cannot show it."""
    evidence = f"cpu: {slow} time / {fast} time"
    if missing := _missing(report, "cpu", slow, fast):
        return claim(evidence, NOT_MEASURABLE, missing)
    a, b = report.figure("cpu", fast), report.figure("cpu", slow)
    assert a and b
    verdict, reason, median, conservative = beats(a, b, SIGNIFICANT)
    if unmeasurable is not None:
        verdict, reason = NOT_MEASURABLE, unmeasurable
    return claim(evidence, verdict, reason, median, conservative)


def emulation_vs_kvm(report: Report) -> Claim:
    """Emulation is significantly slower than hardware-assisted virtualization (CPU)."""
    claim = partial(
        _claim,
        "emulation-vs-kvm",
        "Emulation is significantly slower than hardware-assisted virtualization (KVM)",
        LESSON_EMULATION,
        f"KVM guest ≥ {SIGNIFICANT:g}× faster (CPU)",
    )
    emu = _by_technique(report, "emulation")
    kvm = _by_technique(report, "full-virtualization", "paravirtualization")
    if emu is None or kvm is None:
        return claim("-", NOT_MEASURABLE, "the lab has no emulated guest or no KVM guest")
    no_kvm = _no_kvm(kvm, report.host) if kvm.accel != "kvm" else None
    return _faster_cpu(report, claim, kvm.name, emu.name, no_kvm)


def emulation_vs_native(report: Report) -> Claim:
    """Related and measurable anywhere: emulation is much slower than the host's own CPU."""
    claim = partial(
        _claim,
        "emulation-vs-native",
        "Emulation is significantly slower than running on the CPU directly (the host)",
        LESSON_EMULATION,
        f"host ≥ {SIGNIFICANT:g}× faster (CPU)",
    )
    emu = _by_technique(report, "emulation")
    if emu is None:
        return claim("-", NOT_MEASURABLE, "the lab has no emulated guest")
    return _faster_cpu(report, claim, HOST, emu.name)


def near_native(report: Report) -> Claim:
    """KVM (type 1) runs close to physical speed (CPU)."""
    claim = partial(
        _claim,
        "kvm-near-native",
        "KVM (type 1 hypervisor) runs close to physical speed",
        LESSON_TYPE1,
        f"guest time ≤ {NEAR_NATIVE:g}× host time (worst vs best run)",
    )
    kvm = _by_technique(report, "full-virtualization", "paravirtualization")
    if kvm is None:
        return claim("-", NOT_MEASURABLE, "the lab has no KVM guest")
    evidence = f"cpu: {kvm.name} time / host time"
    if missing := _missing(report, "cpu", kvm.name, HOST):
        return claim(evidence, NOT_MEASURABLE, missing)
    g, h = report.figure("cpu", kvm.name), report.figure("cpu", HOST)
    assert g and h
    ratio = g.samples.median / h.samples.median
    worst = g.samples.max / h.samples.min
    if kvm.accel != "kvm":
        verdict, reason = NOT_MEASURABLE, _no_kvm(kvm, report.host, "the host's own CPU")
    elif _few(g, h):
        verdict, reason = NOT_SHOWN, "too few samples to know the spread"
    elif worst <= NEAR_NATIVE:
        verdict, reason = SHOWN, f"even the worst run is within {worst:.2f}× of the host's best"
    elif ratio <= NEAR_NATIVE:
        verdict, reason = NOT_SHOWN, f"median {ratio:.2f}×, but the worst run is {worst:.2f}×"
    else:
        verdict, reason = NOT_SHOWN, f"{ratio:.2f}× the host's time, above {NEAR_NATIVE:g}×"
    return claim(evidence, verdict, reason, ratio, worst)


def type2(report: Report) -> Claim:
    """A type-2 hypervisor is slower than a type-1: the lab has none to compare."""
    return _claim(
        "type2-slower",
        "A type-2 (hosted) hypervisor is slower than a type-1",
        LESSON_TYPE2,
        "-",
        "-",
        NOT_MEASURABLE,
        "the lab runs no type-2 hypervisor (VirtualBox, VMware Workstation) to compare with",
    )


VIRTIO_METRICS = (
    ("disk_write", "disk write"),
    ("disk_read", "disk read"),
    ("net_to_guest", "network host → guest"),
    ("net_from_guest", "network guest → host"),
)


def _boot_metric(report: Report, names: list[str]) -> str:
    """Fresh starts when every subject has one, else the times of ``labctl up``."""
    if names and all(report.figure("boot_fresh", n) for n in names):
        return "boot_fresh"
    return "boot_lab_up"


def virtio(report: Report) -> list[Claim]:
    """Paravirtual (VirtIO) devices beat emulated ones: one claim per metric."""
    full = _by_technique(report, "full-virtualization")
    para = _by_technique(report, "paravirtualization")
    names = [s.name for s in (full, para) if s]
    claims = []
    for metric, label in (*VIRTIO_METRICS, (_boot_metric(report, names), "start to usable")):
        claim = partial(
            _claim,
            f"virtio-{metric.replace('_', '-')}",
            f"Paravirtual (VirtIO) devices beat emulated ones: {label}",
            LESSON_VIRTIO,
            f"VirtIO ≥ {DEVICE_GAIN:g}× better",
        )
        if full is None or para is None:
            claims.append(claim("-", NOT_MEASURABLE, "the lab lacks one of the two guests"))
            continue
        evidence = f"{metric}: {para.name} ({para.devices}) vs {full.name} ({full.devices})"
        if missing := _missing(report, metric, para.name, full.name):
            claims.append(claim(evidence, NOT_MEASURABLE, missing))
            continue
        a, b = report.figure(metric, para.name), report.figure(metric, full.name)
        assert a and b
        verdict, reason, median, conservative = beats(a, b, DEVICE_GAIN)
        if para.accel != full.accel:
            verdict = NOT_MEASURABLE
            reason = f"the guests ran under different accelerators ({para.accel}, {full.accel})"
        elif para.accel != "kvm":
            reason += (
                f"; both ran under {para.accel.upper()}: the device models are compared "
                "under CPU emulation"
            )
        if metric == "boot_lab_up" and verdict == NOT_SHOWN:
            reason += f"; {FRESH_HINT}"
        claims.append(claim(evidence, verdict, reason, median, conservative))
    return claims


def _extreme(report: Report, metric: str, names: list[str], worst: bool) -> Figure:
    figs = [f for n in names if (f := report.figure(metric, n))]
    lower_better = figs[0].info.better == "lower"
    key: Callable[[Figure], float] = lambda f: f.samples.median  # noqa: E731
    pick_max = worst == lower_better
    return max(figs, key=key) if pick_max else min(figs, key=key)


def containers(report: Report) -> list[Claim]:
    """Containers start faster and cost less memory than VMs (worst container vs best VM)."""
    cts = [s.name for s in report.subjects if s.is_container]
    vms = [s.name for s in report.subjects if s.is_vm]
    claims = []
    for metric, cid, label in (
        (_boot_metric(report, cts + vms), "containers-start", "start faster than VMs"),
        ("memory", "containers-memory", "cost less host memory than VMs"),
    ):
        claim = partial(
            _claim,
            cid,
            f"Containers {label}",
            LESSON_CONTAINERS,
            f"containers ≥ {CONTAINER_GAIN:g}× better",
        )
        if not cts or not vms:
            claims.append(claim("-", NOT_MEASURABLE, "the lab needs both containers and VMs"))
            continue
        if missing := _missing(report, metric, *cts, *vms):
            claims.append(claim(metric, NOT_MEASURABLE, missing))
            continue
        ct = _extreme(report, metric, cts, worst=True)
        vm = _extreme(report, metric, vms, worst=False)
        evidence = f"{metric}: worst container ({ct.subject}) vs best VM ({vm.subject})"
        verdict, reason, median, conservative = beats(ct, vm, CONTAINER_GAIN)
        if metric == "boot_lab_up" and verdict != SHOWN:
            reason += f"; {FRESH_HINT}"
        claims.append(claim(evidence, verdict, reason, median, conservative))
    return claims


def evaluate(report: Report) -> tuple[Claim, ...]:
    """Every claim of the lesson, in the lesson's order."""
    return (
        emulation_vs_kvm(report),
        emulation_vs_native(report),
        near_native(report),
        type2(report),
        *virtio(report),
        *containers(report),
    )
