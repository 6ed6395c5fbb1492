"""The lab-host side of a class over several hosts, on one simulated lab host.

A simulated host (an LXD system container made by ``fleet_hosts``, from the prepared image
that is cached by a hash of its inputs) gets, from this machine as the controller and through
ansible-runner over SSH: ``host-setup.yml`` (a second run changes nothing),
``fleet-install.yml`` (labctl from a wheelhouse; nothing for the same build) and
``fleet-images.yml`` (files and engine images, checksummed; nothing for a host that has
them). A wrong checksum is refused, and a host cut off is reported unreachable. The host is
deleted at the end and nothing labelled with this run is left.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from labctl.fleet import ship
from labctl.fleet.inventory import LabHost
from labctl.images.registry import store
from labctl.keys import ensure_keypair
from labctl.paths import PLAYBOOKS_DIR
from tests.integration import fleet_hosts
from tests.integration.engines import inventory

#: the images fleet-mini needs on a host of the tiny VM profile: a file image, and an
#: engine image with the base it is built on
IMAGES = ["docker-app", "vm-amd64-tiny"]


@dataclass(frozen=True)
class Fleet:
    host: LabHost
    inventory: Path
    tmp: Path
    run: str

    def play(
        self, name: str, extravars: Mapping[str, object] | None, tag: str, **kw: int
    ) -> fleet_hosts.PlayRun:
        return fleet_hosts.run_playbook(
            PLAYBOOKS_DIR / name, self.inventory, extravars, self.tmp / tag, **kw
        )


@pytest.fixture(scope="module")
def fleet(in_ci: bool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One simulated lab host for the module; deleted, and checked gone, at the end."""
    try:
        fleet_hosts.leftovers()
    except (fleet_hosts.SimHostError, FileNotFoundError) as exc:
        if in_ci:
            pytest.fail(f"simulated lab hosts need LXD: {exc}")
        pytest.skip(f"simulated lab hosts need LXD: {exc}")
    tmp = tmp_path_factory.mktemp("fleet")
    run = "t" + secrets.token_hex(3)
    key = ensure_keypair(tmp / "id_ed25519", f"labctl fleet test {run}")
    names = fleet_hosts.host_names(run, 1)
    try:
        image = fleet_hosts.prepare_image()
        (host,) = fleet_hosts.launch(names, key.public_line, image=image)
        hosts_file = fleet_hosts.write_inventory([host], tmp / "hosts.yml", key.private, "yaml")
        yield Fleet(host, hosts_file, tmp, run)
    finally:
        fleet_hosts.destroy(names)
        assert fleet_hosts.leftovers(run) == []
        assert not inventory("fleet", run).lxd_instances


def test_host_setup_over_ssh_then_nothing_changes(fleet: Fleet) -> None:
    first = fleet.play("host-setup.yml", None, "setup-1")
    assert first.ok, first.explain()
    assert fleet.host.name in first.hosts
    second = fleet.play("host-setup.yml", None, "setup-2")
    assert second.ok, second.explain()
    assert second.changed(fleet.host.name) == 0, second.changed_tasks
    # what setup chose on a host that is a container: apt through this machine's cache,
    # libvirt without a security driver, no system-container engine, the tiny VM images
    conf = fleet_hosts.exec_in(fleet.host, "cat", "/etc/libvirt/qemu.conf")
    assert 'security_driver = "none"' in conf.splitlines()
    assert fleet_hosts.exec_in(fleet.host, "cat", "/etc/labctl/vm-profile").strip() == "tiny"
    proxy = fleet_hosts.setup_vars()["labctl_apt_proxy"]
    apt_conf = fleet_hosts.exec_in(fleet.host, "cat", "/etc/apt/apt.conf.d/60labctl-proxy")
    assert proxy in apt_conf
    chosen = fleet_hosts.exec_in(fleet.host, "cat", "/etc/labctl/system-containers")
    assert chosen.strip() == "none"


def test_fleet_install_then_nothing_changes(fleet: Fleet) -> None:
    wheels, key = ship.wheelhouse()
    extravars: dict[str, object] = {"labctl_wheelhouse": str(wheels), "labctl_install_key": key}
    first = fleet.play("fleet-install.yml", extravars, "install-1")
    assert first.ok, first.explain()
    assert first.changed(fleet.host.name) > 0
    marker = fleet_hosts.exec_in(fleet.host, "cat", "/opt/labctl/installed")
    assert marker.strip() == key
    version = fleet_hosts.exec_in(fleet.host, "labctl", "--version")
    assert version.startswith("labctl ")
    # the wheel brought the lab files: the installed labctl finds the lab the fleet runs
    found = fleet_hosts.exec_in(
        fleet.host,
        "/opt/labctl/venv/bin/python",
        "-c",
        "from labctl.paths import LABS_DIR; print(LABS_DIR / 'fleet-mini' / 'lab.yaml')",
    )
    assert found.strip() == "/opt/labctl/venv/share/labctl/labs/fleet-mini/lab.yaml"
    # its doctor says the host runs no system containers, as chosen, rather than failing
    checks = json.loads(
        fleet_hosts.exec_in(fleet.host, "sh", "-c", "labctl doctor --json; true", timeout=300)
    )
    lxd = next(c for c in checks if c["name"] == "lxd")
    assert lxd["status"] == "warn" and lxd["detail"].startswith("none"), lxd
    second = fleet.play("fleet-install.yml", extravars, "install-2")
    assert second.ok, second.explain()
    assert second.changed(fleet.host.name) == 0, second.changed_tasks


def _host_images(fleet: Fleet) -> dict[str, str]:
    out = fleet_hosts.exec_in(fleet.host, "labctl", "images", "list", "--json")
    return {row["name"]: row["status"] for row in json.loads(out)}


def test_fleet_images_then_nothing_is_shipped(fleet: Fleet) -> None:
    images = store()
    images.build(IMAGES)  # current already, unless a recipe changed since
    wanted = fleet_hosts.image_vars(images, IMAGES)
    extravars = {"labctl_images": wanted, "labctl_image_src": str(images.root)}
    first = fleet.play("fleet-images.yml", extravars, "images-1")
    assert first.ok, first.explain()
    statuses = _host_images(fleet)
    assert {e["name"] for e in wanted} >= set(IMAGES), wanted  # each named image is shipped
    for entry in wanted:  # the host's labctl sees each as built for its recipe, in its engine
        assert statuses[entry["name"]] == "ready", (entry["name"], statuses)
        there = fleet_hosts.exec_in(
            fleet.host, "sha256sum", f"/var/cache/labctl/images/{entry['name']}/manifest.json"
        )
        assert there.split()[0] == entry["manifest_sha256"]
    second = fleet.play("fleet-images.yml", extravars, "images-2")
    assert second.ok, second.explain()
    assert second.changed(fleet.host.name) == 0, second.changed_tasks


def test_a_file_that_does_not_match_its_checksum_is_refused(fleet: Fleet) -> None:
    src = fleet.tmp / "images"
    (src / "fleet-fake").mkdir(parents=True)
    (src / "fleet-fake" / "data.bin").write_bytes(b"what the controller has\n")
    manifest = b'{"image": "fleet-fake"}\n'
    (src / "fleet-fake" / "manifest.json").write_bytes(manifest)
    entry = {
        "name": "fleet-fake",
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "files": [{"path": "data.bin", "sha256": hashlib.sha256(b"other bytes\n").hexdigest()}],
    }
    run = fleet.play(
        "fleet-images.yml", {"labctl_images": [entry], "labctl_image_src": str(src)}, "fake"
    )
    assert not run.ok
    assert "fleet-fake/data.bin: sha256" in run.explain()
    where = fleet_hosts.exec_in(
        fleet.host, "sh", "-c", "test -e /var/cache/labctl/images/fleet-fake && echo there || :"
    )
    assert where.strip() == ""  # nothing renamed into place
    fleet_hosts.exec_in(fleet.host, "rm", "-rf", "/var/cache/labctl/images/.fleet-fake.tmp-ship")


def test_a_host_cut_off_is_unreachable_and_back_after(fleet: Fleet) -> None:
    wheels, key = ship.wheelhouse()  # installed by the test above: a quick no-op run
    extravars: dict[str, object] = {"labctl_wheelhouse": str(wheels), "labctl_install_key": key}
    fleet_hosts.cut_off(fleet.host, "freeze")
    try:
        dark = fleet.play("fleet-install.yml", extravars, "dark", timeout=5)
    finally:
        fleet_hosts.restore(fleet.host)
    assert not dark.ok
    assert dark.hosts[fleet.host.name].unreachable == 1
    back = fleet.play("fleet-install.yml", extravars, "back")
    assert back.ok, back.explain()
