"""libvirt XML for the lab's VMs and their network, generated from the plan.

The two x86_64 "KVM" guests share machine type, CPU, memory, kernel and image; only the
disk bus and NIC model differ, and a guest without virtio gets no virtio device at all
(no balloon, no RNG), so ``lspci`` inside shows the difference and nothing else.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from labctl.backends.base import Devices
from labctl.backends.params import LibvirtParams
from labctl.images import vm as vm_image

NS = "https://labctl.invalid/xmlns/guest/1"

ARCH = {
    # arch: (emulator, machine)
    "x86_64": ("/usr/bin/qemu-system-x86_64", "pc"),
    "aarch64": ("/usr/bin/qemu-system-aarch64", "virt"),
    # IBM Z: virtio devices on the channel subsystem (virtio-ccw), no PCI, no firmware to boot
    "s390x": ("/usr/bin/qemu-system-s390x", "s390-ccw-virtio"),
}
#: libvirt's architecture name -> the Debian one the image's boot contract is keyed by
DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "s390x": "s390x"}

DISK_TARGET = {"virtio": "vda", "ide": "hda", "sata": "sda"}
#: MiB of translated code QEMU keeps per TCG guest (QEMU's own default: 1 GiB, which let a
#: Debian VM grow to 1.6 GiB of host memory). bench/lab_up.py, the default lab: 128 MiB gave
#: `up` 46.0 s median (max 48.5) and 1110 MiB; 256 MiB gave 43.3 s (max 43.8) and 1486 MiB.
#: The domains' shape compares it (:func:`shape`): a change here goes with a new LAYOUT, so
#: templates are made again instead of every clone being named outdated.
TB_CACHE_MIB = 256
#: The shape of the domains this module writes, in what a saved VM's memory depends on: a
#: template made with another layout is not restored (vm_templates puts it in the key).
#: 2: a one-CPU guest under TCG can have a second CPU (see :func:`_vcpu`).
LAYOUT = 2


@dataclass(frozen=True)
class DomainParams:
    """What goes into one domain's XML."""

    name: str
    guest: LibvirtParams
    accel: str  # kvm or tcg
    kernel: Path
    initrd: Path
    disk: Path
    console_log: Path
    network: str | None  # None: a tap on no bridge (a template's boot, see vm_templates)
    mac: str
    hostname: str
    address: str  # a.b.c.d/nn
    gateway: str
    authorized_key: str
    labels: dict[str, str]
    uuid: str | None = None  # recorded in the state: a redefinition must keep it
    apt_proxy: str | None = None  # the host's apt cache for the guest, if host setup made one
    #: a template's boot: the kernel command line says ``labctl.template``, no identity
    template: bool = False
    #: QEMU firmware config entry (name, value): a template's clone reads its settings there
    fw_cfg: tuple[str, str] | None = None


def settings(p: DomainParams) -> vm_image.GuestSettings:
    """The guest's own settings (the contract is the image's: labctl.images.vm)."""
    return vm_image.GuestSettings(
        hostname=p.hostname,
        authorized_key=p.authorized_key,
        address=p.address,
        gateway=p.gateway,
        dns=p.gateway,  # the lab network's dnsmasq answers DNS on the gateway address
        apt_proxy=p.apt_proxy,
        mac=p.mac,
    )


def kernel_cmdline(p: DomainParams) -> str:
    """The guest kernel command line (the contract is the image's: labctl.images.vm)."""
    arch = DEBIAN_ARCH[p.guest.arch]
    if p.template:
        return vm_image.template_cmdline(arch)
    return vm_image.kernel_cmdline(arch, settings(p))


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _vcpu(dom: ET.Element, cpus: int, accel: str) -> None:
    """The guest's virtual CPUs; under TCG a one-CPU guest may have a second, offline CPU.

    QEMU translates the guest's memory barriers into the host's only for a machine that can
    have more than one CPU. Without them the guest and QEMU's own thread can each miss what
    the other just wrote to a VirtIO queue: a guest kick is lost and its NIC stops sending,
    for good (on this project's hosts under iperf3 load: 4 stalls in about 90 two-second
    runs; with the spare CPU, none in 180). The spare CPU is never online: the guest counts
    one CPU (``nproc``); on x86_64 ``/sys/devices/system/cpu/possible`` says 0-1.
    """
    if accel != "kvm" and cpus == 1:
        _sub(dom, "vcpu", "2", current="1")
    else:
        _sub(dom, "vcpu", str(cpus))


def domain_xml(p: DomainParams) -> str:
    """Domain XML for a direct-kernel-boot guest."""
    g = p.guest
    emulator, machine = ARCH[g.arch]
    dom = ET.Element("domain", type="kvm" if p.accel == "kvm" else "qemu")
    _sub(dom, "name", p.name)
    if p.uuid:
        _sub(dom, "uuid", p.uuid)
    meta = _sub(dom, "metadata")
    ET.register_namespace("labctl", NS)
    _sub(meta, f"{{{NS}}}guest", **p.labels, accel=p.accel)
    _sub(dom, "memory", str(g.memory), unit="MiB")
    _vcpu(dom, g.cpus, p.accel)
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch=g.arch, machine=machine)
    _sub(os_el, "kernel", str(p.kernel))
    _sub(os_el, "initrd", str(p.initrd))
    _sub(os_el, "cmdline", kernel_cmdline(p))
    features = _sub(dom, "features")
    if p.accel == "tcg":
        # QEMU's default translation cache is 1 GiB, and a Debian guest that has run a few
        # programs fills much of it: 1.6 GiB of RSS per 384 MiB guest after compare's
        # workloads. A lab guest's working set is far smaller.
        tcg = _sub(features, "tcg")
        _sub(tcg, "tb-cache", str(TB_CACHE_MIB), unit="MiB")
    if g.arch == "x86_64":
        _sub(features, "acpi")  # without it an x86 guest's poweroff only halts
    elif (
        g.arch == "aarch64"
    ):  # ACPI would need UEFI firmware; the virt machine describes itself by DT
        _sub(features, "gic", version="3" if p.accel == "kvm" else "2")
        cpu = _sub(dom, "cpu", mode="custom", match="exact")
        _sub(cpu, "model", "cortex-a57", fallback="forbid")
    if p.fw_cfg is not None:
        sysinfo = _sub(dom, "sysinfo", type="fwcfg")
        _sub(sysinfo, "entry", p.fw_cfg[1], name=p.fw_cfg[0])
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    dev = _sub(dom, "devices")
    _sub(dev, "emulator", emulator)
    disk = _sub(dev, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2", cache="unsafe" if p.accel == "tcg" else "none")
    _sub(disk, "source", file=str(p.disk))
    _sub(disk, "target", dev=DISK_TARGET[g.disk_bus], bus=g.disk_bus)
    if p.network is None:
        nic = _sub(dev, "interface", type="ethernet")
    else:
        nic = _sub(dev, "interface", type="network")
        _sub(nic, "source", network=p.network)
    _sub(nic, "mac", address=p.mac)
    _sub(nic, "model", type=g.nic_model)
    if g.arch != "s390x":  # a channel-attached NIC has no option ROM to turn off
        _sub(nic, "rom", enabled="no")  # no PXE option ROM: seconds saved at every boot
    # A pty, so `virsh console` reaches the login prompt, logged to a file for labctl.
    serial = _sub(dev, "serial", type="pty")
    _sub(serial, "log", file=str(p.console_log), append="off")
    if g.arch == "s390x":  # the mainframe's console: the SCLP line-mode terminal (ttysclp0)
        target = _sub(serial, "target", type="sclp-serial", port="0")
        _sub(target, "model", name="sclpconsole")
    else:
        _sub(serial, "target", port="0")
    if g.arch != "s390x":  # no USB on the channel subsystem
        _sub(dev, "controller", type="usb", model="none")
    _sub(dev, "memballoon", model="none")
    if g.arch == "x86_64":
        video = _sub(dev, "video")
        _sub(video, "model", type="none")
    return ET.tostring(dom, encoding="unicode")


def network_xml(name: str, bridge: str, subnet: str) -> str:
    """A NAT network with an explicit subnet; the host is the first address."""
    net = ipaddress.ip_network(subnet)
    gateway = next(net.hosts())
    root = ET.Element("network")
    _sub(root, "name", name)
    _sub(root, "bridge", name=bridge, stp="off", delay="0")
    _sub(root, "forward", mode="nat")
    _sub(root, "ip", address=str(gateway), netmask=str(net.netmask))
    return ET.tostring(root, encoding="unicode")


def network_subnet(xml: str) -> str | None:
    """The IPv4 subnet a libvirt network's XML gives its bridge (None without one)."""
    for ip in ET.fromstring(xml).findall("ip"):
        address, netmask, prefix = ip.get("address"), ip.get("netmask"), ip.get("prefix")
        if address and "." in address and (netmask or prefix):
            return str(ipaddress.ip_network(f"{address}/{netmask or prefix}", strict=False))
    return None


def domain_mac(xml: str) -> str | None:
    """The MAC address of a domain's first NIC."""
    el = ET.fromstring(xml).find("devices/interface/mac")
    return el.get("address") if el is not None else None


def taps_on(xml: str, network: str) -> list[str]:
    """The host-side tap devices of a running domain's NICs on ``network`` (live XML)."""
    taps = []
    for iface in ET.fromstring(xml).findall("devices/interface"):
        source, target = iface.find("source"), iface.find("target")
        dev = target.get("dev") if target is not None else None
        if source is not None and source.get("network") == network and dev:
            taps.append(dev)
    return taps


def read_labels(xml: str) -> dict[str, str]:
    """The labctl labels stored in a domain's metadata (empty if it is not ours)."""
    root = ET.fromstring(xml)
    el = root.find(f"metadata/{{{NS}}}guest")
    return dict(el.attrib) if el is not None else {}


DISK_NAMES = {"virtio": "virtio-blk", "ide": "IDE", "sata": "SATA"}
NIC_NAMES = {"virtio": "virtio-net", "e1000": "e1000"}


def devices_summary(guest: LibvirtParams) -> str:
    """Human summary of the device models, for status tables."""
    return devices_text(guest.disk_bus, guest.nic_model)


def live_devices(xml: str) -> Devices:
    """Disk bus, NIC model and disk cache of a domain, from the XML libvirt keeps."""
    dev = ET.fromstring(xml).find("devices")
    disk = dev.find("disk") if dev is not None else None
    nic = dev.find("interface/model") if dev is not None else None
    target = disk.find("target") if disk is not None else None
    driver = disk.find("driver") if disk is not None else None
    bus = target.get("bus", "none") if target is not None else "none"
    model = nic.get("type", "none") if nic is not None else "none"
    return Devices(devices_text(bus, model), driver.get("cache") if driver is not None else None)


def devices_text(disk_bus: str, nic_model: str) -> str:
    """Human summary of a disk bus and a NIC model."""
    text = f"{DISK_NAMES.get(disk_bus, disk_bus)} + {NIC_NAMES.get(nic_model, nic_model)}"
    virtio = [disk_bus == "virtio", nic_model == "virtio"]
    if all(virtio):
        return f"{text} (paravirtual)"
    if not any(virtio):
        return f"{text} (emulated)"
    return text


#: libvirt's memory units, in KiB (libvirt's own default unit)
_KIB = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "m": 1024, "mib": 1024,
        "g": 1024**2, "gib": 1024**2, "kb": 1000 / 1024, "mb": 1000**2 / 1024,
        "gb": 1000**3 / 1024}  # fmt: skip


def _mib(el: ET.Element | None) -> str | None:
    """A memory element's size in MiB, as text (None without the element)."""
    if el is None or not (el.text or "").strip():
        return None
    kib = float(el.text or 0) * _KIB.get(el.get("unit", "KiB").lower(), 1)
    return f"{kib / 1024:g} MiB"


def shape(xml: str) -> dict[str, str | None]:
    """What a domain is defined to have that a running guest keeps until it is defined anew:
    CPUs, memory, accelerator, disk bus, NIC model, the TCG translation cache."""
    dom = ET.fromstring(xml)
    vcpu = dom.find("vcpu")
    cpus = None
    if vcpu is not None:
        most, now = (vcpu.text or "").strip(), vcpu.get("current")
        cpus = f"{now} of {most}" if now and now != most else most
    target = dom.find("devices/disk[@device='disk']/target")
    nic = dom.find("devices/interface/model")
    return {
        "CPUs": cpus,
        "memory": _mib(dom.find("memory")),
        "accelerator": "kvm" if dom.get("type") == "kvm" else "tcg",
        "disk bus": target.get("bus") if target is not None else None,
        "NIC": nic.get("type") if nic is not None else None,
        "translation cache": _mib(dom.find("features/tcg/tb-cache")),
    }


def differences(live: str, wanted: str) -> list[str]:
    """How a running domain's XML differs from the XML labctl would define now, in words:
    ``CPUs 1 -> 1 of 2``; empty when it does not. Names, paths, addresses and the machine
    version libvirt expands (``pc`` -> ``pc-i440fx-7.2``) are not compared."""
    now, then = shape(wanted), shape(live)
    return [
        f"{what} {then[what] or 'default'} -> {now[what] or 'default'}"
        for what in now
        if then[what] != now[what]
    ]
