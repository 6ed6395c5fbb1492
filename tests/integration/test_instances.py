"""Two instances of one lab side by side: separate names, networks and addresses.

A small lab (one VM, one system container, one app container) is brought up twice, as two
students would; taking one down must leave the other untouched and working.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import backends
from labctl.errors import HostError
from labctl.host.accel import detect
from labctl.images.registry import store
from labctl.instance.state import InstanceDir, LabState
from labctl.keys import KeyPair
from labctl.lab import down as lab_down
from labctl.lab import lifecycle
from labctl.lxd_client import connect as lxd_connect
from labctl.spec.model import Lab, load_lab
from tests.integration.engines import inventory
from tests.labs import APP, BOX, VM, lab_yaml

MINI = lab_yaml("mini", VM, BOX, APP)


@pytest.fixture(scope="module")
def mini(
    tmp_path_factory: pytest.TempPathFactory, built_images: list[str], state_root: Path
) -> Path:
    path = tmp_path_factory.mktemp("mini") / "lab.yaml"
    path.write_text(MINI)
    return path


@pytest.fixture(scope="module")
def two_students(mini: Path) -> Iterator[tuple[Lab, LabState, LabState]]:
    lab = load_lab(mini)
    try:
        a = lifecycle.up(lab, mini, "alumno01", store(), detect()).state
        b = lifecycle.up(lab, mini, "alumno02", store(), detect()).state
        yield lab, a, b
    finally:
        lab_down.down(lab.name, "alumno01")
        lab_down.down(lab.name, "alumno02")


def run(lab: Lab, state: LabState, guest: str, command: str) -> str:
    rec = state.guests[guest]
    key = KeyPair(InstanceDir(lab.name, state.instance).key)
    result = backends.connect(rec, key).run(command)
    assert result.succeeded, result.detail
    return result.stdout.strip()


def test_instances_have_their_own_names_networks_and_keys(
    two_students: tuple[Lab, LabState, LabState],
) -> None:
    lab, a, b = two_students
    assert a.subnet != b.subnet and a.bridge != b.bridge
    assert a.guests["vm"].resource == "labctl-mini-alumno01-vm"
    assert b.guests["vm"].resource == "labctl-mini-alumno02-vm"
    assert a.guests["vm"].address != b.guests["vm"].address
    assert a.guests["app"].port != b.guests["app"].port
    assert (
        InstanceDir("mini", "alumno01").key.read_bytes()
        != InstanceDir("mini", "alumno02").key.read_bytes()
    )
    assert run(lab, a, "vm", "hostname") == run(lab, b, "vm", "hostname") == "vm"


def test_a_paused_system_container_is_resumed_by_up(
    two_students: tuple[Lab, LabState, LabState], mini: Path
) -> None:
    lab, _, b = two_students
    box = b.guests["box"].resource
    lxd_connect().instances.get(box).freeze(wait=True)  # lxc pause: alive, answering nothing
    assert backends.get("lxd").state(box) == "paused"  # not running: up does not say "already up"
    again = lifecycle.up(lab, mini, "alumno02", store(), detect())
    assert not again.already_up and again.state.guests["box"].started == "resumed"
    assert run(lab, again.state, "box", "cat /proc/1/comm") == "systemd"


def test_down_of_one_instance_leaves_the_other_working(
    two_students: tuple[Lab, LabState, LabState],
) -> None:
    lab, a, b = two_students
    # its student paused the system container (lxc pause): down removes it all the same
    lxd_connect().instances.get(a.guests["box"].resource).freeze(wait=True)
    removed = lab_down.down(lab.name, "alumno01")
    assert sorted(removed) == sorted(r.resource for r in a.guests.values())
    assert inventory(lab.name, "alumno01").empty
    assert len(inventory(lab.name, "alumno02").bridges) == 3  # libvirt, docker, lxd
    for guest in ("vm", "box", "app"):
        rec = b.guests[guest]
        assert backends.get(rec.engine).state(rec.resource) == "running"
    assert run(lab, b, "vm", "uname -m") == "x86_64"
    assert run(lab, b, "box", "cat /proc/1/comm") == "systemd"


def test_a_taken_port_refuses_before_anything_is_created(mini: Path) -> None:
    import socket

    text = mini.read_text() + "    host_port: {port}\n"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        path = mini.with_name("busy.yaml")
        path.write_text(text.format(port=s.getsockname()[1]))
        lab = load_lab(path)
        with pytest.raises(HostError, match="already in use"):
            lifecycle.up(lab, path, "busy", store(), detect())
    for engine in ("libvirt", "lxd", "docker"):
        assert backends.get(engine).list_guests("mini", "busy") == []
    assert InstanceDir("mini", "busy").load() is None
