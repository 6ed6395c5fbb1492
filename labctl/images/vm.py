"""Tiny VM images ``vm-amd64-tiny`` and ``vm-arm64-tiny``, and what every VM image shares.

Shared with the Debian images (:mod:`labctl.images.vm_debian`): the architectures, the kernel
command line contract, the busybox initramfs that finds the root disk, and the disk format.

The tiny images: a Debian root disk, its kernel and a tiny initramfs.

The root filesystem is unpacked from Debian packages with ``mmdebstrap --variant=extract``: no
maintainer script runs, so the arm64 image needs no emulation to build. The configuration those
scripts would have written comes from ``images/vm/rootfs/``. PID 1 is busybox init; the whole
boot is ``/etc/labctl/rc`` (no systemd: boots in seconds under TCG).

Artifacts: ``disk.qcow2`` (ext4 labelled ``labctl-root``; use it as a qcow2 backing file),
``vmlinuz`` and ``initrd.img``, booted directly (``-kernel``/``-initrd``/``-append``).

Kernel command line contract (:func:`kernel_cmdline` builds it)::

    root=LABEL=labctl-root rw console=ttyS0|ttyAMA0 net.ifnames=0 quiet   (+ BOOT_TUNING)
    labctl.hostname=NAME           hostname (default labctl-vm)
    labctl.ip=A.B.C.D/NN           static address of eth0; without it eth0 uses DHCP
    labctl.gw=A.B.C.D              default gateway (with labctl.ip)
    labctl.dns=A.B.C.D             optional nameserver
    labctl.apt_proxy=URL           optional: apt's HTTP proxy (the host's apt cache)
    labctl.key=BASE64              base64 of root's authorized_keys line (the only way in)
    labctl.mac=MAC                 optional: eth0's MAC address (Debian images)
    labctl.template                a template's boot (Debian images; labctl.backends.vm_templates)
    labctl.shell                   optional: a shell on the console if the root is not found

The guest prints ``LABCTL-READY`` on the console once sshd listens.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from labctl.errors import BuildError
from labctl.images.cache import remove_tree
from labctl.images.debian import SUITE, mmdebstrap, read_list
from labctl.images.initramfs import Cpio, ModuleTree, module_name, prune_modules
from labctl.images.recipe import BuildContext, Recipe
from labctl.paths import IMAGES_DIR
from labctl.procs import run

RECIPE_DIR = IMAGES_DIR / "vm"
ROOT_LABEL = "labctl-root"
DISK_SIZE = 2 * 1024**3
READY_MARKER = "LABCTL-READY"
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/merged-usr/setup00.sh"

#: Files of the root filesystem that are not world-readable (mode, group id).
_PRIVATE_FILES = {"etc/shadow": (0o640, 42), "etc/gshadow": (0o640, 42)}
#: Trees dropped from the root filesystem: device trees (QEMU's virt machine makes its own).
_DROP = ("usr/lib/linux-image-*", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*")


@dataclass(frozen=True)
class Arch:
    """A Debian architecture and how QEMU and the kernel name things on it."""

    debian: str  # amd64
    qemu: str  # x86_64: qemu-system-<qemu>, libvirt's arch
    console: str  # serial console device in the guest


ARCHES = {
    "amd64": Arch("amd64", "x86_64", "ttyS0"),
    "arm64": Arch("arm64", "aarch64", "ttyAMA0"),
}


def find_arch(name: str) -> Arch:
    """The architecture of a VM image by its Debian name; BuildError naming those known."""
    if name not in ARCHES:
        raise BuildError(f"no VM image for architecture {name!r}", f"known: {', '.join(ARCHES)}")
    return ARCHES[name]


def boot_facts(arch: Arch, kernel: str) -> dict[str, str]:
    """What a VM image's manifest says of its boot contract: architecture, console, kernel,
    root disk (the same facts for the tiny and the Debian images)."""
    return {
        "arch": arch.debian,
        "qemu_arch": arch.qemu,
        "console": arch.console,
        "kernel": kernel,
        "suite": SUITE,
        "root_label": ROOT_LABEL,
        "disk_size": str(DISK_SIZE),
    }


#: Kernel options that shorten a lab VM's boot: no CPU-bug mitigations (the guest's own
#: processes are the student's), no crypto self-tests, no watchdogs, no audit.
BOOT_TUNING = ("mitigations=off", "cryptomgr.notests", "nowatchdog", "audit=0")


@dataclass(frozen=True)
class GuestSettings:
    """One guest's own settings: the ``labctl.*`` words of the module docstring, which its
    kernel command line (or, for a template's clone, a firmware config entry) carries."""

    hostname: str
    authorized_key: str  # root's authorized_keys, one key a line
    address: str | None = None  # a.b.c.d/nn; None: DHCP
    gateway: str | None = None
    dns: str | None = None
    apt_proxy: str | None = None
    mac: str | None = None  # eth0's (Debian images)

    def words(self) -> list[str]:
        """The ``labctl.*`` words, in the contract's order."""
        key = base64.b64encode(self.authorized_key.strip().encode()).decode()
        optional = {
            "ip": self.address,
            "gw": self.gateway,
            "dns": self.dns,
            "apt_proxy": self.apt_proxy,
            "mac": self.mac,
        }
        return [
            f"labctl.hostname={self.hostname}",
            *(f"labctl.{name}={value}" for name, value in optional.items() if value),
            f"labctl.key={key}",
        ]


def boot_args(arch: str) -> list[str]:
    """What every guest's kernel command line starts with: root disk, console, tuning."""
    return [
        f"root=LABEL={ROOT_LABEL}",
        "rw",
        f"console={ARCHES[arch].console}",
        "net.ifnames=0",
        "quiet",
        *BOOT_TUNING,
    ]


def kernel_cmdline(arch: str, settings: GuestSettings) -> str:
    """The kernel command line a ``vm-<arch>`` image expects (see the module docstring)."""
    return " ".join([*boot_args(arch), *settings.words()])


def template_cmdline(arch: str) -> str:
    """The kernel command line of a template's boot: no identity, ``labctl.template``."""
    return " ".join([*boot_args(arch), "labctl.hostname=labctl-template", "labctl.template"])


def _packages(arch: str) -> list[str]:
    return [p.replace("{arch}", arch) for p in read_list(RECIPE_DIR / "packages.txt")]


def boot_modules() -> tuple[list[str], list[str]]:
    """Module names to keep, and those among them to load on every boot."""
    keep, boot = [], []
    for entry in read_list(RECIPE_DIR / "modules.txt"):
        name, *flags = entry.split()
        keep.append(name)
        if "boot" in flags:
            boot.append(name)
    return keep, boot


class VmImage(Recipe):
    """A tiny bootable Debian guest for one architecture: busybox init, no systemd."""

    recipe_dir = "vm"
    code_deps = ("labctl.images.debian", "labctl.images.initramfs")

    def __init__(self, arch: str) -> None:
        self.arch = find_arch(arch)
        self.name = f"vm-{arch}-tiny"
        self.description = (
            f"{self.arch.qemu} Debian {SUITE} VM: busybox init, OpenSSH, direct kernel boot"
        )

    def inputs(self) -> Mapping[str, object]:
        """The architecture, the package list and the module list."""
        keep, boot = boot_modules()
        return {
            "arch": self.arch.debian,
            "suite": SUITE,
            "packages": sorted(_packages(self.arch.debian)),
            "modules": keep,
            "boot_modules": boot,
            "disk_size": DISK_SIZE,
        }

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        """Root filesystem, kernel, initramfs and disk into ``ctx.out``."""
        work = ctx.out / ".work"
        rootfs = work / "rootfs"
        try:
            work.mkdir()
            ctx.report("mmdebstrap")
            debs = self._unpack(rootfs)
            ctx.report("configure")
            _configure(rootfs)
            ctx.report("modules")
            version = kernel_version(rootfs)
            keep, boot = boot_modules()
            tree = prune_modules(rootfs, version, keep)
            kept = {module_name(p) for p in tree.deps}
            missing = [m for m in keep if m.replace("-", "_") not in kept | tree.builtin]
            ctx.report("kernel")
            shutil.copyfile(rootfs / "boot" / f"vmlinuz-{version}", ctx.out / "vmlinuz")
            for entry in (rootfs / "boot").iterdir():
                entry.unlink()
            ctx.report("initramfs")
            boot_loaded = [m for m in boot if m.replace("-", "_") in kept]
            initrd = initramfs(rootfs / "usr/bin/busybox", tree, version, boot_loaded)
            (ctx.out / "initrd.img").write_bytes(initrd)
            (rootfs / "etc" / "labctl" / "packages").write_text(
                "".join(f"{name} {version_}\n" for name, version_ in debs)
            )
            ctx.report("disk")
            make_disk(rootfs, work / "disk.raw", ctx.out / "disk.qcow2")
        finally:
            remove_tree(work)
        return None, {
            **boot_facts(self.arch, version),
            "packages": str(len(debs)),
            "modules": str(len(tree.deps)),
            "modules_absent": " ".join(missing),
        }

    def _unpack(self, rootfs: Path) -> list[tuple[str, str]]:
        """Unpack the packages; return (name, version) of every package that went in."""
        packages = _packages(self.arch.debian)
        return unpack(rootfs, self.arch.debian, packages, [RECIPE_DIR / "packages.txt"])


def unpack(
    target: Path, arch: str, packages: Sequence[str], lists: Sequence[Path] = ()
) -> list[tuple[str, str]]:
    """Unpack ``packages`` and their dependencies into ``target`` without running anything.

    No maintainer script runs (``mmdebstrap --variant=extract``), so no emulation is needed
    for a foreign architecture. Returns (name, version) of every package that went in; their
    ``.deb`` files stay in ``var/cache/apt/archives`` until the caller drops them.
    """
    mmdebstrap(
        target,
        arch=arch,
        packages=packages,
        variant="extract",
        extra_args=[f"--setup-hook={MERGED_USR_HOOK}", "--skip=cleanup/apt/cache"],
        lists=lists,
    )
    debs = []
    for deb in sorted((target / "var/cache/apt/archives").glob("*.deb")):
        name, version, _arch = deb.stem.split("_")
        debs.append((name, unquote(version)))
    if not debs:
        raise BuildError("mmdebstrap left no package list in var/cache/apt/archives")
    return debs


def kernel_version(rootfs: Path) -> str:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise BuildError(
            f"expected one kernel in the image's /boot, found {len(kernels)}",
            "images/vm/packages.txt must name exactly one linux-image package",
        )
    return kernels[0].name.removeprefix("vmlinuz-")


def _configure(rootfs: Path) -> None:
    """Do what the maintainer scripts would have done, the labctl way."""
    for pattern in _DROP:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    overlay = RECIPE_DIR / "rootfs"
    for src in sorted(overlay.rglob("*")):
        rel = src.relative_to(overlay)
        dest = rootfs / rel
        if src.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        shutil.copyfile(src, dest)
        mode, gid = _PRIVATE_FILES.get(rel.as_posix(), (0o644, 0))
        if os.access(src, os.X_OK) or rel.parts[:2] in (("etc", "labctl"), ("etc", "acpi")):
            mode = 0o755
        os.chown(dest, 0, gid)
        dest.chmod(mode)
    for entry in read_list(RECIPE_DIR / "links.txt"):
        name, target = entry.split()
        path = rootfs / name
        resolved = (path.parent / target).resolve()
        if target.startswith("/") or not (
            resolved.exists() or resolved.is_relative_to(rootfs.resolve() / "proc")
        ):
            raise BuildError(
                f"images/vm/links.txt: /{name} -> {target} would point nowhere in the image",
                "use a relative target that one of images/vm/packages.txt provides",
            )
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)
    for name in ("usr/bin/busybox", "usr/bin/dash", "usr/sbin/sshd", "usr/bin/bash"):
        if not (rootfs / name).is_file():
            raise BuildError(f"the VM image has no /{name}", "check images/vm/packages.txt")
    (rootfs / "etc/machine-id").write_text("")  # empty: each clone gets its own
    (rootfs / "etc/resolv.conf").write_text("")  # mmdebstrap copied the build host's
    (rootfs / "root").mkdir(mode=0o700, exist_ok=True)
    for stale in (rootfs / "etc/ssh").glob("ssh_host_*"):
        stale.unlink()
    run(["ssh-keygen", "-A", "-f", rootfs], error=BuildError, hint="install openssh-client")


def initramfs(busybox: Path, tree: ModuleTree, version: str, boot: Sequence[str]) -> bytes:
    """gzip'ed newc cpio: ``busybox`` (static, of the image's architecture), modules, /init."""
    raw = io.BytesIO()
    cpio = Cpio(raw)
    for d in ("dev", "proc", "sys", "run", "tmp", "newroot", "etc", "sbin"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.file("init", (RECIPE_DIR / "initramfs-init").read_bytes(), 0o755)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.symlink("sbin/modprobe", "../bin/busybox")  # the kernel's request_module helper
    cpio.file("etc/modules-boot", "".join(f"{m}\n" for m in boot).encode())
    moddir = f"lib/modules/{version}"
    for index in ("modules.dep", "modules.alias", "modules.builtin"):
        source = tree.root / index
        if source.is_file():
            cpio.file(f"{moddir}/{index}", source.read_bytes())
    for path in tree.deps:
        cpio.file(f"{moddir}/{path}", (tree.root / path).read_bytes())
    cpio.close()
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def make_disk(rootfs: Path, raw: Path, qcow2: Path) -> None:
    """ext4 filled from ``rootfs`` (no mounts needed), converted to compressed qcow2."""
    with raw.open("wb") as fh:
        fh.truncate(DISK_SIZE)
    run(
        ["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", rootfs, "-E", "root_owner=0:0", raw],
        error=BuildError,
        hint="install e2fsprogs >= 1.43 (mkfs.ext4 -d)",
    )
    # -c: the cached base only ever serves reads (guests write to their own overlays)
    run(["qemu-img", "convert", "-c", "-O", "qcow2", raw, qcow2], error=BuildError)
    raw.unlink()


def recipes() -> list[Recipe]:
    """Both tiny VM images."""
    return [VmImage("amd64"), VmImage("arm64")]
