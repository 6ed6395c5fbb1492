"""VM images ``vm-amd64`` and ``vm-arm64``: complete Debian systems, booted directly.

A Debian ``minbase`` with systemd, udev, OpenSSH, sudo, apt and python3, installed by
mmdebstrap with every maintainer script run (on arm64 through qemu-user, one program at a
time: nothing boots under emulation while building). The kernel is Debian's, unpacked beside
the rootfs rather than installed (its postinst would build a 36 MB initramfs, for minutes
under emulation); its modules go into the image and a small busybox initramfs
(:mod:`labctl.images.vm`, shared with the tiny images) finds the root disk and hands over to
systemd.

Artifacts and kernel command line are the same as the tiny images' (``disk.qcow2``,
``vmlinuz``, ``initrd.img``; :func:`labctl.images.vm.kernel_cmdline`): per-guest settings are
applied at boot by ``/usr/local/sbin/labctl-setup`` and the guest prints ``LABCTL-READY`` on
its console once sshd runs. The serial console has a login prompt.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

from labctl.errors import BuildError
from labctl.images import vm
from labctl.images.cache import remove_tree
from labctl.images.debian import SUITE, mmdebstrap, read_list
from labctl.images.initramfs import depmod, module_name, prune_modules
from labctl.images.recipe import BuildContext, Recipe
from labctl.paths import IMAGES_DIR

RECIPE_DIR = IMAGES_DIR / "vm-debian"
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")
PACKAGES = "packages.tsv"
#: QEMU firmware config entry a template boot reads its clone's settings from
CLONE_ENTRY = "opt/org.labctl/guest"


def _dropped_modules() -> list[str]:
    return read_list(RECIPE_DIR / "modules-drop.txt")


def _boot_files_digest() -> str:
    """The shared initramfs files (``images/vm/``) are part of this recipe too."""
    h = hashlib.sha256()
    for name in ("initramfs-init", "modules.txt"):
        h.update((vm.RECIPE_DIR / name).read_bytes())
    return h.hexdigest()[:16]


class DebianVmImage(Recipe):
    """A complete Debian guest (systemd, apt, sshd) for one architecture."""

    recipe_dir = "vm-debian"
    code_deps = ("labctl.images.vm", "labctl.images.debian", "labctl.images.initramfs")
    #: the packages mmdebstrap installs, one a line
    package_list = RECIPE_DIR / "packages.txt"

    def __init__(self, arch: str) -> None:
        self.arch = vm.find_arch(arch)
        self.name = f"vm-{arch}"
        self.description = (
            f"{self.arch.qemu} Debian {SUITE} VM: systemd, apt, sudo, OpenSSH, direct kernel boot"
        )

    def packages(self) -> list[str]:
        """The packages of ``package_list``."""
        return read_list(self.package_list)

    def inputs(self) -> Mapping[str, object]:
        """Architecture, package and module lists, and the shared initramfs files."""
        keep, boot = vm.boot_modules()
        return {
            "arch": self.arch.debian,
            "suite": SUITE,
            "packages": sorted(self.packages()),
            "modules_dropped": sorted(_dropped_modules()),
            "initramfs_modules": keep,
            "boot_modules": boot,
            "boot_files": _boot_files_digest(),
            "disk_size": vm.DISK_SIZE,
        }

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        """Kernel, root filesystem, initramfs and disk into ``ctx.out``."""
        work = ctx.out / ".work"
        kernel_tree, rootfs = work / "kernel", work / "rootfs"
        try:
            work.mkdir()
            ctx.report("kernel")
            # busybox-static (for the initramfs) comes along: one apt run instead of two
            vm.unpack(
                kernel_tree, self.arch.debian, [f"linux-image-{self.arch.debian}", "busybox-static"]
            )
            version = vm.kernel_version(kernel_tree)
            ctx.report(f"mmdebstrap ({len(self.packages())} packages)")
            self._install(rootfs, ctx.out / PACKAGES)
            ctx.report("modules")
            modules = _copy_modules(kernel_tree, rootfs, version)
            keep, boot = vm.boot_modules()
            tree = prune_modules(kernel_tree, version, keep)
            kept = {module_name(p) for p in tree.deps}
            ctx.report("initramfs")
            initrd = vm.initramfs(
                kernel_tree / "usr/bin/busybox",
                tree,
                version,
                [m for m in boot if m.replace("-", "_") in kept],
            )
            (ctx.out / "initrd.img").write_bytes(initrd)
            shutil.copyfile(kernel_tree / "boot" / f"vmlinuz-{version}", ctx.out / "vmlinuz")
            installed = (ctx.out / PACKAGES).read_text().splitlines()
            ctx.report("disk")
            vm.make_disk(rootfs, work / "disk.raw", ctx.out / "disk.qcow2")
        finally:
            remove_tree(work)
        return None, {
            **vm.boot_facts(self.arch, version),
            "init": "systemd",
            # a template boot waits for its clone's settings in this QEMU firmware config entry
            # (images/vm-debian/rootfs/usr/local/sbin/labctl-clone)
            "clone_entry": CLONE_ENTRY,
            "packages": str(len(installed)),
            "modules": str(modules),
        }

    def _install(self, rootfs: Path, package_list: Path) -> None:
        """mmdebstrap the packages (maintainer scripts run), then ``customize.sh``.

        Leaves the installed packages and versions (one a line) in ``package_list``.
        """
        listing = shlex.quote(str(package_list))
        hooks = [
            f'sh {shlex.quote(str(RECIPE_DIR / "customize.sh"))} "$1"',
            "chroot \"$1\" dpkg-query -W -f='${Package}\\t${Version}\\n' > " + listing,
        ]
        extra = [f"--hook-dir={MERGED_USR_HOOKS}"] if MERGED_USR_HOOKS.is_dir() else []
        mmdebstrap(
            rootfs,
            arch=self.arch.debian,
            packages=self.packages(),
            lists=[self.package_list],
            extra_args=[*extra, *(f"--customize-hook={hook}" for hook in hooks)],
        )
        if not (rootfs / "usr/lib/systemd/systemd").is_file():
            raise BuildError(
                f"the {self.name} image has no systemd", f"check images/{self.recipe_dir}/"
            )


def _copy_modules(kernel_tree: Path, rootfs: Path, version: str) -> int:
    """Copy the kernel's modules into the image, minus ``modules-drop.txt``; index them."""
    source = kernel_tree / "usr/lib/modules" / version
    target = rootfs / "usr/lib/modules" / version
    dropped = {source / "kernel" / d for d in _dropped_modules()}

    def ignore(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if Path(directory) / n in dropped]

    shutil.copytree(source, target, symlinks=True, ignore=ignore)
    return len(depmod(rootfs, version).deps)


def recipes() -> list[Recipe]:
    """Both Debian VM images."""
    return [DebianVmImage("amd64"), DebianVmImage("arm64")]
