"""Verdicts on the lesson's claims: thresholds, spread, and what cannot be measured here."""

from __future__ import annotations

import pytest

from labctl.compare import claims
from labctl.compare.model import NOT_MEASURABLE, NOT_SHOWN, SHOWN, Claim, Figure, Gap
from tests.unit.compare_data import TCG_HOST, fig, report

TIGHT = (0.98, 1.0, 1.02)


def scaled(factor: float, base: tuple[float, ...] = TIGHT) -> list[float]:
    return [v * factor for v in base]


def by_id(found: tuple[Claim, ...], cid: str) -> Claim:
    return next(c for c in found if c.id == cid)


def kvm_lab_figures(kvm_cpu: float = 1.05) -> list[Figure]:
    """A host where KVM works: emulation 10× slower, KVM 5 % slower than the host."""
    return [
        fig("cpu", "host", scaled(1.0)),
        fig("cpu", "arm-emulated", scaled(10.0), "tcg"),
        fig("cpu", "kvm-full", scaled(kvm_cpu)),
        fig("cpu", "kvm-virtio", scaled(kvm_cpu)),
    ]


# -- the arithmetic -----------------------------------------------------------------------


def test_advantage_for_lower_is_better() -> None:
    fast, slow = fig("cpu", "a", [1.0, 1.0, 2.0]), fig("cpu", "b", [4.0, 5.0, 6.0])
    median, conservative = claims.advantage(fast, slow)
    assert median == 5.0 and conservative == 2.0  # b's best 4 over a's worst 2


def test_advantage_for_higher_is_better() -> None:
    good, bad = fig("disk_write", "a", [300, 400, 500]), fig("disk_write", "b", [90, 100, 150])
    median, conservative = claims.advantage(good, bad)
    assert median == 4.0 and conservative == 2.0  # a's worst 300 over b's best 150


def test_overlapping_ranges_are_not_shown_even_with_distant_medians() -> None:
    a = fig("disk_write", "a", [100, 300, 310])
    b = fig("disk_write", "b", [100, 120, 280])
    verdict, reason, median, conservative = claims.beats(a, b, 1.1)
    assert verdict == NOT_SHOWN and median > 2 and conservative < 1.1
    assert "overlap" in reason


def test_single_samples_need_double_the_threshold() -> None:
    a, b = fig("boot_lab_up", "a", [10.0]), fig("boot_lab_up", "b", [30.0])
    assert claims.beats(a, b, 2.0)[0] == NOT_SHOWN  # 3× < 4×
    assert claims.beats(a, b, 1.5)[0] == SHOWN  # 3× ≥ 3×


def test_the_other_way_round_is_said_so() -> None:
    a, b = fig("disk_read", "virtio", scaled(100)), fig("disk_read", "ide", scaled(200))
    verdict, reason, *_ = claims.beats(a, b, 1.1)
    assert verdict == NOT_SHOWN and "other way round" in reason


# -- claims on a host with KVM --------------------------------------------------------------


def test_with_kvm_emulation_is_slower_and_kvm_near_native() -> None:
    found = claims.evaluate(report(kvm_lab_figures()))
    emu = by_id(found, "emulation-vs-kvm")
    assert emu.verdict == SHOWN and emu.ratio == pytest.approx(10 / 1.05, rel=1e-3)
    assert by_id(found, "kvm-near-native").verdict == SHOWN
    assert by_id(found, "emulation-vs-native").verdict == SHOWN


def test_kvm_far_from_native_is_not_shown() -> None:
    found = claims.evaluate(report(kvm_lab_figures(kvm_cpu=1.6)))
    near = by_id(found, "kvm-near-native")
    assert near.verdict == NOT_SHOWN and "above 1.25" in near.reason


def test_near_native_median_is_not_enough_when_the_worst_run_is_far() -> None:
    figures = kvm_lab_figures()
    figures[2] = fig("cpu", "kvm-full", [1.0, 1.1, 1.6])
    near = by_id(claims.evaluate(report(figures)), "kvm-near-native")
    assert near.verdict == NOT_SHOWN and "worst run" in near.reason


# -- claims on a host without KVM (this one) --------------------------------------------------


def test_without_kvm_the_kvm_claims_are_not_measurable_but_the_ratio_is_kept() -> None:
    figures = [
        fig("cpu", "host", scaled(1.0)),
        fig("cpu", "arm-emulated", scaled(10.0), "tcg"),
        fig("cpu", "kvm-full", scaled(9.0), "tcg"),
        fig("cpu", "kvm-virtio", scaled(9.0), "tcg"),
    ]
    found = claims.evaluate(report(figures, accel="tcg", host=TCG_HOST))
    for cid in ("emulation-vs-kvm", "kvm-near-native"):
        c = by_id(found, cid)
        assert c.verdict == NOT_MEASURABLE
        assert "ran under TCG, not KVM" in c.reason and "kvm_pvm" in c.reason
        assert c.ratio is not None
    assert by_id(found, "emulation-vs-kvm").reason.endswith("compares emulation with emulation")
    assert by_id(found, "kvm-near-native").reason.endswith(
        "compares emulation with the host's own CPU"
    )
    # emulation against the bare CPU is measurable anywhere
    assert by_id(found, "emulation-vs-native").verdict == SHOWN


def test_type2_is_never_measurable_in_this_lab() -> None:
    c = by_id(claims.evaluate(report([])), "type2-slower")
    assert c.verdict == NOT_MEASURABLE and "type-2" in c.reason


# -- VirtIO ------------------------------------------------------------------------------------


def test_virtio_network_gain_under_tcg_is_shown_and_says_under_what() -> None:
    figures = [
        fig("net_to_guest", "kvm-virtio", scaled(2000), "tcg"),
        fig("net_to_guest", "kvm-full", scaled(1000), "tcg"),
    ]
    c = by_id(claims.evaluate(report(figures, accel="tcg", host=TCG_HOST)), "virtio-net-to-guest")
    assert c.verdict == SHOWN and c.ratio == pytest.approx(2.0)
    assert "under TCG" in c.reason


def test_virtio_gain_below_the_threshold_is_not_shown() -> None:
    figures = [
        fig("disk_write", "kvm-virtio", scaled(105)),
        fig("disk_write", "kvm-full", scaled(100)),
    ]
    assert by_id(claims.evaluate(report(figures)), "virtio-disk-write").verdict == NOT_SHOWN


def test_a_missing_figure_is_not_measurable_and_says_why() -> None:
    figures = [fig("net_from_guest", "kvm-virtio", scaled(2000))]
    gaps = [Gap("network", "kvm-full", "iperf3: connection refused")]
    c = by_id(claims.evaluate(report(figures, gaps=gaps)), "virtio-net-from-guest")
    assert c.verdict == NOT_MEASURABLE and "kvm-full" in c.reason


def test_virtio_start_uses_fresh_boots_when_both_have_one() -> None:
    figures = [
        fig("boot_lab_up", "kvm-virtio", [20.0]),
        fig("boot_lab_up", "kvm-full", [21.0]),
        fig("boot_fresh", "kvm-virtio", [10.0]),
        fig("boot_fresh", "kvm-full", [40.0]),
    ]
    c = by_id(claims.evaluate(report(figures)), "virtio-boot-fresh")
    assert c.verdict == SHOWN and c.evidence.startswith("boot_fresh")


# -- containers --------------------------------------------------------------------------------


def _start_and_memory(vm_boot: float, ct_boot: float) -> list[Figure]:
    out = []
    for vm in ("arm-emulated", "kvm-full", "kvm-virtio"):
        out += [fig("boot_fresh", vm, [vm_boot]), fig("memory", vm, scaled(400), "tcg")]
    for ct in ("lxc-system", "docker-app"):
        out += [fig("boot_fresh", ct, scaled(ct_boot)), fig("memory", ct, scaled(15))]
    return out


def test_containers_start_faster_and_use_less_memory() -> None:
    found = claims.evaluate(report(_start_and_memory(vm_boot=25.0, ct_boot=0.4)))
    start, memory = by_id(found, "containers-start"), by_id(found, "containers-memory")
    assert start.verdict == SHOWN and start.ratio == pytest.approx(62.5)
    assert memory.verdict == SHOWN
    assert "worst container" in start.evidence and "best VM" in start.evidence


def test_containers_start_compares_the_slowest_container_with_the_fastest_vm() -> None:
    figures = _start_and_memory(vm_boot=25.0, ct_boot=0.4)
    figures = [f for f in figures if not (f.metric == "boot_fresh" and f.subject == "lxc-system")]
    figures.append(fig("boot_fresh", "lxc-system", scaled(20.0)))
    c = by_id(claims.evaluate(report(figures)), "containers-start")
    assert c.verdict == NOT_SHOWN and "lxc-system" in c.evidence


def test_containers_fall_back_to_the_lab_up_times() -> None:
    figures = [f for f in _start_and_memory(25.0, 0.4) if f.metric != "boot_fresh"]
    figures += [fig("boot_lab_up", n, [30.0]) for n in ("arm-emulated", "kvm-full", "kvm-virtio")]
    figures += [fig("boot_lab_up", n, [10.0]) for n in ("lxc-system", "docker-app")]
    c = by_id(claims.evaluate(report(figures)), "containers-start")
    # 3× with single samples: the doubled threshold (4×) is not reached
    assert c.evidence.startswith("boot_lab_up") and c.verdict == NOT_SHOWN


def test_containers_start_is_not_measurable_when_up_restored_the_vms() -> None:
    """A VM restored from a saved template is no boot: the claim says so, not a verdict."""
    figures = [f for f in _start_and_memory(25.0, 0.4) if f.metric != "boot_fresh"]
    figures += [fig("boot_lab_up", n, [10.0]) for n in ("lxc-system", "docker-app")]
    why = "restored by labctl up, not booted: its ready time is no boot"
    gaps = [Gap("boot_lab_up", n, f"{n}: {why}", False) for n in ("arm-emulated", "kvm-full")]
    c = by_id(claims.evaluate(report(figures, gaps=gaps)), "containers-start")
    assert c.verdict == NOT_MEASURABLE
    # every VM without a figure is named, those for one reason together
    assert c.reason == (
        f"no boot_lab_up figure for arm-emulated, kvm-full: {why}; "
        "no boot_lab_up figure for kvm-virtio"
    )


def test_every_claim_has_a_verdict_and_a_reason() -> None:
    for c in claims.evaluate(report([])):
        assert c.verdict in (SHOWN, NOT_SHOWN, NOT_MEASURABLE)
        assert c.reason and c.lesson and c.threshold


def test_few_samples_the_other_way_round_is_said_so() -> None:
    verdict, reason, *_ = claims.beats(
        fig("boot_fresh", "kvm-virtio", [12.0]), fig("boot_fresh", "kvm-full", [10.0]), 1.1
    )
    assert verdict == NOT_SHOWN
    assert "other way round" in reason and "kvm-virtio (n=1)" in reason
