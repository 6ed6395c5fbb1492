"""compare asks the backend contract only: a fake backend stands in for every engine.

A measurement the engine cannot make (``NotSupported``) becomes a gap that is not a failure;
one that breaks is a failed gap; nothing in compare knows which engine it talks to.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl import backends
from labctl.backends.base import Backend, Copy, Devices, HostUse, StartTimes
from labctl.backends.params import LxdParams
from labctl.compare import boot, probes, runner
from labctl.compare.model import NATIVE, Gap, Subject
from labctl.compare.workloads import QUICK, Runs
from labctl.connection import Connection
from labctl.errors import EngineError, LabctlError, NotSupported
from labctl.instance.reservations import Reservations
from labctl.instance.state import GuestRecord, LabState
from labctl.keys import KeyPair
from labctl.lab import status as lab_status
from labctl.paths import LABS_DIR
from labctl.spec.model import load_lab

KEY = KeyPair(Path("/nonexistent/key"))
MIB = 1024 * 1024


class FakeBackend(Backend):
    """Answers compare's questions from fields; lifecycle methods are not used here."""

    ready_means = "the fake says so"

    def __init__(self, engine: str, accel: str | None = None) -> None:
        self.engine = engine  # type: ignore[misc]
        self.accel = accel
        self.copies: list[tuple[Copy, int]] = []
        self.restarts: list[str] = []
        self.memory_error: LabctlError | None = None
        self.copyable = True

    def accelerator(self, resource: str) -> str | None:
        return self.accel

    def devices(self, resource: str) -> Devices:
        return Devices(f"{self.engine} devices", "unsafe" if self.accel else None)

    def memory(self, resource: str) -> HostUse:
        if self.memory_error is not None:
            raise self.memory_error
        return HostUse(64 * MIB, f"{self.engine} memory method", "a note")

    def footprint(self, resource: str) -> HostUse:
        return HostUse(10 * MIB, f"{self.engine} disk method")

    def fresh_start(self, copy: Copy, starts: int) -> StartTimes:
        if not self.copyable:
            raise NotSupported("no copies here", "use --restart-guests")
        self.copies.append((copy, starts))
        return StartTimes(tuple(float(i + 1) for i in range(starts)), "copy method")

    def restart(self, record: GuestRecord, key: KeyPair, timeout: float) -> StartTimes:
        self.restarts.append(record.name)
        return StartTimes((9.0,), "restart method", "one sample")

    # -- not used by compare -----------------------------------------------------------
    def preflight(self) -> None:
        raise AssertionError

    def create(self, plan: object) -> GuestRecord:  # type: ignore[override]
        raise AssertionError

    def start(self, plan: object) -> object:  # type: ignore[override]
        raise AssertionError

    def wait_ready(self, plan: object, deadline: float) -> object:  # type: ignore[override]
        raise AssertionError

    def state(self, resource: str) -> str:  # type: ignore[override]
        return "running"

    def destroy(self, resource: str) -> bool:
        raise AssertionError

    def labels_of(self, resource: str) -> dict[str, str] | None:
        raise AssertionError

    def connect(self, record: GuestRecord, key: KeyPair) -> Connection:
        raise AssertionError

    def list_guests(self, lab: str, instance: str) -> list[str]:
        raise AssertionError

    def reserve_network(self, state: LabState, pool: str, book: Reservations) -> LabState:
        raise AssertionError

    def prepare(self, state: LabState) -> LabState:
        raise AssertionError

    def cleanup(self, state: LabState) -> None:
        raise AssertionError

    def bridges(self, state: LabState) -> list[str]:
        raise AssertionError


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeBackend]:
    engines = {
        "libvirt": FakeBackend("libvirt", accel="tcg"),
        "lxd": FakeBackend("lxd"),
        "docker": FakeBackend("docker"),
    }
    engines["libvirt"].copyable = False
    monkeypatch.setattr(backends, "get", engines.__getitem__)
    return engines


def rec(name: str, engine: str, **kw: object) -> GuestRecord:
    return GuestRecord(name, engine, f"labctl-virtualization-t1-{name}", **kw)  # type: ignore[arg-type]


def subject(name: str, engine: str) -> Subject:
    return Subject(name, "t", engine, "x86_64", NATIVE, f"{engine} devices")


def test_memory_samples_through_the_backend_and_keeps_its_method(
    fakes: dict[str, FakeBackend],
) -> None:
    fakes["docker"].memory_error = NotSupported("no cgroup here")
    fakes["lxd"].memory_error = EngineError("LXD refused")
    records = {"vm": rec("vm", "libvirt"), "sys": rec("sys", "lxd"), "app": rec("app", "docker")}
    subjects = {n: subject(n, r.engine) for n, r in records.items()}
    figures, gaps = probes.memory(records, subjects, samples=2, interval=0)
    [vm] = figures
    assert vm.subject == "vm" and vm.samples.values == (64.0, 64.0)
    assert vm.method.startswith("libvirt memory method, 2 samples") and vm.note == "a note"
    assert gaps == [
        Gap("memory", "sys", "LXD refused"),
        Gap("memory", "app", "no cgroup here", False),
    ]


def test_footprint_is_the_backends_in_mib(fakes: dict[str, FakeBackend]) -> None:
    f = probes.footprint(rec("sys", "lxd"), subject("sys", "lxd"))
    assert f.metric == "footprint" and f.samples.values == (10.0,) and f.method == "lxd disk method"


def test_fresh_start_discards_the_warmup_runs(fakes: dict[str, FakeBackend]) -> None:
    copy = Copy("virtualization", "t1", rec("sys", "lxd"), None, KEY)  # type: ignore[arg-type]
    f = boot.fresh(copy, subject("sys", "lxd"), runs=Runs(3), restart=False)
    assert fakes["lxd"].copies == [(copy, 4)]
    assert f.metric == "boot_fresh" and f.samples.discarded == (1.0,)
    assert f.samples.values == (2.0, 3.0, 4.0) and f.method == "copy method"


def test_a_guest_that_cannot_be_copied_is_restarted_only_when_allowed(
    fakes: dict[str, FakeBackend],
) -> None:
    copy = Copy("virtualization", "t1", rec("vm", "libvirt"), None, KEY)  # type: ignore[arg-type]
    with pytest.raises(NotSupported):
        boot.fresh(copy, subject("vm", "libvirt"), runs=Runs(3), restart=False)
    assert fakes["libvirt"].restarts == []
    f = boot.fresh(copy, subject("vm", "libvirt"), runs=Runs(3), restart=True)
    assert fakes["libvirt"].restarts == ["vm"]
    assert f.samples.values == (9.0,) and f.note == "one sample"


def test_a_backend_giving_the_wrong_number_of_starts_is_an_error(
    fakes: dict[str, FakeBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fakes["lxd"], "fresh_start", lambda c, n: StartTimes((1.0,), "m"))
    copy = Copy("virtualization", "t1", rec("sys", "lxd"), None, KEY)  # type: ignore[arg-type]
    with pytest.raises(LabctlError, match="1 fresh starts, 4 asked"):
        boot.fresh(copy, subject("sys", "lxd"), runs=Runs(3), restart=False)


def test_lab_up_time_says_what_usable_means_for_the_engine(fakes: dict[str, FakeBackend]) -> None:
    booted = rec("sys", "lxd", ready_seconds=2.5, started="booted")
    f = boot.from_lab_up(booted, subject("sys", "lxd"))
    assert f.samples.values == (2.5,) and f.method.endswith("usable = the fake says so")


@pytest.mark.parametrize("how", ["restored", "resumed", "running", None])
def test_a_guest_up_did_not_boot_has_no_boot_time(
    fakes: dict[str, FakeBackend], how: str | None
) -> None:
    """A VM restored from a saved template is usable in seconds: that is no boot."""
    vm = rec("vm", "libvirt", ready_seconds=6.4, started=how)
    with pytest.raises(NotSupported, match="not booted: its ready time is no boot") as info:
        boot.from_lab_up(vm, subject("vm", "libvirt"))
    assert info.value.hint and "--restart-guests" in info.value.hint


def test_boot_stage_records_not_supported_as_a_gap_that_is_no_failure(
    fakes: dict[str, FakeBackend],
) -> None:
    lab = load_lab(LABS_DIR / "virtualization" / "lab.yaml")
    state = LabState("virtualization", "t1", "lab.yaml")
    records = {
        "kvm-virtio": rec("kvm-virtio", "libvirt", ready_seconds=30.0, started="booted"),
        "kvm-full": rec("kvm-full", "libvirt", ready_seconds=6.0, started="restored"),
        "lxc-system": rec("lxc-system", "lxd", ready_seconds=3.0, started="booted"),
    }
    guests = {n: subject(n, r.engine) for n, r in records.items()}
    r = runner._Run(lambda stage, detail: None)
    runner._boot(r, state, lab, records, guests, KEY, QUICK, restart_guests=False)
    assert {(f.metric, f.subject) for f in r.figures} == {
        ("boot_lab_up", "kvm-virtio"),
        ("boot_lab_up", "lxc-system"),
        ("boot_fresh", "lxc-system"),
    }
    assert {(g.metric, g.subject, g.failed) for g in r.gaps} == {
        ("boot_lab_up", "kvm-full", False),  # restored from a template: no boot to time
        ("boot_fresh", "kvm-virtio", False),
        ("boot_fresh", "kvm-full", False),
    }
    [gap] = [g for g in r.gaps if g.subject == "kvm-virtio"]
    assert gap == Gap("boot_fresh", "kvm-virtio", "no copies here (use --restart-guests)", False)
    [(copy, starts)] = fakes["lxd"].copies
    assert starts == QUICK.boot.total
    assert (copy.lab, copy.instance, copy.params) == ("virtualization", "t1", LxdParams(256))
    assert copy.labels["labctl.guest"] == "lxc-system-compare"


def test_a_broken_measurement_is_a_failed_gap(fakes: dict[str, FakeBackend]) -> None:
    r = runner._Run(lambda stage, detail: None)

    def broken() -> list:  # type: ignore[type-arg]
        raise EngineError("the daemon went away")

    r.attempt("cpu", "sys", broken)
    assert r.gaps == [Gap("cpu", "sys", "the daemon went away", True)]


def test_subjects_and_status_ask_the_contract_for_accelerator_and_devices(
    fakes: dict[str, FakeBackend],
) -> None:
    lab = load_lab(LABS_DIR / "virtualization" / "lab.yaml")
    state = LabState(
        "virtualization",
        "t1",
        "lab.yaml",
        guests={
            "kvm-virtio": rec("kvm-virtio", "libvirt", accel="kvm", devices="as up chose"),
            "lxc-system": rec("lxc-system", "lxd", devices="shared"),
        },
    )
    rows = {row.guest: row for row in lab_status.status(state)}
    assert rows["kvm-virtio"].accel == "tcg"  # what QEMU says, not what up chose
    assert rows["lxc-system"].accel is None
    found, absent = runner.subjects(state, lab)
    assert absent == {}
    assert found["kvm-virtio"].accel == "tcg"
    assert found["kvm-virtio"].devices == "libvirt devices"
    assert found["lxc-system"].accel == NATIVE and found["lxc-system"].devices == "lxd devices"
