"""What libvirtd leaves of a lab's network and VMs after ``down`` goes too, by exact name."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from labctl import libvirt_client
from labctl.backends.domain_xml import domain_xml, network_xml
from labctl.backends.libvirt import LibvirtBackend
from labctl.instance import naming
from labctl.instance.state import LabState
from tests.unit.domains import domain_params
from tests.unit.fake_engines import FakeConn, FakeDomain, FakeNetwork

PARAMS = domain_params("kvm-full")


@pytest.fixture
def libvirt_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    run, logs = tmp_path / "run-network", tmp_path / "qemu-logs"
    run.mkdir()
    logs.mkdir()
    monkeypatch.setattr(libvirt_client, "RUN_NETWORKS", run)
    monkeypatch.setattr(libvirt_client, "QEMU_LOGS", logs)
    return run, logs


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> FakeConn:
    fake = FakeConn()

    @contextmanager
    def connection() -> Iterator[FakeConn]:
        yield fake

    monkeypatch.setattr("labctl.libvirt_client.connection", connection)
    return fake


def test_a_vm_removed_takes_its_qemu_logs_and_no_other(
    conn: FakeConn, libvirt_dirs: tuple[Path, Path]
) -> None:
    _, logs = libvirt_dirs
    conn.domains[PARAMS.name] = dom = FakeDomain(domain_xml(PARAMS))
    mine = [logs / f"{PARAMS.name}.log", logs / f"{PARAMS.name}.log.1"]
    other = logs / f"{PARAMS.name}-2.log"  # another guest whose name begins the same
    for log in (*mine, other):
        log.write_text("qemu said\n")
    assert LibvirtBackend().destroy(PARAMS.name) and dom.undefined
    assert [p.name for p in logs.iterdir()] == [other.name]
    del conn.domains[PARAMS.name]  # gone from libvirt: a later down tidies its log only
    mine[0].write_text("qemu said\n")
    assert not LibvirtBackend().destroy(PARAMS.name)
    assert [p.name for p in logs.iterdir()] == [other.name]


def test_a_network_removed_takes_its_pid_file_and_empty_folders(
    conn: FakeConn, libvirt_dirs: tuple[Path, Path]
) -> None:
    run, _ = libvirt_dirs
    state = LabState("virtualization", "t1", "lab.yaml", subnet="10.210.9.0/24")
    name = naming.network(state.lab, state.instance)
    conn.networks[name] = net = FakeNetwork(network_xml(name, "lcbrtest", "10.210.9.0/24"))
    net.active = True
    (run / f"{name}.pid").write_text("32295\n")
    (run / name / "ports").mkdir(parents=True)
    (run / "default.pid").write_text("1\n")  # libvirt's own network
    LibvirtBackend().cleanup(state)
    assert net.undefined and sorted(p.name for p in run.iterdir()) == ["default.pid"]
    # a folder libvirt still keeps something in stays
    del conn.networks[name]  # gone from libvirt: a later down tidies its leftovers only
    (run / f"{name}.pid").write_text("32295\n")
    (run / name / "ports").mkdir(parents=True)
    (run / name / "ports" / "port.xml").write_text("<networkport/>")
    LibvirtBackend().cleanup(state)
    assert not (run / f"{name}.pid").exists()
    assert (run / name / "ports" / "port.xml").exists()  # libvirt still keeps something there
