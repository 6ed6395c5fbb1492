"""The pure parts of the simulated lab hosts and of labctl's packaging for lab hosts.

The prepared image's hash, host names, the inventories Ansible reads, fleet-images.yml's
image list, where an installed labctl finds its data and what a wheel carries of it.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labctl import paths
from labctl.errors import BuildError
from labctl.fleet.inventory import LabHost
from labctl.images.cache import ImageStore
from labctl.images.recipe import MANIFEST, Artifact, Manifest
from labctl.images.registry import all_recipes
from tests.integration import fleet_hosts

VARS = {"labctl_apt_proxy": "http://10.203.0.1:3142", "labctl_vm_profile": "tiny"}


@pytest.fixture
def playbooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the host playbooks the prepared image is made from."""
    copy = tmp_path / "playbooks"
    shutil.copytree(paths.PLAYBOOKS_DIR, copy)
    monkeypatch.setattr(fleet_hosts, "PLAYBOOKS_DIR", copy)
    return copy


def test_the_prepared_image_changes_with_its_inputs_only(playbooks: Path) -> None:
    base = fleet_hosts.recipe_hash("fp1", VARS)
    assert base == fleet_hosts.recipe_hash("fp1", dict(reversed(list(VARS.items()))))
    assert fleet_hosts.recipe_hash("fp2", VARS) != base  # another base image
    assert fleet_hosts.recipe_hash("fp1", {**VARS, "labctl_vm_profile": "debian"}) != base
    # a playbook that host setup does not read leaves it alone
    (playbooks / "fleet-install.yml").write_text("# edited\n")
    assert fleet_hosts.recipe_hash("fp1", VARS) == base
    for name in ("vars/host.yml", "tasks/facts.yml", "host-setup.yml"):
        path = playbooks / name
        original = path.read_bytes()
        path.write_bytes(original + b"# edited\n")
        assert fleet_hosts.recipe_hash("fp1", VARS) != base, name
        path.write_bytes(original)
    assert fleet_hosts.recipe_hash("fp1", VARS) == base


def test_host_names_are_ones_the_leak_inventory_finds() -> None:
    assert fleet_hosts.host_names("t1a2b3", 3) == [
        "labctl-fleet-t1a2b3-1",
        "labctl-fleet-t1a2b3-2",
        "labctl-fleet-t1a2b3-3",
    ]
    for bad in ("labctl-fleet-Run-1", "labctl-fleet-run", "fleet-run-1", "labctl-fleet-a-b-1"):
        with pytest.raises(ValueError, match="labctl-fleet-<run>-<n>"):
            fleet_hosts.destroy([bad])  # refused before the engine is asked anything


def _ansible_inventory(path: Path) -> dict[str, object]:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1"},
    ).stdout
    data: dict[str, object] = json.loads(out)
    return data


@pytest.mark.parametrize("fmt", ["ini", "yaml"])
def test_inventories_are_read_by_ansible_with_every_setting(tmp_path: Path, fmt: str) -> None:
    hosts = [
        LabHost("labctl-fleet-r1-1", "10.203.0.11"),
        LabHost("labctl-fleet-r1-2", "10.203.0.12"),
    ]
    key = tmp_path / "id key"  # a space, quoted in INI
    path = fleet_hosts.write_inventory(hosts, tmp_path / f"hosts.{fmt}", key, fmt, host_vars=VARS)
    data = _ansible_inventory(path)
    meta = data["_meta"]
    assert isinstance(meta, dict)
    for host in hosts:
        got = meta["hostvars"][host.name]
        assert got["ansible_host"] == host.address
        assert got["ansible_user"] == "root"
        assert got["ansible_ssh_private_key_file"] == str(key)
        assert got["ansible_python_interpreter"] == "/usr/bin/python3"
        assert "StrictHostKeyChecking=accept-new" in got["ansible_ssh_common_args"]
        assert got["labctl_apt_proxy"] == VARS["labctl_apt_proxy"]
        assert got["labctl_vm_profile"] == "tiny"
    group = data["lab_hosts"]
    assert isinstance(group, dict)
    assert sorted(group["hosts"]) == [h.name for h in hosts]


def test_an_unknown_inventory_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ini or yaml"):
        fleet_hosts.write_inventory([], tmp_path / "x", tmp_path / "k", "toml", host_vars={})


def _manifest(store: ImageStore, name: str, **kw: object) -> Manifest:
    manifest = Manifest(
        image=name, recipe_hash="h-" + name, built_at="2026-01-01T00:00:00+00:00",
        build_seconds=1.0, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    store.path(name).mkdir(parents=True)
    for artifact in manifest.artifacts:
        (store.path(name) / artifact.name).write_bytes(b"x" * artifact.size)
    (store.path(name) / MANIFEST).write_text(manifest.to_json())
    return manifest


def test_image_vars_name_files_and_engine_images_with_their_ids(tmp_path: Path) -> None:
    store = ImageStore(all_recipes(), root=tmp_path)
    _manifest(
        store, "docker-base",
        artifacts=(Artifact("rootfs.tar.gz", 3, "a" * 64), Artifact("packages.tsv", 1, "b" * 64)),
        engine_ref="sha256:" + "1" * 64, facts={"tag": "labctl/debian-base:h-docker-base"},
    )  # fmt: skip
    _manifest(
        store, "docker-app",
        artifacts=(Artifact("build.log", 5, "c" * 64),),
        engine_ref="sha256:" + "2" * 64,
        facts={"tag": "labctl/webapp:h-docker-app", "latest": "labctl/webapp:latest"},
    )  # fmt: skip
    _manifest(store, "vm-amd64-tiny", artifacts=(Artifact("disk.qcow2", 9, "d" * 64),))
    got = fleet_hosts.image_vars(store, ["vm-amd64-tiny", "docker-app"])
    by_name = {e["name"]: e for e in got}
    assert [e["name"] for e in got].index("docker-base") < [e["name"] for e in got].index(
        "docker-app"
    )  # a base before what is built on it
    assert by_name["vm-amd64-tiny"]["files"] == [{"path": "disk.qcow2", "sha256": "d" * 64}]
    assert "engine" not in by_name["vm-amd64-tiny"]
    assert by_name["docker-app"]["files"] == []  # the build log stays on the controller
    assert by_name["docker-app"]["engine"] == "docker"
    assert by_name["docker-app"]["engine_ref"] == "sha256:" + "2" * 64
    assert by_name["docker-app"]["tags"] == ["labctl/webapp:h-docker-app", "labctl/webapp:latest"]
    assert by_name["docker-base"]["tags"] == ["labctl/debian-base:h-docker-base"]
    manifest_bytes = (store.path("docker-base") / MANIFEST).read_bytes()
    assert by_name["docker-base"]["manifest_sha256"] == hashlib.sha256(manifest_bytes).hexdigest()


def test_lxds_image_is_made_on_the_host_and_podmans_travel_as_podman_archives(
    tmp_path: Path,
) -> None:
    store = ImageStore(all_recipes(), root=tmp_path)
    _manifest(store, "system-rootfs", artifacts=(Artifact("rootfs.tar.xz", 4, "e" * 64),))
    _manifest(store, "lxd-system", engine_ref="f" * 64)
    _manifest(store, "docker-base", engine_ref="sha256:" + "1" * 64, facts={"tag": "b:1"})
    _manifest(store, "podman-base", engine_ref="sha256:" + "3" * 64, facts={"tag": "pb:1"})
    _manifest(
        store, "podman-app", engine_ref="sha256:" + "4" * 64,
        facts={"tag": "labctl/webapp:h-podman-app", "latest": "labctl/webapp:latest"},
    )  # fmt: skip
    got = {e["name"]: e for e in fleet_hosts.image_vars(store, ["lxd-system", "podman-app"])}
    # the rootfs travels; LXD's copy of it is the host's to make (``labctl images build``)
    assert got["system-rootfs"]["files"] == [{"path": "rootfs.tar.xz", "sha256": "e" * 64}]
    assert "lxd-system" not in got
    assert got["podman-app"]["engine"] == "podman"
    assert got["podman-app"]["engine_ref"] == "sha256:" + "4" * 64
    assert got["podman-base"]["engine"] == "podman" and got["docker-base"]["engine"] == "docker"


def test_image_vars_refuse_an_image_that_is_not_built(tmp_path: Path) -> None:
    store = ImageStore(all_recipes(), root=tmp_path)
    with pytest.raises(BuildError, match="vm-amd64-tiny is not built"):
        fleet_hosts.image_vars(store, ["vm-amd64-tiny"])


def test_data_is_found_in_a_checkout_and_else_under_the_prefix(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "labctl").mkdir(parents=True)
    (checkout / "playbooks").mkdir()
    assert paths.data_root(checkout / "labctl") == checkout
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / "labctl").mkdir(parents=True)
    assert paths.data_root(site / "labctl") == Path(sys.prefix) / "share" / "labctl"
    assert paths.data_root() == paths.REPO_ROOT  # this checkout, as before


def test_a_wheel_carries_every_file_labctl_reads_at_run_time() -> None:
    setup = runpy.run_path(str(paths.REPO_ROOT / "setup.py"), run_name="not_main")
    listed = {f for _, files in setup["data_files"]() for f in files}
    on_disk = {
        str(p.relative_to(paths.REPO_ROOT))
        for top in ("playbooks", "labs", "images")
        for p in (paths.REPO_ROOT / top).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert on_disk <= listed
    for where, files in setup["data_files"]():
        assert where.startswith("share/labctl/")
        assert all(
            str(Path(where).relative_to("share/labctl")) == str(Path(f).parent) for f in files
        )
    assert "playbooks/fleet-install.yml" in listed and "labs/fleet-mini/lab.yaml" in listed
