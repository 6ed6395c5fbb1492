"""Virtual machines through libvirt-python: QEMU under KVM or TCG, direct kernel boot."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import libvirt

from labctl import cancel
from labctl.backends import base, host_side
from labctl.backends.domain_xml import (
    DomainParams,
    devices_summary,
    domain_mac,
    domain_xml,
    live_devices,
    network_subnet,
    network_xml,
    read_labels,
)
from labctl.command import CommandResult
from labctl.connection import DEFAULT, Connection, Timeout
from labctl.errors import EngineError, NotFoundError, NotSupported, ReadyTimeout
from labctl.images.vm import READY_MARKER
from labctl.instance import naming, netguard, subnets
from labctl.instance.reservations import Reservations
from labctl.instance.state import GuestRecord, LabState
from labctl.keys import KeyPair
from labctl.paths import guest_apt_proxy
from labctl.private import make_private
from labctl.procs import run as run_cmd
from labctl.spec.model import LibvirtGuest
from labctl.ssh import KeyRefused, SshError, SshTarget, wait_for_login
from labctl.ssh import run as ssh_run

URI = "qemu:///system"
HINT = "start libvirtd: labctl host setup (labctl doctor shows what is missing)"

# libvirt prints every error on stderr by default; we report them ourselves.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def _err(action: str, exc: libvirt.libvirtError, hint: str = HINT) -> EngineError:
    return EngineError(f"libvirt could not {action}: {exc.get_error_message()}", hint)


@contextmanager
def connection() -> Iterator[libvirt.virConnect]:
    """An open connection to the system libvirtd, closed afterwards."""
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        raise _err(f"connect to {URI}", exc) from exc
    try:
        yield conn
    finally:
        conn.close()


_Found = TypeVar("_Found")


def _find(look_up: Callable[[str], _Found], name: str, absent: int, what: str) -> _Found | None:
    """``look_up(name)``, or None where libvirt answers with the error code ``absent``."""
    try:
        return look_up(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == absent:
            return None
        raise _err(f"look up {what} {name}", exc) from exc


def _lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    return _find(conn.lookupByName, name, libvirt.VIR_ERR_NO_DOMAIN, "domain")


def _network(conn: libvirt.virConnect, name: str) -> libvirt.virNetwork | None:
    return _find(conn.networkLookupByName, name, libvirt.VIR_ERR_NO_NETWORK, "network")


def _gone(exc: libvirt.libvirtError) -> bool:
    """The object went away between listing and reading it (another labctl's ``down``)."""
    return exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_NETWORK)


def _descriptions(objects: list[libvirt.virDomain] | list[libvirt.virNetwork]) -> list[str]:
    """The XML of each listed object that still exists."""
    found = []
    for obj in objects:
        try:
            found.append(str(obj.XMLDesc()))
        except libvirt.libvirtError as exc:
            if not _gone(exc):
                raise _err(f"read {obj.name()}", exc) from exc
    return found


def _paused(dom: libvirt.virDomain) -> bool:
    """The domain exists and runs, but its CPUs are stopped."""
    try:
        return bool(dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED)
    except libvirt.libvirtError as exc:
        if _gone(exc):
            return False
        raise _err(f"read the state of {dom.name()}", exc) from exc


def _network_subnets(conn: libvirt.virConnect) -> list[subnets.Net]:
    """Subnets of every libvirt network, active or not."""
    found = (network_subnet(xml) for xml in _descriptions(conn.listAllNetworks()))
    return [ipaddress.ip_network(s) for s in found if s]


class LibvirtBackend(base.Backend):
    """VMs as libvirt domains; disks are qcow2 overlays on the cached image."""

    engine = "libvirt"
    ready_means = "SSH login with the lab key runs a command"

    def preflight(self) -> None:
        with connection() as conn:
            caps = conn.getCapabilities()
        for binary in ("qemu-system-x86_64", "qemu-system-aarch64"):
            if binary not in caps:
                raise EngineError(
                    f"libvirt does not offer {binary}",
                    "install qemu-system-x86 and qemu-system-arm (labctl host setup)",
                )

    # -- the lab network -------------------------------------------------------------

    def reserve_network(self, state: LabState, pool: str, book: Reservations) -> LabState:
        name = naming.network(state.lab, state.instance)
        with connection() as conn:
            net = _network(conn, name)
            real = network_subnet(_xml(net, name)) if net is not None else None
            subnet = book.subnet(
                state.lab,
                state.instance,
                self.engine,
                pool,
                lambda: [*subnets.host_subnets(), *_network_subnets(conn)],
                preferred=state.subnet,
                existing=real,  # what the bridge really has wins over any record
            )
        bridge = naming.bridge(state.lab, state.instance)
        return replace(state, subnet=subnet, network=name, bridge=bridge)

    def prepare(self, state: LabState) -> LabState:
        name = naming.network(state.lab, state.instance)
        assert state.subnet and state.bridge, "reserve_network ran and its state was saved"
        with connection() as conn:
            net = _network(conn, name)
            try:
                if net is None:
                    net = conn.networkDefineXML(network_xml(name, state.bridge, state.subnet))
                if not net.isActive():
                    net.create()
            except libvirt.libvirtError as exc:
                raise _err(f"create network {name} ({state.subnet})", exc) from exc
        return state

    def cleanup(self, state: LabState) -> None:
        name = naming.network(state.lab, state.instance)
        with connection() as conn:
            net = _network(conn, name)
            if net is None:
                return
            try:
                if net.isActive():
                    net.destroy()
                net.undefine()
            except libvirt.libvirtError as exc:
                raise _err(f"remove network {name}", exc) from exc

    def bridges(self, state: LabState) -> list[str]:
        with connection() as conn:
            net = _network(conn, naming.network(state.lab, state.instance))
            try:
                return [net.bridgeName()] if net is not None and net.isActive() else []
            except libvirt.libvirtError as exc:
                raise _err("read the bridge of the lab network", exc) from exc

    # -- guests ----------------------------------------------------------------------

    def identify(
        self, plan: base.GuestPlan, record: GuestRecord, book: Reservations
    ) -> GuestRecord:
        uuid, mac = record.uuid, record.mac
        with connection() as conn:
            dom = _lookup(conn, plan.resource)
            if dom is not None:  # libvirt refuses to redefine a domain under another UUID
                uuid = dom.UUIDString()
                mac = domain_mac(_xml(dom, plan.resource)) or mac
        return replace(
            record,
            uuid=uuid or str(uuidlib.uuid4()),
            mac=mac or naming.mac(plan.lab, plan.instance, plan.name),
        )

    def _params(self, plan: base.GuestPlan) -> DomainParams:
        guest = plan.spec
        assert isinstance(guest, LibvirtGuest)
        assert plan.address and plan.gateway and plan.network and plan.accel
        return DomainParams(
            name=plan.resource,
            guest=guest,
            accel=plan.accel,
            kernel=_pinned(plan, "vmlinuz"),
            initrd=_pinned(plan, "initrd.img"),
            disk=plan.run_dir / f"{plan.name}.qcow2",
            console_log=plan.run_dir / f"{plan.name}.console.log",
            network=plan.network,
            mac=plan.mac or naming.mac(plan.lab, plan.instance, plan.name),
            hostname=plan.name,
            address=f"{plan.address}/{plan.prefix}",
            gateway=plan.gateway,
            authorized_key=plan.key.public_line,
            labels=plan.labels,
            uuid=plan.uuid,
            apt_proxy=guest_apt_proxy(),
        )

    def create(self, plan: base.GuestPlan) -> GuestRecord:
        params = self._params(plan)
        guest = params.guest
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        for artifact in ("vmlinuz", "initrd.img", "disk.qcow2"):
            _pin(plan, artifact)
        if not params.disk.exists():
            run_cmd(
                [
                    "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                    "-b", _pinned(plan, "disk.qcow2"), params.disk,
                ],
                error=EngineError,
            )  # fmt: skip
        make_private(params.disk)  # the student's writes: root only
        with connection() as conn:
            dom = _lookup(conn, plan.resource)
            # A stopped domain is (re)defined, so it boots with this plan's key and address;
            # the recorded UUID makes that a redefinition instead of a refused second domain.
            if dom is None or not dom.isActive():
                try:
                    conn.defineXML(domain_xml(params))
                except libvirt.libvirtError as exc:
                    raise _err(f"define {plan.resource}", exc) from exc
        return GuestRecord(
            name=plan.name,
            engine=self.engine,
            resource=plan.resource,
            stage="created",
            accel=plan.accel,
            devices=devices_summary(guest),
            address=plan.address,
            port=22,
            console_log=str(params.console_log),
        )

    def start(self, plan: base.GuestPlan) -> None:
        with connection() as conn:
            dom = _lookup(conn, plan.resource)
            if dom is None:
                raise EngineError(f"domain {plan.resource} does not exist", "run labctl up again")
            try:
                if not dom.isActive():
                    dom.create()
                elif _paused(dom):  # paused by hand (virsh suspend) or by libvirt: go on
                    dom.resume()
            except libvirt.libvirtError as exc:
                raise _err(f"start {plan.resource}", exc) from exc

    def wait_ready(self, plan: base.GuestPlan, deadline: float) -> base.Ready:
        assert plan.address
        target = SshTarget(plan.address, 22, "root", plan.key.private)
        console = plan.run_dir / f"{plan.name}.console.log"
        try:
            # The image prints a marker once sshd listens; only then is a login worth trying.
            _wait_for_marker(console, READY_MARKER, deadline)
            self._guard(plan.resource, plan.address, plan.name)
            wait_for_login(target, deadline, command="uname -m", poll=0.5)
        except ReadyTimeout as exc:
            raise ReadyTimeout(
                f"{plan.name} did not become ready: {exc.message}\n"
                f"serial console log {console}, last lines:\n{_tail(console, 15)}",
                "look at the console log; raise ready_timeout in the lab file on a slow host",
            ) from exc
        return base.Ready(plan.address, 22, " ".join(target.argv))

    def _guard(self, resource: str, address: str, guest: str) -> None:
        """Refuse to contact ``address`` unless it lies behind the domain's own bridge, up."""
        with connection() as conn:
            dom = _lookup(conn, resource)
            bridges = set()
            if dom is not None:
                for source in ET.fromstring(_xml(dom, resource)).findall(
                    "devices/interface/source"
                ):
                    net = (
                        _network(conn, source.get("network", "")) if source.get("network") else None
                    )
                    if net is not None:
                        bridges.add(net.bridgeName())
                    elif source.get("bridge"):
                        bridges.add(str(source.get("bridge")))
        netguard.require_lab_bridge(address, bridges, guest)

    def state(self, resource: str) -> base.EngineState:
        with connection() as conn:
            dom = _lookup(conn, resource)
            if dom is None:
                return "absent"
            if not dom.isActive() or _paused(dom):  # a paused VM answers nothing
                return "stopped"
            return "running"

    def accelerator(self, resource: str) -> str | None:
        """The accelerator QEMU really uses for a running domain (asks QEMU itself)."""
        import libvirt_qemu

        with connection() as conn:
            dom = _lookup(conn, resource)
            if dom is None or not dom.isActive():
                return None
            try:
                reply = libvirt_qemu.qemuMonitorCommand(dom, '{"execute":"query-kvm"}', 0)
            except libvirt.libvirtError:
                return None
        enabled = json.loads(reply).get("return", {}).get("enabled")
        return "kvm" if enabled else "tcg"

    # -- what compare measures ---------------------------------------------------------

    def _live_xml(self, resource: str) -> str:
        with connection() as conn:
            dom = _lookup(conn, resource)
            if dom is None:
                raise NotFoundError(f"domain {resource} does not exist", "run: labctl up")
            return _xml(dom, resource)

    def devices(self, resource: str) -> base.Devices:
        return live_devices(self._live_xml(resource))

    def memory(self, resource: str) -> base.HostUse:
        return base.HostUse(
            host_side.vm_rss_bytes(resource),
            "VmRSS of the QEMU process (/proc/PID/status, PID from libvirt's pid file)",
            "the guest's RAM as QEMU has touched it, plus QEMU itself (TCG code cache)",
        )

    def footprint(self, resource: str) -> base.HostUse:
        overlays = _overlays(self._live_xml(resource))
        if not overlays or not overlays[0].exists():
            raise EngineError(f"{resource} has no overlay disk in its lab's run directory")
        disk = overlays[0]
        note = None
        backing = host_side.qcow2_backing(disk)
        if backing and backing.exists():
            shared = host_side.allocated_bytes(backing) / host_side.MIB
            note = (
                f"the shared base image {backing.name} ({shared:.0f} MiB) is not counted; blocks "
                "the guest has written once stay allocated even after it deletes the file"
            )
        method = f"allocated size of the qcow2 overlay {disk}"
        return base.HostUse(host_side.allocated_bytes(disk), method, note)

    def fresh_start(self, copy: base.Copy, starts: int) -> base.StartTimes:
        raise NotSupported(
            f"{copy.record.name}: a VM is not copied for a fresh start (a copy needs an address "
            "of its own on the lab network, and a boot under TCG takes minutes)",
            "labctl compare --restart-guests cold-boots the lab's own VMs instead "
            "(what runs inside them is lost)",
        )

    def restart(self, record: GuestRecord, key: KeyPair, timeout: float) -> base.StartTimes:
        assert record.address
        replaced = host_side.replaced_images(host_side.qemu_pid(record.resource))
        if replaced:
            raise EngineError(
                f"{record.name} was not restarted: its image changed on disk since it started "
                f"({', '.join(replaced)}); a cold boot would put its overlay on the new base and "
                "corrupt its file system",
                "take the lab down and up again to use the rebuilt images",
            )
        try:
            # The guest's own poweroff works on both architectures (the aarch64 one has no ACPI).
            poweroff = "nohup sh -c 'sleep 1; poweroff' >/dev/null 2>&1 &"
            self.connect(record, key).run(poweroff)
        except OSError as exc:
            raise EngineError(f"{record.name}: could not ask it to power off: {exc}") from exc
        again = "run `labctl up` for this instance to start it again"
        with connection() as conn:
            dom = _lookup(conn, record.resource)
            if dom is None:
                raise NotFoundError(f"domain {record.resource} does not exist", again)
            try:
                deadline = time.monotonic() + 90
                while dom.isActive():
                    if time.monotonic() >= deadline:
                        raise ReadyTimeout(f"{record.name} did not power off in 90 s", again)
                    cancel.check()
                    time.sleep(0.1)
                t0 = time.monotonic()
                dom.create()
            except libvirt.libvirtError as exc:
                raise _err(f"restart {record.resource}", exc, again) from exc
        target = SshTarget(record.address, record.port or 22, "root", key.private)
        wait_for_login(target, t0 + timeout, command="true", poll=0.3)
        return base.StartTimes(
            (time.monotonic() - t0,),
            "cold boot of the lab's VM (powered off from inside, started by libvirt) until "
            + self.ready_means,
            "one sample: a VM boot is too long to repeat",
        )

    def destroy(self, resource: str) -> bool:
        with connection() as conn:
            dom = _lookup(conn, resource)
            if dom is None:
                return False
            overlays = _overlays(dom.XMLDesc())
            try:
                if dom.isActive():
                    dom.destroy()
            except libvirt.libvirtError as exc:
                # The guest may have powered itself off between the check and destroy().
                if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                    raise _err(f"stop {resource}", exc) from exc
            try:
                dom.undefine()
            except libvirt.libvirtError as exc:
                raise _err(f"remove {resource}", exc) from exc
        for disk in overlays:  # the guest's own writes go with it; the image stays cached
            disk.unlink(missing_ok=True)
        return True

    def connect(self, record: GuestRecord, key: KeyPair) -> Connection:
        return VmConnection(self, record, key)

    def list_guests(self, lab: str, instance: str) -> list[str]:
        names = []
        with connection() as conn:
            for xml in _descriptions(conn.listAllDomains()):
                labels = read_labels(xml)
                if labels.get("labctl.lab") == lab and labels.get("labctl.instance") == instance:
                    names.append(ET.fromstring(xml).findtext("name", ""))
        return sorted(names)


class VmConnection(Connection):
    """A VM over SSH with the lab key, only while its address lies behind its own bridge.

    ``timeout`` bounds each wait for output, so a hung VM cannot hang a check; ``None`` lets
    a command run silently as long as it likes (``labctl exec``).
    """

    def __init__(self, backend: LibvirtBackend, record: GuestRecord, key: KeyPair) -> None:
        assert record.address
        self.name = record.name
        self._backend = backend
        self._record = record
        self._target = SshTarget(record.address, record.port or 22, "root", key.private)

    def run(self, command: str, timeout: Timeout = DEFAULT) -> CommandResult:
        """Run ``command`` over SSH; a session that fails shows the console's last lines."""
        rec = self._record
        self._backend._guard(rec.resource, self._target.host, rec.name)
        try:
            return ssh_run(self._target, command, timeout=self._timeout(timeout))
        except KeyRefused:
            raise
        except SshError as exc:
            # A running VM that stops answering: its console usually says why (a panic, an
            # oops, a stuck NIC), so the error carries the console's last lines.
            tail = ""
            if rec.console_log:
                console = Path(rec.console_log)
                tail = f"\nserial console log {console}, last lines:\n{_tail(console, 10)}"
            raise SshError(
                f"{rec.name}: {exc.message}{tail}",
                "if it stays unreachable, start it afresh from its image: `labctl exercise reset "
                "EXERCISE` recreates one exercise's guests, `labctl down` + `labctl up` all",
            ) from exc

    def shell_argv(self) -> list[str]:
        """``ssh`` into the VM as root with the lab key."""
        self._backend._guard(self._record.resource, self._target.host, self._record.name)
        return self._target.argv


def _xml(obj: libvirt.virDomain | libvirt.virNetwork, name: str) -> str:
    try:
        return str(obj.XMLDesc())
    except libvirt.libvirtError as exc:
        raise _err(f"read the XML of {name}", exc) from exc


def _overlays(xml: str) -> list[Path]:
    """The domain's disks that labctl created: overlays directly in a lab's run directory."""
    disks = (Path(el.get("file", "")) for el in ET.fromstring(xml).findall("devices/disk/source"))
    return [d for d in disks if d.parent.name == "run" and d.suffix == ".qcow2"]


def _pinned(plan: base.GuestPlan, artifact: str) -> Path:
    """Where the guest's copy of an image file lives: ``run/<image>-<hash>/<artifact>``."""
    return plan.run_dir / f"{plan.spec.image}-{plan.manifest.recipe_hash}" / artifact


def _pin(plan: base.GuestPlan, artifact: str) -> None:
    """Hard-link an image file into the lab's run directory.

    A rebuild of the image replaces the cache's files; the guest keeps booting from (and its
    overlay keeps reading) the version it was created with. A hard link costs nothing; across
    file systems the file is copied.
    """
    target = _pinned(plan, artifact)
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    source = plan.image_dir / artifact
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    tmp.rename(target)


def _wait_for_marker(path: Path, marker: str, deadline: float) -> None:
    needle = marker.encode()
    while True:
        try:
            if needle in path.read_bytes():
                return
        except FileNotFoundError:
            pass
        if time.monotonic() >= deadline:
            raise ReadyTimeout(f"the guest never printed {marker} on its console")
        cancel.check()
        time.sleep(0.3)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "  (no console output)"
    return "\n".join("  " + line for line in text.splitlines()[-lines:]) or "  (empty)"
