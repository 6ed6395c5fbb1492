"""The VM images on their own: built through the image cache, booted under plain QEMU TCG.

The Debian images (``vm-amd64``, ``vm-arm64``: systemd, apt, sudo) and the tiny ones
(``vm-*-tiny``: busybox init) keep one contract. Each boot proves it: the kernel command
line sets hostname, address and the SSH key; the initramfs finds the root disk on virtio-blk
and on IDE; the guest loads drivers for the hardware it has and no others; root logs in with
the key; the power button powers it off. Boot-to-SSH times are recorded as test properties
(``--junitxml``) and printed (``-s``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from labctl.images import vm_debian
from labctl.images.cache import ImageStore
from labctl.images.vm import READY_MARKER, recipes
from labctl.keys import KeyPair, ensure_keypair
from labctl.ssh import run, wait_for_login
from tests.integration.qemu_helpers import Guest, booted

DEBIAN = ["vm-amd64", "vm-arm64"]
TINY = ["vm-amd64-tiny", "vm-arm64-tiny"]
ARTIFACTS = {"disk.qcow2", "vmlinuz", "initrd.img", "manifest.json"}
DEBIAN_ARTIFACTS = ARTIFACTS | {"packages.tsv"}
BOOT_TIMEOUT = 180.0  # TCG on a busy 2-core host; a normal boot takes a fraction of this
SIZE_BUDGET = {"debian": 400 * 1024**2, "tiny": 200 * 1024**2}  # each pair together


@pytest.fixture(scope="module")
def vm_images() -> dict[str, Path]:
    """Both VM images, built (or found current) in the cache at LABCTL_CACHE."""
    store = ImageStore([*vm_debian.recipes(), *recipes()])
    outcomes = store.build([*DEBIAN, *TINY])
    for o in outcomes:
        m = o.manifest
        print(
            f"\n{o.name}: {o.verb}, build {m.build_seconds:.1f} s, "
            f"{m.total_size / 1024**2:.1f} MiB "
            + ", ".join(f"{a.name}={a.size / 1024**2:.1f}" for a in m.artifacts)
        )
    return {o.name: store.path(o.name) for o in outcomes}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return ensure_keypair(tmp_path_factory.mktemp("key") / "id_ed25519", "labctl-test")


def test_images_hold_exactly_their_artifacts_within_budget(vm_images: dict[str, Path]) -> None:
    for kind, names in (("debian", DEBIAN), ("tiny", TINY)):
        total = 0
        for name in names:
            path = vm_images[name]
            wanted = DEBIAN_ARTIFACTS if kind == "debian" else ARTIFACTS
            assert {p.name for p in path.iterdir()} == wanted, name
            total += sum(p.stat().st_size for p in path.iterdir())
        budget = SIZE_BUDGET[kind]
        assert total <= budget, f"{kind} VM images use {total / 1024**2:.0f} MiB"


def _login(guest: Guest) -> tuple[float, float]:
    """Wait for the console's ready marker, then for a key login; seconds from QEMU start.

    The marker comes first because QEMU's user-mode network accepts a connection to the
    forwarded port before the guest listens, and an SSH client then sits out its whole
    banner timeout.
    """
    deadline = time.monotonic() + BOOT_TIMEOUT
    try:
        ready = guest.wait_for_console(READY_MARKER, deadline)
        wait_for_login(guest.target, deadline, command="true", poll=0.5)
    except Exception:
        print(guest.console_text()[-3000:], guest.qemu_log, sep="\n")
        raise
    return ready, time.monotonic() - guest.started


def _modules(guest: Guest) -> set[str]:
    result = run(guest.target, "cut -d' ' -f1 /proc/modules")
    assert result.succeeded, result.detail
    return set(result.stdout.split())


def _power_off(guest: Guest) -> float:
    """Press the (ACPI/GPIO) power button; return seconds until QEMU exited."""
    t0 = time.monotonic()
    guest.qmp_command("system_powerdown")
    guest.proc.wait(timeout=60)
    return time.monotonic() - t0


def _is_a_complete_debian(guest: Guest) -> None:
    """systemd runs the machine; apt, sudo and the journal work; the console offers a login."""
    state = run(guest.target, "systemctl is-system-running --wait; systemctl --failed --plain")
    print(f"systemctl is-system-running: {state.stdout.strip()}")
    assert state.stdout.splitlines()[0] == "running", state.stdout
    assert run(guest.target, 'test "$(readlink /proc/1/exe)" = /usr/lib/systemd/systemd').succeeded
    tools = run(
        guest.target,
        "apt-get --version | head -1 && sudo -n true && journalctl -b -q -n 1 --no-pager "
        "&& adduser --version && python3 -c 'print(1)' && dpkg --audit && echo ok",
    )
    assert tools.succeeded and tools.stdout.endswith("ok\n"), tools.detail
    # serial getty: `virsh console` (or this console log) gets a login prompt
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and " login:" not in guest.console_text():
        time.sleep(0.5)
    assert " login:" in guest.console_text()


CASES = [
    # image, `uname -m`, disk bus, NIC model, address by DHCP instead of the command line
    pytest.param("vm-amd64", "x86_64", "ide", "e1000", False, id="amd64-ide-e1000"),
    pytest.param("vm-amd64", "x86_64", "virtio", "virtio", False, id="amd64-virtio"),
    pytest.param("vm-arm64", "aarch64", "virtio", "virtio", False, id="arm64-virtio"),
    pytest.param("vm-amd64", "x86_64", "sata", "e1000", True, id="amd64-sata-dhcp"),
    pytest.param("vm-amd64-tiny", "x86_64", "ide", "e1000", False, id="tiny-amd64-ide-e1000"),
    pytest.param("vm-arm64-tiny", "aarch64", "virtio", "virtio", False, id="tiny-arm64-virtio"),
]
DISK_DRIVERS = {"ide": {"ata_piix", "sd_mod"}, "sata": {"ahci", "sd_mod"}}


@pytest.mark.parametrize(("image", "machine", "disk_bus", "nic", "dhcp"), CASES)
def test_vm_boots_and_accepts_ssh_login(
    vm_images: dict[str, Path],
    key: KeyPair,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
    image: str,
    machine: str,
    disk_bus: str,
    nic: str,
    dhcp: bool,
) -> None:
    arch = image.removeprefix("vm-").removesuffix("-tiny")
    hostname = f"t-{arch}-{disk_bus}"
    with booted(
        vm_images[image],
        arch,
        tmp_path,
        key,
        disk_bus=disk_bus,
        nic=nic,
        hostname=hostname,
        dhcp=dhcp,
    ) as guest:
        ready, seconds = _login(guest)
        record_property("boot_to_ready_seconds", round(ready, 1))
        record_property("boot_to_ssh_seconds", round(seconds, 1))
        uptime = re.search(r"labctl: up after ([0-9.]+) s", guest.console_text())
        print(
            f"\n{image} {disk_bus}/{nic}: {READY_MARKER} {ready:.1f} s, "
            f"SSH login {seconds:.1f} s after QEMU start "
            f"(guest uptime at ready: {uptime.group(1) if uptime else '?'} s)"
        )

        uname = run(guest.target, "uname -m; hostname; ip -4 -o addr show dev eth0")
        assert uname.succeeded, uname.detail
        lines = uname.stdout.splitlines()
        assert lines[0] == machine
        assert lines[1] == hostname
        assert "10.0.2.15/24" in lines[2]
        assert READY_MARKER in guest.console_text()

        loaded = _modules(guest)
        if disk_bus == "virtio":
            assert {"virtio_blk", "virtio_net"} <= loaded, loaded
            drivers = run(guest.target, "ls /sys/bus/virtio/drivers").stdout.split()
            assert {"virtio_blk", "virtio_net"} <= set(drivers), drivers
        else:
            assert not {m for m in loaded if m.startswith("virtio")}, loaded
            assert DISK_DRIVERS[disk_bus] | {nic} <= loaded, loaded
            assert run(guest.target, "test ! -e /sys/bus/virtio").succeeded

        # real OpenSSH with sftp, and the tools the exercises use
        tools = run(
            guest.target,
            "lspci >/dev/null && ethtool -i eth0 && test -x "
            "/usr/lib/openssh/sftp-server && iperf3 --version",
        )
        assert tools.succeeded, tools.detail
        assert f"driver: {'virtio_net' if nic == 'virtio' else 'e1000'}" in tools.stdout
        if image in DEBIAN:
            _is_a_complete_debian(guest)

        off = _power_off(guest)
        print(f"{image} {disk_bus}/{nic}: powered off {off:.1f} s after the power button")
        assert guest.proc.returncode == 0
