"""VM templates: a Debian VM image booted once, its memory saved; guests start from a copy.

A Debian guest's boot costs 15-25 s of a core under TCG, and a class of eight default labs
boots 24 of them. A template is one such boot, done once per image and device set on this
host, stopped by libvirt's own save (``virDomainSave``) once the guest has settled; a guest
of a lab is then a *clone*: a qcow2 overlay on the template's disk, started from the
template's memory (``virDomainRestore``) in about a second, and given its own hostname,
address, MAC, keys and clock by ``labctl-setup --clone`` inside (the image's
``labctl-clone`` waits for those settings in a QEMU firmware config entry, which QEMU reads
from the new domain's XML, not from the saved memory).

libvirt restores a save file only under the name and UUID it was saved with. A clone's save
file is therefore the template's with another domain XML in libvirt's header (format 2 of
``src/qemu/qemu_saveimage.h``: magic, version, XML length, cookie offset), followed by the
template's QEMU migration stream, unchanged: :func:`write_clone_image`. Anything that is not
a version-2 libvirt save file is refused, and the guest boots instead.

The template is made where it is first needed (``create`` of a guest), under a lock, and kept
in the image cache under a key of everything its memory depends on (:class:`TemplateSpec`).
A guest pins the template's disk files in its run directory (hard links, like the image's
own), so a template can be replaced or removed while its clones run.

A guest that was started once is never restored again: its disk has moved on. Its next
start is an ordinary boot with its own kernel command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import struct
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import libvirt

from labctl import libvirt_client
from labctl.backends import base, vm_files
from labctl.backends.domain_xml import LAYOUT, NS, DomainParams, devices_text, domain_xml, settings
from labctl.backends.params import LibvirtParams
from labctl.errors import EngineError, ReadyTimeout
from labctl.images.recipe import Manifest
from labctl.paths import cache_dir
from labctl.private import make_private
from labctl.procs import run as run_cmd

#: what a template's boot prints on its console once it has settled and waits to be saved
TEMPLATE_MARKER = "LABCTL-TEMPLATE"
#: the manifest fact of a VM image whose template boot waits for a clone's settings
CLONE_FACT = "clone_entry"
#: the firmware config entry's fixed size: the guest reads the size it saw at the template's boot
ENTRY_SIZE = 4096
#: how long a template's boot may take (TCG on a busy host included)
BOOT_TIMEOUT = 600.0
#: architectures whose templates are made (a clone needs the RTC and fw_cfg of pc and virt)
ARCHES = ("x86_64", "aarch64")

_MAGIC = b"LibvirtQemudSave"
_HEADER = struct.Struct("<16s5I56s")  # magic, version, data_len, was_running, format, cookie
_VERSION = 2


def templates_dir() -> Path:
    """Where templates are kept: beside the images, in the cache."""
    return cache_dir() / "vm-templates"


def enabled() -> bool:
    """Whether guests start from templates: ``LABCTL_VM_TEMPLATES=0`` boots every guest."""
    return os.environ.get("LABCTL_VM_TEMPLATES", "1") != "0"


def supports(params: LibvirtParams, manifest: Manifest) -> bool:
    """Whether a guest of this image and architecture can be a template's clone."""
    return enabled() and params.arch in ARCHES and CLONE_FACT in manifest.facts


@dataclass(frozen=True)
class TemplateSpec:
    """Everything a template's saved memory depends on; its key names its directory."""

    image: str
    recipe_hash: str
    params: LibvirtParams
    accel: str
    qemu: int  # libvirt's hypervisor version (QEMU's, as major*1e6 + minor*1e3 + micro)
    libvirt: int
    host_cpu: str  # a digest of the host CPU's flags (what a KVM guest's CPU is made of)
    layout: int = LAYOUT  # the shape of labctl's domain XML (domain_xml.LAYOUT)

    @property
    def key(self) -> str:
        """A short digest of the spec."""
        facts = asdict(self) | {"params": asdict(self.params)}
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def directory(self) -> Path:
        """``<cache>/vm-templates/<image>-<recipe hash>-<key>``."""
        return templates_dir() / f"{self.image}-{self.recipe_hash[:12]}-{self.key}"


@dataclass(frozen=True)
class Template:
    """A made template: its directory and the domain XML its memory was saved with."""

    spec: TemplateSpec
    saved_xml: str
    boot_seconds: float

    @property
    def directory(self) -> Path:
        """Where its files are: ``base.qcow2``, ``disk.qcow2``, ``memory.save``."""
        return self.spec.directory

    @property
    def memory(self) -> Path:
        """libvirt's save file of the template's boot."""
        return self.directory / "memory.save"


def spec_for(image: str, manifest: Manifest, params: LibvirtParams, accel: str) -> TemplateSpec:
    """The template a guest of this image, these devices and this accelerator starts from."""
    with libvirt_client.connection() as conn:
        try:
            qemu, lib = conn.getVersion(), conn.getLibVersion()
        except libvirt.libvirtError as exc:
            raise libvirt_client.error("read the versions of libvirt and QEMU", exc) from exc
    return TemplateSpec(image, manifest.recipe_hash, params, accel, qemu, lib, _host_cpu())


def _host_cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    return hashlib.sha256(flags.encode()).hexdigest()[:16]


# -- libvirt's save file -----------------------------------------------------------------


@dataclass(frozen=True)
class SaveImage:
    """What :func:`read_save_image` found in a libvirt save file's header."""

    xml: str
    cookie: bytes  # libvirt's own (the CPU the guest was saved with), kept as it is
    was_running: int
    format: int
    unused: bytes
    stream_offset: int  # where QEMU's migration stream starts


def read_save_image(path: Path) -> SaveImage:
    """Parse the header of a libvirt QEMU save file; EngineError if it is not version 2."""
    with path.open("rb") as f:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise EngineError(f"{path} is too short for a libvirt save file")
        magic, version, data_len, was_running, fmt, cookie_at, unused = _HEADER.unpack(head)
        if magic != _MAGIC or version != _VERSION:
            raise EngineError(
                f"{path} is not a libvirt save file of version {_VERSION} "
                f"(magic {magic!r}, version {version})",
                "LABCTL_VM_TEMPLATES=0 boots every guest instead",
            )
        data = f.read(data_len)
    if len(data) != data_len or not 0 < cookie_at <= data_len:
        raise EngineError(f"{path}: libvirt's header is cut short")
    xml = data[:cookie_at].split(b"\0", 1)[0].decode()
    cookie = data[cookie_at:].split(b"\0", 1)[0]
    return SaveImage(xml, cookie, was_running, fmt, unused, _HEADER.size + data_len)


def write_clone_image(template: Path, xml: str, target: Path) -> None:
    """``template``'s save file with ``xml`` as its domain: libvirt then restores it as that
    domain. The header is rewritten, QEMU's stream copied as it is."""
    image = read_save_image(template)
    data = xml.encode() + b"\0"
    cookie_at = len(data)
    data += image.cookie + b"\0"
    data += b"\0" * (-len(data) % 4096)  # libvirt pads its own XML too, so it can edit it
    header = _HEADER.pack(
        _MAGIC, _VERSION, len(data), image.was_running, image.format, cookie_at, image.unused
    )
    tmp = target.with_name(target.name + ".tmp")
    with template.open("rb") as src, tmp.open("wb") as dst:
        os.fchmod(dst.fileno(), 0o600)
        dst.write(header + data)
        src.seek(image.stream_offset)
        shutil.copyfileobj(src, dst, 4 * 1024**2)
    tmp.rename(target)


# -- templates ---------------------------------------------------------------------------


def fw_cfg_value(words: list[str]) -> str:
    """The firmware config entry's text: one line of words, padded to :data:`ENTRY_SIZE`."""
    line = " ".join(words)
    if len(line) >= ENTRY_SIZE - 1:
        raise EngineError(f"a clone's settings take {len(line)} bytes, over {ENTRY_SIZE - 2}")
    return line + "\n" + "#" * (ENTRY_SIZE - len(line) - 1)


def template_params(spec: TemplateSpec, entry: str) -> DomainParams:
    """The template's own domain: its files, no network, no identity."""
    d = spec.directory
    return DomainParams(
        name=f"labctl-template-{spec.key}",
        guest=spec.params,
        accel=spec.accel,
        kernel=d / "vmlinuz",
        initrd=d / "initrd.img",
        disk=d / "disk.qcow2",
        console_log=d / "console.log",
        network=None,
        mac=_template_mac(spec),
        hostname="labctl-template",
        address="",
        gateway="",
        authorized_key="",
        labels={"labctl.template": spec.key},
        template=True,
        fw_cfg=(entry, fw_cfg_value(["template"])),
    )


def _template_mac(spec: TemplateSpec) -> str:
    digest = hashlib.sha256(spec.key.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def lock_of(directory: Path) -> Path:
    """The lock file of a template's directory (beside it: ``<name>.lock``)."""
    return directory.with_name(directory.name + ".lock")


@contextlib.contextmanager
def _locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the lock of ``path`` (an flock on the file at that path); True once held. With
    ``wait=False``, False at once if another process holds it.

    A lock file is removed only by its holder (:func:`_remove_if_free`); one who waited on
    the removed file locks the file at the path again, so two never hold one path.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = path.open("a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.close()
            yield False
            return
        try:
            if os.fstat(f.fileno()).st_ino == path.stat().st_ino:
                break
        except FileNotFoundError:
            pass
        f.close()  # removed while this one waited: lock the file at the path now
    try:
        yield True
    finally:
        f.close()  # closing lets the lock go


def ensure(spec: TemplateSpec, image_dir: Path, entry: str) -> Template:
    """The template of ``spec``, made now (one boot, then libvirt's save) if it is not yet.

    Other processes that want the same template wait for it (a file lock).
    """
    with _locked(lock_of(spec.directory)):
        made = _load(spec)
        if made is not None:
            return made
        remove_tree(spec.directory)
        try:
            return _make(spec, image_dir, entry)
        except BaseException:
            _discard(spec)
            raise


def made(spec: TemplateSpec) -> bool:
    """Whether the template of ``spec`` has been made (what :func:`ensure` then loads)."""
    return (spec.directory / "template.json").exists() and (spec.directory / "memory.save").exists()


def _load(spec: TemplateSpec) -> Template | None:
    facts = spec.directory / "template.json"
    try:
        recorded = json.loads(facts.read_text())
        saved = read_save_image(spec.directory / "memory.save")
        template = Template(spec, saved.xml, float(recorded["boot_seconds"]))
    except (OSError, ValueError, KeyError, EngineError):
        return None
    if "spec" not in recorded:  # made by a labctl that did not record its facts
        _record(template, _saved_at(spec.directory))
    return template


def _saved_at(directory: Path) -> str | None:
    """When the template's memory was saved (its save file's time), in ISO 8601, UTC."""
    try:
        mtime = (directory / "memory.save").stat().st_mtime
    except OSError:
        return None
    return datetime.fromtimestamp(mtime, timezone.utc).isoformat("T", "seconds")


def _record(template: Template, made_at: str | None = None) -> None:
    """Write ``template.json``: what :func:`inventory` tells of the template."""
    spec = template.spec
    facts = {
        "image": spec.image,
        "key": spec.key,
        "boot_seconds": round(template.boot_seconds, 1),
        "made_at": made_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spec": asdict(spec),
    }
    tmp = template.directory / "template.json.tmp"
    tmp.write_text(json.dumps(facts, indent=1))
    tmp.rename(template.directory / "template.json")


def _make(spec: TemplateSpec, image_dir: Path, entry: str) -> Template:
    d = spec.directory
    d.mkdir(parents=True)
    files = {"vmlinuz": "vmlinuz", "initrd.img": "initrd.img", "disk.qcow2": "base.qcow2"}
    for artifact, name in files.items():
        vm_files.link_or_copy(image_dir / artifact, d / name)
    # relative backing: a guest's hard links of both files, side by side, work as well
    overlay = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2"]
    run_cmd([*overlay, d / "disk.qcow2"], error=EngineError, cwd=d)
    params = template_params(spec, entry)
    started = time.monotonic()
    with libvirt_client.connection() as conn:
        _stop(conn, params.name)  # left running by a labctl killed while it made this one
        try:
            dom = conn.createXML(domain_xml(params), 0)
        except libvirt.libvirtError as exc:
            raise libvirt_client.error(f"boot the template {params.name}", exc) from exc
        try:
            vm_files.wait_for_marker(params.console_log, TEMPLATE_MARKER, started + BOOT_TIMEOUT)
            seconds = time.monotonic() - started
            dom.save(str(d / "memory.save.tmp"))
        except ReadyTimeout as exc:
            raise ReadyTimeout(
                f"the template of {spec.image} did not settle: {exc.message}\n"
                f"serial console log {params.console_log}, last lines:\n"
                f"{vm_files.tail(params.console_log, 15)}",
                "LABCTL_VM_TEMPLATES=0 boots every guest instead",
            ) from exc
        except libvirt.libvirtError as exc:
            raise libvirt_client.error(f"save the template {params.name}", exc) from exc
        finally:
            _stop(conn, params.name)
    (d / "memory.save.tmp").rename(d / "memory.save")
    make_private(d / "memory.save")
    template = Template(spec, read_save_image(d / "memory.save").xml, seconds)
    _record(template)
    _prune(spec)
    return template


def _stop(conn: libvirt.virConnect, name: str) -> None:
    dom = libvirt_client.domain(conn, name)
    if dom is None:
        return
    try:
        dom.destroy()
    except libvirt.libvirtError as exc:
        stopped = exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID
        if not (stopped or libvirt_client.gone(exc)):
            raise libvirt_client.error(f"stop the template {name}", exc) from exc


def _discard(spec: TemplateSpec) -> None:
    with (
        contextlib.suppress(libvirt.libvirtError, EngineError),
        libvirt_client.connection() as conn,
    ):
        _stop(conn, f"labctl-template-{spec.key}")
    remove_tree(spec.directory)


def _prune(spec: TemplateSpec) -> None:
    """Remove this image's templates made from an older build of it (their clones run from
    their own hard links)."""
    current = spec.directory.name[: -len(spec.key)]  # <image>-<recipe hash>-
    for other in templates_dir().iterdir():
        if not other.is_dir() or other.name.startswith(current):
            continue
        try:
            image = json.loads((other / "template.json").read_text())["image"]
        except (OSError, ValueError, KeyError):
            continue  # being made, or not a template
        if image == spec.image:
            _remove_if_free(other)


# -- what the cache holds -----------------------------------------------------------------


@dataclass(frozen=True)
class Now:
    """What a template must match to be started from: each image's recipe hash, QEMU's and
    libvirt's versions (None: libvirtd did not answer, so they are not judged), the host CPU."""

    recipes: Mapping[str, str]
    versions: tuple[int, int] | None
    host_cpu: str
    layout: int = LAYOUT

    @classmethod
    def here(cls, recipes: Mapping[str, str]) -> Now:
        """This host's, now."""
        try:
            with libvirt_client.connection() as conn:
                versions: tuple[int, int] | None = (conn.getVersion(), conn.getLibVersion())
        except (EngineError, libvirt.libvirtError):
            versions = None
        return cls(recipes, versions, _host_cpu())


def stale(name: str, facts: Mapping[str, Any], now: Now) -> str | None:
    """Why no guest will start from the template ``name`` of ``facts`` again (None: one may).

    A template recorded by an older labctl has only its name's facts (image and recipe);
    the rest is recorded the next time a guest starts from it.
    """
    spec = facts.get("spec")
    image, recipe_prefix, _key = name.rsplit("-", 2)
    recipe = now.recipes.get(image)
    if recipe is None:
        return f"no image {image} is built now"
    if not recipe.startswith(recipe_prefix):
        return f"{image} was rebuilt since"
    if not isinstance(spec, dict):
        return None
    if spec.get("layout") != now.layout:
        return "labctl now defines VMs otherwise (domain layout)"
    if now.versions is not None and (spec["qemu"], spec["libvirt"]) != now.versions:
        return "QEMU or libvirt was upgraded since"
    if spec["host_cpu"] != now.host_cpu:
        return "made on a host CPU with other flags"
    return None


def _own_bytes(directory: Path) -> int:
    """Disk the template holds of its own: its disk's writes and its saved memory (the
    kernel, initrd and base disk are hard links of the image's files)."""
    total = 0
    for name in ("disk.qcow2", "memory.save"):
        with contextlib.suppress(OSError):
            total += (directory / name).stat().st_blocks * 512
    return total


def inventory(now: Now) -> list[base.VmTemplate]:
    """Every template in the cache, current, stale or busy (being made now), by name."""
    root = templates_dir()
    if not root.is_dir():
        return []
    found = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            facts: dict[str, Any] = json.loads((d / "template.json").read_text())
        except (OSError, ValueError):
            facts = {}
        spec = facts.get("spec") or {}
        params = spec.get("params") or {}
        made = _saved_at(d)
        with _locked(lock_of(d), wait=False) as free:
            busy = not free
        if busy:
            why = None
        elif facts and made is not None and d.name.count("-") >= 2:
            why = stale(d.name, facts, now)
        else:
            why = "incomplete: its making was cut short"
        found.append(
            base.VmTemplate(
                name=d.name,
                image=str(facts.get("image") or d.name.rsplit("-", 2)[0]),
                devices=devices_text(params["disk_bus"], params["nic_model"]) if params else None,
                accel=spec.get("accel"),
                size=_own_bytes(d),
                made_at=facts.get("made_at") or made,
                boot_seconds=facts.get("boot_seconds"),
                stale=why,
                busy=busy,
            )
        )
    return found


def prune(now: Now) -> list[base.VmTemplate]:
    """Remove every stale template that no ``labctl`` holds now (making it, or choosing it
    for a guest); those removed.

    Guests started from one keep running: their run directories hold hard links of its disk.
    A fresh clone not started yet boots instead of being restored (``LibvirtBackend.start``).
    """
    return [
        t
        for t in inventory(now)
        if t.stale is not None and _remove_if_free(templates_dir() / t.name)
    ]


def _remove_if_free(directory: Path) -> bool:
    """Remove a template's directory and its lock file unless another process holds the
    lock; whether it was removed."""
    lock = lock_of(directory)
    with _locked(lock, wait=False) as free:
        if free:
            remove_tree(directory)
            lock.unlink(missing_ok=True)  # by its holder: see _locked
    return free


def remove_tree(path: Path) -> None:
    """Remove a template's directory (nothing if it is not there)."""
    shutil.rmtree(path, ignore_errors=True)


# -- clones ------------------------------------------------------------------------------


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
