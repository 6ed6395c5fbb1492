"""The doctor's rules on fake hosts, its exit code, and the command in-process."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl.errors import ExitCode, HostError
from labctl.host import doctor, engines, probe, setup
from labctl.host.accel import decide
from labctl.host.ansible import PlaybookResult
from labctl.host.doctor import Check, HostFacts, Status
from labctl.instance.state import GuestRecord, InstanceDir, LabState

GIB = 1024**3


def healthy() -> HostFacts:
    """A host on which everything answers and KVM is real."""
    return HostFacts(
        distro=probe.Distro("debian", "12", "Debian GNU/Linux 12 (bookworm)"),
        cpu=probe.CpuInfo("x86_64", 4, ("vmx",), False),
        accel=decide("x86_64", {"kvm", "kvm_intel"}, {"vmx"}, True, True),
        qemu=(
            probe.QemuInfo("x86_64", "/usr/bin/qemu-system-x86_64", "7.2.22"),
            probe.QemuInfo("aarch64", "/usr/bin/qemu-system-aarch64", "7.2.22"),
        ),
        libvirt=engines.LibvirtInfo("qemu:///system", True, "9.0.0", "7.2.22", 0.03, "root", True),
        docker=engines.DockerInfo(True, "Docker Engine", "20.10.24", "1.41"),
        podman=engines.DockerInfo(True, "Podman Engine", "4.3.1", "1.41"),
        lxd=engines.LxdInfo("/var/lib/lxd/unix.socket", True, "lxd", "5.0.2", True),
        ansible=probe.AnsibleInfo(True, "2.18.0", "2.4.3", "/venv/bin/ansible-playbook"),
        disk=probe.DiskInfo("/var/cache/labctl", 80 * GIB),
        memory=probe.MemoryInfo(24 * GIB, 23 * GIB),
        images=probe.ImagesInfo(True, (probe.ImageState("vm-amd64", "ready"),)),
        apt_cache=probe.AptCacheInfo("http://10.203.0.1:3142", True, True),
    )


def by_name(facts: HostFacts) -> dict[str, Check]:
    return {c.name: c for c in doctor.evaluate(facts)}


def test_healthy_host_is_all_ok() -> None:
    checks = doctor.evaluate(healthy())
    assert {c.status for c in checks} == {Status.OK}
    assert doctor.exit_code(checks) == ExitCode.OK
    assert by_name(healthy())["kvm"].detail.startswith("usable")


def test_pvm_host_warns_tcg_and_still_runs() -> None:
    facts = replace(
        healthy(),
        cpu=probe.CpuInfo("x86_64", 2, (), True),
        accel=decide("x86_64", {"kvm", "kvm_pvm"}, set(), True, True),
    )
    checks = doctor.evaluate(facts)
    kvm = {c.name: c for c in checks}["kvm"]
    assert kvm.status is Status.WARN
    assert "present but unusable: kvm_pvm, guests will run under TCG" in kvm.detail
    assert doctor.lab_can_run(checks)
    assert doctor.exit_code(checks) == ExitCode.OK
    # this host is a VM: the hint names the hypervisor settings that would give it KVM
    assert "nested = true" in (kvm.hint or "") and "host-passthrough" in (kvm.hint or "")
    assert "--nested-hw-virt on" in (kvm.hint or "")


def test_bare_metal_without_vtx_gets_no_nested_hint() -> None:
    facts = replace(
        healthy(),
        cpu=probe.CpuInfo("x86_64", 4, (), False),
        accel=decide("x86_64", set(), set(), False, False),
    )
    kvm = by_name(facts)["kvm"]
    assert kvm.status is Status.WARN and "TCG" in kvm.detail
    assert "VT-x/AMD-V" in (kvm.hint or "") and "nested" not in (kvm.hint or "")


def test_libvirt_down_fails_with_a_hint() -> None:
    facts = replace(
        healthy(),
        libvirt=engines.LibvirtInfo("qemu:///system", False, error="Failed to connect socket"),
    )
    checks = by_name(facts)
    assert checks["libvirt"].status is Status.FAIL
    assert "Failed to connect socket" in checks["libvirt"].detail
    assert "labctl host setup" in (checks["libvirt"].hint or "")
    assert checks["libvirt capabilities"].status is Status.UNKNOWN
    assert doctor.exit_code(list(checks.values())) == ExitCode.HOST


BROKEN: list[tuple[Callable[[HostFacts], HostFacts], str]] = [
    (lambda f: replace(f, docker=engines.DockerInfo(False, error="connection refused")), "docker"),
    (lambda f: replace(f, lxd=engines.LxdInfo(None, False, error="no socket found")), "lxd"),
    (lambda f: replace(f, lxd=replace(f.lxd, initialised=False)), "lxd"),
    (lambda f: replace(f, ansible=probe.AnsibleInfo(False, error="ansible missing")), "ansible"),
    (lambda f: replace(f, disk=probe.DiskInfo("/var/cache/labctl", 2 * GIB)), "disk"),
    (lambda f: replace(f, memory=probe.MemoryInfo(8 * GIB, 3 * GIB)), "memory"),
]


@pytest.mark.parametrize(("breaks", "row"), BROKEN)
def test_each_missing_piece_fails_with_a_hint(
    breaks: Callable[[HostFacts], HostFacts], row: str
) -> None:
    checks = by_name(breaks(healthy()))
    assert checks[row].status is Status.FAIL
    assert checks[row].hint
    assert not doctor.lab_can_run(list(checks.values()))


def test_missing_qemu_arch_fails() -> None:
    facts = replace(
        healthy(),
        qemu=(healthy().qemu[0], probe.QemuInfo("aarch64", None, None, "not found")),
    )
    row = by_name(facts)["qemu aarch64"]
    assert row.status is Status.FAIL and "qemu-system-arm" in (row.hint or "")


def test_missing_s390x_emulator_only_warns_and_the_lab_still_runs() -> None:
    facts = replace(
        healthy(), qemu=(*healthy().qemu[:2], probe.QemuInfo("s390x", None, None, "not found"))
    )
    checks = by_name(facts)
    row = checks["qemu s390x"]
    assert row.status is Status.WARN and "qemu-system-misc" in (row.hint or ""), row
    assert "optional" in row.detail
    assert doctor.lab_can_run(list(checks.values()))


def test_slow_capability_trap_is_a_warning() -> None:
    trap = engines.LibvirtInfo(
        "qemu:///system", True, "9.0.0", "7.2.22", 8.2, "libvirt-qemu", False
    )
    row = by_name(replace(healthy(), libvirt=trap))["libvirt capabilities"]
    assert row.status is Status.WARN
    assert "libvirt-qemu" in row.detail and "8.2 s" in row.detail
    assert "qemu.conf" in (row.hint or "")
    slow_only = replace(trap, qemu_user="root", kvm_accessible=True)
    assert (
        by_name(replace(healthy(), libvirt=slow_only))["libvirt capabilities"].status is Status.WARN
    )


def test_images_missing_warn_and_unknown_when_registry_breaks() -> None:
    images = probe.ImagesInfo(
        True, (probe.ImageState("vm-amd64", "ready"), probe.ImageState("vm-arm64", "missing"))
    )
    row = by_name(replace(healthy(), images=images))["images"]
    assert row.status is Status.WARN and "vm-arm64" in row.detail
    assert row.hint == "run: labctl images build"
    broken = probe.ImagesInfo(False, error="ImportError: no module named vm")
    unknown = by_name(replace(healthy(), images=broken))["images"]
    assert unknown.status is Status.UNKNOWN and "ImportError" in unknown.detail
    assert doctor.lab_can_run([unknown])
    # built, but their engine does not answer (a daemon down): no build is asked for
    down = probe.ImagesInfo(
        True, (probe.ImageState("vm-amd64", "ready"), probe.ImageState("docker-app", "unknown"))
    )
    row = by_name(replace(healthy(), images=down))["images"]
    assert row.status is Status.UNKNOWN and "unknown: docker-app" in row.detail
    assert row.hint and "labctl images build" not in row.hint


def test_vm_templates_are_counted_and_the_stale_ones_are_a_warning_with_the_command() -> None:
    def row(**kw: object) -> Check:
        return by_name(replace(healthy(), templates=probe.TemplatesInfo(**kw)))["templates"]  # type: ignore[arg-type]

    assert row() == Check("templates", Status.OK, "none yet: up makes one per kind of VM")
    assert row(kept=3, size=420 * 2**20) == Check("templates", Status.OK, "3 kept, 420 MiB")
    stale = row(kept=4, size=560 * 2**20, stale=1, stale_size=140 * 2**20)
    assert stale == Check(
        "templates", Status.WARN, "4 kept, 560 MiB; 1 stale, 140 MiB", "run: labctl images prune"
    )
    unknown = row(error="libvirt: cannot connect")
    assert unknown.status is Status.UNKNOWN and "libvirt: cannot connect" in unknown.detail
    assert doctor.lab_can_run([stale, unknown])


def test_the_doctor_lists_templates_through_the_backend_that_keeps_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from labctl.backends.base import VmTemplate
    from labctl.cli import doctor as doctor_cli
    from labctl.cli import images as images_cli
    from labctl.errors import EngineError

    def made(name: str, stale: str | None) -> VmTemplate:
        return VmTemplate(name, "vm-amd64", "IDE + e1000", "tcg", 2**20 * 100, None, 9.0, stale)

    class Keeper:
        def templates(self, recipes: object) -> list[VmTemplate]:
            return [made("a", None), made("b", "vm-amd64 was rebuilt since")]

    monkeypatch.setattr(images_cli, "built", lambda: {"vm-amd64": "f" * 64})
    monkeypatch.setattr(images_cli, "keeper", Keeper)
    assert doctor_cli._templates() == probe.TemplatesInfo(2, 2**20 * 200, 1, 2**20 * 100)

    class Down:
        def templates(self, recipes: object) -> list[VmTemplate]:
            raise EngineError("libvirt could not connect: no socket\nmore words")

    monkeypatch.setattr(images_cli, "keeper", Down)
    assert doctor_cli._templates() == probe.TemplatesInfo(
        error="libvirt could not connect: no socket"
    )


def test_unsupported_distribution_is_a_warning() -> None:
    row = by_name(replace(healthy(), distro=probe.Distro("fedora", "40", "Fedora 40")))
    assert row["distribution"].status is Status.WARN


def test_os_release_and_qemu_conf_parsing(tmp_path: Path) -> None:
    osr = tmp_path / "os-release"
    osr.write_text('PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nVERSION_ID="24.04"\n')
    assert probe.os_release(osr) == probe.Distro("ubuntu", "24.04", "Ubuntu 24.04 LTS")
    conf = tmp_path / "qemu.conf"
    conf.write_text('#user = "libvirt-qemu"\nuser = "root"\ngroup = "root"\n')
    assert engines.qemu_conf_user(conf) == ("root", "root")
    conf.write_text('#user = "root"\n')
    assert engines.qemu_conf_user(conf) == ("libvirt-qemu", None)


def test_setup_preflight_refuses_clearly() -> None:
    debian = probe.Distro("debian", "12", "Debian GNU/Linux 12 (bookworm)")
    assert setup.preflight(debian, root=True) == debian
    with pytest.raises(HostError, match="needs root"):
        setup.preflight(debian, root=False)
    with pytest.raises(HostError, match="not supported") as exc:
        setup.preflight(probe.Distro("debian", "11", "Debian GNU/Linux 11"), root=True)
    assert exc.value.code == ExitCode.HOST


@pytest.mark.parametrize("broken", [False, True])
def test_doctor_command_json_and_exit_code(monkeypatch: pytest.MonkeyPatch, broken: bool) -> None:
    facts = healthy()
    if broken:
        facts = replace(facts, docker=engines.DockerInfo(False, error="connection refused"))
    monkeypatch.setattr(doctor, "gather", lambda images=None, templates=None: facts)
    result = CliRunner().invoke(app, ["doctor", "--json"])
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} >= {"kvm", "libvirt", "docker", "lxd", "images"}
    assert all(set(r) == {"name", "status", "detail", "hint"} for r in rows)
    assert result.exit_code == (ExitCode.HOST if broken else ExitCode.OK)
    table = CliRunner().invoke(app, ["doctor"])
    assert ("What to do:" in table.stdout) == broken and table.exit_code == result.exit_code


def a_troubled_host() -> HostFacts:
    """The long details a student meets: KVM unusable inside a VM, daemons down, no images."""
    return replace(
        healthy(),
        cpu=probe.CpuInfo("x86_64", 2, (), True),
        accel=decide("x86_64", {"kvm", "kvm_pvm"}, set(), True, True),
        qemu=(
            probe.QemuInfo("x86_64", "/usr/bin/qemu-system-x86_64", "7.2.22"),
            probe.QemuInfo("aarch64", None, None, "qemu-system-aarch64 not found on PATH"),
        ),
        docker=engines.DockerInfo(
            False,
            error="Error while fetching server API version: ('Connection aborted.', "
            "FileNotFoundError(2, 'No such file or directory'))",
        ),
        images=probe.ImagesInfo(
            True,
            tuple(
                probe.ImageState(n, "missing")
                for n in ("vm-amd64", "vm-arm64", "system-rootfs", "lxd-system", "docker-app")
            ),
        ),
    )


def test_doctor_reads_in_80_columns_and_wide_adds_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    from labctl import console

    monkeypatch.setattr(doctor, "gather", lambda images=None, templates=None: a_troubled_host())
    monkeypatch.setattr(console, "out", Console(width=80, highlight=False))
    checks = doctor.evaluate(a_troubled_host())
    result = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "80"})
    lines = result.stdout.splitlines()
    assert result.exit_code == ExitCode.HOST
    assert max(len(line) for line in lines) <= 80 and "…" not in result.stdout
    assert lines[1].split() == ["check", "status", "detail"]
    words = set(result.stdout.split())
    for c in checks:
        # One line starts with the check's whole name and verdict; no word of detail is lost.
        assert any(line.startswith(f"{c.name} ") and c.status.value in line for line in lines)
        assert set(c.detail.split()) <= words, c.name
    todo = lines[lines.index("What to do:") + 1 :]
    hinted = [c for c in checks if c.hint and c.status is not Status.OK]
    assert [line.split()[0] for line in todo if not line.startswith("   ")] == [
        c.name.split()[0] for c in hinted
    ]
    assert all(set(c.hint.split()) <= set(" ".join(todo).split()) for c in hinted if c.hint)

    wide = CliRunner().invoke(app, ["doctor", "--wide"], env={"COLUMNS": "80"})
    assert wide.stdout.splitlines()[1].split() == ["check", "status", "detail", "what", "to", "do"]
    assert "What to do:" not in wide.stdout


def test_can_rw_follows_owner_group_other(tmp_path: Path) -> None:
    dev = tmp_path / "kvm"
    dev.write_text("")
    dev.chmod(0o660)
    gid = dev.stat().st_gid
    assert engines.can_rw(dev, 0, set())
    assert engines.can_rw(dev, 54321, {gid})
    assert not engines.can_rw(dev, 54321, {gid + 1})
    dev.chmod(0o600)
    assert not engines.can_rw(dev, 54321, {gid})


def test_host_setup_refuses_non_root_before_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "is_root", lambda: False)
    result = CliRunner().invoke(app, ["host", "setup"])
    assert isinstance(result.exception, HostError)
    assert "needs root" in result.exception.message


def test_host_setup_asks_and_does_nothing_on_no(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[str] = []
    monkeypatch.setattr(probe, "is_root", lambda: True)
    monkeypatch.setattr(
        probe, "os_release", lambda: probe.Distro("debian", "12", "Debian GNU/Linux 12")
    )
    monkeypatch.setattr(setup, "setup", lambda **kw: called.append("setup"))
    result = CliRunner().invoke(app, ["host", "setup"], input="n\n")
    assert result.exit_code == 1 and "Nothing done" in result.output
    assert called == []


@pytest.mark.parametrize(
    ("args", "extravars"),
    [
        ([], None),
        (["--test-tools"], {"labctl_test_tools": True}),
        (["--system-containers", "incus"], {"labctl_system_containers": "incus"}),
    ],
)
def test_host_setup_test_tools_reach_the_playbook(
    monkeypatch: pytest.MonkeyPatch, args: list[str], extravars: dict[str, object] | None
) -> None:
    seen: list[object] = []
    monkeypatch.setattr(probe, "is_root", lambda: True)
    monkeypatch.setattr(
        probe, "os_release", lambda: probe.Distro("debian", "12", "Debian GNU/Linux 12")
    )

    def fake_setup(extra: object = None, on_task: object = None) -> PlaybookResult:
        seen.append(extra)
        return PlaybookResult("host-setup.yml", True, "successful", 0, 0, 9, 1, (), (), 0.5)

    monkeypatch.setattr(setup, "setup", fake_setup)
    result = CliRunner().invoke(app, ["host", "setup", "--yes", *args])
    assert result.exit_code == 0, result.output
    assert seen == [extravars]


def test_permission_denied_asks_for_root_not_setup() -> None:
    denied = engines.DockerInfo(
        False, error="('Connection aborted.', PermissionError(13, 'Permission denied'))"
    )
    row = by_name(replace(healthy(), docker=denied))["docker"]
    assert row.status is Status.FAIL and "root" in (row.hint or "")


def test_memory_held_by_the_running_default_lab_does_not_fail_the_doctor() -> None:
    # Inside a Vagrant lab host with the lab up, 1.5 GiB were left: the lab itself holds the rest.
    low = replace(healthy(), memory=probe.MemoryInfo(6 * GIB, 3 * GIB // 2))
    assert by_name(low)["memory"].status is Status.FAIL
    row = by_name(replace(low, lab_up=True))["memory"]
    assert row.status is Status.OK
    assert "1.5 GiB available of 6.0 GiB; the default lab is up" in row.detail


def test_default_lab_up_reads_the_main_instance_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABCTL_STATE", str(tmp_path))
    assert not doctor.default_lab_up()
    inst = InstanceDir("virtualization", "main")
    guest = GuestRecord("kvm-full", "libvirt", "labctl-virtualization-main-kvm-full")
    inst.save(LabState("virtualization", "main", "lab.yaml", guests={"kvm-full": guest}))
    assert not doctor.default_lab_up()  # planned, not up yet
    ready = replace(guest, stage="ready")
    inst.save(LabState("virtualization", "main", "lab.yaml", guests={"kvm-full": ready}))
    assert doctor.default_lab_up()
    inst.state_file.write_text("{damaged")
    assert not doctor.default_lab_up()


@pytest.mark.parametrize(
    ("cache", "status", "words"),
    [
        (probe.AptCacheInfo("http://10.203.0.1:3142", True, True), Status.OK, "through the apt"),
        (probe.AptCacheInfo(None), Status.WARN, "no apt cache"),
        (
            probe.AptCacheInfo("http://10.203.0.1:3142", error="Connection refused"),
            Status.WARN,
            "mirror (Connection refused)",
        ),
        (
            probe.AptCacheInfo("http://10.203.0.1:3142", True, error="HTTP 503 for x"),
            Status.WARN,
            "HTTP 503",
        ),
    ],
)
def test_doctor_says_whether_guests_can_install_packages(
    cache: probe.AptCacheInfo, status: Status, words: str
) -> None:
    check = by_name(replace(healthy(), apt_cache=cache))["guest packages"]
    assert check.status is status and words in check.detail
    assert check.passed  # the lab runs without packages for its guests


def test_without_nft_instances_cannot_be_kept_apart() -> None:
    assert by_name(healthy())["isolation"].status is Status.OK
    check = by_name(replace(healthy(), nft=False))["isolation"]
    assert check.status is Status.FAIL and check.hint and "nftables" in check.hint


def test_arm64_builds_need_qemu_user_unless_the_vms_are_tiny(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probe, "BINFMT_DIR", tmp_path)
    assert not probe.runs_arm64_programs()  # nothing registered
    (tmp_path / "qemu-aarch64").write_text("disabled\ninterpreter /usr/libexec/qemu-binfmt\n")
    assert not probe.runs_arm64_programs()
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt\n")
    assert probe.runs_arm64_programs()

    row = by_name(replace(healthy(), arm64_programs=False))["arm64 builds"]
    assert row.status is Status.WARN and "cannot be built" in row.detail
    assert row.hint is not None and "labctl host setup" in row.hint
    assert doctor.lab_can_run([row])  # images built before still run
    tiny = by_name(replace(healthy(), arm64_programs=False, vm_profile="tiny"))["arm64 builds"]
    assert tiny.status is Status.OK


def test_an_unreadable_vm_profile_is_a_failed_row_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABCTL_VM_PROFILE", "huge")
    profile, error = doctor._profile()
    assert profile == "debian" and error is not None and "not a VM profile" in error
    row = by_name(replace(healthy(), vm_profile_error=error))["arm64 builds"]
    assert row.status is Status.FAIL and "huge" in row.detail
