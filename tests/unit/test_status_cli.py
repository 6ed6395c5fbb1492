"""``labctl status`` in-process at 80 columns on fake guests: nothing cut, --wide adds columns."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from labctl import console
from labctl.cli import app
from labctl.lab import status as lab_status
from labctl.lab.status import GuestStatus

TCG_NOTE = "KVM cannot run guests here (present but unusable: kvm_pvm); this guest runs under TCG"
PARAVIRTUAL = "virtio-blk + virtio-net (paravirtual)"
RESTORE_NOTE = "booted instead of restored from its template: libvirt refused the save file"


def guest(name: str, engine: str, address: str, **kw: str | None) -> GuestStatus:
    """A running guest as ``lab_status.status`` reports it."""
    fields: dict[str, object] = {
        "state": "running",
        "accel": "tcg" if engine == "libvirt" else None,
        "accel_note": None,
        "devices": PARAVIRTUAL if engine == "libvirt" else "shared host kernel",
        "connect": f"ssh -i /var/lib/labctl/key root@{address}",
        "ready_seconds": 12.0,
        "started": "restored" if engine == "libvirt" else "booted",
        "boot_seconds": 12.0,
        "start_note": None,
        "outdated": None,
        "error": None,
    }
    fields.update(kw)
    return GuestStatus(guest=name, engine=engine, address=address, **fields)  # type: ignore[arg-type]


ROWS = [
    guest("arm-emulated", "libvirt", "192.168.123.10", started="booted", start_note=RESTORE_NOTE),
    guest("kvm-full", "libvirt", "192.168.123.11", accel_note=TCG_NOTE, devices="IDE + e1000"),
    guest("kvm-virtio", "libvirt", "192.168.123.12", state="stopped", error="domain crashed"),
    guest("lxc-system", "lxd", "10.236.114.205"),
    guest("kvm-old", "libvirt", "192.168.123.13", outdated="CPUs 1 -> 1 of 2"),
    guest("docker-app", "docker", "127.0.0.1", connect="http://127.0.0.1:18080/"),
    # The widest row a lab file allows: a 24-character name (NAME_RE), an error, a long IPv4.
    guest("debian-bookworm-web-0001", "lxd", "192.168.123.254", state="running", error="no ssh"),
]


@pytest.fixture
def status_of(monkeypatch: pytest.MonkeyPatch) -> list[GuestStatus]:
    """``labctl status`` sees ROWS, printed on an 80-column console."""
    state = SimpleNamespace(lab="virtualization", instance="student42", spec_path=None)
    inst = SimpleNamespace(owner=lambda: None)  # not a class's instance
    monkeypatch.setattr(lab_status, "load", lambda lab, instance: (inst, state))
    monkeypatch.setattr(lab_status, "status", lambda state: ROWS)
    monkeypatch.setattr(console, "out", Console(width=80, highlight=False))
    return ROWS


def run(*args: str) -> list[str]:
    result = CliRunner().invoke(app, ["status", *args], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_status_fits_80_columns_with_every_name_and_address_whole(
    status_of: list[GuestStatus],
) -> None:
    lines = run("-i", "student42")
    assert max(len(line) for line in lines) <= 80
    assert "…" not in "\n".join(lines)
    for r in status_of:
        row = next(line for line in lines if line.startswith(r.guest))
        assert r.address in row and r.engine in row
        # How to reach it, below the table: one whole command (or URL) a line.
        hint = r.connect if r.connect.startswith("http") else f"labctl ssh {r.guest} -i student42"
        if r.state != "running":  # no way in: the note below says what starts it
            hint = f"- ({r.state})"
        assert any(line.split() == [r.guest, *hint.split()] for line in lines), hint
    assert not any(PARAVIRTUAL in line for line in lines)  # devices are --wide's
    assert "*kvm-full: KVM cannot run guests here" in "\n".join(lines)
    assert any("kvm-virtio: domain crashed" in line for line in lines)
    assert f"arm-emulated: {RESTORE_NOTE}" in " ".join(" ".join(lines).split())  # said, wrapped
    assert "restored" not in next(line for line in lines if line.startswith("kvm-full"))  # wide
    said = " ".join(" ".join(lines).split())
    assert (
        "kvm-old: runs as defined before a change (CPUs 1 -> 1 of 2); stop it "
        "(labctl exec kvm-old -i student42 -- poweroff) and run labctl up --instance "
        "student42 to define it anew" in said  # the commands of this instance, not main's
    )
    assert "Not running: kvm-virtio; labctl up --instance student42 starts them" in said


def test_status_wide_adds_devices_and_connect_one_line_per_guest(
    status_of: list[GuestStatus],
) -> None:
    lines = run("--wide")
    header = lines[0].split()
    assert header == [
        "guest", "engine", "state", "accel", "address", "started", "devices", "connect"
    ]  # fmt: skip
    for r in status_of:
        row = next(line for line in lines if line.startswith(r.guest))
        hint = r.connect if r.connect.startswith("http") else f"labctl ssh {r.guest}"
        hint = hint if r.state == "running" else f"- ({r.state})"
        assert r.address in row and (r.devices or "") in row and hint in row
        assert r.started in row.split()
    assert "Connect:" not in lines


def test_status_json_is_unchanged_by_width(status_of: list[GuestStatus]) -> None:
    import json

    result = CliRunner().invoke(app, ["status", "--json"], env={"COLUMNS": "80"})
    assert [g["guest"] for g in json.loads(result.stdout)["guests"]] == [r.guest for r in ROWS]
    assert set(json.loads(result.stdout)["guests"][0]) == set(GuestStatus.__dataclass_fields__)


def test_a_student_is_told_their_instructor_applies_a_change(
    status_of: list[GuestStatus], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = SimpleNamespace(lab="virtualization", instance="student42", spec_path=None)
    inst = SimpleNamespace(owner=lambda: object())  # class mode: the student cannot run up
    monkeypatch.setattr(lab_status, "load", lambda lab, instance: (inst, state))
    said = " ".join(" ".join(run("-i", "student42")).split())
    assert (
        "kvm-old: runs as defined before a change (CPUs 1 -> 1 of 2); your instructor applies "
        "it (the guest powered off, then labctl class up)" in said
    )
    assert "labctl exec kvm-old -- poweroff" not in said
    assert "Not running: kvm-virtio; your instructor's labctl class up starts them" in said


def test_the_commands_of_another_labs_instance_name_the_lab_and_a_students_name_neither(
    status_of: list[GuestStatus], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = SimpleNamespace(lab="fleet-mini", instance="wk17-ana", spec_path=None)
    inst = SimpleNamespace(owner=lambda: object())  # a class's instance, seen by root
    monkeypatch.setattr(lab_status, "load", lambda lab, instance: (inst, state))
    lines = run("--lab", "fleet-mini", "-i", "wk17-ana")
    # without --lab, the hint would reach lab virtualization's instance wk17-ana
    assert any(
        line.split()
        == ["lxc-system", "labctl", "ssh", "lxc-system", "--lab", "fleet-mini", "-i", "wk17-ana"]
        for line in lines
    )
    monkeypatch.setattr(console, "CONFINED", True)  # the student, through the sudo entry point
    lines = run()
    assert any(line.split() == ["lxc-system", "labctl", "ssh", "lxc-system"] for line in lines)
