"""VM templates: libvirt's save header rewritten for a clone, the clone's domain, and the
backend's choice between restoring a fresh clone and booting (fakes at libvirt's boundary;
tests/integration/test_vm_templates.py starts real clones)."""

from __future__ import annotations

import shutil
import struct
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from labctl.backends import base, libvirt_save, vm_clones, vm_template_cache, vm_templates
from labctl.backends.domain_xml import LAYOUT, NS, domain_xml
from labctl.backends.libvirt import LibvirtBackend
from labctl.backends.params import LibvirtParams
from labctl.errors import EngineError
from labctl.images.recipe import Manifest
from labctl.keys import ensure_keypair
from tests.unit.domains import domain_params
from tests.unit.fake_engines import FakeConn, libvirt_error

ENTRY = "opt/org.labctl/guest"
STREAM = bytes(range(256)) * 64  # stands for QEMU's migration stream


def save_file(path: Path, xml: str, cookie: bytes = b"<cookie><cpu/></cookie>\n") -> Path:
    """A save file as libvirt 9.0 writes one (header, padded XML and cookie, stream)."""
    data = xml.encode() + b"\0"
    cookie_at = len(data)
    data += cookie + b"\0" + b"\0" * 1000
    head = struct.pack("<16s5I56s", b"LibvirtQemudSave", 2, len(data), 1, 0, cookie_at, bytes(56))
    path.write_bytes(head + data + STREAM)
    return path


def spec(**changes: object) -> vm_templates.TemplateSpec:
    params = LibvirtParams(arch="x86_64", cpus=1, memory=384, disk_bus="ide", nic_model="e1000")
    base = vm_templates.TemplateSpec("vm-amd64", "f" * 64, params, "tcg", 7002000, 9000000, "c")
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> vm_templates.Template:
    monkeypatch.setenv("LABCTL_CACHE", str(tmp_path / "cache"))
    s = spec()
    s.directory.mkdir(parents=True)
    for name in ("base.qcow2", "disk.qcow2"):
        (s.directory / name).write_bytes(b"QFI\xfb" + name.encode())
    xml = domain_xml(vm_templates.template_params(s, ENTRY))
    save_file(s.directory / "memory.save", xml)
    return vm_templates.Template(s, xml, 20.0)


# -- libvirt's save file ---------------------------------------------------------------


def test_a_clone_image_has_the_new_domain_and_the_template_s_stream(tmp_path: Path) -> None:
    original = save_file(tmp_path / "t.save", "<domain><name>labctl-template-1</name></domain>")
    new_xml = "<domain><name>labctl-lab-s1-kvm-full</name></domain>"
    libvirt_save.write_clone_image(original, new_xml, tmp_path / "c.save")
    clone = libvirt_save.read_save_image(tmp_path / "c.save")
    assert clone.xml == new_xml
    assert clone.cookie == b"<cookie><cpu/></cookie>\n"  # libvirt's, untouched
    assert clone.was_running == 1 and clone.format == 0
    raw = (tmp_path / "c.save").read_bytes()
    assert raw[clone.stream_offset :] == STREAM
    assert (clone.stream_offset - 92) % 4096 == 0  # padded as libvirt pads its own
    assert (tmp_path / "c.save").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "c.save.tmp").exists()


@pytest.mark.parametrize(
    ("magic", "version"), [(b"LibvirtQemudPart", 2), (b"LibvirtQemudSave", 3), (b"x" * 16, 2)]
)
def test_what_is_not_a_finished_version_2_save_file_is_refused(
    tmp_path: Path, magic: bytes, version: int
) -> None:
    path = tmp_path / "t.save"
    path.write_bytes(struct.pack("<16s5I56s", magic, version, 4, 1, 0, 1, bytes(56)) + b"<d/>")
    with pytest.raises(EngineError, match="not a libvirt save file of version 2"):
        libvirt_save.read_save_image(path)


def test_a_header_longer_than_its_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.save"
    path.write_bytes(struct.pack("<16s5I56s", b"LibvirtQemudSave", 2, 9999, 1, 0, 5, bytes(56)))
    with pytest.raises(EngineError, match="cut short"):
        libvirt_save.read_save_image(path)


# -- the template and its key -----------------------------------------------------------


def test_the_key_follows_everything_the_saved_memory_depends_on() -> None:
    keys = {
        spec().key,
        spec(recipe_hash="e" * 64).key,
        spec(params=replace(spec().params, nic_model="virtio")).key,
        spec(params=replace(spec().params, memory=512)).key,
        spec(accel="kvm").key,
        spec(qemu=8002000).key,
        spec(libvirt=10000000).key,
        spec(host_cpu="other").key,
        spec(layout=1).key,
    }
    assert len(keys) == 9
    assert spec().key == spec().key


def test_the_template_boots_without_identity_and_waits_on_the_firmware_entry() -> None:
    root = ET.fromstring(domain_xml(vm_templates.template_params(spec(), ENTRY)))
    cmdline = root.findtext("os/cmdline") or ""
    assert "labctl.template" in cmdline.split()
    assert not [w for w in cmdline.split() if w.startswith(("labctl.ip=", "labctl.key="))]
    assert root.find("devices/interface").get("type") == "ethernet"  # on no bridge at all
    assert root.find("devices/interface/source") is None
    entry = root.find("sysinfo[@type='fwcfg']/entry")
    assert entry is not None and entry.get("name") == ENTRY
    assert entry.text and entry.text.startswith("template\n") and len(entry.text) == 4096


def test_settings_that_do_not_fit_the_entry_are_refused() -> None:
    assert len(vm_templates.fw_cfg_value(["a" * 4000])) == 4096
    with pytest.raises(EngineError, match="over 4094"):
        vm_templates.fw_cfg_value(["a" * 4095])


def test_templates_are_used_for_images_that_wait_for_a_clone_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params = spec().params
    debian = Manifest("vm-amd64", "h", "t", 1.0, (), None, {vm_templates.CLONE_FACT: ENTRY})
    tiny = replace(debian, image="vm-amd64-tiny", facts={})
    assert vm_templates.supports(params, debian)
    assert not vm_templates.supports(params, tiny)
    assert not vm_templates.supports(replace(params, arch="s390x"), debian)
    monkeypatch.setenv("LABCTL_VM_TEMPLATES", "0")
    assert not vm_templates.supports(params, debian)


# -- the clone's domain -----------------------------------------------------------------


def test_a_clone_keeps_the_template_s_machine_and_gets_its_own_identity(
    template: vm_templates.Template,
) -> None:
    p = replace(domain_params("kvm-full"), uuid="0f0f0f0f-0000-4000-8000-000000000001")
    root = ET.fromstring(vm_clones.clone_xml(template, p))
    saved = ET.fromstring(template.saved_xml)
    assert root.findtext("name") == p.name and root.findtext("uuid") == p.uuid
    guest = root.find(f"metadata/{{{NS}}}guest")
    assert guest is not None and guest.get("labctl.instance") == "main"
    assert root.find("devices/disk/source").get("file") == str(p.disk)
    nic = root.find("devices/interface")
    assert nic.get("type") == "network" and nic.find("source").get("network") == p.network
    assert nic.find("mac").get("address") == p.mac and nic.find("target") is None
    assert nic.find("model").get("type") == "e1000"  # the devices are the template's
    assert root.find("devices/serial/log").get("file") == str(p.console_log)
    for path in ("memory", "vcpu", "os/type", "devices/disk/target"):
        assert ET.tostring(root.find(path)) == ET.tostring(saved.find(path))
    cmdline = (root.findtext("os/cmdline") or "").split()  # for a later boot of its own
    assert "labctl.template" not in cmdline and "labctl.ip=10.210.0.10/24" in cmdline
    assert f"labctl.mac={p.mac}" in cmdline
    entry = root.find("sysinfo/entry")
    assert entry is not None and entry.get("name") == ENTRY and not (entry.text or "").strip()
    assert entry.get("file") == str(vm_clones.settings_file(p.disk))  # not on QEMU's argv


def test_a_clone_s_settings_are_its_own_with_a_fresh_seed_each_time() -> None:
    p = domain_params("kvm-full")
    text = vm_clones.clone_settings(p)
    assert len(text) == 4096
    settings = text.split("\n")[0].split()
    assert "labctl.ip=10.210.0.10/24" in settings and "labctl.hostname=kvm-full" in settings
    seeds = [w for w in settings if w.startswith("labctl.seed=")]
    assert len(seeds) == 1 and len(seeds[0]) == len("labctl.seed=") + 64
    assert seeds[0] not in vm_clones.clone_settings(p)


# -- the backend: restore a fresh clone, boot anything else --------------------------------


@pytest.fixture
def vm_plan(tmp_path: Path) -> base.GuestPlan[LibvirtParams]:
    image_dir = tmp_path / "image"
    image_dir.mkdir()
    for artifact in ("vmlinuz", "initrd.img", "disk.qcow2"):
        (image_dir / artifact).write_bytes(artifact.encode())
    manifest = Manifest("vm-amd64", "f" * 64, "t", 1.0, (), None, {vm_templates.CLONE_FACT: ENTRY})
    return base.GuestPlan(
        name="vm",
        resource="labctl-lab-s1-vm",
        params=spec().params,
        lab="lab",
        instance="s1",
        image="vm-amd64",
        manifest=manifest,
        image_dir=image_dir,
        run_dir=tmp_path / "run",
        key=ensure_keypair(tmp_path / "key", "t"),
        accel="tcg",
        address="10.210.7.10",
        gateway="10.210.7.1",
        prefix=24,
        network="labctl-lab-s1",
        uuid="0f0f0f0f-0000-4000-8000-000000000002",
        mac="52:54:00:01:02:03",
    )


@pytest.fixture
def backend(
    template: vm_templates.Template, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LibvirtBackend, FakeConn]]:
    from contextlib import contextmanager

    fake = FakeConn()

    @contextmanager
    def connection():  # type: ignore[no-untyped-def]
        yield fake

    monkeypatch.setattr("labctl.libvirt_client.connection", connection)
    backings: list[str] = []

    def qemu_img(argv: list[object], **_: object) -> None:
        backings.append(str(argv[argv.index("-b") + 1]))
        Path(str(argv[-1])).write_bytes(b"QFI\xfb")

    monkeypatch.setattr("labctl.backends.libvirt.run_cmd", qemu_img)
    monkeypatch.setattr(LibvirtBackend, "_template", lambda self, plan: template)
    fake.backings = backings  # type: ignore[attr-defined]
    yield LibvirtBackend(), fake


def test_a_fresh_clone_starts_from_the_template_s_memory_once(
    backend: tuple[LibvirtBackend, FakeConn], vm_plan: base.GuestPlan[LibvirtParams]
) -> None:
    b, conn = backend
    p, run = vm_plan, vm_plan.run_dir
    vm_templates._record(vm_templates.Template(spec(), "<domain/>", 20.0))  # its boot: 20 s
    b.create(p)
    pinned = run / f"template-{spec().directory.name}"
    assert conn.backings == [str(pinned / "disk.qcow2")]  # type: ignore[attr-defined]
    assert (pinned / "base.qcow2").exists()  # its backing file, pinned beside it
    dom = conn.domains[p.resource]
    settings = vm_clones.settings_file(run / "vm.qcow2")
    assert ET.fromstring(dom.xml).find("sysinfo/entry").get("file") == str(settings)
    assert settings.stat().st_mode & 0o777 == 0o600 and "labctl.seed=" in settings.read_text()
    assert b.start(p) == base.Started(base.RESTORED, boot_seconds=20.0)  # a boot measured here
    assert conn.calls == ["defineXML", "restore"] and dom.active
    assert list(run.glob("*.memory*")) == [] and not (run / "vm.clone").exists()
    assert b.start(p) == base.Started(base.RUNNING)
    dom.active = False  # the student powered it off: its disk has moved on
    b.create(p)
    assert b.start(p) == base.Started(base.BOOTED)
    assert conn.calls == ["defineXML", "restore", "defineXML"] and dom.active


def test_up_is_told_while_a_guest_s_template_is_made_first(
    tmp_path: Path, vm_plan: base.GuestPlan[LibvirtParams], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABCTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vm_templates, "spec_for", lambda *a: spec())
    b = LibvirtBackend()
    assert b.creating(vm_plan) == (
        "(its template first: one boot, saved for every later start on this host)"
    )
    spec().directory.mkdir(parents=True)
    save_file(spec().directory / "memory.save", "<domain/>")
    assert b.creating(vm_plan) is not None  # not finished: template.json is written last
    vm_templates._record(vm_templates.Template(spec(), "<domain/>", 20.0))
    assert b.creating(vm_plan) is None
    (spec().directory / "memory.save").write_bytes(b"torn")  # ensure would make it again
    assert b.creating(vm_plan) is not None
    save_file(spec().directory / "memory.save", "<domain/>")
    (spec().directory / "template.json").unlink()
    vm_plan.run_dir.mkdir()
    (vm_plan.run_dir / "vm.qcow2").write_bytes(b"QFI\xfb")  # created already: nothing to make
    assert b.creating(vm_plan) is None
    monkeypatch.setenv("LABCTL_VM_TEMPLATES", "0")
    (vm_plan.run_dir / "vm.qcow2").unlink()
    assert b.creating(vm_plan) is None  # templates off: it boots


def test_a_clone_libvirt_will_not_restore_boots_instead(
    backend: tuple[LibvirtBackend, FakeConn],
    vm_plan: base.GuestPlan[LibvirtParams],
) -> None:
    b, conn = backend
    conn.restore_error = libvirt_error(
        libvirt.VIR_ERR_OPERATION_FAILED, "incoming migration failed"
    )
    b.create(vm_plan)
    started = b.start(vm_plan)
    assert conn.calls == ["defineXML", "restore"]
    assert conn.domains[vm_plan.resource].active
    assert started.how == base.BOOTED  # what the student's status shows, and why:
    assert started.note and "restored from its template" in started.note
    assert "incoming migration failed" in started.note


def test_a_clone_whose_template_was_pruned_before_its_start_boots_instead(
    backend: tuple[LibvirtBackend, FakeConn],
    vm_plan: base.GuestPlan[LibvirtParams],
    template: vm_templates.Template,
) -> None:
    b, conn = backend
    b.create(vm_plan)
    vm_templates.remove_tree(template.directory)  # labctl images prune, between create and start
    started = b.start(vm_plan)
    assert started.how == base.BOOTED and conn.domains[vm_plan.resource].active
    assert started.note and "cannot read the template of vm" in started.note
    assert conn.calls == ["defineXML"]  # no restore was tried: the domain booted


def test_making_a_template_removes_only_the_same_image_s_older_builds(
    template: vm_templates.Template,
) -> None:
    def made(s: vm_templates.TemplateSpec) -> Path:
        s.directory.mkdir(parents=True, exist_ok=True)
        (s.directory / "template.json").write_text(f'{{"image": "{s.image}"}}')
        return s.directory

    older = made(spec(recipe_hash="0" * 64))
    other_devices = made(spec(params=replace(spec().params, nic_model="virtio")))
    other_image = made(spec(image="vm-arm64", recipe_hash="0" * 64))
    being_made = spec(recipe_hash="1" * 64).directory
    being_made.mkdir(parents=True)  # no template.json yet: another process is making it
    vm_templates._prune(template.spec)
    assert not older.exists()
    assert other_devices.exists() and other_image.exists() and being_made.exists()
    assert template.directory.exists()


def test_guests_created_side_by_side_pin_the_same_file_without_tripping(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from labctl.backends import vm_files

    source = tmp_path / "base.qcow2"
    source.write_bytes(b"QFI\xfb")
    targets = [tmp_path / "run" / "base.qcow2"] * 16
    targets[0].parent.mkdir()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda t: vm_files.link_or_copy(source, t), targets))
    assert targets[0].read_bytes() == b"QFI\xfb"
    assert [p.name for p in targets[0].parent.iterdir()] == ["base.qcow2"]  # no temporary left


# -- what the cache holds ----------------------------------------------------------------


def made_like(t: vm_templates.Template, **changes: object) -> vm_templates.Template:
    """A copy of ``t``'s files under another spec, recorded as labctl records a made one."""
    s = spec(**changes)
    shutil.copytree(t.directory, s.directory)
    made = vm_templates.Template(s, t.saved_xml, 14.0)
    vm_templates._record(made)
    return made


def now_of(s: vm_templates.TemplateSpec, **changes: object) -> vm_template_cache.Now:
    """The host as ``s`` was made on it; ``changes``: what moved on since."""
    now = vm_template_cache.Now({s.image: s.recipe_hash}, (s.qemu, s.libvirt), s.host_cpu)
    return replace(now, **changes)  # type: ignore[arg-type]


def test_the_inventory_tells_each_template_s_facts_and_why_one_is_stale(
    template: vm_templates.Template,
) -> None:
    vm_templates._record(template)
    virtio = made_like(
        template, params=replace(spec().params, disk_bus="virtio", nic_model="virtio")
    )
    now = now_of(template.spec)
    found = {t.name: t for t in vm_template_cache.inventory(now)}
    assert set(found) == {template.directory.name, virtio.directory.name}
    t = found[template.directory.name]
    assert (t.image, t.devices, t.accel, t.boot_seconds) == (
        "vm-amd64",
        "IDE + e1000 (emulated)",
        "tcg",
        20.0,
    )
    assert found[virtio.directory.name].devices == "virtio-blk + virtio-net (paravirtual)"
    assert t.stale is None and t.made_at and t.size > 0

    # Whatever the saved memory depends on, moved on, makes each stale, with the reason.
    def why(**changes: object) -> set[str | None]:
        return {x.stale for x in vm_template_cache.inventory(now_of(template.spec, **changes))}

    assert why(recipes={"vm-amd64": "0" * 64}) == {"vm-amd64 was rebuilt since"}
    assert why(recipes={}) == {"no image vm-amd64 is built now"}
    assert why(versions=(8002000, 9000000)) == {"QEMU or libvirt was upgraded since"}
    assert why(versions=None) == {None}  # libvirtd silent: versions are not judged
    assert why(host_cpu="d") == {"made on a host CPU with other flags"}
    assert why(layout=LAYOUT + 1) == {"labctl now defines VMs otherwise (domain layout)"}


def test_an_older_labctl_s_record_is_judged_by_its_name_then_completed_when_used(
    template: vm_templates.Template,
) -> None:
    (template.directory / "template.json").write_text('{"image": "vm-amd64", "boot_seconds": 20.0}')
    [t] = vm_template_cache.inventory(now_of(template.spec))
    assert t.stale is None and t.devices is None and t.made_at  # made: the save file's time
    [t] = vm_template_cache.inventory(now_of(template.spec, recipes={"vm-amd64": "0" * 64}))
    assert t.stale == "vm-amd64 was rebuilt since"
    old = (template.directory / "template.json").read_text()
    assert vm_templates.made(template.spec)  # asking (up's progress line) writes nothing
    assert (template.directory / "template.json").read_text() == old
    assert vm_templates._load(template.spec) is not None  # a guest starts from it
    [t] = vm_template_cache.inventory(now_of(template.spec))
    assert t.devices == "IDE + e1000 (emulated)" and t.accel == "tcg"


def test_prune_removes_the_stale_and_the_unfinished_never_one_being_made(
    template: vm_templates.Template,
) -> None:
    vm_templates._record(template)
    older = made_like(template, recipe_hash="0" * 64)
    cut_short = spec(params=replace(spec().params, memory=512)).directory
    cut_short.mkdir()  # its boot was killed: no save file, no record, nobody holds its lock
    busy = made_like(template, recipe_hash="1" * 64).directory
    lock = vm_templates.lock_of(busy)
    with vm_templates.locked(lock):  # another labctl is making it
        held = {t.name: t for t in vm_template_cache.inventory(now_of(template.spec))}[busy.name]
        assert held.busy and held.stale is None  # being made: neither stale nor current
        removed = vm_template_cache.prune(now_of(template.spec))
    assert {t.name for t in removed} == {older.directory.name, cut_short.name}
    assert [t.stale for t in removed if t.name == older.directory.name] == [
        "vm-amd64 was rebuilt since"
    ]
    assert not older.directory.exists() and not cut_short.exists()
    assert not vm_templates.lock_of(older.directory).exists()  # its lock file went with it
    assert busy.exists() and template.directory.exists()
    assert vm_template_cache.prune(now_of(template.spec, recipes={"vm-amd64": "1" * 64})) != []
    assert [t.name for t in vm_template_cache.inventory(now_of(template.spec))] == [busy.name]


def test_one_who_waited_on_a_lock_file_removed_meanwhile_locks_the_one_at_the_path(
    tmp_path: Path,
) -> None:
    import threading

    lock, order = tmp_path / "t.lock", []

    def waiter(name: str) -> None:
        with vm_templates.locked(lock):
            order.append(f"{name} in")
            time.sleep(0.05)
            order.append(f"{name} out")

    with vm_templates.locked(lock):  # the holder (a prune) removes the file it holds
        first = threading.Thread(target=waiter, args=("a",))
        first.start()  # opens the file now at the path, waits on its lock
        time.sleep(0.1)
        lock.unlink()
    second = threading.Thread(target=waiter, args=("b",))  # opens a new file at the path
    second.start()
    first.join()
    second.join()
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
