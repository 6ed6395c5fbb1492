"""Recovery on the real engines: concurrent instances, a VM powered off by its student, a lost
state file, an app container removed behind labctl's back, a container named as a guest but
made for another instance, and who may read the lab's files.

One small lab (a busybox VM and the app container) is brought up twice at the same moment;
the tests then break those two instances in the ways students and crashes do, and ``up``
must repair them without a new subnet, address, UUID or port.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from labctl import backends, libvirt_client
from labctl.docker_client import connect as docker_connect
from labctl.errors import EngineError, LabctlError, NotFoundError
from labctl.exercises.progress import ProgressStore
from labctl.host.accel import detect
from labctl.images.registry import store
from labctl.instance import naming
from labctl.instance.reservations import Reservations
from labctl.instance.state import InstanceDir, LabState
from labctl.keys import KeyPair
from labctl.lab import down as lab_down
from labctl.lab import lifecycle
from labctl.lab import status as lab_status
from labctl.spec.model import Lab, load_lab
from tests.integration.engines import inventory
from tests.integration.labs import Pair, two_instances, up, wait_powered_off
from tests.labs import APP, VM, lab_yaml

REC = lab_yaml("rec", VM, APP)


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, built_images: list[str], state_root: Path
) -> Iterator[Pair]:
    """Two instances of the small lab, their ``up`` started at the same moment."""
    with two_instances(tmp_path_factory, "rec", REC, at_once=True) as both:
        names = [both.a.instance, both.b.instance]
        yield both
    held = Reservations().entries()
    assert not [t for table in held.values() for t in table.values() if t["instance"] in names]


def run(lab: Lab, state: LabState, guest: str, command: str) -> str:
    rec = InstanceDir(lab.name, state.instance).load()
    assert rec is not None
    record = rec.guests[guest]
    key = KeyPair(InstanceDir(lab.name, state.instance).key)
    result = backends.connect(record, key).run(command)
    assert result.succeeded, result.detail
    return result.stdout.strip()


def _libvirt_subnet(network: str) -> str:
    with libvirt_client.connection() as conn:
        ip = ET.fromstring(conn.networkLookupByName(network).XMLDesc()).find("ip")
    assert ip is not None
    return str(ipaddress.ip_network(f"{ip.get('address')}/{ip.get('netmask')}", strict=False))


def _domain_uuid(resource: str) -> str:
    with libvirt_client.connection() as conn:
        return str(conn.lookupByName(resource).UUIDString())


def _domain_id(resource: str) -> str:
    """The running domain's id: a restart gives it another."""
    out = subprocess.run(
        ["virsh", "-c", libvirt_client.URI, "domid", resource], capture_output=True, text=True
    )
    return out.stdout.strip()


def _docker_subnet(network: str) -> str:
    cfg = docker_connect().networks.get(network).attrs["IPAM"]["Config"]
    return str(cfg[0]["Subnet"])


def test_two_instances_started_at_once_come_up_on_their_own_subnets(pair: Pair) -> None:
    a, b = pair.a, pair.b
    subnets = [a.subnet, a.docker_subnet, b.subnet, b.docker_subnet]
    assert None not in subnets and len(set(subnets)) == 4, subnets
    for s in (a, b):  # what the state says is what the engines have
        assert s.network and s.docker_network
        assert _libvirt_subnet(s.network) == s.subnet
        assert _docker_subnet(s.docker_network) == s.docker_subnet
    assert a.guests["app"].port != b.guests["app"].port
    assert run(pair.lab, a, "vm", "hostname") == run(pair.lab, b, "vm", "hostname") == "vm"
    print(f"two instances up at once in {pair.up_seconds:.1f} s: {subnets}")


def test_the_labs_files_are_readable_by_root_only(pair: Pair) -> None:
    inst = InstanceDir(pair.lab.name, pair.a.instance)
    ProgressStore(pair.lab.name, pair.a.instance, "ana").start("x")
    db = Path(os.environ["LABCTL_STATE"]) / "labctl.db"  # the progress store
    for d in (inst.path, inst.run):
        assert d.stat().st_mode & 0o777 == 0o700, d
    disk = inst.run / "vm.qcow2"
    for f in (inst.state_file, inst.key, disk, db, db.with_name("labctl.db-wal")):
        assert f.stat().st_mode & 0o777 == 0o600, f
    assert (Path(os.environ["LABCTL_STATE"]) / "reservations.json").stat().st_mode & 0o777 == 0o600


def test_a_vm_its_student_powered_off_starts_again_with_up(pair: Pair) -> None:
    lab, a = pair.lab, pair.a
    vm = backends.get("libvirt")
    resource = a.guests["vm"].resource
    uuid = _domain_uuid(resource)
    assert a.guests["vm"].uuid == uuid  # recorded before the domain existed
    try:
        run(lab, a, "vm", "poweroff")
    except (AssertionError, EngineError):
        pass  # the session may end with the guest
    wait_powered_off(resource, 120)
    t0 = time.monotonic()
    again = up(lab, pair.path, a.instance)
    print(f"powered-off VM up again in {time.monotonic() - t0:.1f} s")
    assert vm.state(resource) == "running" and _domain_uuid(resource) == uuid
    assert again.guests["vm"].address == a.guests["vm"].address
    assert again.subnet == a.subnet
    assert run(lab, again, "vm", "uname -m") == "x86_64"


def test_a_paused_vm_and_a_paused_container_are_resumed_by_up(pair: Pair) -> None:
    lab, a = pair.lab, pair.a
    resource = a.guests["vm"].resource
    subprocess.run(["virsh", "-c", libvirt_client.URI, "suspend", resource], check=True)
    app = a.guests["app"].resource
    docker_connect().containers.get(app).pause()  # docker pause: Docker refuses a plain start
    vm, docker = backends.get("libvirt"), backends.get("docker")
    assert vm.state(resource) == "paused"  # alive but answering nothing: not "running"
    assert docker.state(app) == "paused"
    again = up(lab, pair.path, a.instance)
    assert vm.state(resource) == "running" and docker.state(app) == "running"
    assert {g: again.guests[g].started for g in ("vm", "app")} == {
        "vm": "resumed",
        "app": "resumed",
    }
    assert run(lab, again, "vm", "uname -m") == "x86_64"
    assert requests.get(again.guests["app"].connect or "", timeout=10).ok


def test_a_network_destroyed_behind_labctls_back_comes_back_with_its_vm(pair: Pair) -> None:
    """virsh net-destroy takes the bridge away; started again, libvirt plugs no running
    guest back in: up does, and the VM answers over the lab's network again."""
    lab, a = pair.lab, pair.a
    assert a.network
    resource = a.guests["vm"].resource
    domid = _domain_id(resource)
    subprocess.run(["virsh", "-c", libvirt_client.URI, "net-destroy", a.network], check=True)
    t0 = time.monotonic()
    again = up(lab, pair.path, a.instance)
    print(f"network and VM back in {time.monotonic() - t0:.1f} s")
    bridge = again.bridge or ""
    assert Path(f"/sys/class/net/{bridge}/brif").is_dir()
    assert os.listdir(f"/sys/class/net/{bridge}/brif"), "the VM's tap is back on the bridge"
    assert _domain_id(resource) == domid  # mended in place, not restarted
    assert run(lab, again, "vm", "uname -m") == "x86_64"  # SSH over the lab's bridge


def test_a_docker_network_pruned_while_its_container_was_stopped_comes_back_with_it(
    pair: Pair,
) -> None:
    """Made again, the network has another id; Docker refuses to start a container that
    names the old one ("network ... not found"): up attaches it to the new one."""
    lab, a = pair.lab, pair.a
    app = a.guests["app"]
    client = docker_connect()
    client.containers.get(app.resource).stop(timeout=1)
    assert a.docker_network
    client.networks.get(a.docker_network).remove()
    again = up(lab, pair.path, a.instance)
    assert backends.get("docker").state(app.resource) == "running"
    assert requests.get(again.guests["app"].connect or "", timeout=10).ok


def test_a_lost_lab_key_is_made_anew_and_every_guest_lets_the_new_one_in(pair: Pair) -> None:
    lab, a = pair.lab, pair.a
    inst = InstanceDir(lab.name, a.instance)
    old = inst.key.read_text()
    inst.key.unlink()
    inst.key.with_suffix(".pub").unlink()
    t0 = time.monotonic()
    again = up(lab, pair.path, a.instance)
    print(f"new lab key given to the guests in {time.monotonic() - t0:.1f} s")
    assert inst.key.read_text() != old
    assert again.guests["vm"].started == "booted"  # it read the key from its command line
    assert run(lab, again, "vm", "uname -m") == "x86_64"  # SSH with the new key
    assert requests.get(again.guests["app"].connect or "", timeout=10).ok


def test_up_says_which_running_vm_was_defined_before_its_lab_file_changed(pair: Pair) -> None:
    lab, a = pair.lab, pair.a
    spec = lab.guests["vm"]
    more = spec.memory + 64
    changed = lab.model_copy(
        update={"guests": {**lab.guests, "vm": spec.model_copy(update={"memory": more})}}
    )
    again = up(changed, pair.path, a.instance)
    # libvirt's own XML of the running domain (memory in KiB, its machine version) is read
    assert again.guests["vm"].outdated == f"memory {spec.memory} MiB -> {more} MiB"
    assert again.guests["app"].outdated is None
    assert [r.outdated for r in lab_status.status(again)] == [again.guests["vm"].outdated, None]
    # The lab file as it was: the running guest matches it again.
    assert up(lab, pair.path, a.instance).guests["vm"].outdated is None


def test_a_lost_state_file_is_rebuilt_and_the_lab_is_complete(pair: Pair) -> None:
    lab, b = pair.lab, pair.b
    inst = InstanceDir(lab.name, b.instance)
    held = inventory(lab.name, b.instance)
    inst.state_file.unlink()
    t0 = time.monotonic()
    said: list[str] = []
    again = lifecycle.up(
        lab, pair.path, b.instance, store(), detect(), report=lambda *a: said.append(" ".join(a))
    ).state
    print(f"state rebuilt in {time.monotonic() - t0:.1f} s")
    assert any("no state file: rebuilding it from vm, app" in line for line in said), said
    assert (again.subnet, again.docker_subnet) == (b.subnet, b.docker_subnet)
    assert inventory(lab.name, b.instance) == held  # nothing new, nothing lost
    for name in ("vm", "app"):
        old, new = b.guests[name], again.guests[name]
        assert new.stage == "ready" and (new.address, new.port) == (old.address, old.port)
        assert (new.uuid, new.mac, new.host_port) == (old.uuid, old.mac, old.host_port)
    assert run(lab, again, "vm", "hostname") == "vm"


def test_an_app_container_removed_behind_labctls_back(pair: Pair) -> None:
    lab, a = pair.lab, pair.a
    rec = a.guests["app"]
    docker_connect().containers.get(rec.resource).remove(force=True)
    key = KeyPair(InstanceDir(lab.name, a.instance).key)
    with pytest.raises(NotFoundError, match=f"No such container: {rec.resource}"):
        backends.connect(rec, key).run("true")
    cli = subprocess.run(
        [sys.executable, "-m", "labctl", "exec", "app", "--lab", lab.name, "-i", a.instance,
         "--", "true"],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=60,
    )  # fmt: skip
    assert cli.returncode == 4, cli.stderr
    assert "Error:" in cli.stderr and "No such container" in cli.stderr
    assert "Traceback" not in cli.stderr
    again = up(lab, pair.path, a.instance)
    assert again.guests["app"].port == rec.port  # the same published port as before
    answer = requests.get(f"http://127.0.0.1:{rec.port}/", timeout=5)
    assert answer.status_code == 200


def test_a_container_named_as_a_guest_but_made_for_another_is_never_used_nor_removed(
    tmp_path: Path, built_images: list[str], state_root: Path
) -> None:
    # lab "own" instance "t1-x" names its guest "app" as instance "t1" names a guest "x-app"
    path = tmp_path / "lab.yaml"
    path.write_text(lab_yaml("own", APP))
    lab = load_lab(path)
    resource = naming.resource("own", "t1-x", "app")
    manifest = store().manifest("docker-app")
    assert manifest is not None  # built by the session's fixture
    with socket.socket() as s:  # a free port for theirs, as their up would have published
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    theirs = docker_connect().containers.run(
        manifest.engine_ref,
        name=resource,
        labels={"labctl.lab": "own", "labctl.instance": "t1", "labctl.guest": "x-app"},
        ports={"8080/tcp": ("127.0.0.1", port)},
        detach=True,
    )
    try:
        with pytest.raises(LabctlError) as err:
            up(lab, path, "t1-x")
        assert f"docker already has a guest named {resource}, lab own (instance t1)" in (
            err.value.message
        )
        held = Reservations().entries().get("ports", {})
        assert str(port) not in held  # its port was not taken for this instance
        state = InstanceDir("own", "t1-x").load()
        assert state is not None and state.guests["app"].host_port is None
        assert lab_down.down("own", "t1-x") == []  # its record names it: kept all the same
        theirs.reload()
        assert theirs.status == "running"  # left as it was, still there
    finally:
        theirs.remove(force=True)
        lab_down.down("own", "t1-x")
