"""Debian root filesystems from the package mirror, with mmdebstrap."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from labctl.errors import BuildError
from labctl.procs import run

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

#: Paths dropped from every rootfs we build: documentation and translations.
SLIM_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
)
SLIM_KEEP = ("/usr/share/doc/*/copyright",)


def mirror() -> str:
    """Debian mirror; ``LABCTL_MIRROR`` overrides it (a local mirror for offline classrooms)."""
    return os.environ.get("LABCTL_MIRROR", DEFAULT_MIRROR)


def read_list(path: Path) -> list[str]:
    """Read a package or module list: one name a line, ``#`` comments."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


def mmdebstrap(
    target: Path,
    *,
    arch: str,
    packages: Iterable[str],
    variant: str = "minbase",
    extra_args: Sequence[str] = (),
    timeout: float = 1800,
) -> None:
    """Create a Debian ``SUITE`` tree (or tarball, by ``target``'s suffix) for ``arch``.

    ``variant="extract"`` unpacks the packages and their dependencies without running any
    maintainer script: no emulation is needed for a foreign architecture.
    """
    args: list[str] = [
        "mmdebstrap",
        f"--variant={variant}",
        f"--architectures={arch}",
        "--mode=root",
        "--quiet",
        "--aptopt=Acquire::Retries 3",
    ]
    for pattern in SLIM_EXCLUDES:
        args.append(f"--dpkgopt=path-exclude={pattern}")
    for pattern in SLIM_KEEP:
        args.append(f"--dpkgopt=path-include={pattern}")
    pkgs = sorted(set(packages))
    if pkgs:
        args.append("--include=" + ",".join(pkgs))
    args += [*extra_args, SUITE, str(target), mirror()]
    run(
        args,
        timeout=timeout,
        error=BuildError,
        hint="check that the Debian mirror is reachable (LABCTL_MIRROR sets another one)",
    )
