"""Virtual machines through libvirt-python: QEMU under KVM or TCG, direct kernel boot."""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import replace

import libvirt

from labctl import libvirt_client
from labctl.backends import (
    base,
    libvirt_measure,
    libvirt_repair,
    vm_clones,
    vm_files,
    vm_template_cache,
    vm_templates,
)
from labctl.backends.domain_xml import (
    DomainParams,
    devices_summary,
    differences,
    domain_mac,
    domain_xml,
    network_subnet,
    network_xml,
    read_labels,
)
from labctl.backends.params import LibvirtParams
from labctl.backends.vm_connection import VmConnection, not_running
from labctl.connection import Connection
from labctl.errors import EngineError, NotSupported, ReadyTimeout
from labctl.images.vm import READY_MARKER
from labctl.instance import naming, netguard
from labctl.instance.reservations import Reservations
from labctl.instance.state import GuestRecord, LabState
from labctl.keys import KeyPair
from labctl.paths import guest_apt_proxy
from labctl.private import make_private, write_private
from labctl.procs import run as run_cmd
from labctl.ssh import SshTarget, wait_for_login

Plan = base.GuestPlan[LibvirtParams]


def _network_subnets(conn: libvirt.virConnect) -> list[str | None]:
    """Subnets of every libvirt network, active or not."""
    return [network_subnet(xml) for xml in libvirt_client.descriptions(conn.listAllNetworks())]


class LibvirtBackend(base.Backend[LibvirtParams]):
    """VMs as libvirt domains; disks are qcow2 overlays on the cached image."""

    engine = "libvirt"
    ready_means = "SSH login with the lab key runs a command"
    key_at_boot = True

    def preflight(self) -> None:
        with libvirt_client.connection() as conn:
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
        with libvirt_client.connection() as conn:
            net = libvirt_client.network(conn, name)
            real = network_subnet(libvirt_client.xml(net, name)) if net is not None else None
            subnet = book.network_subnet(  # what the bridge really has wins over any record
                state, self.engine, pool, lambda: _network_subnets(conn), state.subnet, real
            )
        bridge = naming.bridge(state.lab, state.instance)
        return replace(state, subnet=subnet, network=name, bridge=bridge)

    def prepare(self, state: LabState) -> LabState:
        name = naming.network(state.lab, state.instance)
        assert state.subnet and state.bridge, "reserve_network ran and its state was saved"
        with libvirt_client.connection() as conn:
            net = libvirt_client.network(conn, name)
            try:
                if net is None:
                    net = conn.networkDefineXML(network_xml(name, state.bridge, state.subnet))
                if not net.isActive():
                    net.create()
                    libvirt_repair.replug(conn, state, name)
            except libvirt.libvirtError as exc:
                raise libvirt_client.error(f"create network {name} ({state.subnet})", exc) from exc
        return state

    def cleanup(self, state: LabState) -> None:
        name = naming.network(state.lab, state.instance)
        with libvirt_client.connection() as conn:
            net = libvirt_client.network(conn, name)
            if net is None:
                libvirt_client.remove_leftovers(network=name)  # of an earlier labctl's down
                return
            try:
                if net.isActive():
                    net.destroy()
                net.undefine()
            except libvirt.libvirtError as exc:
                raise libvirt_client.error(f"remove network {name}", exc) from exc
        libvirt_client.remove_leftovers(network=name)

    def bridges(self, state: LabState) -> list[str]:
        with libvirt_client.connection() as conn:
            net = libvirt_client.network(conn, naming.network(state.lab, state.instance))
            try:
                return [net.bridgeName()] if net is not None and net.isActive() else []
            except libvirt.libvirtError as exc:
                raise libvirt_client.error("read the bridge of the lab network", exc) from exc

    # -- guests ----------------------------------------------------------------------

    def identify(self, plan: Plan, record: GuestRecord, book: Reservations) -> GuestRecord:
        uuid, mac = record.uuid, record.mac
        with libvirt_client.connection() as conn:
            dom = libvirt_client.domain(conn, plan.resource)
            if dom is not None:  # libvirt refuses to redefine a domain under another UUID
                try:
                    uuid = dom.UUIDString()
                except libvirt.libvirtError as exc:
                    raise libvirt_client.error(f"read the UUID of {plan.resource}", exc) from exc
                mac = domain_mac(libvirt_client.xml(dom, plan.resource)) or mac
        return replace(
            record,
            uuid=uuid or str(uuidlib.uuid4()),
            mac=mac or naming.mac(plan.lab, plan.instance, plan.name),
        )

    def _params(self, plan: Plan) -> DomainParams:
        assert plan.address and plan.gateway and plan.network and plan.accel
        return DomainParams(
            name=plan.resource,
            guest=plan.params,
            accel=plan.accel,
            kernel=vm_files.pinned(plan, "vmlinuz"),
            initrd=vm_files.pinned(plan, "initrd.img"),
            disk=plan.run_dir / f"{plan.name}.qcow2",
            console_log=plan.run_dir / f"{plan.name}.console.log",
            network=plan.network,
            mac=plan.mac or naming.mac(plan.lab, plan.instance, plan.name),
            hostname=plan.name,
            address=f"{plan.address}/{plan.prefix}",
            gateway=plan.gateway,
            authorized_key=plan.authorized_keys,
            labels=plan.labels,
            uuid=plan.uuid,
            apt_proxy=guest_apt_proxy(),
        )

    def _template(self, plan: Plan) -> vm_templates.Template | None:
        """The template the guest starts from (made now if need be); None: it boots."""
        if not vm_templates.supports(plan.params, plan.manifest):
            return None
        assert plan.accel
        spec = vm_templates.spec_for(plan.image, plan.manifest, plan.params, plan.accel)
        entry = plan.manifest.facts[vm_templates.CLONE_FACT]
        return vm_templates.ensure(spec, plan.image_dir, entry)

    def creating(self, plan: Plan) -> str | None:
        if self._params(plan).disk.exists() or not vm_templates.supports(
            plan.params, plan.manifest
        ):
            return None
        assert plan.accel
        spec = vm_templates.spec_for(plan.image, plan.manifest, plan.params, plan.accel)
        if vm_templates.made(spec):
            return None
        return "(its template first: one boot, saved for every later start on this host)"

    def create(self, plan: Plan) -> GuestRecord:
        params = self._params(plan)
        guest = params.guest
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        for artifact in ("vmlinuz", "initrd.img", "disk.qcow2"):
            vm_files.pin(plan, artifact)
        clone = vm_clones.marker(plan.run_dir, plan.name)
        template = None
        if not params.disk.exists():
            template = self._template(plan)
            backing = (
                vm_clones.pin(template, plan.run_dir)
                if template is not None
                else vm_files.pinned(plan, "disk.qcow2")
            )
            run_cmd(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing,
                 params.disk],
                error=EngineError,
            )  # fmt: skip
            if template is not None:  # a fresh clone: start() restores the template's memory
                clone.write_text(template.directory.name)
        elif clone.exists():  # created, never started (an interrupted up): still a clone
            template = self._template(plan)
            if template is None or clone.read_text() != template.directory.name:
                clone.unlink()  # its template is gone: it boots
                template = None
        make_private(params.disk)  # the student's writes: root only
        with libvirt_client.connection() as conn:
            dom = libvirt_client.domain(conn, plan.resource)
            # A stopped domain is (re)defined, so it boots with this plan's key and address;
            # the recorded UUID makes that a redefinition instead of a refused second domain.
            if libvirt_client.domain_state(dom, plan.resource) in ("stopped", "absent"):
                xml = domain_xml(params)
                if template is not None and clone.exists():
                    xml = vm_clones.clone_xml(template, params)
                    settings = vm_clones.settings_file(params.disk)
                    write_private(settings, vm_clones.clone_settings(params))
                try:
                    conn.defineXML(xml)
                except libvirt.libvirtError as exc:
                    raise libvirt_client.error(f"define {plan.resource}", exc) from exc
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

    def start(self, plan: Plan) -> base.Started:
        with libvirt_client.connection() as conn:
            dom = libvirt_client.domain(conn, plan.resource)
            if dom is None:
                raise EngineError(f"domain {plan.resource} does not exist", "run labctl up again")
            now = libvirt_client.domain_state(dom, plan.resource)
            try:
                if now == "running":
                    return base.Started(base.RUNNING)
                if now == "paused":  # paused by hand (virsh suspend) or by libvirt: go on
                    dom.resume()
                    return base.Started(base.RESUMED)
                started = self._restore(conn, dom, plan)
                if started.how != base.RESTORED:
                    dom.create()
                return started
            except libvirt.libvirtError as exc:
                raise libvirt_client.error(f"start {plan.resource}", exc) from exc

    def outdated(self, plan: Plan) -> str | None:
        try:
            with libvirt_client.connection() as conn:
                dom = libvirt_client.domain(conn, plan.resource)
                if dom is None or not dom.isActive():  # a stopped domain is defined anew
                    return None
                live = libvirt_client.xml(dom, plan.resource)
            return "; ".join(differences(live, domain_xml(self._params(plan)))) or None
        except (EngineError, libvirt.libvirtError, ET.ParseError):
            return None  # a note only: a guest that runs is not failed for it

    def _restore(
        self, conn: libvirt.virConnect, dom: libvirt.virDomain, plan: Plan
    ) -> base.Started:
        """Start a fresh clone from its template's memory; else say it is to boot, and why
        when a restore was meant."""
        clone = vm_clones.marker(plan.run_dir, plan.name)
        if not clone.exists():
            return base.Started(base.BOOTED)
        template_dir = vm_templates.templates_dir() / clone.read_text().strip()
        clone.unlink()  # whatever happens now, the overlay is no longer the template's disk
        try:
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_MIGRATABLE)
            vm_clones.restore(conn, template_dir, xml, plan.run_dir, plan.name)
        except EngineError as exc:
            return base.Started(
                base.BOOTED, f"booted instead of restored from its template: {exc.message}"
            )
        return base.Started(base.RESTORED, boot_seconds=vm_templates.boot_seconds(template_dir))

    def wait_ready(self, plan: Plan, deadline: float) -> base.Ready:
        assert plan.address
        target = SshTarget(plan.address, 22, "root", plan.key.private)
        console = plan.run_dir / f"{plan.name}.console.log"
        try:
            # The image prints a marker once sshd listens; only then is a login worth trying.
            vm_files.wait_for_marker(console, READY_MARKER, deadline)
            self._guard(plan.resource, plan.address, plan.name)
            wait_for_login(target, deadline, command="uname -m", poll=0.5)
        except ReadyTimeout as exc:
            raise ReadyTimeout(
                f"{plan.name} did not become ready: {exc.message}\n"
                f"serial console log {console}, last lines:\n{vm_files.tail(console, 15)}",
                "look at the console log; raise ready_timeout in the lab file on a slow host",
            ) from exc
        return base.Ready(plan.address, 22, " ".join(target.argv))

    def _guard(self, resource: str, address: str, guest: str) -> None:
        """Refuse to contact ``address`` unless it lies behind the domain's own bridge, up."""
        with libvirt_client.connection() as conn:
            dom = libvirt_client.domain(conn, resource)
            if dom is None:
                raise not_running(guest, "absent")
            xml = libvirt_client.xml(dom, resource)
            bridges = set()
            for source in ET.fromstring(xml).findall("devices/interface/source"):
                name = source.get("network")
                net = libvirt_client.network(conn, name) if name else None
                if net is not None:
                    try:
                        bridges.add(net.bridgeName())
                    except libvirt.libvirtError as exc:  # removed meanwhile: no bridge to use
                        if not libvirt_client.gone(exc):
                            raise libvirt_client.error(f"read the bridge of {name}", exc) from exc
                elif source.get("bridge"):
                    bridges.add(str(source.get("bridge")))
        netguard.require_lab_bridge(address, bridges, guest)

    def _now(self, resource: str) -> libvirt_client.DomainState:
        """Running, paused, stopped or absent, as libvirt says now."""
        with libvirt_client.connection() as conn:
            return libvirt_client.domain_state(libvirt_client.domain(conn, resource), resource)

    def state(self, resource: str) -> base.EngineState:
        return self._now(resource)

    def labels_of(self, resource: str) -> dict[str, str] | None:
        with libvirt_client.connection() as conn:
            dom = libvirt_client.domain(conn, resource)
            if dom is None:
                return None
            try:
                return read_labels(dom.XMLDesc())
            except libvirt.libvirtError as exc:
                if libvirt_client.gone(exc):
                    return None
                raise libvirt_client.error(f"read the XML of {resource}", exc) from exc

    # -- what compare measures (labctl/backends/libvirt_measure.py) ----------------------

    def accelerator(self, resource: str) -> str | None:
        return libvirt_measure.accelerator(resource)

    def devices(self, resource: str) -> base.Devices:
        return libvirt_measure.devices(resource)

    def memory(self, resource: str) -> base.HostUse:
        return libvirt_measure.memory(resource)

    def footprint(self, resource: str) -> base.HostUse:
        return libvirt_measure.footprint(resource)

    def fresh_start(self, copy: base.Copy[LibvirtParams], starts: int) -> base.StartTimes:
        raise NotSupported(
            f"{copy.record.name}: a VM is not copied for a fresh start (a copy would need an "
            "address of its own on the lab network, and a whole boot of its own)",
            "labctl compare --restart-guests cold-boots the lab's own VMs instead "
            "(what runs inside them is lost)",
        )

    def power_off(self, resource: str) -> None:
        libvirt_repair.power_off(resource)

    def restart(self, record: GuestRecord, key: KeyPair, timeout: float) -> base.StartTimes:
        guest = self.connect(record, key)
        return libvirt_measure.restart(record, key, guest, timeout, self.ready_means)

    def templates(self, recipes: Mapping[str, str]) -> list[base.VmTemplate]:
        return vm_template_cache.inventory(vm_template_cache.Now.here(recipes))

    def prune_templates(self, recipes: Mapping[str, str]) -> list[base.VmTemplate]:
        return vm_template_cache.prune(vm_template_cache.Now.here(recipes))

    def destroy(self, resource: str) -> bool:
        with libvirt_client.connection() as conn:
            dom = libvirt_client.domain(conn, resource)
            if dom is None:
                libvirt_client.remove_leftovers(domain=resource)  # of an earlier labctl's down
                return False
            try:
                disks = vm_files.overlays(dom.XMLDesc())
            except libvirt.libvirtError as exc:
                if libvirt_client.gone(exc):  # removed meanwhile, its disks with it
                    return False
                raise libvirt_client.error(f"read the XML of {resource}", exc) from exc
            try:
                if dom.isActive():
                    dom.destroy()
            except libvirt.libvirtError as exc:
                # The guest may have powered itself off between the check and destroy().
                if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                    raise libvirt_client.error(f"stop {resource}", exc) from exc
            try:
                dom.undefine()
            except libvirt.libvirtError as exc:
                raise libvirt_client.error(f"remove {resource}", exc) from exc
        for disk in disks:  # the guest's own writes go with it; the image stays cached
            disk.unlink(missing_ok=True)
            vm_clones.marker(disk.parent, disk.stem).unlink(missing_ok=True)
            vm_clones.settings_file(disk).unlink(missing_ok=True)
        libvirt_client.remove_leftovers(domain=resource)
        return True

    def connect(self, record: GuestRecord, key: KeyPair) -> Connection:
        return VmConnection(self, record, key)

    def list_guests(self, lab: str, instance: str) -> list[str]:
        names = []
        with libvirt_client.connection() as conn:
            for xml in libvirt_client.descriptions(conn.listAllDomains()):
                labels = read_labels(xml)
                if labels.get("labctl.lab") == lab and labels.get("labctl.instance") == instance:
                    names.append(ET.fromstring(xml).findtext("name", ""))
        return sorted(names)
