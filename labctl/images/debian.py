"""Debian root filesystems from the package mirror, with mmdebstrap."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from labctl.errors import BuildError
from labctl.procs import run

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

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


def sources() -> list[str]:
    """The apt sources images are built from and keep, as a Debian host's own: the release,
    its point-release updates and its security fixes. ``LABCTL_SECURITY_MIRROR`` names the
    security archive ("" for none); with a ``LABCTL_MIRROR`` of its own (a local mirror for
    an offline classroom) there is none unless it is named too."""
    main = mirror()
    fallback = DEFAULT_SECURITY_MIRROR if main == DEFAULT_MIRROR else ""
    security = os.environ.get("LABCTL_SECURITY_MIRROR", fallback)
    lines = [f"deb {main} {SUITE} main", f"deb {main} {SUITE}-updates main"]
    if security:
        lines.append(f"deb {security} {SUITE}-security main")
    return lines


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
    lists: Sequence[Path] = (),
) -> None:
    """Create a Debian ``SUITE`` tree (or tarball, by ``target``'s suffix) for ``arch``.

    ``variant="extract"`` unpacks the packages and their dependencies without running any
    maintainer script: no emulation is needed for a foreign architecture. A package apt does
    not know is named with the line of ``lists`` (the recipe's package lists) that asks for it.
    """
    args: list[str] = [
        "mmdebstrap",
        f"--variant={variant}",
        f"--architectures={arch}",
        "--mode=root",  # not --quiet: apt's own error names the package it cannot find
        "--aptopt=Acquire::Retries 3",
    ]
    for pattern in SLIM_EXCLUDES:
        args.append(f"--dpkgopt=path-exclude={pattern}")
    for pattern in SLIM_KEEP:
        args.append(f"--dpkgopt=path-include={pattern}")
    pkgs = sorted(set(packages))
    if pkgs:
        args.append("--include=" + ",".join(pkgs))
    args += [*extra_args, SUITE, str(target), *sources()]
    try:
        run(
            args,
            timeout=timeout,
            error=BuildError,
            hint="check that the Debian mirror is reachable (LABCTL_MIRROR sets another one)",
        )
    except BuildError as exc:
        unknown = unknown_packages(exc.message)
        if not unknown:
            raise
        where = [where_listed(name, arch, lists) for name in unknown]
        raise BuildError(
            "; ".join(
                f"{w}: no package {n!r} in Debian {SUITE} for {arch}"
                for n, w in zip(unknown, where, strict=True)
            ),
            "fix the name (apt-cache search shows what exists); nothing was built and the "
            "image built before, if any, stays in use",
        ) from exc


#: apt's words for a package it cannot install at all
_UNKNOWN = (
    re.compile(r"Unable to locate package (\S+)"),
    re.compile(r"Package '([^']+)' has no installation candidate"),
)


def unknown_packages(output: str) -> list[str]:
    """Packages apt said it cannot find, in the order it said so."""
    found: list[str] = []
    for pattern in _UNKNOWN:
        found += [m for m in pattern.findall(output) if m not in found]
    return found


def where_listed(name: str, arch: str, lists: Sequence[Path]) -> str:
    """``FILE:LINE`` of the package list line naming ``name`` (``{arch}`` expanded), or the name."""
    for path in lists:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            entry = line.split("#", 1)[0].strip().replace("{arch}", arch)
            if entry == name:
                return f"{path}:{number}"
    return name
