"""Backends' errors as the user reads them: a stopped VM, a piped shell, a vanished domain.

libvirt and docker-py are faked at the library boundary (tests/unit/fake_engines.py); a
domain removed between its look-up and its use (``labctl status`` during ``labctl down``)
answers as libvirt does, with "Domain not found".
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import libvirt
import pytest

from labctl import libvirt_client
from labctl.backends.docker import AppConnection, DockerBackend
from labctl.backends.domain_xml import domain_xml
from labctl.backends.libvirt import LibvirtBackend
from labctl.backends.podman import PodmanBackend
from labctl.command import CommandResult
from labctl.errors import EngineError, ExitCode, LabctlError, NotFoundError
from labctl.instance.reservations import Reservations
from labctl.instance.state import GuestRecord
from labctl.keys import KeyPair
from labctl.ssh import SshError
from tests.unit.domains import domain_params
from tests.unit.fake_engines import (
    FakeConn,
    FakeContainer,
    FakeDockerClient,
    FakeDomain,
    FakeNetwork,
    libvirt_error,
)
from tests.unit.test_recovery import VmCase, lab, store, vm  # noqa: F401 - fixtures

PARAMS = domain_params("kvm-full")
RESOURCE = PARAMS.name
NETWORK = PARAMS.network or ""
KEY = KeyPair(Path("/nonexistent/key"))


def not_found(name: str = RESOURCE) -> libvirt.libvirtError:
    return libvirt_error(libvirt.VIR_ERR_NO_DOMAIN, f"Domain not found: no domain named '{name}'")


class VanishedDomain(FakeDomain):
    """A domain looked up a moment ago, undefined since: every call is refused."""

    def isActive(self) -> bool:
        raise not_found(self.name())

    def state(self) -> list[int]:
        raise not_found(self.name())

    def XMLDesc(self, flags: int = 0) -> str:
        raise not_found(self.name())

    def UUIDString(self) -> str:
        raise not_found(self.name())

    def create(self) -> None:
        raise not_found(self.name())


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> FakeConn:
    """libvirt_client's connection, in memory, holding the VM kvm-full (defined, stopped)."""
    fake = FakeConn()
    fake.domains[RESOURCE] = FakeDomain(domain_xml(PARAMS))

    @contextmanager
    def connection() -> Iterator[FakeConn]:
        yield fake

    def qemu_img(argv: list[object], **_: object) -> None:
        Path(str(argv[-1])).write_bytes(b"QFI\xfb")  # the overlay qemu-img would create

    monkeypatch.setattr("labctl.libvirt_client.connection", connection)
    monkeypatch.setattr("labctl.backends.libvirt.run_cmd", qemu_img)
    return fake


def vanish(conn: FakeConn, monkeypatch: pytest.MonkeyPatch) -> None:
    """kvm-full is found by name, then gone when used (another labctl's `down`)."""
    stale = VanishedDomain(conn.domains.pop(RESOURCE).xml)
    monkeypatch.setattr(conn, "lookupByName", lambda name: stale)


# -- 1. a VM that libvirt does not run is said to be so, not an SSH timeout ------------------


@pytest.fixture
def guest(conn: FakeConn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """kvm-full's connection, its guard passed; ``guest.ssh`` raises an SSH timeout."""
    console = tmp_path / "kvm-full.console.log"
    console.write_text("[    1.0] old boot line\n")
    rec = GuestRecord(
        "kvm-full", "libvirt", RESOURCE, "ready", address="10.210.1.11", console_log=str(console)
    )
    monkeypatch.setattr("labctl.backends.libvirt.netguard.require_lab_bridge", lambda *a: None)
    conn.networks[NETWORK] = FakeNetwork(f"<network><name>{NETWORK}</name></network>")
    monkeypatch.setattr(FakeNetwork, "bridgeName", lambda self: "virbr-lab", raising=False)
    asked: list[str] = []
    backend = LibvirtBackend()
    now = backend._now

    def spy(resource: str) -> str:
        asked.append(resource)
        return now(resource)

    monkeypatch.setattr(backend, "_now", spy)

    def timed_out(*_: object, **__: object) -> CommandResult:
        raise SshError("no SSH session with root@10.210.1.11:22: TimeoutError: timed out")

    monkeypatch.setattr("labctl.backends.vm_connection.ssh_run", timed_out)
    connection = backend.connect(rec, KEY)
    return SimpleNamespace(connection=connection, dom=conn.domains[RESOURCE], asked=asked)


@pytest.mark.parametrize("paused", [False, True])
def test_a_vm_libvirt_does_not_run_is_said_to_be_stopped_or_paused(
    guest: Any, paused: bool
) -> None:
    guest.dom.active, guest.dom.paused = paused, paused  # virsh destroy, or virsh suspend
    with pytest.raises(EngineError) as err:
        guest.connection.run("true", timeout=None)
    now = "paused" if paused else "stopped"
    assert err.value.message == f"kvm-full is {now} (not running)"
    assert err.value.hint and err.value.hint.startswith("labctl up starts it again")
    assert not isinstance(err.value, SshError) and err.value.code == ExitCode.ENGINE
    assert "console" not in err.value.message and "exercise reset" not in (err.value.hint or "")
    with pytest.raises(EngineError, match=f"kvm-full is {now} "):
        guest.connection.shell_argv()  # labctl ssh: no ssh run into a timeout


def test_a_running_vm_that_does_not_answer_shows_its_console(guest: Any) -> None:
    guest.dom.active = True
    with pytest.raises(SshError) as err:
        guest.connection.run("true")
    assert "TimeoutError: timed out" in err.value.message
    assert "old boot line" in err.value.message and "exercise reset" in (err.value.hint or "")
    assert guest.connection.shell_argv()[0] == "ssh"


def test_the_vms_state_is_asked_only_when_ssh_fails(
    guest: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    guest.dom.active = True
    ok = CommandResult("true", 0, "", "")
    monkeypatch.setattr("labctl.backends.vm_connection.ssh_run", lambda *a, **k: ok)
    assert guest.connection.run("true") is ok
    assert guest.asked == []


def test_an_ssh_failure_stays_one_when_libvirt_cannot_say_the_state(
    guest: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*_: object) -> Any:
        raise libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot recv data: Connection reset")

    monkeypatch.setattr(guest.dom, "isActive", refused)
    with pytest.raises(SshError, match="TimeoutError: timed out"):
        guest.connection.run("true")
    with pytest.raises(EngineError, match="Connection reset"):
        guest.connection.shell_argv()


def test_a_vm_whose_domain_is_gone_is_said_to_be_absent(guest: Any, conn: FakeConn) -> None:
    del conn.domains[RESOURCE]  # virsh undefine
    for call in (lambda: guest.connection.run("true"), guest.connection.shell_argv):
        with pytest.raises(NotFoundError) as err:
            call()
        assert err.value.message == "kvm-full is absent (not running)"


# -- 2. `echo cmd | labctl ssh app`: no terminal asked of a pipe ------------------------------


class Stdin(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("backend", [DockerBackend, PodmanBackend])
def test_an_app_containers_shell_has_a_terminal_only_when_stdin_is_one(
    backend: type[DockerBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeDockerClient()
    fake.containers.by_name["labctl-v-i-app"] = FakeContainer("labctl-v-i-app", {})
    rec = GuestRecord("app", backend.engine, "labctl-v-i-app", "ready")
    connection = backend(fake).connect(rec, KEY)
    cli = backend.cli
    monkeypatch.setattr("sys.stdin", Stdin(tty=False))  # echo 'uname -m' | labctl ssh app
    assert connection.shell_argv() == [cli, "exec", "-i", "-u", "root", "labctl-v-i-app", "sh"]
    monkeypatch.setattr("sys.stdin", Stdin(tty=True))  # asked when called, not when connected
    assert connection.shell_argv() == [cli, "exec", "-it", "-u", "root", "labctl-v-i-app", "sh"]
    monkeypatch.setattr("sys.stdin", None)  # no stdin at all (a daemon)
    assert connection.shell_argv()[2] == "-i"


@pytest.mark.parametrize("backend", [DockerBackend, PodmanBackend])
def test_a_removed_app_container_says_who_brings_it_back(backend: type[DockerBackend]) -> None:
    rec = GuestRecord("app", backend.engine, "labctl-v-i-app", "ready")
    connection = backend(FakeDockerClient()).connect(rec, KEY)  # docker rm -f: no container
    with pytest.raises(NotFoundError) as err:
        connection.run("true")
    assert err.value.message.startswith("app is gone: ")
    assert err.value.hint == (
        "labctl up creates it again, from its image, on the same port "
        "(for a class's student, the instructor's labctl class up does)"
    )


def test_whether_there_is_a_terminal_can_be_told() -> None:
    rec = GuestRecord("app", "docker", "labctl-v-i-app", "ready")
    backend = DockerBackend(FakeDockerClient())
    assert AppConnection(backend, rec, terminal=lambda: True).shell_argv()[2] == "-it"
    assert AppConnection(backend, rec, terminal=lambda: False).shell_argv()[2] == "-i"


# -- 3. a domain that vanishes between look-up and use: absent, or a LabctlError ------------


def test_a_vanished_domain_is_absent_for_status_and_compare(
    conn: FakeConn, monkeypatch: pytest.MonkeyPatch
) -> None:
    vanish(conn, monkeypatch)
    backend = LibvirtBackend()
    assert backend.state(RESOURCE) == "absent"
    assert backend.accelerator(RESOURCE) is None
    assert backend.destroy(RESOURCE) is False  # removed already, by someone else's down
    assert backend.labels_of(RESOURCE) is None


def test_a_domains_labels_say_whose_it_is(conn: FakeConn) -> None:
    backend = LibvirtBackend()
    labels = backend.labels_of(RESOURCE) or {}
    assert (labels["labctl.lab"], labels["labctl.instance"]) == ("virtualization", "main")
    assert backend.foreign(RESOURCE, "virtualization", "main") is None
    assert backend.foreign(RESOURCE, "virtualization", "full-main") == (
        "lab virtualization (instance main)"
    )
    assert backend.labels_of("labctl-virtualization-main-nosuch") is None


def test_a_vanished_domain_is_a_labctl_error_where_it_must_be_used(
    conn: FakeConn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    vanish(conn, monkeypatch)
    backend = LibvirtBackend()
    plan: Any = SimpleNamespace(
        resource=RESOURCE, lab="virtualization", instance="main", name="kvm-full", run_dir=tmp_path
    )
    record = GuestRecord("kvm-full", "libvirt", RESOURCE)
    for call in (
        lambda: backend.identify(plan, record, Reservations()),
        lambda: backend.start(plan),
        lambda: backend.devices(RESOURCE),
        lambda: backend._guard(RESOURCE, "10.210.1.11", "kvm-full"),
    ):
        with pytest.raises(NotFoundError) as err:
            call()
        assert "Domain not found" in err.value.message
        assert err.value.hint is None  # libvirtd answered: "start libvirtd" would mislead


def test_a_vanished_domain_is_defined_anew_by_create(
    vm: VmCase,  # noqa: F811 - the fixture
    conn: FakeConn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stale = VanishedDomain(domain_xml(PARAMS).replace(RESOURCE, vm.plan.resource))
    monkeypatch.setattr(conn, "lookupByName", lambda name: stale)
    LibvirtBackend().create(vm.plan)
    assert conn.calls == ["defineXML"] and vm.plan.resource in conn.domains


def test_a_network_that_vanishes_gives_no_bridge_to_the_guard(
    conn: FakeConn, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[set[str]] = []
    monkeypatch.setattr(
        "labctl.backends.libvirt.netguard.require_lab_bridge",
        lambda address, bridges, guest: seen.append(set(bridges)),
    )
    net = conn.networks[NETWORK] = FakeNetwork(f"<network><name>{NETWORK}</name></network>")
    failure = libvirt_error(libvirt.VIR_ERR_NO_NETWORK, "Network not found")

    def bridge_name() -> str:
        raise failure

    monkeypatch.setattr(net, "bridgeName", bridge_name, raising=False)
    LibvirtBackend()._guard(RESOURCE, "10.210.1.11", "kvm-full")
    assert seen == [set()]  # so netguard refuses: the lab's bridge is gone
    failure = libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "internal error")
    with pytest.raises(EngineError, match="could not read the bridge of .*: internal error"):
        LibvirtBackend()._guard(RESOURCE, "10.210.1.11", "kvm-full")


def test_libvirts_not_found_is_a_not_found_error_other_errors_keep_the_start_hint() -> None:
    gone = libvirt_client.error("read x", not_found())
    assert isinstance(gone, NotFoundError) and gone.hint is None
    assert libvirt_client.error("read x", not_found(), "run labctl up").hint == "run labctl up"
    other = libvirt_client.error("read x", libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "boom"))
    assert type(other) is EngineError and other.hint == libvirt_client.START_HINT
    assert isinstance(other, LabctlError) and other.message == "libvirt could not read x: boom"


def test_the_engine_state_of_a_paused_vm_is_paused(conn: FakeConn) -> None:
    dom = conn.domains[RESOURCE]
    backend = LibvirtBackend()
    assert backend.state(RESOURCE) == "stopped"
    dom.active = dom.paused = True
    assert backend.state(RESOURCE) == "paused" == backend._now(RESOURCE)  # status says it so
    dom.paused = False
    assert backend.state(RESOURCE) == "running" and backend._now(RESOURCE) == "running"
