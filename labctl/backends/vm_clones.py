"""A VM template's clones: the domain XML of a guest started from a template's memory, its
settings in the firmware config entry, its pinned disk files, and its restore.

A guest that was started once is never restored again: its disk has moved on. Its next
start is an ordinary boot with its own kernel command line.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

from labctl import libvirt_client
from labctl.backends import vm_files
from labctl.backends.domain_xml import NS, DomainParams, settings
from labctl.backends.libvirt_save import write_clone_image
from labctl.backends.vm_templates import Template, fw_cfg_value
from labctl.errors import EngineError


def settings_file(disk: Path) -> Path:
    """Where a clone's settings are kept for QEMU: beside its disk, root only."""
    return disk.with_suffix(".settings")


def clone_settings(p: DomainParams) -> str:
    """What a clone reads in its firmware config entry: its settings and a fresh random seed
    (its kernel's pool must not stay its template's)."""
    return fw_cfg_value([*settings(p).words(), f"labctl.seed={secrets.token_hex(32)}"])


def clone_xml(template: Template, p: DomainParams) -> str:
    """The domain XML of a clone of ``template``: the template's own as libvirt saved it
    (machine, devices and their addresses: what the saved memory expects), with the guest's
    name, UUID, labels, files, network, MAC and kernel command line; its firmware config
    entry is read from :func:`settings_file` (a file: QEMU's command line, which any user
    of the host may read in ``ps``, names it without showing the seed)."""
    assert p.network and p.uuid
    root = ET.fromstring(template.saved_xml)
    _set(root, "name", p.name)
    _set(root, "uuid", p.uuid)
    meta = root.find("metadata")
    if meta is None:
        meta = ET.SubElement(root, "metadata")
    for el in list(meta):
        meta.remove(el)
    ET.register_namespace("labctl", NS)
    ET.SubElement(meta, f"{{{NS}}}guest", {**p.labels, "accel": p.accel})
    os_el = _find(root, "os")
    _set(os_el, "kernel", str(p.kernel))
    _set(os_el, "initrd", str(p.initrd))
    _set(os_el, "cmdline", " ".join(_boot_words(template, p)))
    _find(root, "devices/disk/source").set("file", str(p.disk))
    nic = _find(root, "devices/interface")
    nic.set("type", "network")
    for tag in ("source", "target"):
        for el in nic.findall(tag):
            nic.remove(el)
    ET.SubElement(nic, "source", network=p.network)
    _find(nic, "mac").set("address", p.mac)
    _find(root, "devices/serial/log").set("file", str(p.console_log))
    for el in root.findall("devices/serial/source"):  # the template's pty
        _find(root, "devices/serial").remove(el)
    entry = _find(root, "sysinfo/entry")
    entry.text = None
    entry.set("file", str(settings_file(p.disk)))
    return ET.tostring(root, encoding="unicode")


def _boot_words(template: Template, p: DomainParams) -> list[str]:
    """The clone's kernel command line: the template's, with the guest's settings instead of
    ``labctl.template`` (used when the clone boots again, after a reboot or a stop)."""
    words = _find(ET.fromstring(template.saved_xml), "os/cmdline").text or ""
    base = [w for w in words.split() if not w.startswith("labctl.")]
    return [*base, *settings(p).words()]


def _find(root: ET.Element, path: str) -> ET.Element:
    el = root.find(path)
    if el is None:
        raise EngineError(f"the template's saved domain has no {path}")
    return el


def _set(root: ET.Element, tag: str, text: str) -> None:
    el = root.find(tag)
    if el is None:
        el = ET.SubElement(root, tag)
    el.text = text


def pin(template: Template, run_dir: Path) -> Path:
    """Hard-link the template's disk files into a guest's run directory; the pinned disk."""
    target = run_dir / f"template-{template.directory.name}"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("base.qcow2", "disk.qcow2"):
        if not (target / name).exists():
            vm_files.link_or_copy(template.directory / name, target / name)
    return target / "disk.qcow2"


def marker(run_dir: Path, guest: str) -> Path:
    """Present while the guest's overlay is a fresh clone, never started: ``start`` restores
    it from its template (the file names the template's directory)."""
    return run_dir / f"{guest}.clone"


def restore(
    conn: libvirt.virConnect, template_dir: Path, xml: str, run_dir: Path, guest: str
) -> None:
    """Start the defined domain of ``xml`` from its template's memory."""
    image = run_dir / f"{guest}.memory"
    try:
        write_clone_image(template_dir / "memory.save", xml, image)
        conn.restore(str(image))
    except libvirt.libvirtError as exc:
        raise libvirt_client.error(f"start {guest} from its template", exc) from exc
    except OSError as exc:  # the template was removed (labctl images prune) since create
        raise EngineError(f"cannot read the template of {guest}: {exc.strerror}") from exc
    finally:
        image.unlink(missing_ok=True)
        image.with_name(image.name + ".tmp").unlink(missing_ok=True)
