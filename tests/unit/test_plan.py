"""Refusals before anything is created: missing images, not enough memory, addresses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from labctl.backends.params import DockerParams, LibvirtParams, LxdParams
from labctl.errors import HostError, LabctlError, SpecError
from labctl.images.cache import ImageStore
from labctl.images.recipe import BuildContext, Recipe
from labctl.instance.state import InstanceDir, LabState
from labctl.keys import ensure_keypair
from labctl.lab import plan
from labctl.lab.accel import AccelChoice
from labctl.paths import LABS_DIR
from labctl.spec.model import load_lab

LAB = load_lab(LABS_DIR / "virtualization")


class Empty(Recipe):
    description = "test"

    def __init__(self, name: str) -> None:
        self.name = name

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        (ctx.out / "x").write_text(self.name)
        return None, {}


def store(tmp_path: Path, built: list[str]) -> ImageStore:
    names = sorted({g.image for g in LAB.guests.values()})
    s = ImageStore([Empty(n) for n in names], root=tmp_path)
    s.build(built)
    return s


def test_missing_images_are_named_with_what_to_run(tmp_path: Path) -> None:
    s = store(tmp_path, ["vm-amd64"])
    with pytest.raises(HostError) as err:
        plan.check_images(LAB, s)
    assert "docker-app" in err.value.message and "vm-arm64" in err.value.message
    assert "vm-amd64" not in err.value.message
    assert err.value.hint == "run: labctl images build"


class Changed(Empty):
    def inputs(self) -> Mapping[str, object]:
        return {"changed": True}


def test_images_built_from_an_older_recipe_are_named_but_still_run(tmp_path: Path) -> None:
    names = sorted({g.image for g in LAB.guests.values()})
    store(tmp_path, names)  # every image built from the recipes as they were
    changed = ImageStore([Changed(n) if n == "docker-app" else Empty(n) for n in names], tmp_path)
    assert plan.check_images(LAB, changed) == ["docker-app"]
    assert plan.check_images(LAB, store(tmp_path, [])) == []


def test_unknown_image_in_lab_is_refused(tmp_path: Path) -> None:
    s = ImageStore([Empty("other")], root=tmp_path)
    with pytest.raises(LabctlError, match="unknown image"):
        plan.check_images(LAB, s)


def test_memory_shortage_is_refused_before_anything_exists() -> None:
    needed = plan.memory_needed(LAB)
    assert needed == sum(g.memory for g in LAB.guests.values())
    plan.check_memory(LAB, needed + 4096)
    with pytest.raises(HostError, match=f"about {needed + 512} MiB"):
        plan.check_memory(LAB, needed)


def test_vm_guests_get_consecutive_addresses_on_the_lab_network(tmp_path: Path) -> None:
    s = store(tmp_path / "cache", sorted({g.image for g in LAB.guests.values()}))
    inst = InstanceDir(LAB.name, "main", root=tmp_path / "state")
    state = LabState(LAB.name, "main", "lab.yaml", subnet="10.210.7.0/24", network="n")
    accel = {n: AccelChoice("tcg") for n in ("arm-emulated", "kvm-full", "kvm-virtio")}
    key = ensure_keypair(tmp_path / "k", "test")
    plans = plan.plans(LAB, state, s, inst, key, accel)
    assert [plans[n].address for n in ("arm-emulated", "kvm-full", "kvm-virtio")] == [
        "10.210.7.10",
        "10.210.7.11",
        "10.210.7.12",
    ]
    assert plans["kvm-full"].gateway == "10.210.7.1" and plans["kvm-full"].prefix == 24
    assert plans["lxc-system"].address is None
    assert plans["docker-app"].resource == "labctl-virtualization-main-docker-app"
    assert plans["kvm-full"].params == plan.params(LAB.guests["kvm-full"])
    assert (plans["kvm-full"].image, plans["lxc-system"].engine) == ("vm-amd64", "lxd")


def test_a_taken_host_port_is_refused(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        path = tmp_path / "lab.yaml"
        path.write_text(
            "name: p\nguests:\n  app:\n    engine: docker\n    technique: app-container\n"
            f"    image: docker-app\n    host_port: {port}\n"
        )
        with pytest.raises(HostError, match=f"127.0.0.1:{port} for app is already in use"):
            plan.check_ports(load_lab(path))
    plan.check_ports(load_lab(path))  # free again


def test_ready_timeout_comes_from_flag_then_environment_then_lab_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(plan.READY_TIMEOUT_ENV, raising=False)
    assert plan.ready_timeout(LAB) == LAB.ready_timeout == 300
    monkeypatch.setenv(plan.READY_TIMEOUT_ENV, "1800")
    assert plan.ready_timeout(LAB) == 1800
    assert plan.ready_timeout(LAB, 60) == 60


@pytest.mark.parametrize("raw", ["ten", "5", "99999", "-30", "1.5"])
def test_a_bad_ready_timeout_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(plan.READY_TIMEOUT_ENV, raw)
    with pytest.raises(SpecError, match=f"LABCTL_READY_TIMEOUT='{re.escape(raw)}' is not"):
        plan.ready_timeout(LAB)


def test_each_guest_is_handed_to_its_backend_in_its_engines_terms() -> None:
    assert plan.params(LAB.guests["kvm-full"]) == LibvirtParams(
        arch="x86_64", cpus=1, memory=384, disk_bus="ide", nic_model="e1000"
    )
    assert plan.params(LAB.guests["arm-emulated"]) == LibvirtParams(
        arch="aarch64", cpus=1, memory=384, disk_bus="virtio", nic_model="virtio"
    )
    assert plan.params(LAB.guests["lxc-system"]) == LxdParams(memory=256)
    assert plan.params(LAB.guests["docker-app"]) == DockerParams(
        port=8080, host_port=None, memory=128, http_path="/"
    )
    assert {plan.params(g).engine for g in LAB.guests.values()} == {"libvirt", "lxd", "docker"}


def test_the_tiny_vm_profile_swaps_vm_images_for_their_tiny_variants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABCTL_VM_PROFILE", "tiny")
    images = {name: plan.image_of(g) for name, g in LAB.guests.items()}
    assert images == {
        "arm-emulated": "vm-arm64-tiny",
        "kvm-full": "vm-amd64-tiny",
        "kvm-virtio": "vm-amd64-tiny",
        "lxc-system": "lxd-system",  # no tiny variant: unchanged
        "docker-app": "docker-app",
    }
    tiny = ImageStore([Empty(n) for n in sorted(set(images.values()))], root=tmp_path)
    tiny.build(["vm-amd64-tiny"])
    with pytest.raises(HostError) as err:
        plan.check_images(LAB, tiny)  # the tiny images are the ones that must be built
    assert "vm-arm64-tiny" in err.value.message and "vm-amd64," not in err.value.message


def test_a_vm_profile_is_read_from_the_host_file_and_a_bad_one_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labctl import paths

    monkeypatch.delenv("LABCTL_VM_PROFILE")
    profile_file = tmp_path / "vm-profile"
    monkeypatch.setattr(paths, "VM_PROFILE_FILE", profile_file)
    assert paths.vm_profile() == "debian"  # no file: the complete Debian VMs
    profile_file.write_text("tiny\n")
    assert paths.vm_profile() == "tiny"
    profile_file.write_text("huge\n")
    with pytest.raises(HostError, match=r"vm-profile says 'huge': not a VM profile"):
        paths.vm_profile()
    monkeypatch.setenv("LABCTL_VM_PROFILE", "debian")
    assert paths.vm_profile() == "debian"  # the environment wins over the file
