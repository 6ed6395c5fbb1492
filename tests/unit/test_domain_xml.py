"""Domain XML for both device models, the emulated ARM guest and the lab network."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from dataclasses import replace

from labctl.backends.domain_xml import (
    DomainParams,
    differences,
    domain_xml,
    kernel_cmdline,
    network_xml,
    read_labels,
)
from tests.unit.domains import domain_params


def parse(p: DomainParams) -> ET.Element:
    return ET.fromstring(domain_xml(p))


def test_full_virtualization_guest_has_no_virtio_anywhere() -> None:
    xml = domain_xml(domain_params("kvm-full"))
    assert "virtio" not in xml
    dom = ET.fromstring(xml)
    assert dom.find("devices/disk/target").attrib == {"dev": "hda", "bus": "ide"}  # type: ignore[union-attr]
    assert dom.find("devices/interface/model").get("type") == "e1000"  # type: ignore[union-attr]
    assert dom.find("devices/memballoon").get("model") == "none"  # type: ignore[union-attr]


def test_virtio_guest_differs_only_in_disk_and_nic() -> None:
    virtio = parse(domain_params("kvm-virtio"))
    assert virtio.find("devices/disk/target").attrib == {"dev": "vda", "bus": "virtio"}  # type: ignore[union-attr]
    assert virtio.find("devices/interface/model").get("type") == "virtio"  # type: ignore[union-attr]
    # Same names and identity for both, then swap the two device models back: nothing else differs.
    same = replace(domain_params("kvm-virtio"), name="x", hostname="x")
    swapped = (
        domain_xml(same)
        .replace('dev="vda" bus="virtio"', 'dev="hda" bus="ide"')
        .replace('<model type="virtio" />', '<model type="e1000" />')
    )
    assert swapped == domain_xml(replace(domain_params("kvm-full"), name="x", hostname="x"))


def test_accelerator_sets_the_domain_type() -> None:
    assert parse(domain_params("kvm-full", "kvm")).get("type") == "kvm"
    assert parse(domain_params("kvm-full", "tcg")).get("type") == "qemu"


def test_arm_guest_is_an_emulated_virt_machine() -> None:
    dom = parse(domain_params("arm-emulated"))
    assert dom.get("type") == "qemu"
    assert dom.find("os/type").attrib == {"arch": "aarch64", "machine": "virt"}  # type: ignore[union-attr]
    assert dom.find("cpu/model").text == "cortex-a57"  # type: ignore[union-attr]
    assert dom.find("devices/emulator").text == "/usr/bin/qemu-system-aarch64"  # type: ignore[union-attr]
    assert "console=ttyAMA0" in kernel_cmdline(domain_params("arm-emulated"))


def test_cmdline_carries_address_and_key() -> None:
    line = kernel_cmdline(domain_params("kvm-virtio"))
    assert "root=LABEL=labctl-root" in line and "console=ttyS0" in line
    assert "labctl.ip=10.210.0.10/24" in line and "labctl.gw=10.210.0.1" in line
    key = next(p for p in line.split() if p.startswith("labctl.key=")).split("=", 1)[1]
    assert base64.b64decode(key).decode() == "ssh-ed25519 AAAAkey labctl"


def test_cmdline_names_dns_and_apt_proxy_only_when_there_is_one() -> None:
    line = kernel_cmdline(domain_params("kvm-virtio"))
    assert "labctl.dns=10.210.0.1" in line and "labctl.apt_proxy" not in line
    proxied = kernel_cmdline(
        replace(domain_params("kvm-virtio"), apt_proxy="http://10.203.0.1:3142")
    )
    assert "labctl.apt_proxy=http://10.203.0.1:3142" in proxied.split()


def test_serial_console_is_a_pty_logged_to_the_console_file() -> None:
    serial = parse(domain_params("kvm-full")).find("devices/serial")
    assert serial is not None and serial.get("type") == "pty"  # so `virsh console` works
    assert serial.find("log").attrib == {"file": "/s/console.log", "append": "off"}  # type: ignore[union-attr]


def test_labels_round_trip_through_metadata() -> None:
    labels = read_labels(domain_xml(domain_params("kvm-full")))
    assert labels["labctl.lab"] == "virtualization" and labels["accel"] == "tcg"
    assert read_labels("<domain><name>x</name></domain>") == {}


def test_network_has_explicit_subnet_and_bridge() -> None:
    net = ET.fromstring(network_xml("labctl-l-main", "lcbr12345678", "10.210.4.0/24"))
    assert net.find("bridge").get("name") == "lcbr12345678"  # type: ignore[union-attr]
    assert net.find("ip").attrib == {"address": "10.210.4.1", "netmask": "255.255.255.0"}  # type: ignore[union-attr]
    assert net.find("forward").get("mode") == "nat"  # type: ignore[union-attr]


def test_a_tcg_guest_gets_a_bounded_translation_cache_and_a_kvm_guest_none() -> None:
    tcg = parse(domain_params("kvm-full", accel="tcg")).find("features/tcg/tb-cache")
    assert tcg is not None and tcg.get("unit") == "MiB" and int(tcg.text or 0) == 256
    assert parse(domain_params("kvm-full", accel="kvm")).find("features/tcg") is None


def test_a_one_cpu_tcg_guest_can_have_a_second_cpu_and_a_kvm_guest_cannot() -> None:
    # QEMU keeps a TCG guest's memory barriers only for a machine that may have two CPUs
    tcg = parse(domain_params("kvm-virtio", accel="tcg")).find("vcpu")
    assert tcg is not None and (tcg.text, tcg.get("current")) == ("2", "1")
    kvm = parse(domain_params("kvm-virtio", accel="kvm")).find("vcpu")
    assert kvm is not None and (kvm.text, kvm.get("current")) == ("1", None)
    two = replace(
        domain_params("kvm-virtio"), guest=replace(domain_params("kvm-virtio").guest, cpus=2)
    )
    both = parse(two).find("vcpu")
    assert both is not None and (both.text, both.get("current")) == ("2", None)


def libvirts_copy(xml: str) -> str:
    """The XML libvirt keeps of a running domain: sizes in KiB, other attributes added."""
    dom = ET.fromstring(xml)
    dom.set("id", "7")
    for size in (dom.find("memory"), dom.find("features/tcg/tb-cache")):
        if size is not None:
            assert size.get("unit") == "MiB"
            size.set("unit", "KiB")
            size.text = str(int(size.text or 0) * 1024)
    dom.find("os/type").set("machine", "pc-i440fx-7.2")  # type: ignore[union-attr]
    dom.find("vcpu").set("placement", "static")  # type: ignore[union-attr]
    return ET.tostring(dom, encoding="unicode")


def test_a_domain_as_libvirt_keeps_it_does_not_differ_from_its_own_definition() -> None:
    for name in ("kvm-full", "kvm-virtio", "arm-emulated"):
        for accel in ("kvm", "tcg"):
            wanted = domain_xml(domain_params(name, accel))
            assert differences(libvirts_copy(wanted), wanted) == [], (name, accel)


def test_a_domain_defined_by_an_older_labctl_or_lab_file_says_what_changed() -> None:
    p = domain_params("kvm-virtio", "tcg")
    now = domain_xml(p)
    # Before LAYOUT 2: one CPU and nothing more, QEMU's own translation cache.
    old = ET.fromstring(libvirts_copy(now))
    old.find("vcpu").attrib.pop("current")  # type: ignore[union-attr]
    old.find("vcpu").text = "1"  # type: ignore[union-attr]
    old.find("features").remove(old.find("features/tcg"))  # type: ignore[arg-type, union-attr]
    assert differences(ET.tostring(old, encoding="unicode"), now) == [
        "CPUs 1 -> 1 of 2",
        "translation cache default -> 256 MiB",
    ]
    # The lab file changed under a running guest: more memory, the devices of kvm-full.
    bigger = replace(p, guest=replace(p.guest, memory=p.guest.memory * 2, disk_bus="ide",
                                      nic_model="e1000"))  # fmt: skip
    assert differences(libvirts_copy(now), domain_xml(bigger)) == [
        f"memory {p.guest.memory} MiB -> {p.guest.memory * 2} MiB",
        "disk bus virtio -> ide",
        "NIC virtio -> e1000",
    ]
    assert differences(libvirts_copy(now), domain_xml(replace(p, accel="kvm"))) == [
        "CPUs 1 of 2 -> 1",
        "accelerator tcg -> kvm",
        "translation cache 256 MiB -> default",
    ]
