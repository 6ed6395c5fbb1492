"""``labctl compare --quick`` on the real lab: a plausible report, saved, and an HTML that displays.

One comparison run (through the CLI, in-process) serves every test of this module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from typer.testing import CliRunner

from labctl import backends
from labctl.cli import app
from labctl.compare import results
from labctl.compare.model import HOST, NATIVE, NOT_MEASURABLE, Report
from labctl.host.accel import detect
from tests.integration.conftest import RunningLab

#: metric -> guests (plus the host) that must have a figure in a quick run
EXPECTED = {
    "cpu": {HOST, "arm-emulated", "kvm-full", "kvm-virtio", "lxc-system", "docker-app"},
    "disk_write": {HOST, "kvm-full", "kvm-virtio", "lxc-system"},
    "disk_read": {HOST, "kvm-full", "kvm-virtio", "lxc-system"},
    "net_to_guest": {"kvm-full", "kvm-virtio"},
    "net_from_guest": {"kvm-full", "kvm-virtio"},
    "memory": {"arm-emulated", "kvm-full", "kvm-virtio", "lxc-system", "docker-app"},
    "footprint": {"arm-emulated", "kvm-full", "kvm-virtio", "lxc-system", "docker-app"},
    "boot_lab_up": {"arm-emulated", "kvm-full", "kvm-virtio", "lxc-system", "docker-app"},
    "boot_fresh": {"lxc-system", "docker-app"},
}
#: plausible (low, high) per metric, in the metric's unit
PLAUSIBLE = {
    "cpu": (0.005, 120.0),
    "disk_write": (1.0, 100_000.0),
    "disk_read": (1.0, 100_000.0),
    "net_to_guest": (1.0, 1_000_000.0),
    "net_from_guest": (1.0, 1_000_000.0),
    "memory": (0.1, 8192.0),
    "footprint": (0.0, 8192.0),
    "boot_lab_up": (0.05, 600.0),
    "boot_fresh": (0.05, 120.0),
}
#: single-sample metrics; everything else is repeated after a discarded warm-up
SINGLE = {"footprint", "boot_lab_up"}


@dataclass(frozen=True)
class Run:
    report: Report
    seconds: float
    html: Path
    saved: Path


@pytest.fixture(scope="module")
def quick(running_lab: RunningLab, tmp_path_factory: pytest.TempPathFactory) -> Run:
    html = tmp_path_factory.mktemp("compare") / "report.html"
    t0 = time.monotonic()
    result = CliRunner().invoke(
        app,
        ["compare", "--quick", "--json", "--html", str(html), "-i", running_lab.instance],
        catch_exceptions=False,
    )
    seconds = time.monotonic() - t0
    assert result.exit_code == 0, result.output
    report = Report.from_dict(json.loads(result.stdout))
    print(f"\nlabctl compare --quick took {seconds:.0f} s")
    return Run(report, seconds, html, results.directory(running_lab.inst) / results.LATEST)


def test_every_expected_figure_was_measured(quick: Run, running_lab: RunningLab) -> None:
    assert quick.report.failed == [], quick.report.failed
    state = running_lab.inst.load()
    assert state is not None
    # up's ready time is a boot only where up booted the guest (not restored from a template)
    booted = {n for n, r in state.guests.items() if r.started == "booted"}
    expected = {**EXPECTED, "boot_lab_up": EXPECTED["boot_lab_up"] & booted}
    for metric, subjects in expected.items():
        found = {f.subject for f in quick.report.figures if f.metric == metric}
        assert subjects <= found, f"{metric}: missing {subjects - found}"
    not_booted = {g.subject for g in quick.report.gaps if g.metric == "boot_lab_up"}
    assert not_booted == set(state.guests) - booted, quick.report.gaps
    print(f"\nboot_lab_up: booted {sorted(booted)}, not booted {sorted(not_booted)}")


def test_every_number_is_plausible_with_its_spread(quick: Run) -> None:
    for f in quick.report.figures:
        low, high = PLAUSIBLE[f.metric]
        s = f.samples
        where = f"{f.metric}/{f.subject}: {s.values}"
        assert all(low <= v <= high for v in s.values), where
        assert s.min <= s.median <= s.max, where
        if f.metric not in SINGLE:
            assert s.n >= 3, where
            if f.metric != "memory":  # memory is sampled, not a workload: nothing to warm up
                assert len(s.discarded) >= 1, f"{where}: no warm-up run discarded"
        if f.metric != "footprint":
            assert s.median > 0, where
        assert f.method, where


def test_every_figure_records_the_accelerator_really_used(
    quick: Run, running_lab: RunningLab
) -> None:
    libvirt = backends.get("libvirt")
    for f in quick.report.figures:
        rec = running_lab.state.guests.get(f.subject)
        if rec is not None and rec.engine == "libvirt":
            assert f.accel == libvirt.accelerator(rec.resource), f
            assert f.accel in ("kvm", "tcg")
        else:
            assert f.accel == NATIVE, f
        assert f.devices


def test_host_and_kvm_facts_are_recorded(quick: Run) -> None:
    host = quick.report.host
    assert host.cores == os.cpu_count() and host.cpu_model
    probe = detect()
    assert host.kvm_usable == probe.usable
    claims = {c.id: c for c in quick.report.claims}
    assert claims["type2-slower"].verdict == NOT_MEASURABLE
    if not probe.usable:
        assert {s.name for s in quick.report.tcg_instead_of_kvm} == {"kvm-full", "kvm-virtio"}
        for cid in ("emulation-vs-kvm", "kvm-near-native"):
            assert claims[cid].verdict == NOT_MEASURABLE, claims[cid]


def test_results_are_saved_with_the_lab_state(quick: Run, running_lab: RunningLab) -> None:
    assert quick.saved.is_file()
    assert not quick.saved.is_relative_to(running_lab.inst.run)  # `down` removes run/
    assert results.load_latest(running_lab.inst) == quick.report
    stamped = [p for p in quick.saved.parent.glob("*.json") if p.name != results.LATEST]
    assert stamped


def _chromium(in_ci: bool) -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    if in_ci:
        pytest.fail("chromium is not installed: ./bootstrap test runs host setup --test-tools")
    pytest.skip("chromium is not installed (labctl host setup --test-tools installs it)")


def test_html_report_displays_in_a_browser(quick: Run, in_ci: bool, tmp_path: Path) -> None:
    html = quick.html.read_text()
    assert "<script" not in html and "<link" not in html
    if quick.report.tcg_instead_of_kvm:
        assert 'class="warn"' in html
    png = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                _chromium(in_ci),
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", f"--screenshot={png}",
                "--window-size=1200,1600", quick.html.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )  # fmt: skip
    assert png.is_file() and png.stat().st_size > 30_000
    image = Image.open(png).convert("RGB")
    assert image.size == (1200, 1600)
    assert max(ImageStat.Stat(image).stddev) > 20, "the screenshot is blank"
    colors = Counter({rgb: n for n, rgb in image.getcolors(maxcolors=1 << 24) or []})
    # the charts are drawn: solid bar colours of the host and of the VirtIO guest are on screen
    assert colors[(0x7F, 0x8C, 0x8D)] > 200, "no host bar in the screenshot"
    assert colors[(0x27, 0xAE, 0x60)] > 200, "no kvm-virtio bar in the screenshot"
