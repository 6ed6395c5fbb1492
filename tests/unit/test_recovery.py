"""Recovery: guests stopped behind labctl's back, lost state, concurrent instances, exit codes.

The engines are faked at the library boundary (tests/unit/fake_engines.py); the lifecycle
runs on fake backends that keep guests in memory.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from labctl import backends, cancel
from labctl.backends import base
from labctl.backends.docker import DockerBackend
from labctl.backends.domain_xml import network_xml
from labctl.backends.libvirt import LibvirtBackend
from labctl.connection import Connection
from labctl.docker_client import engine_errors
from labctl.errors import (
    EngineError,
    ExitCode,
    LabctlError,
    NotFoundError,
    NotSupported,
    ReadyTimeout,
)
from labctl.exercises.progress import ProgressStore
from labctl.images.cache import ImageStore
from labctl.images.recipe import BuildContext, Recipe
from labctl.instance import naming
from labctl.instance.reservations import Reservations
from labctl.instance.state import GuestRecord, InstanceDir, LabState
from labctl.keys import KeyPair, ensure_keypair
from labctl.lab import down as lab_down
from labctl.lab import lifecycle, plan
from labctl.lab import status as lab_status
from labctl.lab.accel import AccelChoice
from labctl.private import Damaged
from labctl.spec.model import Lab, load_lab
from labctl.ssh import SshError
from tests.labs import APP, VM, lab_yaml
from tests.unit.fake_connection import FakeConnection
from tests.unit.fake_engines import FakeConn, FakeDockerClient, not_found
from tests.unit.lock_holder import held

LAB = lab_yaml("rec", VM, APP)


class Empty(Recipe):
    description = "test"

    def __init__(self, name: str) -> None:
        self.name = name

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        for artifact in ("vmlinuz", "initrd.img", "disk.qcow2"):
            (ctx.out / artifact).write_text(self.name)
        return None, {}


@dataclass(frozen=True)
class NoKvm:
    usable: bool = False
    module: str | None = None
    reason: str = "test host"


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Lab, Path]:
    path = tmp_path / "lab.yaml"
    path.write_text(LAB)
    return load_lab(path), path


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    s = ImageStore([Empty("vm-amd64"), Empty("docker-app")], root=tmp_path / "cache")
    s.build(["vm-amd64", "docker-app"])
    return s


def plans_for(
    lab: Lab, state: LabState, store: ImageStore, key: KeyPair
) -> dict[str, base.GuestPlan]:
    inst = InstanceDir(lab.name, state.instance)
    return plan.plans(lab, state, store, inst, key, {"vm": AccelChoice("tcg")})


# -- 1. a VM stopped from inside or outside starts again -----------------------------------


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> FakeConn:
    from contextlib import contextmanager

    fake = FakeConn()

    @contextmanager
    def connection():  # type: ignore[no-untyped-def]
        yield fake

    monkeypatch.setattr("labctl.libvirt_client.connection", connection)

    def qemu_img(argv: list[object], **_: object) -> None:
        Path(str(argv[-1])).write_bytes(b"QFI\xfb")  # the overlay qemu-img would create

    monkeypatch.setattr("labctl.backends.libvirt.run_cmd", qemu_img)
    return fake


@dataclass(frozen=True)
class VmCase:
    """The lab's VM in instance t1, on a recorded subnet, planned before it has identities."""

    spec: Lab
    state: LabState
    key: KeyPair
    store: ImageStore
    plan: base.GuestPlan

    def replanned(self, rec: GuestRecord) -> base.GuestPlan:
        """The VM's plan once the identities of ``rec`` are recorded in the state."""
        return plans_for(self.spec, self.state.with_guest(rec), self.store, self.key)["vm"]


@pytest.fixture
def vm(state_root: Path, lab: tuple[Lab, Path], store: ImageStore, tmp_path: Path) -> VmCase:
    spec, _ = lab
    key = ensure_keypair(tmp_path / "key", "t")
    state = LabState("rec", "t1", "lab.yaml", subnet="10.210.5.0/24", network="n")
    return VmCase(spec, state, key, store, plans_for(spec, state, store, key)["vm"])


def test_a_stopped_vm_is_redefined_under_the_uuid_recorded_before_it_existed(
    vm: VmCase, conn: FakeConn
) -> None:
    backend, p = LibvirtBackend(), vm.plan
    rec = backend.identify(p, GuestRecord("vm", "libvirt", p.resource), Reservations())
    assert rec.uuid and rec.mac == naming.mac("rec", "t1", "vm")
    assert conn.domains == {}  # chosen before the domain exists
    p = vm.replanned(rec)
    backend.create(p)
    backend.start(p)
    conn.domains[p.resource].active = False  # the student ran poweroff
    backend.create(p)  # redefined: same name, same UUID
    backend.start(p)
    assert conn.calls == ["defineXML", "defineXML"]
    assert conn.domains[p.resource].uuid == rec.uuid and conn.domains[p.resource].active
    # Without the recorded UUID libvirt makes up a new one and refuses, as it did before.
    conn.domains[p.resource].active = False
    with pytest.raises(EngineError, match="already exists with uuid"):
        backend.create(replace(p, uuid=None))
    disk = p.run_dir / "vm.qcow2"
    assert disk.stat().st_mode & 0o777 == 0o600


def test_a_paused_vm_is_not_running_for_up_and_start_resumes_it(vm: VmCase, conn: FakeConn) -> None:
    backend, p = LibvirtBackend(), vm.plan
    backend.create(p)
    backend.start(p)
    assert backend.state(p.resource) == "running"
    conn.domains[p.resource].paused = True  # virsh suspend: alive, answering nothing
    assert backend.state(p.resource) == "paused"  # not running: up does not call it "already up"
    assert backend.start(p) == base.Started(base.RESUMED)
    assert not conn.domains[p.resource].paused and backend.state(p.resource) == "running"


def test_a_running_vm_says_how_its_definition_differs_from_the_plan(
    vm: VmCase, conn: FakeConn
) -> None:
    backend = LibvirtBackend()
    rec = backend.identify(vm.plan, GuestRecord("vm", "libvirt", vm.plan.resource), Reservations())
    p = vm.replanned(rec)
    backend.create(p)
    assert backend.outdated(p) is None  # defined, not running: create defines it anew
    backend.start(p)
    assert backend.outdated(p) is None
    dom = conn.domains[p.resource]
    bigger = replace(p, params=replace(p.params, memory=p.params.memory + 128))
    assert (
        backend.outdated(bigger) == f"memory {p.params.memory} MiB -> {p.params.memory + 128} MiB"
    )
    dom.active = False  # powered off: the next create defines it with the new plan
    assert backend.outdated(bigger) is None
    backend.create(bigger)
    backend.start(bigger)
    assert backend.outdated(bigger) is None


def test_a_vm_without_recorded_identities_keeps_those_of_its_domain(
    vm: VmCase, conn: FakeConn
) -> None:
    backend, p = LibvirtBackend(), vm.plan
    backend.create(p)  # made by an older labctl (no <uuid>) or before the state was lost
    dom = conn.domains[p.resource]
    rec = backend.identify(p, GuestRecord("vm", "libvirt", p.resource), Reservations())
    assert rec.uuid == dom.uuid
    backend.create(vm.replanned(rec))
    assert conn.domains[p.resource] is dom


# -- 3. the subnet is reserved and saved before the network; the real one wins -------------


def test_the_libvirt_subnet_is_chosen_without_creating_anything(
    state_root: Path, lab: tuple[Lab, Path], conn: FakeConn
) -> None:
    spec, _ = lab
    backend = LibvirtBackend()
    state = backend.reserve_network(LabState("rec", "t1", "x"), spec.network.pool, Reservations())
    assert state.subnet and state.network == naming.network("rec", "t1")
    assert conn.calls == []
    assert Reservations().entries()["subnets"] == {
        state.subnet: {"lab": "rec", "instance": "t1", "use": "libvirt"}
    }
    backend.prepare(state)
    assert conn.calls == ["networkDefineXML"]
    gateway = ipaddress.ip_network(state.subnet).network_address + 1
    assert f'address="{gateway}"' in conn.networks[state.network].xml


def test_a_network_destroyed_from_outside_comes_back_with_the_running_vms_plugged_in(
    vm: VmCase, conn: FakeConn, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LibvirtBackend()
    state = replace(vm.state, network=naming.network("rec", "t1"), bridge="lcbrtest1")
    p = plans_for(vm.spec, state, vm.store, vm.key)["vm"]
    backend.prepare(state)
    backend.create(p)
    backend.start(p)
    dom = conn.domains[p.resource]
    root = ET.fromstring(dom.xml)
    nic = root.find("devices/interface")
    source = nic.find("source") if nic is not None else None
    assert nic is not None and source is not None and source.get("network") == state.network
    nic.append(ET.Element("target", dev="vnet7"))  # its tap, as libvirt shows a running domain
    dom.xml = ET.tostring(root, encoding="unicode")
    ran: list[list[str]] = []
    monkeypatch.setattr("labctl.backends.libvirt_repair.run", lambda argv, **_: ran.append(argv))
    state = state.with_guest(GuestRecord("vm", "libvirt", p.resource, "ready"))
    backend.prepare(state)  # the network runs: nothing to mend
    assert ran == []
    conn.networks[state.network].active = False  # virsh net-destroy: the bridge is gone
    backend.prepare(state)
    assert conn.networks[state.network].active
    assert ran == [
        ["ip", "link", "set", "dev", "vnet7", "master", "lcbrtest1"],
        ["ip", "link", "set", "dev", "vnet7", "up"],
    ]


def test_an_existing_networks_real_subnet_wins_over_the_record(
    state_root: Path, lab: tuple[Lab, Path], conn: FakeConn
) -> None:
    spec, _ = lab
    name = naming.network("rec", "t1")
    conn.networkDefineXML(network_xml(name, "lcbrx", "10.210.9.0/24"))
    recorded = LabState("rec", "t1", "x", subnet="10.210.3.0/24", docker_subnet="10.210.4.0/24")
    state = LibvirtBackend().reserve_network(recorded, spec.network.pool, Reservations())
    assert state.subnet == "10.210.9.0/24"
    fake = FakeDockerClient()
    fake.networks.create(name, ipam={"Config": [{"Subnet": "10.210.11.0/24"}]})
    docker = DockerBackend(fake)  # type: ignore[arg-type]
    state = docker.reserve_network(state, spec.network.pool, Reservations())
    assert state.docker_subnet == "10.210.11.0/24"
    assert sorted(Reservations().entries()["subnets"]) == ["10.210.11.0/24", "10.210.9.0/24"]


# -- 4. two instances at the same moment get different subnets and ports -------------------


def test_instances_choosing_at_the_same_moment_never_get_the_same_subnet(state_root: Path) -> None:
    chosen: dict[str, str] = {}
    start = threading.Barrier(8)

    def slow_used() -> list[ipaddress.IPv4Network]:
        time.sleep(0.02)  # the engines take a while to list their networks
        return [ipaddress.ip_network("10.210.0.0/24")]

    def choose(i: int) -> None:
        start.wait()
        book = Reservations()
        chosen[f"s{i}"] = book.subnet("rec", f"s{i}", "docker", "10.210.0.0/16", slow_used)

    threads = [threading.Thread(target=choose, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(chosen.values())) == 8 and "10.210.0.0/24" not in chosen.values()
    # The same use of the same instance asks again: it gets what it has.
    assert Reservations().subnet("rec", "s3", "docker", "10.210.0.0/16", list) == chosen["s3"]
    assert Reservations().release("rec", "s3") == 1
    assert chosen["s3"] not in Reservations().entries()["subnets"]


def test_docker_networks_of_concurrent_instances_do_not_overlap(
    state_root: Path, lab: tuple[Lab, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, _ = lab
    monkeypatch.setattr("labctl.instance.subnets.host_subnets", list)
    fake = FakeDockerClient()
    errors: list[Exception] = []

    def up_network(instance: str) -> None:
        backend = DockerBackend(fake)  # type: ignore[arg-type]
        try:
            state = backend.reserve_network(
                LabState("rec", instance, "x"), spec.network.pool, Reservations()
            )
            backend.prepare(state)
        except Exception as exc:  # "Pool overlaps with other one" before the reservations
            errors.append(exc)

    threads = [threading.Thread(target=up_network, args=(f"i{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(fake.networks.by_name) == 4
    nets = [
        ipaddress.ip_network(n.attrs["IPAM"]["Config"][0]["Subnet"])
        for n in fake.networks.by_name.values()
    ]
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])


def test_auto_host_ports_are_reserved_and_kept(state_root: Path) -> None:
    book = Reservations()
    a = book.port("rec", "a", "port of app")
    b = book.port("rec", "b", "port of app")
    assert a != b
    assert book.port("rec", "a", "port of app", preferred=a) == a
    with socket.socket() as s:  # another program took it meanwhile
        s.bind(("127.0.0.1", a))
        s.listen()
        assert book.port("rec", "a", "port of app", preferred=a) not in (a, b)


# -- 5. docker: a removed container is a labctl error; its port stays -----------------------


def test_every_docker_error_becomes_a_labctl_error_with_dockers_words() -> None:
    with pytest.raises(NotFoundError) as err, engine_errors("inspect x"):
        raise not_found("No such container: x")
    assert isinstance(err.value, EngineError) and err.value.code == ExitCode.ENGINE
    assert err.value.message == "Docker could not inspect x: No such container: x"


def test_exec_on_a_container_removed_behind_labctls_back_says_so(state_root: Path) -> None:
    fake = FakeDockerClient()
    backend = DockerBackend(fake)  # type: ignore[arg-type]
    fake.containers.create("img", name="labctl-rec-t1-app", ports={})
    rec = GuestRecord("app", "docker", "labctl-rec-t1-app", stage="ready")
    conn = backend.connect(rec, KeyPair(state_root / "k"))
    assert conn.run("true").stdout == "ok\n"
    fake.containers.remove("labctl-rec-t1-app")
    with pytest.raises(EngineError) as err:
        conn.run("true")
    assert "No such container: labctl-rec-t1-app" in err.value.message
    assert err.value.hint and "labctl up" in err.value.hint
    assert backend.state("labctl-rec-t1-app") == "absent"
    assert backend.destroy("labctl-rec-t1-app") is False


def test_a_paused_container_is_not_running_for_up_and_start_unpauses_it(state_root: Path) -> None:
    fake = FakeDockerClient()
    backend = DockerBackend(fake)  # type: ignore[arg-type]
    p = SimpleNamespace(resource="labctl-rec-t1-app", network="labctl-rec-t1")
    c = fake.containers.create("img", name=p.resource, ports={})
    assert backend.start(p) == base.Started(base.BOOTED)  # type: ignore[arg-type]
    c.pause()
    assert backend.state(p.resource) == "paused"
    assert backend.start(p) == base.Started(base.RESUMED)  # type: ignore[arg-type]
    assert c.status == "running" and backend.state(p.resource) == "running"
    assert backend.start(p) == base.Started(base.RUNNING)  # type: ignore[arg-type]


@dataclass
class AppCase:
    """The lab's app container in instance t1, on a fake Docker."""

    fake: FakeDockerClient
    backend: DockerBackend
    state: LabState
    plan: base.GuestPlan
    replan: Callable[[LabState], base.GuestPlan]


@pytest.fixture
def app_case(state_root: Path, lab: tuple[Lab, Path], store: ImageStore, tmp_path: Path) -> AppCase:
    spec, _ = lab
    fake = FakeDockerClient()
    key = ensure_keypair(tmp_path / "key", "t")
    state = LabState("rec", "t1", "x", subnet="10.210.5.0/24", network="n", docker_network="d")

    def replan(s: LabState) -> base.GuestPlan:
        return plans_for(spec, s, store, key)["app"]

    return AppCase(fake, DockerBackend(fake), state, replan(state), replan)  # type: ignore[arg-type]


def test_a_recreated_container_is_published_on_its_recorded_port(app_case: AppCase) -> None:
    fake, backend, state, p = app_case.fake, app_case.backend, app_case.state, app_case.plan
    rec = backend.identify(p, GuestRecord("app", "docker", p.resource), Reservations())
    assert rec.host_port
    p = app_case.replan(state.with_guest(rec))
    backend.create(p)
    bound = fake.containers.get(p.resource).attrs["HostConfig"]["PortBindings"]["8080/tcp"]
    assert bound == [{"HostIp": "127.0.0.1", "HostPort": str(rec.host_port)}]
    assert backend.identify(p, rec, Reservations()).host_port == rec.host_port  # it exists
    fake.containers.remove(p.resource)
    again = backend.identify(p, rec, Reservations())
    assert again.host_port == rec.host_port  # recreated on the same port


def test_a_stopped_container_whose_network_was_removed_starts_on_the_one_made_again(
    app_case: AppCase,
) -> None:
    fake, backend = app_case.fake, app_case.backend
    state = backend.prepare(replace(app_case.state, docker_subnet="10.210.9.0/24"))
    p = app_case.replan(state)
    backend.create(p)
    assert backend.start(p) == base.Started(base.BOOTED)
    container = fake.containers.get(p.resource)
    container.status = "exited"  # stopped, then `docker network prune` removed its network
    fake.networks.remove(str(p.network))
    state = backend.prepare(state)  # up makes the network again: another id
    assert backend.start(p) == base.Started(base.BOOTED)  # Docker refused: "network not found"
    assert container.status == "running"
    assert container.attrs["NetworkSettings"]["Networks"] == {p.network: {"NetworkID": ""}}


def test_docker_says_whose_a_container_named_as_a_guest_is(app_case: AppCase) -> None:
    fake, backend, p = app_case.fake, app_case.backend, app_case.plan
    assert backend.foreign(p.resource, "rec", "t1") is None  # none: nobody's
    # someone's own container, named as the guest would be (docker create --name ...)
    theirs = fake.containers.create("labctl/webapp:latest", name=p.resource, ports={})
    assert backend.foreign(p.resource, "rec", "t1") == "not labctl"
    theirs.labels = {"labctl.lab": "rec", "labctl.instance": "t2"}  # another instance's guest
    assert backend.foreign(p.resource, "rec", "t1") == "lab rec (instance t2)"
    theirs.labels = {"labctl.lab": "rec", "labctl.instance": "t1"}  # ours: found, kept
    assert backend.foreign(p.resource, "rec", "t1") is None
    assert backend.create(p).stage == "created" and theirs.status == "created"


# -- the lifecycle, on fake backends -------------------------------------------------------


class FakeBackend(base.Backend):
    """Guests in memory; a guest named in ``fail`` fails its readiness with that error."""

    def __init__(self, engine: str) -> None:
        self.engine = engine  # type: ignore[misc]
        self.guests: dict[str, base.EngineState] = {}
        self.labels: dict[str, dict[str, str]] = {}  # resource -> its labels, as create put them
        self.fail: dict[str, LabctlError] = {}
        self.saw: list[str | None] = []
        self.planned: dict[str, base.GuestPlan] = {}  # the last plan each guest was created from
        self.changed: dict[str, str] = {}  # guest -> how its definition differs from the plan
        self.templates: dict[str, float] = {}  # guest -> its template's boot: it is restored
        self.slow: set[str] = set()  # guests whose ReadyTimeout comes at the deadline
        self.key_at_boot = engine == "libvirt"  # type: ignore[misc]  # a VM, as the real one
        self.powered_off: list[str] = []
        self.identified: list[str] = []  # guests given their identities (port, UUID...)

    def power_off(self, resource: str) -> None:
        self.powered_off.append(resource)
        self.guests[resource] = "stopped"

    def preflight(self) -> None:
        pass

    def reserve_network(self, state: LabState, pool: str, book: Reservations) -> LabState:
        if self.engine != "libvirt":
            return state
        subnet = book.subnet(state.lab, state.instance, "libvirt", pool, list)
        return replace(state, subnet=subnet, network="n")

    def prepare(self, state: LabState) -> LabState:
        saved = InstanceDir(state.lab, state.instance).load()
        self.saw.append(saved.subnet if saved else None)  # what a crash here would leave
        return state

    def identify(
        self, plan: base.GuestPlan, record: GuestRecord, book: Reservations
    ) -> GuestRecord:
        self.identified.append(plan.name)
        return replace(record, uuid=record.uuid or os.urandom(4).hex())

    def cleanup(self, state: LabState) -> None:
        pass  # its networks are only names in the state

    def bridges(self, state: LabState) -> list[str]:
        return []  # no bridges: isolation has nothing to keep apart

    def create(self, plan: base.GuestPlan) -> GuestRecord:
        self.planned[plan.name] = plan
        self.guests.setdefault(plan.resource, "stopped")
        self.labels.setdefault(plan.resource, plan.labels)
        return GuestRecord(plan.name, self.engine, plan.resource, stage="created")

    def start(self, plan: base.GuestPlan) -> base.Started:
        was = self.guests.get(plan.resource)
        self.guests[plan.resource] = "running"
        if was == "running":
            return base.Started(base.RUNNING)
        if plan.name in self.templates:
            return base.Started(base.RESTORED, boot_seconds=self.templates[plan.name])
        return base.Started(base.BOOTED)

    def outdated(self, plan: base.GuestPlan) -> str | None:
        return self.changed.get(plan.name) if self.guests.get(plan.resource) == "running" else None

    def wait_ready(self, plan: base.GuestPlan, deadline: float) -> base.Ready:
        if plan.name in self.fail:
            if isinstance(self.fail[plan.name], ReadyTimeout) and plan.name in self.slow:
                time.sleep(max(0.0, deadline - time.monotonic()))  # waited it out
            raise self.fail[plan.name]
        return base.Ready("127.0.0.1", 22, "ssh")

    def state(self, resource: str) -> base.EngineState:
        return self.guests.get(resource, "absent")

    def destroy(self, resource: str) -> bool:
        self.labels.pop(resource, None)
        return self.guests.pop(resource, None) is not None

    def labels_of(self, resource: str) -> dict[str, str] | None:
        return self.labels.get(resource, {}) if resource in self.guests else None

    def connect(self, record: GuestRecord, key: KeyPair) -> Connection:
        return FakeConnection(name=record.name)

    def list_guests(self, lab: str, instance: str) -> list[str]:
        mine = {base.LAB: lab, base.INSTANCE: instance}
        return sorted(r for r in self.guests if mine.items() <= self.labels.get(r, {}).items())

    # compare's measurements: not what these tests are about
    def devices(self, resource: str) -> base.Devices:
        return base.Devices("fake")

    def memory(self, resource: str) -> base.HostUse:
        raise NotSupported("the fake engine measures nothing")

    def footprint(self, resource: str) -> base.HostUse:
        raise NotSupported("the fake engine measures nothing")

    def fresh_start(self, copy: base.Copy, starts: int) -> base.StartTimes:
        raise NotSupported("the fake engine measures nothing")


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeBackend]:
    engines = {e: FakeBackend(e) for e in ("libvirt", "docker")}
    monkeypatch.setattr(backends, "get", engines.__getitem__)
    monkeypatch.setattr(backends, "engines", lambda: list(engines))
    monkeypatch.setattr(backends, "engines_here", lambda: list(engines))
    return engines


def up(lab: tuple[Lab, Path], store: ImageStore, instance: str = "t1", **kw: object) -> LabState:
    return lifecycle.up(lab[0], lab[1], instance, store, NoKvm(), **kw).state  # type: ignore[arg-type]


def test_exit_codes_follow_the_errors_types_not_their_words(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    assert lifecycle.exit_code([ReadyTimeout("vm did not become ready")]) == ExitCode.TIMEOUT
    assert lifecycle.exit_code([EngineError("domain already exists")]) == ExitCode.ENGINE
    assert lifecycle.exit_code([ReadyTimeout("x"), SshError("y")]) == ExitCode.ENGINE
    fakes["libvirt"].fail["vm"] = EngineError("libvirt: domain 'vm' already exists with uuid u")
    with pytest.raises(LabctlError, match="already exists") as err:
        up(lab, store)
    assert err.value.code == ExitCode.ENGINE  # "already" contains "ready": it used to say 5
    fakes["libvirt"].fail["vm"] = ReadyTimeout("vm did not become ready")
    with pytest.raises(LabctlError) as err:
        up(lab, store, ready_timeout=1)
    assert err.value.code == ExitCode.TIMEOUT
    assert "- vm: vm did not become ready" in err.value.message  # at once: no bound to blame
    fakes["libvirt"].slow.add("vm")
    with pytest.raises(LabctlError) as err:
        up(lab, store, ready_timeout=1)
    # waited out: the bound is named, a short --ready-timeout may be the whole cause
    assert "- vm: not ready within 1 s (the lab's ready_timeout, or --ready-timeout): vm did " in (
        err.value.message
    )


def test_after_ctrl_c_no_guest_starts_new_engine_work(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    create = fakes["libvirt"].create

    def create_then_interrupted(plan: base.GuestPlan) -> GuestRecord:
        record = create(plan)
        cancel.CANCEL.set()  # Ctrl-C while the VM was being created
        return record

    fakes["libvirt"].create = create_then_interrupted  # type: ignore[method-assign]
    try:
        with pytest.raises(LabctlError) as err:
            up(lab, store, sequential=True)  # the VM first, then the app
    finally:
        cancel.CANCEL.clear()
    assert "interrupted" in err.value.message and err.value.code == ExitCode.INTERRUPTED
    assert fakes["libvirt"].guests == {fakes["libvirt"].planned["vm"].resource: "stopped"}
    assert fakes["docker"].planned == {}  # the app was never created
    lab_down.down("rec", "t1")


def test_a_host_that_refuses_a_file_fails_that_guest_the_others_come_up(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    def full_disk(plan: base.GuestPlan) -> GuestRecord:
        raise OSError(errno.ENOSPC, "No space left on device", "/var/lib/labctl/vm.qcow2")

    fakes["libvirt"].create = full_disk  # type: ignore[method-assign]  # this test's fake only
    said: list[tuple[str, str, str]] = []
    with pytest.raises(LabctlError, match="No space left on device") as err:
        up(lab, store, report=lambda *a: said.append(a))
    assert err.value.code == ExitCode.HOST
    assert (
        "vm",
        "failed",
        "vm: [Errno 28] No space left on device: '/var/lib/labctl/vm.qcow2'",
    ) in said
    state = InstanceDir("rec", "t1").load()
    assert state is not None and state.guests["app"].stage == "ready"
    lab_down.down("rec", "t1")


def test_a_guest_named_as_ours_but_made_for_another_is_never_used_nor_removed(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    # names meet when names have dashes: lab net instance adv-1 and lab net-adv instance 1
    docker = fakes["docker"]
    app = naming.resource("rec", "t1", "app")
    docker.guests[app] = "running"
    docker.labels[app] = {base.LAB: "rec", base.INSTANCE: "t2"}
    said: list[tuple[str, str, str]] = []
    with pytest.raises(LabctlError) as err:
        up(lab, store, report=lambda *a: said.append(a))
    assert err.value.message.endswith(
        f"- app: docker already has a guest named {app}, lab rec (instance t2): "
        "lab rec (instance t1) neither uses nor removes it"
    )
    assert err.value.hint and "app: names are labctl-LAB-INSTANCE-GUEST" in err.value.hint
    state = InstanceDir("rec", "t1").load()
    assert state is not None and state.guests["vm"].stage == "ready"  # the others came up
    assert state.guests["app"].error and "lab rec (instance t2)" in state.guests["app"].error
    assert docker.planned == {} and docker.labels[app][base.INSTANCE] == "t2"
    assert docker.identified == []  # its port (the other's) neither reserved nor published
    # ours until someone else's took its name (a record of it, its labels another's)
    docker.labels[app] = {}
    del docker.guests[app]
    up(lab, store)
    docker.labels[app] = {"note": "not labctl's"}
    said.clear()
    removed = lab_down.down("rec", "t1", report=lambda *a: said.append(a))
    assert removed == [naming.resource("rec", "t1", "vm")]
    assert (app, "kept", "not labctl: not this instance's") in said
    assert docker.guests[app] == "running"


def test_down_of_an_instance_never_here_touches_nothing_not_even_a_lock(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    assert lab_down.down("nolab", "main") == []
    assert not InstanceDir("nolab", "main").path.exists()
    assert not (state_root / "reservations.json").exists()  # asked, not written
    # its directory removed by hand, a reservation left: down still cleans up after it
    Reservations().claim_subnet("ghost", "main", "libvirt", "10.250.7.0/24")
    assert lab_down.down("ghost", "main") == []
    assert not Reservations().holds("ghost", "main")
    up(lab, store)
    assert sorted(lab_down.down("rec", "t1")) == sorted(f"labctl-rec-t1-{g}" for g in ("vm", "app"))
    assert lab_down.down("rec", "t1") == []  # again: nothing left, and no error
    assert InstanceDir("rec", "t1").path.is_dir()  # its key and progress stay


def test_a_copy_that_fails_leaves_no_half_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labctl.backends import vm_files

    source, target = tmp_path / "base.qcow2", tmp_path / "pinned.qcow2"
    source.write_bytes(b"qcow")

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def half_copy(src: object, dst: Path) -> None:
        dst.write_bytes(b"q")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vm_files.os, "link", no_link)
    monkeypatch.setattr(vm_files.shutil, "copy2", half_copy)
    with pytest.raises(OSError):
        vm_files.link_or_copy(source, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.qcow2"]


def test_the_subnet_is_saved_before_the_network_is_created_and_kept_by_a_rerun(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    first = up(lab, store)
    assert fakes["libvirt"].saw == [first.subnet] and first.subnet
    inst = InstanceDir("rec", "t1")
    inst.state_file.unlink()  # lost (or never written: killed right after the network)
    said: list[tuple[str, str, str]] = []
    again = up(lab, store, report=lambda *a: said.append(a))
    assert again.subnet == first.subnet
    assert ("", "adopt", "no state file: rebuilding it from vm, app") in said
    assert set(again.guests) == {"vm", "app"} and all(
        r.stage == "ready" for r in again.guests.values()
    )
    lab_down.down("rec", "t1")
    assert Reservations().entries()["subnets"] == {}


def test_a_damaged_state_file_is_set_aside_and_up_rebuilds_it_from_the_guests(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    first = up(lab, store)
    inst = InstanceDir("rec", "t1")
    inst.state_file.write_text(inst.state_file.read_text()[:40])  # cut short (a full disk)
    said: list[tuple[str, str, str]] = []
    again = up(lab, store, report=lambda *a: said.append(a))
    [aside] = inst.run.glob("state.json.damaged-*")
    assert aside.read_text() == first.to_json()[:40]  # kept for a look, never removed
    adopt = [d for _, step, d in said if step == "adopt"]
    assert adopt[0].startswith(f"state file {inst.state_file} is damaged: ")
    assert adopt[0].endswith(f"; kept as {aside.name}")
    assert adopt[1] == "no state file: rebuilding it from vm, app"
    assert again.subnet == first.subnet and set(again.guests) == {"vm", "app"}
    assert all(r.stage == "ready" for r in again.guests.values())
    # an exercise's reset does not mend it: it says so, and leaves the file where it is
    inst.state_file.write_text("{")
    with pytest.raises(Damaged) as err:
        lifecycle.recreate_guest(lab[0], lab[1], "t1", "app", store, NoKvm())  # type: ignore[arg-type]
    assert err.value.hint and "sets it aside" in err.value.hint
    assert inst.state_file.read_text() == "{"
    inst.state_file.write_text(again.to_json())
    lab_down.down("rec", "t1")


def test_up_records_and_says_how_each_guest_was_started(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    said: list[tuple[str, str, str]] = []
    first = up(lab, store, report=lambda *a: said.append(a))
    assert {r.name: r.started for r in first.guests.values()} == {"vm": "booted", "app": "booted"}
    assert any(g == "vm" and step == "done" and d.startswith("booted, ") for g, step, d in said)
    # A guest left running by an interrupted up (its record not ready) is started no further
    # and keeps how it was started; one without that record says it was found running.
    vm = replace(first.guests["vm"], stage="started", started="restored")
    app = replace(first.guests["app"], stage="started", started=None)
    InstanceDir("rec", "t1").save(first.with_guest(vm).with_guest(app))
    again = up(lab, store)
    assert {r.name: r.started for r in again.guests.values()} == {
        "vm": "restored",
        "app": "running",
    }
    lab_down.down("rec", "t1")


def test_up_records_a_whole_boot_for_each_guest_booted_or_restored(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    fakes["libvirt"].templates["vm"] = 41.5  # the boot that made its template took 41.5 s
    first = up(lab, store)
    vm, app = first.guests["vm"], first.guests["app"]
    assert (vm.started, vm.boot_seconds) == ("restored", 41.5)
    assert vm.ready_seconds is not None and vm.ready_seconds < 41.5  # the restore, not a boot
    assert app.started == "booted" and app.boot_seconds == app.ready_seconds
    # left running by an interrupted up: the next up keeps the boot it knew
    InstanceDir("rec", "t1").save(first.with_guest(replace(vm, stage="started")))
    again = up(lab, store).guests["vm"]
    assert (again.started, again.boot_seconds) == ("restored", 41.5)
    rows = {r.guest: r for r in lab_status.status(InstanceDir("rec", "t1").load())}  # type: ignore[arg-type]
    assert (rows["vm"].boot_seconds, rows["app"].boot_seconds) == (41.5, app.ready_seconds)
    lab_down.down("rec", "t1")


def test_status_gives_no_way_in_to_a_guest_that_is_not_running(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    state = up(lab, store)
    vm, app = state.guests["vm"].resource, state.guests["app"].resource
    assert state.guests["vm"].connect and state.guests["app"].address  # as up recorded them
    fakes["libvirt"].guests[vm] = "stopped"  # powered off: its address may come back
    del fakes["docker"].guests[app]  # removed behind labctl's back: its address is gone
    rows = {r.guest: r for r in lab_status.status(state)}
    assert (rows["vm"].state, rows["vm"].address, rows["vm"].connect) == (
        "stopped",
        "127.0.0.1",
        None,
    )
    assert (rows["app"].state, rows["app"].address, rows["app"].connect) == ("absent", None, None)
    lab_down.down("rec", "t1")


def test_a_lost_lab_key_is_made_anew_and_given_to_every_guest(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    first = up(lab, store)
    inst = InstanceDir("rec", "t1")
    old = inst.key.read_text()
    inst.key.unlink()  # deleted by hand: the guests accept only the lost key
    said: list[tuple[str, str, str]] = []
    result = lifecycle.up(*lab, "t1", store, NoKvm(), report=lambda *a: said.append(a))  # type: ignore[arg-type]
    assert not result.already_up and inst.key.read_text() != old
    assert ("", "key", "the lab key is gone: a new one goes to every guest") in said
    vm, app = first.guests["vm"].resource, first.guests["app"].resource
    assert fakes["libvirt"].powered_off == [vm]  # a VM reads the key from its command line
    assert ("vm", "stop", "it learns the new lab key when it boots") in said
    assert fakes["libvirt"].planned["vm"].key.private == inst.key  # defined anew, new key
    assert fakes["docker"].powered_off == [] and fakes["docker"].guests[app] == "running"
    assert result.state.guests["vm"].started == "booted"
    again = lifecycle.up(*lab, "t1", store, NoKvm())  # type: ignore[arg-type]
    assert again.already_up and fakes["libvirt"].powered_off == [vm]  # once
    assert {r.key_id for r in again.state.guests.values()} == {KeyPair(inst.key).id}
    # lost again, and this time up does not reach the VM: the record keeps that it must
    inst.key.unlink()
    fakes["libvirt"].fail["vm"] = EngineError("libvirt refused")  # this run does not reach it
    with pytest.raises(LabctlError):
        up(lab, store)
    assert inst.load().guests["vm"].key_id == "lost"  # type: ignore[union-attr]  # kept
    del fakes["libvirt"].fail["vm"]
    fakes["libvirt"].powered_off.clear()
    fakes["libvirt"].guests[vm] = "paused"  # and someone paused it
    mended = up(lab, store)  # no key is missing now: the record says who still needs it
    assert fakes["libvirt"].powered_off == [vm]
    assert {r.key_id for r in mended.guests.values()} == {KeyPair(inst.key).id}
    lab_down.down("rec", "t1")


def test_only_the_public_half_gone_is_made_again_from_the_private_one(tmp_path: Path) -> None:
    pair = ensure_keypair(tmp_path / "id_ed25519", "c")
    line, key_id = pair.public_line, pair.id
    pair.public.unlink()
    again = ensure_keypair(tmp_path / "id_ed25519", "c")
    assert again.public_line == line and again.id == key_id


def test_a_resumed_guest_keeps_its_boot_and_an_older_record_gets_one(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    first = up(lab, store)
    vm = first.guests["vm"]
    assert vm.boot_seconds is not None
    inst = InstanceDir("rec", "t1")
    inst.save(first.with_guest(replace(vm, stage="started", started="booted")))
    fakes["libvirt"].guests[vm.resource] = "paused"
    assert up(lab, store).guests["vm"].boot_seconds == vm.boot_seconds  # resumed: as it was
    older = replace(vm, boot_seconds=None, started="booted", ready_seconds=7.5)
    inst.save(inst.load().with_guest(older))  # type: ignore[union-attr]  # before boot_seconds
    assert up(lab, store).guests["vm"].boot_seconds == 7.5  # already running: filled in
    lab_down.down("rec", "t1")


def test_up_records_a_running_guest_defined_before_a_change_until_it_is_defined_anew(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    up(lab, store)
    fakes["libvirt"].changed["vm"] = "CPUs 1 -> 1 of 2"
    said: list[tuple[str, str, str]] = []
    again = lifecycle.up(*lab, "t1", store, NoKvm(), report=lambda *a: said.append(a))  # type: ignore[arg-type]
    assert again.already_up
    assert again.state.guests["vm"].outdated == "CPUs 1 -> 1 of 2"
    assert again.state.guests["app"].outdated is None
    assert ("vm", "ready", "already running, defined before a change") in said
    assert ("app", "ready", "already running") in said
    assert [r.outdated for r in lab_status.status(again.state)] == ["CPUs 1 -> 1 of 2", None]
    # An up interrupted after the start (a ready timeout) left the record short of ready:
    # the next up starts nothing, and still says the running guest predates the change.
    inst = InstanceDir("rec", "t1")
    vm = replace(again.state.guests["vm"], stage="started", started="restored", outdated=None)
    inst.save(again.state.with_guest(vm))
    resumed = up(lab, store).guests["vm"]
    assert (resumed.started, resumed.outdated) == ("restored", "CPUs 1 -> 1 of 2")
    # Stopped (poweroff), the guest is defined anew by the next up, and says nothing more.
    fakes["libvirt"].guests[vm.resource] = "stopped"
    assert [r.outdated for r in lab_status.status(inst.load())] == [None, None]  # type: ignore[arg-type]
    redefined = up(lab, store).guests["vm"]
    assert (redefined.started, redefined.outdated) == ("booted", None)
    lab_down.down("rec", "t1")


def test_a_second_up_says_whom_it_waits_for(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    said: list[tuple[str, str, str]] = []
    with held(InstanceDir("rec", "t1"), "labctl up", seconds=0.5):
        up(lab, store, report=lambda *a: said.append(a))
    assert said[1] == (
        "",
        "waiting",
        f"for labctl (pid {os.getpid()}: labctl up) working on lab rec instance t1",
    )


def test_state_keys_and_progress_are_readable_by_root_only(
    state_root: Path, lab: tuple[Lab, Path], store: ImageStore, fakes: dict[str, FakeBackend]
) -> None:
    up(lab, store)
    inst = InstanceDir("rec", "t1")
    ProgressStore("rec", "t1", "ana").start("ex")
    db = state_root / "labctl.db"  # the progress store, with SQLite's WAL files beside it
    for d in (state_root, inst.path, inst.run):
        assert d.stat().st_mode & 0o777 == 0o700, d
    wal = [db, db.with_name("labctl.db-wal"), db.with_name("labctl.db-shm")]
    for f in (inst.state_file, inst.key, *wal, state_root / "reservations.json"):
        assert f.stat().st_mode & 0o777 == 0o600, f


def test_an_instance_keeps_the_vm_profile_it_came_up_with(
    state_root: Path,
    lab: tuple[Lab, Path],
    tmp_path: Path,
    fakes: dict[str, FakeBackend],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = ["vm-amd64", "vm-amd64-tiny", "docker-app"]
    both = ImageStore([Empty(n) for n in names], root=tmp_path / "both")
    both.build(names)
    monkeypatch.setenv("LABCTL_VM_PROFILE", "tiny")
    first = up(lab, both)
    assert first.vm_profile == "tiny"
    assert fakes["libvirt"].planned["vm"].image == "vm-amd64-tiny"
    monkeypatch.setenv("LABCTL_VM_PROFILE", "debian")  # the host changed its mind
    fakes["libvirt"].guests.pop(first.guests["vm"].resource)  # and the VM is gone: re-created
    fakes["libvirt"].planned.clear()
    said: list[tuple[str, str, str]] = []
    again = up(lab, both, report=lambda *a: said.append(a))
    assert again.vm_profile == "tiny"  # a rerun (or an exercise reset) never mixes images
    assert fakes["libvirt"].planned["vm"].image == "vm-amd64-tiny"
    assert any("keeps the tiny VM images" in detail for _, _, detail in said)
    lab_down.down("rec", "t1")
    assert up(lab, both).vm_profile == "debian"  # a new instance takes the host's
    assert fakes["libvirt"].planned["vm"].image == "vm-amd64"
