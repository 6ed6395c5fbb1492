"""The optional VM image ``vm-s390x``: a Debian guest for QEMU's mainframe machine.

IBM Z is the lesson's example of pure paravirtualization (z/VM): the guest does its I/O
through the channel subsystem, an interface Linux on Z is built for, and QEMU's
``s390-ccw-virtio`` machine hangs its virtio devices on that subsystem (virtio-ccw). The image
is built exactly like ``vm-arm64`` (:class:`labctl.images.vm_debian.DebianVmImage`: mmdebstrap
with every maintainer script run through qemu-user, Debian's kernel unpacked beside the
rootfs, the shared busybox initramfs and boot contract of :mod:`labctl.images.vm`); only its
package list is its own (``images/vm-s390x/packages.txt``: no dmidecode or pciutils, plus
s390-tools for ``lscss``).

Optional: no lab under ``labs/*/lab.yaml`` names it, so ``labctl images build`` and the test
session's images leave it alone; ``labctl images build vm-s390x`` builds it, as
``tests/integration/test_s390x.py`` does under CI.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from labctl.images import vm
from labctl.images.vm_debian import RECIPE_DIR, DebianVmImage
from labctl.paths import IMAGES_DIR

#: s390x as Debian, QEMU and the kernel name it; its console is the SCLP line-mode terminal.
S390X = vm.Arch("s390x", "s390x", "ttysclp0")
# The boot contract (labctl.images.vm.kernel_cmdline) looks the console up by architecture.
vm.ARCHES.setdefault(S390X.debian, S390X)

OWN_DIR = IMAGES_DIR / "vm-s390x"


class S390xVmImage(DebianVmImage):
    """A complete Debian guest (systemd, sshd, s390-tools) for the s390-ccw-virtio machine."""

    recipe_dir = "vm-s390x"
    package_list = OWN_DIR / "packages.txt"
    # its build is DebianVmImage's: that module's source is part of this recipe too
    code_deps = (*DebianVmImage.code_deps, "labctl.images.vm_debian")  # type: ignore[assignment]
    optional = True

    def __init__(self) -> None:
        super().__init__(S390X.debian)
        self.description = (
            "s390x Debian VM for QEMU's s390-ccw-virtio machine (virtio on the channel "
            "subsystem): optional, built only when named"
        )

    def inputs(self) -> Mapping[str, object]:
        """The Debian VM's inputs with this image's own package list, and the shared files."""
        shared = sorted(p for p in RECIPE_DIR.rglob("*") if p.is_file() and p.name != "README.md")
        return {
            **super().inputs(),
            # the guest configuration (customize.sh, rootfs/) is vm-debian's
            "vm_debian_files": {
                str(p.relative_to(RECIPE_DIR)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in shared
            },
        }


def recipes() -> list[S390xVmImage]:
    """The optional mainframe image."""
    return [S390xVmImage()]
