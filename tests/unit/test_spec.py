"""The lab spec: the default lab loads; bad files fail with file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.errors import SpecError
from labctl.paths import LABS_DIR
from labctl.spec.model import LibvirtGuest, find_lab, json_schema, load_lab


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


def refusal(tmp_path: Path, text: str) -> tuple[Path, str]:
    """Write ``text`` as the lab file; its path and the message ``load_lab`` refuses it with."""
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as err:
        load_lab(path)
    return path, err.value.message


GOOD_GUEST = """\
name: demo
guests:
  vm:
    engine: libvirt
    technique: full-virtualization
    image: vm-amd64
"""


def test_default_lab_declares_the_five_techniques() -> None:
    lab = load_lab(LABS_DIR / "virtualization")
    names = {"arm-emulated", "kvm-full", "kvm-virtio", "lxc-system", "docker-app"}
    assert set(lab.guests) == names
    assert {g.technique for g in lab.guests.values()} == {
        "emulation",
        "full-virtualization",
        "paravirtualization",
        "system-container",
        "app-container",
    }


def test_kvm_guests_differ_only_in_devices() -> None:
    lab = load_lab(LABS_DIR / "virtualization")
    full, virtio = lab.guests["kvm-full"], lab.guests["kvm-virtio"]
    assert isinstance(full, LibvirtGuest) and isinstance(virtio, LibvirtGuest)
    assert (full.disk_bus, full.nic_model) == ("ide", "e1000")
    assert (virtio.disk_bus, virtio.nic_model) == ("virtio", "virtio")
    same = {"engine", "image", "arch", "accel", "cpus", "memory"}
    assert {k: getattr(full, k) for k in same} == {k: getattr(virtio, k) for k in same}


def test_unknown_key_names_file_line_and_field(tmp_path: Path) -> None:
    path, message = refusal(tmp_path, GOOD_GUEST + "    colour: red\n")
    assert f"{path}:7: guests.vm.colour: unknown key" in message


def test_every_problem_is_listed_with_its_line(tmp_path: Path) -> None:
    path, message = refusal(tmp_path, GOOD_GUEST + "    memory: 1\n    disk_bus: floppy\n")
    assert "2 problems" in message
    assert f"{path}:7: guests.vm.memory" in message
    assert f"{path}:8: guests.vm.disk_bus" in message


def test_each_problem_says_the_value_the_file_holds_and_the_hint_names_the_schema(
    tmp_path: Path,
) -> None:
    text = GOOD_GUEST.replace("name: demo", "name: Demo_1").replace("libvirt", "libvrt")
    path, message = refusal(tmp_path, text)
    assert f"{path}:1: name: 'Demo_1' does not have the form ^[a-z][a-z0-9-]{{0,23}}$" in message
    assert f"{path}:4: guests.vm.engine: 'libvrt' is not one of 'libvirt', 'lxd', " in message
    path, message = refusal(tmp_path, GOOD_GUEST + "    memory: lots\n")
    assert f"{path}:7: guests.vm.memory: 'lots' is not a whole number" in message
    with pytest.raises(SpecError) as err:
        load_lab(path)
    assert err.value.hint and err.value.hint.startswith("`labctl lab schema` prints every key")


def test_missing_field_points_at_its_parent(tmp_path: Path) -> None:
    path, message = refusal(
        tmp_path, "name: demo\nguests:\n  c:\n    engine: docker\n    technique: app-container\n"
    )
    assert f"{path}:3: guests.c.image: missing (required)" in message


def test_unknown_engine_is_rejected(tmp_path: Path) -> None:
    path, message = refusal(tmp_path, GOOD_GUEST.replace("libvirt", "vmware"))
    assert f"{path}:4: guests.vm" in message


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path, message = refusal(tmp_path, "name: demo\nguests: [\n")
    assert f"{path}:3: invalid YAML" in message


def test_kvm_cannot_run_a_foreign_architecture(tmp_path: Path) -> None:
    path, message = refusal(tmp_path, GOOD_GUEST + "    arch: aarch64\n    accel: kvm\n")
    assert "cannot run an aarch64 guest" in message


def test_bad_guest_name_and_network_pool(tmp_path: Path) -> None:
    path, message = refusal(
        tmp_path, GOOD_GUEST.replace("  vm:", "  Bad_Name:") + "network:\n  pool: 10.0.0.0/30\n"
    )
    assert "Bad_Name" in message
    assert "network.pool" in message


@pytest.mark.parametrize("name", ["host", "student"])
def test_a_guest_may_not_take_the_name_exercises_give_the_host(tmp_path: Path, name: str) -> None:
    _, message = refusal(tmp_path, GOOD_GUEST.replace("  vm:", f"  {name}:"))
    assert f"guest name {name!r} is reserved: exercises mean the host by it" in message


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="nope.yaml does not exist"):
        load_lab(tmp_path / "nope.yaml")


def test_json_schema_describes_every_guest_field() -> None:
    schema = json_schema()
    text = json.dumps(schema)
    for field in ("disk_bus", "nic_model", "accel", "host_port", "ready_timeout"):
        assert field in text
    libvirt = schema["$defs"]["LibvirtGuest"]  # type: ignore[index]
    assert libvirt["additionalProperties"] is False
    assert all("description" in p for k, p in libvirt["properties"].items() if k != "engine")


def test_published_schema_is_up_to_date() -> None:
    published = json.loads((LABS_DIR / "lab.schema.json").read_text())
    assert published == json_schema(), "regenerate: labctl lab schema > labs/lab.schema.json"


def test_find_lab_by_file_directory_name_or_recorded_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_file = tmp_path / "mine" / "lab.yaml"
    lab_file.parent.mkdir()
    lab_file.write_text("name: mine\n")
    assert find_lab(str(lab_file)) == lab_file
    assert find_lab(str(lab_file.parent)) == lab_file
    assert find_lab("virtualization") == LABS_DIR / "virtualization" / "lab.yaml"
    # a name means the file its running instance was brought up from, when there is one
    assert find_lab("virtualization", recorded=str(lab_file)) == lab_file
    monkeypatch.chdir(tmp_path)
    assert find_lab("mine") == Path("mine") / "lab.yaml"  # a directory here wins over labs/


@pytest.mark.parametrize("ref", ["no-such-lab", "not/a/name", "Virtualization"])
def test_find_lab_names_the_known_labs_when_there_is_none(ref: str) -> None:
    with pytest.raises(SpecError) as err:
        find_lab(ref)
    assert err.value.message == f"no lab {ref!r}"
    assert err.value.hint and "virtualization" in err.value.hint


def test_find_lab_refuses_a_recorded_file_whose_directory_is_gone(tmp_path: Path) -> None:
    with pytest.raises(SpecError):
        find_lab("virtualization", recorded=str(tmp_path / "gone" / "lab.yaml"))
