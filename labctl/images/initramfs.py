"""The pieces of a tiny initramfs: kernel module sets from ``modules.dep`` and a newc cpio writer.

Written in Python so a build needs no ``cpio`` on the host and can put a ``/dev/console`` node
into the archive without creating device files on disk.
"""

from __future__ import annotations

import gzip
import lzma
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from labctl.errors import BuildError
from labctl.procs import run

_DECOMPRESS = {".xz": lzma.decompress, ".gz": gzip.decompress}


def module_name(path: str) -> str:
    """``kernel/drivers/ata/pata-foo.ko.xz`` -> ``pata_foo`` (the name modprobe and lsmod use)."""
    base = PurePosixPath(path).name
    return base.split(".ko", 1)[0].replace("-", "_")


@dataclass(frozen=True)
class ModuleTree:
    """``/lib/modules/<version>`` of a kernel, read through its ``modules.dep``."""

    root: Path
    deps: dict[str, tuple[str, ...]]  # module path (relative to root) -> paths it needs
    builtin: frozenset[str]  # names compiled into the kernel

    @classmethod
    def read(cls, root: Path) -> ModuleTree:
        """Parse ``modules.dep`` and ``modules.builtin`` under ``root``."""
        deps: dict[str, tuple[str, ...]] = {}
        for line in (root / "modules.dep").read_text().splitlines():
            if ":" in line:
                path, _, rest = line.partition(":")
                deps[path.strip()] = tuple(rest.split())
        builtin_file = root / "modules.builtin"
        builtin = (
            frozenset(module_name(p) for p in builtin_file.read_text().split())
            if builtin_file.is_file()
            else frozenset()
        )
        return cls(root, deps, builtin)

    def path_of(self, name: str) -> str | None:
        """Relative path of module ``name`` (``-`` and ``_`` are the same), or None."""
        wanted = name.replace("-", "_")
        for path in self.deps:
            if module_name(path) == wanted:
                return path
        return None

    def closure(self, names: Iterable[str]) -> list[str]:
        """Paths of ``names`` and everything they depend on, each after its dependencies."""
        order: list[str] = []

        def visit(path: str) -> None:
            if path in order:
                return
            for dep in self.deps.get(path, ()):
                visit(dep)
            order.append(path)

        for name in names:
            path = self.path_of(name)
            if path is not None:
                visit(path)
        return order


def depmod(rootfs: Path, version: str) -> ModuleTree:
    """Run the host's ``depmod`` on the modules of ``version`` inside ``rootfs``."""
    run(
        ["depmod", "-b", rootfs, version],
        error=BuildError,
        hint="install kmod on the host (apt-get install kmod): it provides depmod",
    )
    return ModuleTree.read(rootfs / "lib" / "modules" / version)


def prune_modules(rootfs: Path, version: str, wanted: Iterable[str]) -> ModuleTree:
    """Keep only ``wanted`` modules and their dependencies, uncompressed, indexed by depmod.

    Compressed modules (``.ko.xz``, ``.ko.gz``) are unpacked: busybox's insmod in the initramfs
    reads plain ``.ko`` files only.
    """
    tree = depmod(rootfs, version)
    keep = set(tree.closure(wanted))
    for path in tree.deps:
        if path not in keep:
            (tree.root / path).unlink()
    for path in keep:
        src = tree.root / path
        if src.suffix == ".ko":
            continue
        if src.suffix not in _DECOMPRESS:
            raise BuildError(f"{path}: kernel modules compressed as {src.suffix} are not supported")
        src.with_suffix("").write_bytes(_DECOMPRESS[src.suffix](src.read_bytes()))
        src.unlink()
    kernel_dir = tree.root / "kernel"
    for directory in sorted(kernel_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return depmod(rootfs, version)


class Cpio:
    """Writes a ``newc`` cpio archive (the format the kernel unpacks into its rootfs)."""

    _DIR, _FILE, _LINK, _CHR = 0o040000, 0o100000, 0o120000, 0o020000

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._ino = 1
        self._dirs: set[str] = {""}

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        name = name.strip("/")
        self._parents(name)
        encoded = name.encode() + b"\0"
        fields = (
            self._ino,
            mode,
            0,
            0,
            2 if mode & self._DIR == self._DIR else 1,
            0,
            len(data),
            0,
            0,
            rdev[0],
            rdev[1],
            len(encoded),
            0,
        )
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        self._write(header + encoded)
        self._write(data)

    def _write(self, data: bytes) -> None:
        self._fh.write(data)
        self._fh.write(b"\0" * (-len(data) % 4))

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dir("/".join(parts[:i]))

    def dir(self, name: str, mode: int = 0o755) -> None:
        """Add a directory (once; parents are added as needed)."""
        name = name.strip("/")
        if name in self._dirs:
            return
        self._dirs.add(name)
        self._entry(name, self._DIR | mode)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        """Add a regular file."""
        self._entry(name, self._FILE | mode, data)

    def symlink(self, name: str, target: str) -> None:
        """Add a symbolic link."""
        self._entry(name, self._LINK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        """Add a character device node."""
        self._entry(name, self._CHR | mode, rdev=(major, minor))

    def close(self) -> None:
        """Write the trailer (the file object stays open)."""
        self._entry("TRAILER!!!", 0)
