"""What compare asks of each backend, on fakes at the library boundary.

pylxd, docker-py and libvirt are replaced by small in-memory objects that answer as the real
libraries do (tests/unit/fake_engines.py); throwaway copies must be named for their lab
instance, labelled, and removed whatever happens.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from pylxd.exceptions import NotFound

from labctl.backends import host_side
from labctl.backends.base import Copy
from labctl.backends.docker import DockerBackend
from labctl.backends.domain_xml import domain_xml
from labctl.backends.libvirt import LibvirtBackend
from labctl.backends.lxd import LxdBackend
from labctl.backends.params import DockerParams, LibvirtParams, LxdParams, Params
from labctl.command import CommandResult
from labctl.errors import EngineError, LabctlError, NotSupported, ReadyTimeout
from labctl.instance import naming
from labctl.instance.state import GuestRecord
from labctl.keys import KeyPair
from tests.unit.domains import domain_params
from tests.unit.fake_engines import FakeConn, FakeContainer, FakeDockerClient

KEY = KeyPair(Path("/nonexistent/key"))


def copy_of(engine: str, guest: str, params: Params) -> Copy[Params]:
    resource = naming.resource("lab1", "t1", guest)
    return Copy("lab1", "t1", GuestRecord(guest, engine, resource), params, KEY, timeout=5.0)


# -- LXD ------------------------------------------------------------------------------------


class _Response:
    def __init__(self, status: int, error: str) -> None:
        self.status_code = status
        self.content = error.encode()

    def json(self) -> dict[str, Any]:
        return {"type": "error", "error": self.content.decode(), "error_code": self.status_code}


class FakeExec:
    def __init__(self, exit_code: int) -> None:
        self.exit_code = exit_code
        self.stdout = self.stderr = ""


class FakeInstance:
    def __init__(self, client: FakeLxd, spec: dict[str, Any]) -> None:
        self.client = client
        self.name: str = spec["name"]
        self.config: dict[str, str] = dict(spec.get("config", {}))
        self.profiles: list[str] = spec.get("profiles", ["default"])
        self.devices: dict[str, Any] = spec.get("devices", {})
        self.expanded_devices = {"root": {"type": "disk", "path": "/", "pool": "default"}}
        self.source = spec.get("source")
        self.status = "Stopped"
        self.starts = 0
        self.usage: int | None = 123 * 1024 * 1024
        self.exec_works = True

    def start(self, wait: bool = False) -> None:
        self.status = "Running"
        self.starts += 1

    def stop(self, force: bool = False, wait: bool = False) -> None:
        self.status = "Stopped"

    def execute(self, argv: list[str]) -> FakeExec:
        return FakeExec(0 if self.exec_works and self.status == "Running" else 1)

    def delete(self, wait: bool = False) -> None:
        assert self.status == "Stopped", "LXD refuses to delete a running instance"
        del self.client.by_name[self.name]

    def state(self) -> Any:
        class State:
            memory = {"usage": self.usage} if self.usage else {}

        return State()


class FakeInstances:
    def __init__(self, client: FakeLxd) -> None:
        self.client = client

    def get(self, name: str) -> FakeInstance:
        if name not in self.client.by_name:
            raise NotFound(_Response(404, "Instance not found"))  # type: ignore[arg-type]
        return self.client.by_name[name]

    def create(self, spec: dict[str, Any], wait: bool = False) -> FakeInstance:
        inst = FakeInstance(self.client, spec)
        self.client.by_name[inst.name] = inst
        self.client.created.append(inst)
        return inst


class FakePool:
    def __init__(self, driver: str, source: str) -> None:
        self.driver = driver
        self.config = {"source": source}


class FakeLxd:
    """The part of a pylxd.Client the LXD backend's measurements use."""

    def __init__(self) -> None:
        self.by_name: dict[str, FakeInstance] = {}
        self.created: list[FakeInstance] = []
        self.instances = FakeInstances(self)
        self.pool = FakePool("dir", "/var/lib/lxd/storage-pools/default")

        class Pools:
            def get(_self, name: str) -> FakePool:
                return self.pool

        self.storage_pools = Pools()


@pytest.fixture
def lxd() -> tuple[LxdBackend, FakeLxd, FakeInstance]:
    fake = FakeLxd()
    backend = LxdBackend(fake)  # type: ignore[arg-type]
    source = fake.instances.create(
        {
            "name": naming.resource("lab1", "t1", "sys"),
            "config": {
                "volatile.base_image": "f" * 64,
                "limits.memory": "256MB",
                "user.labctl.lab": "lab1",
            },
            "devices": {"eth0": {"type": "nic", "network": "lclx12345678"}},
        }
    )
    source.status = "Running"
    fake.created.clear()
    return backend, fake, source


def test_lxd_fresh_start_times_a_labelled_copy_and_removes_it(
    lxd: tuple[LxdBackend, FakeLxd, FakeInstance],
) -> None:
    backend, fake, source = lxd
    times = backend.fresh_start(copy_of("lxd", "sys", SYS), 4)
    assert len(times.seconds) == 4 and all(s >= 0 for s in times.seconds)
    assert "exec" in times.method
    [clone] = fake.created
    assert clone.name.startswith(source.name + "-cmp") and len(clone.name) <= naming.MAX_RESOURCE
    assert clone.config["user.labctl.lab"] == "lab1"
    assert clone.config["user.labctl.instance"] == "t1"
    assert clone.config["user.labctl.guest"] == "sys-compare"
    assert clone.config["limits.memory"] == "256MB"
    assert clone.source == {"type": "image", "fingerprint": "f" * 64}
    assert clone.devices == source.devices  # on the instance's own network, not lxdbr0
    assert clone.starts == 4
    assert clone.name not in fake.by_name  # removed
    assert fake.by_name == {source.name: source}  # the lab's own container untouched


def test_lxd_fresh_start_removes_the_copy_when_a_start_fails(
    lxd: tuple[LxdBackend, FakeLxd, FakeInstance], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, fake, source = lxd
    original = fake.instances.create

    def broken(spec: dict[str, Any], wait: bool = False) -> FakeInstance:
        inst = original(spec, wait)
        inst.exec_works = False
        return inst

    monkeypatch.setattr(fake.instances, "create", broken)
    copy = copy_of("lxd", "sys", SYS)
    with pytest.raises(ReadyTimeout):
        backend.fresh_start(Copy(copy.lab, copy.instance, copy.record, SYS, KEY, 0.3), 3)
    assert fake.by_name == {source.name: source}


def test_lxd_memory_and_footprint(
    lxd: tuple[LxdBackend, FakeLxd, FakeInstance], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, fake, source = lxd
    use = backend.memory(source.name)
    assert use.bytes == 123 * 1024 * 1024 and "cgroup" in use.method
    source.usage = None
    with pytest.raises(EngineError, match="no memory usage"):
        backend.memory(source.name)

    seen: list[Path] = []
    monkeypatch.setattr("labctl.backends.lxd.du_bytes", lambda p: seen.append(p) or 4096)
    use = backend.footprint(source.name)
    assert use.bytes == 4096
    assert seen == [Path("/var/lib/lxd/storage-pools/default/containers") / source.name]
    fake.pool = FakePool("zfs", "tank/lxd")
    with pytest.raises(NotSupported, match="only dir pools"):
        backend.footprint(source.name)


def test_lxd_devices_and_no_accelerator(lxd: tuple[LxdBackend, FakeLxd, FakeInstance]) -> None:
    backend, _fake, source = lxd
    assert backend.devices(source.name).summary == "shared host kernel, own init"
    assert backend.accelerator(source.name) is None
    with pytest.raises(EngineError, match="does not exist"):
        backend.devices("labctl-lab1-t1-gone")


# -- Docker ---------------------------------------------------------------------------------


class FakeImage:
    id = "sha256:" + "a" * 64


class MeasuredContainer(FakeContainer):
    """A docker-py container that publishes its port once started, and can be measured."""

    def __init__(self, client: MeasuredDocker, name: str, ports: dict[str, Any]) -> None:
        super().__init__(name, ports)
        self.client = client
        self.image = FakeImage()
        self.starts = 0
        self.kwargs: dict[str, Any] = {}

    def start(self) -> None:
        super().start()
        self.starts += 1
        for key in self.attrs["HostConfig"]["PortBindings"]:
            self.attrs["NetworkSettings"]["Ports"][key] = [
                {"HostIp": "127.0.0.1", "HostPort": "49153"}
            ]

    def stop(self, timeout: int = 10) -> None:
        self.status = "exited"
        self.attrs["NetworkSettings"]["Ports"] = {}

    def reload(self) -> None:
        pass

    def remove(self, force: bool = False, v: bool = False) -> None:
        del self.client.containers.by_name[self.name]

    def stats(self, stream: bool, one_shot: bool) -> dict[str, Any]:
        return {"memory_stats": {"usage": 42 * 1024 * 1024}}


class MeasuredDocker(FakeDockerClient):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[MeasuredContainer] = []
        client = self

        def create(image: str, name: str, ports: dict[str, Any], **kw: Any) -> MeasuredContainer:
            c = MeasuredContainer(client, name, ports)
            c.kwargs = {"image": image, **kw}
            c.labels = dict(kw.get("labels") or {})
            c.attrs["HostConfig"].update(
                {"NetworkMode": kw.get("network"), "Memory": 128 * 1024 * 1024}
            )
            client.containers.by_name[name] = c
            client.created.append(c)
            return c

        self.containers.create = create  # type: ignore[method-assign]

        class Api:
            def containers(self, all: bool, filters: dict[str, str], size: bool) -> list[Any]:
                return [
                    {"Names": ["/" + filters["name"] + "-other"], "SizeRw": 1},
                    {"Names": ["/" + filters["name"]], "SizeRw": 3 * 1024 * 1024},
                ]

        self.api = Api()


APP = DockerParams(port=80, host_port=None, memory=128, http_path="/")
SYS = LxdParams(memory=256)
VM = LibvirtParams("x86_64", cpus=1, memory=384, disk_bus="virtio", nic_model="virtio")


@pytest.fixture
def dock() -> tuple[DockerBackend, MeasuredDocker, MeasuredContainer]:
    fake = MeasuredDocker()
    backend = DockerBackend(fake)  # type: ignore[arg-type]
    source = fake.containers.create(
        "app:1", name=naming.resource("lab1", "t1", "app"), ports={"80/tcp": ("127.0.0.1", 18080)}
    )
    assert isinstance(source, MeasuredContainer)
    source.attrs["HostConfig"]["NetworkMode"] = "labctl-lab1-t1"
    fake.created.clear()
    return backend, fake, source


class _Answer:
    def __init__(self, status: int) -> None:
        self.status_code = status


def test_docker_fresh_start_times_a_labelled_copy_until_http_200(
    dock: tuple[DockerBackend, MeasuredDocker, MeasuredContainer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend, fake, source = dock
    asked: list[str] = []
    monkeypatch.setattr(requests, "get", lambda url, **_: asked.append(url) or _Answer(200))
    times = backend.fresh_start(copy_of("docker", "app", APP), 3)
    assert len(times.seconds) == 3 and "HTTP 200" in times.method
    [clone] = fake.created
    assert clone.name.startswith(source.name + "-cmp")
    assert clone.kwargs["labels"] == {
        "labctl.lab": "lab1",
        "labctl.instance": "t1",
        "labctl.guest": "app-compare",
    }
    assert clone.kwargs["image"] == FakeImage.id  # the very image the lab's container runs
    assert clone.kwargs["network"] == "labctl-lab1-t1"
    assert clone.attrs["HostConfig"]["PortBindings"]["80/tcp"][0]["HostIp"] == "127.0.0.1"
    assert clone.starts == 3
    assert asked == ["http://127.0.0.1:49153/"] * 3
    assert set(fake.containers.by_name) == {source.name}


def test_docker_fresh_start_removes_the_copy_when_it_never_answers(
    dock: tuple[DockerBackend, MeasuredDocker, MeasuredContainer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend, fake, source = dock
    monkeypatch.setattr(requests, "get", lambda url, **_: _Answer(503))
    copy = copy_of("docker", "app", APP)
    with pytest.raises(ReadyTimeout, match="did not answer HTTP"):
        backend.fresh_start(Copy(copy.lab, copy.instance, copy.record, APP, KEY, 0.3), 3)
    assert set(fake.containers.by_name) == {source.name}


def test_docker_memory_footprint_devices(
    dock: tuple[DockerBackend, MeasuredDocker, MeasuredContainer],
) -> None:
    backend, fake, source = dock
    assert backend.memory(source.name).bytes == 42 * 1024 * 1024
    use = backend.footprint(source.name)
    assert use.bytes == 3 * 1024 * 1024 and "SizeRw" in use.method  # its own row, not -other
    assert backend.devices(source.name).summary == "shared host kernel"
    assert backend.accelerator(source.name) is None
    fake.containers.by_name.pop(source.name)
    with pytest.raises(EngineError, match="No such container"):
        backend.devices(source.name)


# -- libvirt --------------------------------------------------------------------------------


def vm_xml(run: Path, disk_bus: str, nic: str, accel: str = "tcg") -> str:
    guest = LibvirtParams("x86_64", cpus=1, memory=384, disk_bus=disk_bus, nic_model=nic)
    return domain_xml(
        replace(
            domain_params("kvm-full", accel),
            name="labctl-lab1-t1-vm",
            guest=guest,
            kernel=run / "vmlinuz",
            initrd=run / "initrd.img",
            disk=run / "vm.qcow2",
            console_log=run / "vm.console.log",
        )
    )


@pytest.fixture
def virt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LibvirtBackend, FakeConn, Path]:
    fake = FakeConn()

    @contextmanager
    def connection():  # type: ignore[no-untyped-def]
        yield fake

    monkeypatch.setattr("labctl.libvirt_client.connection", connection)
    run = tmp_path / "run"
    run.mkdir()
    return LibvirtBackend(), fake, run


@pytest.mark.parametrize(
    ("bus", "nic", "accel", "summary", "cache"),
    [
        ("virtio", "virtio", "tcg", "virtio-blk + virtio-net (paravirtual)", "unsafe"),
        ("ide", "e1000", "kvm", "IDE + e1000 (emulated)", "none"),
    ],
)
def test_libvirt_devices_are_read_from_the_live_domain(
    virt: tuple[LibvirtBackend, FakeConn, Path],
    bus: str,
    nic: str,
    accel: str,
    summary: str,
    cache: str,
) -> None:
    backend, conn, run = virt
    conn.defineXML(vm_xml(run, bus, nic, accel))
    devices = backend.devices("labctl-lab1-t1-vm")
    assert devices.summary == summary and devices.disk_cache == cache
    with pytest.raises(EngineError, match="does not exist"):
        backend.devices("labctl-lab1-t1-gone")


def test_libvirt_footprint_is_the_overlay_in_the_run_directory(
    virt: tuple[LibvirtBackend, FakeConn, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, conn, run = virt
    conn.defineXML(vm_xml(run, "virtio", "virtio"))
    with pytest.raises(EngineError, match="no overlay disk"):
        backend.footprint("labctl-lab1-t1-vm")
    (run / "vm.qcow2").write_bytes(b"x" * 10000)
    base = run / "base.qcow2"
    base.write_bytes(b"y" * 5000)
    monkeypatch.setattr(host_side, "qcow2_backing", lambda p: base)
    use = backend.footprint("labctl-lab1-t1-vm")
    assert use.bytes == host_side.allocated_bytes(run / "vm.qcow2") > 0
    assert str(run / "vm.qcow2") in use.method
    assert use.note and "base.qcow2" in use.note


def test_libvirt_memory_is_the_qemu_process_rss(
    virt: tuple[LibvirtBackend, FakeConn, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, _conn, _run = virt
    monkeypatch.setattr(host_side, "vm_rss_bytes", lambda resource: 300 * 1024 * 1024)
    use = backend.memory("labctl-lab1-t1-vm")
    assert use.bytes == 300 * 1024 * 1024 and "VmRSS" in use.method and use.note


def test_vm_rss_is_read_through_libvirts_pid_file(tmp_path: Path) -> None:
    (tmp_path / "pids").mkdir()
    (tmp_path / "pids" / "dom.pid").write_text("77\n")
    (tmp_path / "proc" / "77").mkdir(parents=True)
    (tmp_path / "proc" / "77" / "status").write_text("Name:\tqemu\nVmRSS:\t  2048 kB\n")
    assert host_side.vm_rss_bytes("dom", tmp_path / "pids", tmp_path / "proc") == 2048 * 1024
    with pytest.raises(LabctlError, match="no QEMU process for other"):
        host_side.vm_rss_bytes("other", tmp_path / "pids", tmp_path / "proc")


def test_libvirt_copies_no_vm_and_says_what_to_do_instead(
    virt: tuple[LibvirtBackend, FakeConn, Path],
) -> None:
    backend, _conn, _run = virt
    with pytest.raises(NotSupported) as err:
        backend.fresh_start(copy_of("libvirt", "vm", VM), 3)
    assert err.value.hint and "--restart-guests" in err.value.hint


class PowerOff:
    """A guest connection whose poweroff command stops the domain."""

    def __init__(self, dom: Any) -> None:
        self.dom = dom
        self.ran: list[str] = []

    def run(self, command: str) -> CommandResult:
        self.ran.append(command)
        self.dom.active = False
        return CommandResult(command, 0, "", "")


RESTARTED = GuestRecord("vm", "libvirt", "labctl-lab1-t1-vm", address="192.168.50.10")


def running_vm(
    conn: FakeConn, run: Path, monkeypatch: pytest.MonkeyPatch, replaced: list[str]
) -> Any:
    """A running domain whose QEMU (pid 77) has the ``replaced`` image files open, deleted."""
    dom = conn.defineXML(vm_xml(run, "virtio", "virtio"))
    dom.active = True
    monkeypatch.setattr(host_side, "qemu_pid", lambda resource: 77)
    monkeypatch.setattr(host_side, "replaced_images", lambda pid: replaced)
    return dom


def test_libvirt_restart_powers_off_and_times_the_cold_boot(
    virt: tuple[LibvirtBackend, FakeConn, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, conn, run = virt
    dom = running_vm(conn, run, monkeypatch, replaced=[])
    guest = PowerOff(dom)
    logins: list[str] = []
    monkeypatch.setattr(backend, "connect", lambda record, key: guest)
    monkeypatch.setattr(
        "labctl.backends.libvirt_measure.wait_for_login",
        lambda target, deadline, command, poll: logins.append(target.host),
    )
    times = backend.restart(RESTARTED, KEY, 30)
    assert len(times.seconds) == 1 and "cold boot" in times.method
    assert "poweroff" in guest.ran[0]
    assert dom.active and logins == ["192.168.50.10"]


def test_libvirt_restart_refuses_when_the_base_image_changed(
    virt: tuple[LibvirtBackend, FakeConn, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, conn, run = virt
    dom = running_vm(conn, run, monkeypatch, replaced=["/cache/old/disk.qcow2"])
    with pytest.raises(EngineError, match="image changed on disk"):
        backend.restart(RESTARTED, KEY, 30)
    assert dom.active  # never powered off


def test_containers_are_not_restarted_in_place(
    lxd: tuple[LxdBackend, FakeLxd, FakeInstance],
) -> None:
    backend, _fake, source = lxd
    with pytest.raises(NotSupported):
        backend.restart(GuestRecord("sys", "lxd", source.name), KEY, 30)


def test_a_vms_footprint_names_every_shared_image_it_leaves_out(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from labctl.backends.libvirt_measure import shared_note
    from tests.ci import require

    require(shutil.which("qemu-img") is not None, "qemu-img makes the qcow2 chain")
    require(shutil.which("qemu-io") is not None, "qemu-io writes blocks into it")

    def qcow2(name: str, backing: Path | None = None, data: int = 0) -> Path:
        path = tmp_path / name
        chain = ["-b", str(backing), "-F", "qcow2"] if backing else []
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", *chain, str(path), "64M"], check=True
        )
        if data:  # written blocks: allocated bytes
            subprocess.run(
                ["qemu-io", "-c", f"write 0 {data}M", str(path)], check=True, capture_output=True
            )
        return path

    base = qcow2("base.qcow2", data=3)
    template = qcow2("disk.qcow2", base, data=1)
    overlay = qcow2("overlay.qcow2", template)
    note = shared_note(overlay) or ""
    # both shared images, nearest first, and their bytes together
    assert note.startswith("the shared base images are not counted: disk.qcow2 on base.qcow2 (")
    assert shared_note(base) is None  # nothing under a base image
    assert (shared_note(template) or "").startswith("the shared base image is not counted: base")
