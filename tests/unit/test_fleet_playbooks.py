"""fleet-images.yml run for real by Ansible, with this machine as both controller and host.

The image cache on the "host" is a temporary directory (``labctl_image_dest``), the images
are small files made here: what is shipped, what a second run leaves alone, what a changed
image replaces, and what a wrong checksum refuses. The simulated lab hosts run the same
playbook over SSH (tests/integration/test_fleet_hosts.py).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from labctl.paths import PLAYBOOKS_DIR
from tests.integration import fleet_hosts

PLAYBOOK = PLAYBOOKS_DIR / "fleet-images.yml"


def _image(src: Path, name: str, files: dict[str, bytes]) -> dict[str, Any]:
    """An image directory on the "controller" and its labctl_images entry."""
    folder = src / name
    folder.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        (folder / path).write_bytes(data)
    listed = [{"path": p, "sha256": hashlib.sha256(d).hexdigest()} for p, d in files.items()]
    manifest = json.dumps({"image": name, "artifacts": listed}).encode()  # as the cache's does
    (folder / "manifest.json").write_bytes(manifest)
    return {"name": name, "manifest_sha256": hashlib.sha256(manifest).hexdigest(), "files": listed}


@pytest.fixture
def ship(tmp_path: Path) -> Any:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"here ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    runs = iter(range(100))

    def run(images: list[dict[str, Any]], src: Path) -> fleet_hosts.PlayRun:
        extravars = {
            "labctl_images": images,
            "labctl_image_src": str(src),
            "labctl_image_dest": str(tmp_path / "dest"),
        }
        return fleet_hosts.run_playbook(
            PLAYBOOK, inventory, extravars, tmp_path / f"runner-{next(runs)}"
        )

    return run


@pytest.mark.timeout(300)
def test_ship_then_nothing_then_only_what_changed(tmp_path: Path, ship: Any) -> None:
    src = tmp_path / "src"
    disk = _image(src, "vm-x", {"disk.qcow2": b"disk" * 1000, "vmlinuz": b"kernel"})
    rootfs = _image(src, "rootfs-x", {"rootfs.tar.gz": b"tar"})
    first = ship([disk, rootfs], src)
    assert first.ok, first.explain()
    dest = tmp_path / "dest"
    for name in ("vm-x", "rootfs-x"):
        assert sorted(p.name for p in (dest / name).iterdir()) == sorted(
            p.name for p in (src / name).iterdir()
        )
        for p in (src / name).iterdir():
            assert (dest / name / p.name).read_bytes() == p.read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == ["rootfs-x", "vm-x"]  # no temp dirs left

    second = ship([disk, rootfs], src)
    assert second.ok, second.explain()
    assert second.changed("here") == 0, second.changed_tasks

    disk = _image(src, "vm-x", {"disk.qcow2": b"new disk", "vmlinuz": b"kernel"})
    third = ship([disk, rootfs], src)
    assert third.ok, third.explain()
    assert (dest / "vm-x" / "disk.qcow2").read_bytes() == b"new disk"
    assert {t for _, t in third.changed_tasks if "rootfs-x" in t} == set()  # untouched
    assert sorted(p.name for p in dest.iterdir()) == ["rootfs-x", "vm-x"]


@pytest.mark.timeout(300)
def test_a_wrong_checksum_leaves_the_old_image_in_place(tmp_path: Path, ship: Any) -> None:
    src = tmp_path / "src"
    good = _image(src, "vm-x", {"disk.qcow2": b"good"})
    assert ship([good], src).ok
    bad = _image(src, "vm-x", {"disk.qcow2": b"corrupted on the way"})
    bad["files"][0]["sha256"] = hashlib.sha256(b"what it should have been").hexdigest()
    run = ship([bad], src)
    assert not run.ok
    assert "vm-x/disk.qcow2: sha256" in run.explain()
    assert (tmp_path / "dest" / "vm-x" / "disk.qcow2").read_bytes() == b"good"


@pytest.mark.timeout(300)
def test_a_file_name_leaving_the_image_directory_is_refused(tmp_path: Path, ship: Any) -> None:
    src = tmp_path / "src"
    entry = _image(src, "vm-x", {"disk.qcow2": b"x"})
    entry["files"][0]["path"] = "../../etc/passwd"
    run = ship([entry], src)
    assert not run.ok
    assert "plain file names" in run.explain()
    assert not (tmp_path / "dest" / "vm-x").exists()
