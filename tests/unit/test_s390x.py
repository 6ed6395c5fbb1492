"""The optional s390x guest: its lab file, its domain, its image kept out of default builds."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from labctl.backends.domain_xml import domain_xml, kernel_cmdline
from labctl.backends.params import LibvirtParams
from labctl.errors import SpecError
from labctl.images import registry, vm_debian, vm_s390x
from labctl.lab import plan
from labctl.paths import LABS_DIR
from labctl.spec.model import load_lab
from tests.unit.domains import domain_params

S390X_LAB = LABS_DIR / "virtualization-full" / "s390x.yaml"


def s390x_domain() -> ET.Element:
    guest = plan.params(load_lab(S390X_LAB).guests["s390x"])
    assert isinstance(guest, LibvirtParams)
    return ET.fromstring(domain_xml(replace(domain_params("kvm-virtio"), guest=guest)))


def test_the_s390x_guest_is_a_mainframe_machine_with_its_devices_on_the_channel_subsystem() -> None:
    dom = s390x_domain()
    assert dom.get("type") == "qemu"
    assert dom.find("os/type").attrib == {"arch": "s390x", "machine": "s390-ccw-virtio"}  # type: ignore[union-attr]
    assert dom.find("devices/emulator").text == "/usr/bin/qemu-system-s390x"  # type: ignore[union-attr]
    assert dom.find("devices/disk/target").get("bus") == "virtio"  # type: ignore[union-attr]
    assert dom.find("devices/interface/model").get("type") == "virtio"  # type: ignore[union-attr]
    # nothing of a PC or an ARM board: no ACPI, no option ROM, no USB, no CPU model of its own
    assert dom.find("features/acpi") is None and dom.find("cpu") is None
    assert dom.find("devices/interface/rom") is None
    assert dom.find("devices/controller") is None
    target = dom.find("devices/serial/target")
    assert target is not None and target.get("type") == "sclp-serial"
    assert target.find("model").get("name") == "sclpconsole"  # type: ignore[union-attr]


def test_its_kernel_speaks_on_the_sclp_console() -> None:
    guest = plan.params(load_lab(S390X_LAB).guests["s390x"])
    assert isinstance(guest, LibvirtParams)
    line = kernel_cmdline(replace(domain_params("kvm-virtio"), guest=guest))
    assert "console=ttysclp0" in line.split()


def test_the_extended_lab_file_keeps_its_guests_and_adds_s390x() -> None:
    full, extended = load_lab(LABS_DIR / "virtualization-full"), load_lab(S390X_LAB)
    assert extended.name == full.name
    assert set(extended.guests) == {*full.guests, "s390x"}
    for name, guest in full.guests.items():
        assert extended.guests[name] == guest, name


def test_kvm_is_refused_for_an_s390x_guest(tmp_path: Path) -> None:
    text = S390X_LAB.read_text().replace(
        "    arch: s390x\n    accel: tcg\n", "    arch: s390x\n    accel: kvm\n"
    )
    assert text != S390X_LAB.read_text()
    (tmp_path / "lab.yaml").write_text(text)
    with pytest.raises(SpecError, match="cannot run an s390x guest"):
        load_lab(tmp_path / "lab.yaml")


def test_the_s390x_image_is_built_only_when_named() -> None:
    assert "vm-s390x" in registry.store().recipes
    assert registry.guest_images()["vm-s390x"].arch == "s390x"
    assert "vm-s390x" not in registry.standard_images()
    assert "vm-s390x" not in plan.lab_images()  # no labs/*/lab.yaml runs it
    assert set(registry.standard_images()) == set(registry.store().recipes) - {"vm-s390x"}


def test_the_s390x_image_installs_its_own_package_list_with_the_debian_guest_setup() -> None:
    (image,) = vm_s390x.recipes()
    (amd64, _) = vm_debian.recipes()
    assert "s390-tools" in image.packages() and "s390-tools" not in amd64.packages()
    assert not {"pciutils", "dmidecode"} & set(image.packages())
    assert image.inputs()["packages"] == sorted(image.packages())
    assert "customize.sh" in image.inputs()["vm_debian_files"]  # vm-debian's, hashed here too
