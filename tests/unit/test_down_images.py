"""down --remove-images forgets only the images no other lab instance runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl.instance.state import GuestRecord, InstanceDir, LabState, saved_states
from labctl.lab import down as lab_down
from labctl.lab.plan import images_of
from labctl.paths import LABS_DIR

SPEC = str(LABS_DIR / "virtualization" / "lab.yaml")


def _up(instance: str, *guests: str) -> LabState:
    records = {g: GuestRecord(g, "x", f"labctl-virtualization-{instance}-{g}") for g in guests}
    state = LabState("virtualization", instance, SPEC, guests=records, vm_profile="debian")
    InstanceDir("virtualization", instance).save(state)
    return state


class Store:
    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def forget(self, name: str) -> None:
        self.forgotten.append(name)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("LABCTL_STATE", str(tmp_path))
    s = Store()
    monkeypatch.setattr("labctl.images.registry.store", lambda: s)
    monkeypatch.setattr(lab_down, "down", lambda lab, instance, report: [])  # no engines here
    return s


def test_every_instance_is_read_and_a_damaged_one_skipped(store: Store) -> None:
    _up("a", "kvm-full", "docker-app")
    _up("b", "docker-app")
    InstanceDir("virtualization", "c").save(LabState("virtualization", "c", SPEC))
    InstanceDir("virtualization", "c").state_file.write_text("{cut")
    assert [s.instance for s in saved_states()] == ["a", "b"]
    assert images_of(_up("b", "docker-app")) == {"docker-app"}


def test_an_image_another_instance_runs_is_kept(store: Store) -> None:
    _up("a", "arm-emulated", "kvm-full", "kvm-virtio", "lxc-system", "docker-app")
    _up("b", "docker-app")  # another student's lab still runs the web app's image
    said = CliRunner().invoke(app, ["down", "-i", "a", "--remove-images", "--json"])
    assert said.exit_code == 0, said.output
    removed = json.loads(said.stdout)["images_removed"]
    assert "docker-app" not in removed and "docker-app" not in store.forgotten
    assert removed == store.forgotten and "vm-amd64" in removed and "vm-arm64" in removed
