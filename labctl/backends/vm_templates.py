"""VM templates: a Debian VM image booted once, its memory saved; guests start from a copy.

A Debian guest's boot costs 15-25 s of a core under TCG, and a class of eight default labs
boots 24 of them. A template is one such boot, done once per image and device set on this
host, stopped by libvirt's own save (``virDomainSave``) once the guest has settled; a guest
of a lab is then a *clone*: a qcow2 overlay on the template's disk, started from the
template's memory (``virDomainRestore``) in about a second, and given its own hostname,
address, MAC, keys and clock by ``labctl-setup --clone`` inside (the image's
``labctl-clone`` waits for those settings in a QEMU firmware config entry, which QEMU reads
from the new domain's XML, not from the saved memory).

A clone's domain XML, its settings and its start from the template's memory are in
``vm_clones``; libvirt's save-file format in ``libvirt_save``; what the cache holds (stale or
current, pruned) in ``vm_template_cache``.

The template is made where it is first needed (``create`` of a guest), under a lock, and kept
in the image cache under a key of everything its memory depends on (:class:`TemplateSpec`).
A guest pins the template's disk files in its run directory (hard links, like the image's
own), so a template can be replaced or removed while its clones run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import libvirt

from labctl import libvirt_client
from labctl.backends import vm_files
from labctl.backends.domain_xml import LAYOUT, DomainParams, domain_xml
from labctl.backends.libvirt_save import read_save_image
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
    return TemplateSpec(image, manifest.recipe_hash, params, accel, qemu, lib, host_cpu())


def host_cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    return hashlib.sha256(flags.encode()).hexdigest()[:16]


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
def locked(path: Path, wait: bool = True) -> Iterator[bool]:
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
    with locked(lock_of(spec.directory)):
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
    """Whether the template of ``spec`` is made and whole: :func:`ensure` loads it as it is.

    Only reads: an old template's missing facts are written by the load that uses it.
    """
    return _load(spec, complete=False) is not None


def _load(spec: TemplateSpec, complete: bool = True) -> Template | None:
    facts = spec.directory / "template.json"
    try:
        recorded = json.loads(facts.read_text())
        saved = read_save_image(spec.directory / "memory.save")
        template = Template(spec, saved.xml, float(recorded["boot_seconds"]))
    except (OSError, ValueError, KeyError, EngineError):
        return None
    if complete and "spec" not in recorded:  # made by a labctl that did not record its facts
        _record(template, saved_at(spec.directory))
    return template


def boot_seconds(directory: Path) -> float | None:
    """How long the boot that made the template in ``directory`` took, if it says."""
    try:
        return float(json.loads((directory / "template.json").read_text())["boot_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def saved_at(directory: Path) -> str | None:
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
            remove_if_free(other)


def remove_if_free(directory: Path) -> bool:
    """Remove a template's directory and its lock file unless another process holds the
    lock; whether it was removed."""
    lock = lock_of(directory)
    with locked(lock, wait=False) as free:
        if free:
            remove_tree(directory)
            lock.unlink(missing_ok=True)  # by its holder: see _locked
    return free


def remove_tree(path: Path) -> None:
    """Remove a template's directory (nothing if it is not there)."""
    shutil.rmtree(path, ignore_errors=True)
