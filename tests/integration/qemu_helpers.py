"""Boot a labctl VM image under plain QEMU (no libvirt) with user-mode networking.

Used to prove an image on its own: the guest's SSH port is forwarded to a free port on
127.0.0.1, its serial console goes to a file, and the QEMU process is killed by its PID when
the ``with`` block ends, whatever happened inside.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labctl.images.vm import GuestSettings, kernel_cmdline
from labctl.keys import KeyPair
from labctl.ssh import SshTarget

# user-mode networking: the guest is 10.0.2.15, QEMU's gateway 10.0.2.2 and DNS 10.0.2.3
USER_NET = {"address": "10.0.2.15/24", "gateway": "10.0.2.2", "dns": "10.0.2.3"}

MACHINE = {
    "amd64": ["qemu-system-x86_64", "-M", "pc", "-accel", "tcg"],
    "arm64": ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-accel", "tcg"],
}
DISK = {
    "virtio": "virtio-blk-pci,drive=root",
    "ide": "ide-hd,drive=root,bus=ide.0",
    "sata": "ide-hd,drive=root,bus=ahci.0",
}
NIC = {"virtio": "virtio-net-pci", "e1000": "e1000"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Guest:
    """A running QEMU guest."""

    proc: subprocess.Popen[bytes]
    target: SshTarget
    console: Path
    qmp: Path
    started: float  # time.monotonic() when QEMU was started

    @property
    def qemu_log(self) -> str:
        """QEMU's own messages."""
        path = self.console.with_name("qemu.log")
        return path.read_text(errors="replace") if path.exists() else ""

    def console_text(self) -> str:
        """What the guest printed on its serial console so far."""
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def wait_for_console(self, marker: str, deadline: float) -> float:
        """Wait until ``marker`` is on the console; return seconds since QEMU started."""
        while marker not in self.console_text():
            if self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited with {self.proc.returncode} before {marker}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {marker} on the console")
            time.sleep(0.1)
        return time.monotonic() - self.started

    def qmp_command(self, command: str) -> None:
        """Send one QMP command (``system_powerdown``...) and wait for its answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(self.qmp))
            stream = s.makefile("rw")
            stream.readline()  # greeting
            for cmd in ({"execute": "qmp_capabilities"}, {"execute": command}):
                stream.write(json.dumps(cmd) + "\n")
                stream.flush()
                while True:
                    reply = json.loads(stream.readline())
                    if "return" in reply or "error" in reply:
                        break
                if "error" in reply:
                    raise RuntimeError(f"QMP {cmd['execute']}: {reply['error']}")


def qemu_argv(
    image_dir: Path, arch: str, workdir: Path, *, disk_bus: str, nic: str, port: int, cmdline: str
) -> list[str]:
    """The QEMU command line for one guest booting ``image_dir``'s kernel, initrd and disk."""
    overlay = workdir / "overlay.qcow2"
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            str(image_dir / "disk.qcow2"),
            str(overlay),
        ],
        check=True,
    )
    argv = [
        *MACHINE[arch],
        "-m",
        "384",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        f"file:{workdir / 'console.log'}",
        "-qmp",
        f"unix:{workdir / 'qmp.sock'},server=on,wait=off",
        "-kernel",
        str(image_dir / "vmlinuz"),
        "-initrd",
        str(image_dir / "initrd.img"),
        "-append",
        cmdline,
        "-drive",
        f"if=none,id=root,file={overlay},format=qcow2,cache=unsafe",
        "-netdev",
        f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
        # romfile=: no PXE option ROM, nothing to load or run at boot
        "-device",
        f"{NIC[nic]},netdev=net0,romfile=",
    ]
    if disk_bus == "sata":
        argv += ["-device", "ahci,id=ahci"]
    argv += ["-device", DISK[disk_bus]]
    return argv


@contextmanager
def booted(
    image_dir: Path,
    arch: str,
    workdir: Path,
    key: KeyPair,
    *,
    disk_bus: str = "virtio",
    nic: str = "virtio",
    hostname: str = "labctl-test",
    dhcp: bool = False,
) -> Iterator[Guest]:
    """Start QEMU on a throwaway overlay of the image; kill it by PID on the way out.

    The guest gets QEMU's user-mode address on the command line, or asks for it by DHCP.
    """
    port = free_port()
    settings = GuestSettings(hostname, key.public_line, **({} if dhcp else USER_NET))
    cmdline = kernel_cmdline(arch, settings)
    argv = qemu_argv(
        image_dir, arch, workdir, disk_bus=disk_bus, nic=nic, port=port, cmdline=cmdline
    )
    started = time.monotonic()
    with (workdir / "qemu.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        yield Guest(
            proc,
            SshTarget("127.0.0.1", port, "root", key.private),
            workdir / "console.log",
            workdir / "qmp.sock",
            started,
        )
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
