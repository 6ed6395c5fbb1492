"""The default lab on the real engines: each guest checked from the inside."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from labctl import backends
from labctl.cli import app
from labctl.host.accel import detect
from labctl.images.registry import store
from labctl.keys import KeyPair
from labctl.lab import down as lab_down
from labctl.lab import lifecycle
from labctl.lab.status import status
from labctl.ssh import SshTarget
from labctl.ssh import run as ssh_run
from tests.integration.conftest import LAB_DIR, RunningLab
from tests.integration.engines import inventory

runner = CliRunner()
#: the console script of the environment running the tests
LABCTL = str(Path(sys.executable).parent / "labctl")


def sh(lab: RunningLab, guest: str, command: str) -> str:
    """Run a command in a guest through labctl's own exec path; it must succeed."""
    result = runner.invoke(
        app, ["exec", guest, "--instance", lab.instance, "--", command], catch_exceptions=False
    )
    assert result.exit_code == 0, f"{guest}: {command}: {result.output}"
    return result.stdout


def test_every_guest_is_running(running_lab: RunningLab) -> None:
    rows = {r.guest: r for r in status(running_lab.state)}
    assert set(rows) == set(running_lab.lab.guests)
    assert {r.state for r in rows.values()} == {"running"}
    print(
        f"\nlab up in {running_lab.up_seconds:.1f} s; per guest:",
        {g: r.ready_seconds for g, r in rows.items()},
    )


def test_arm_guest_is_an_emulated_aarch64(running_lab: RunningLab) -> None:
    assert sh(running_lab, "arm-emulated", "uname -m").strip() == "aarch64"
    row = next(r for r in status(running_lab.state) if r.guest == "arm-emulated")
    assert row.accel == "tcg"  # asked of QEMU itself (query-kvm)


def test_kvm_full_has_only_emulated_devices(running_lab: RunningLab) -> None:
    assert sh(running_lab, "kvm-full", "uname -m").strip() == "x86_64"
    assert sh(running_lab, "kvm-full", "ls /sys/bus/virtio/devices | wc -l").strip() == "0"
    modules = sh(running_lab, "kvm-full", "cut -d' ' -f1 /proc/modules").split()
    assert "e1000" in modules and "ata_piix" in modules
    assert not [m for m in modules if m.startswith("virtio")]
    assert (
        sh(
            running_lab, "kvm-full", "basename $(readlink /sys/class/net/eth0/device/driver)"
        ).strip()
        == "e1000"
    )


def test_kvm_virtio_has_virtio_disk_and_nic(running_lab: RunningLab) -> None:
    drivers = sh(running_lab, "kvm-virtio", "ls /sys/bus/virtio/drivers").split()
    assert {"virtio_blk", "virtio_net"} <= set(drivers)
    assert "vda" in sh(running_lab, "kvm-virtio", "ls /sys/block").split()
    assert sh(running_lab, "kvm-virtio", "findmnt -no SOURCE /").strip() == "/dev/vda"
    assert "e1000" not in sh(running_lab, "kvm-virtio", "cut -d' ' -f1 /proc/modules").split()


def test_kvm_guests_say_which_accelerator_they_really_use(running_lab: RunningLab) -> None:
    probe = detect()
    rows = {r.guest: r for r in status(running_lab.state)}
    for name in ("kvm-full", "kvm-virtio"):
        if probe.usable:
            assert rows[name].accel == "kvm" and rows[name].accel_note is None
        else:  # this machine class: kvm_pvm; the guests run under TCG and say so
            assert rows[name].accel == "tcg"
            assert rows[name].accel_note and "TCG" in rows[name].accel_note


def test_system_container_is_reached_over_ssh_and_shares_the_host_kernel(
    running_lab: RunningLab,
) -> None:
    rec = running_lab.state.guests["lxc-system"]
    assert rec.address
    target = SshTarget(rec.address, 22, "root", KeyPair(running_lab.inst.key).private)
    result = ssh_run(target, "uname -r; cat /proc/1/comm")
    assert result.succeeded, result.detail
    kernel, init = result.stdout.split()
    assert kernel == subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    assert init == "systemd"


def test_app_container_answers_http(running_lab: RunningLab) -> None:
    rec = running_lab.state.guests["docker-app"]
    assert rec.connect and rec.connect.startswith("http://127.0.0.1:")
    answer = requests.get(rec.connect, timeout=5)
    assert answer.status_code == 200 and answer.text.strip()


def test_status_json_lists_every_guest_with_accelerator(running_lab: RunningLab) -> None:
    result = runner.invoke(app, ["status", "--json", "--instance", running_lab.instance])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    guests = {g["guest"]: g for g in data["guests"]}
    assert set(guests) == set(running_lab.lab.guests)
    assert guests["arm-emulated"]["accel"] == "tcg"
    assert guests["kvm-full"]["devices"] == "IDE + e1000 (emulated)"


def test_exec_passes_the_exit_code_through(running_lab: RunningLab) -> None:
    for guest in ("kvm-virtio", "lxc-system", "docker-app"):
        result = runner.invoke(
            app, ["exec", guest, "--instance", running_lab.instance, "--", "exit 3"]
        )
        assert result.exit_code == 3, (guest, result.output)


def test_exec_passes_stdin_with_the_option_and_end_of_file_without(
    running_lab: RunningLab,
) -> None:
    """One guest's output piped into another's command, through each transport."""
    text = "\n".join(f"line {i} ñ" for i in range(20_000)) + "\n"  # over 200 kB
    for guest in ("kvm-virtio", "lxc-system", "docker-app"):
        args = ["exec", "--stdin", guest, "--instance", running_lab.instance]
        kept = "/tmp/labctl-test-stdin"
        line = f"cat > {kept}; md5sum < {kept}; wc -l < {kept}; rm -f {kept}"
        result = runner.invoke(app, [*args, "--", line], input=text.encode())
        assert result.exit_code == 0, (guest, result.output)
        expected = hashlib.md5(text.encode()).hexdigest()
        assert result.stdout.split() == [expected, "-", "20000"], guest
        # and back: every byte value (NULs, no UTF-8) comes out as it went in
        binary = bytes(range(256)) * 400
        back = runner.invoke(app, [*args, "--", "cat"], input=binary)
        assert back.exit_code == 0 and back.stdout_bytes == binary, (guest, back.stderr)
        said = runner.invoke(app, [*args, "--", "cat >&2"], input=binary[:2560])  # stderr too
        assert said.exit_code == 0 and said.stderr_bytes == binary[:2560], guest
        # without --stdin a command reading it ends at once: it never waits for input
        assert sh(running_lab, guest, "cat; echo read") == "read\n"


@pytest.mark.parametrize("guest", ["lxc-system", "docker-app"])
def test_a_container_command_ends_at_its_timeout_with_all_it_started(
    running_lab: RunningLab, guest: str
) -> None:
    """The engine's exec has no bound: the guest's own ``timeout`` keeps the connection's."""
    conn = backends.connect(running_lab.state.guests[guest], KeyPair(running_lab.inst.key))
    # 3517 s: a sleep of this test's own (an exercise's service may sleep in the guest too)
    for command in (
        "sleep 3517 & echo begun; wait",
        "trap '' TERM; sleep 3517 & echo begun; wait",
    ):
        t0 = time.monotonic()
        result = conn.run(command, timeout=1)
        seconds = time.monotonic() - t0
        assert result.rc == 124 and result.stdout == "begun\n", (guest, command, result)
        assert "timed out after 1 s" in result.stderr and seconds < 20, (result, seconds)
        print(f"\n{guest}: {command!r} ended in {seconds:.1f} s")
    left = conn.run("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '", timeout=30)
    assert left.succeeded and "sleep 3517" not in left.stdout, left


def test_second_up_does_nothing(running_lab: RunningLab) -> None:
    t0 = time.monotonic()
    again = lifecycle.up(
        running_lab.lab, LAB_DIR / "lab.yaml", running_lab.instance, store(), detect()
    )
    assert again.already_up and not again.failed
    print(f"\nsecond up: {time.monotonic() - t0:.1f} s")


def test_cli_end_to_end_as_a_subprocess(running_lab: RunningLab) -> None:
    out = subprocess.run(
        [LABCTL, "status", "--json", "--instance", running_lab.instance],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["guests"]) == 5
    bad = subprocess.run(
        [LABCTL, "exec", "nope", "--instance", running_lab.instance, "--", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (
        bad.returncode == 2  # bad input, as the README says: never the command's own exit 1
        and "Error: no guest 'nope'" in bad.stderr
        and "Traceback" not in bad.stderr
    )


def test_up_brings_back_a_guest_that_vanished(running_lab: RunningLab) -> None:
    # As after a crash: the state file says ready, but the engine no longer has the guest.
    rec = running_lab.state.guests["kvm-virtio"]
    assert backends.get("libvirt").destroy(rec.resource)
    again = lifecycle.up(
        running_lab.lab, LAB_DIR / "lab.yaml", running_lab.instance, store(), detect()
    )
    assert not again.already_up
    assert again.state.guests["kvm-virtio"].stage == "ready"
    assert sh(running_lab, "kvm-virtio", "uname -m").strip() == "x86_64"


@pytest.mark.teardown_last
def test_down_removes_everything_up_created(running_lab: RunningLab) -> None:
    t0 = time.monotonic()
    removed = lab_down.down(running_lab.lab.name, running_lab.instance)
    seconds = time.monotonic() - t0
    assert sorted(removed) == sorted(r.resource for r in running_lab.state.guests.values())
    held = running_lab.held  # 5 guests, 3 networks (one per engine) and their 3 bridges
    assert len(held.domains) == 3 and len(held.containers) == len(held.lxd_instances) == 1
    assert len(held.libvirt_networks) == len(held.docker_networks) == len(held.lxd_networks) == 1
    assert len(held.bridges) == 3 and held.nft_elements  # isolation elements while up
    assert inventory(running_lab.lab.name, running_lab.instance).empty
    assert not running_lab.inst.run.exists()
    print(f"\ndown: {seconds:.1f} s")


@pytest.mark.parametrize("guest", ["kvm-virtio", "lxc-system"])
def test_labctl_contacts_a_guest_only_behind_its_own_bridge(
    running_lab: RunningLab, guest: str
) -> None:
    """A guest whose recorded address is not behind its own bridge is refused, nothing sent.

    198.51.100.7 (TEST-NET-2) routes by this host's default route; the guard asks the
    kernel (`ip route get`, which sends nothing) and refuses before any connection.
    """
    from dataclasses import replace

    from labctl.instance.netguard import NotOurNetwork

    rec = running_lab.state.guests[guest]
    backend = backends.get(rec.engine)
    key = KeyPair(running_lab.inst.key)
    assert backend.connect(rec, key).shell_argv()  # its own address, behind its own bridge: fine
    with pytest.raises(NotOurNetwork) as info:
        backend.connect(replace(rec, address="198.51.100.7"), key).shell_argv()
    assert "will not contact 198.51.100.7" in info.value.message
    assert info.value.code == 4


def test_a_vm_serial_console_offers_a_login_prompt(running_lab: RunningLab) -> None:
    """The way back in when SSH is broken: `virsh console` attaches to this pty."""
    import os
    import select
    import xml.etree.ElementTree as ET

    from labctl import libvirt_client

    resource = running_lab.state.guests["kvm-virtio"].resource
    with libvirt_client.connection() as conn:
        dom = libvirt_client.domain(conn, resource)
        assert dom is not None
        serial = ET.fromstring(libvirt_client.xml(dom, resource)).find("devices/serial")
    assert serial is not None and serial.get("type") == "pty"
    source = serial.find("source")
    assert source is not None and source.get("path", "").startswith("/dev/pts/")
    fd = os.open(source.get("path", ""), os.O_RDWR | os.O_NOCTTY)
    seen = b""
    try:
        os.write(fd, b"\r")  # getty prints its prompt again for an empty line
        deadline = time.monotonic() + 30
        while b"login:" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                seen += os.read(fd, 4096)
    finally:
        os.close(fd)
    assert b"kvm-virtio login:" in seen, seen[-500:]
