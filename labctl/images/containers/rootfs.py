"""Debian root filesystems for the container images, built from packages with mmdebstrap.

``system-rootfs`` is a Debian tree with systemd and sshd, packed as a tarball, that the
system container image (:mod:`labctl.images.containers.lxd`) imports; the Docker base image
(:mod:`labctl.images.containers.docker`) is built the same way.
"""

from __future__ import annotations

import gzip
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from labctl.images.debian import SUITE, mmdebstrap, read_list
from labctl.images.recipe import MANIFEST, BuildContext, Manifest, Recipe
from labctl.paths import IMAGES_DIR

ARCH = "amd64"
ROOTFS = "rootfs.tar.gz"
PACKAGES = "packages.tsv"
#: Docker 20.10 cannot import zstd and xz is ~20x slower: gzip -1 is the fastest format
#: both engines read (126 MB of tar: gzip -1 1.7 s, gzip -6 4.2 s, 10% smaller).
GZIP_LEVEL = 1
#: merged-/usr without installing usrmerge, which would drag ~50 MB of Perl into the images.
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")


def build_rootfs(
    ctx: BuildContext, recipe_dir: Path, target: Path, mmdebstrap_args: Sequence[str] = ()
) -> dict[str, str]:
    """mmdebstrap ``recipe_dir``'s packages, apply its ``customize.sh``, gzip to ``target``.

    Also leaves ``packages.tsv`` (package and version, one a line) next to ``target``.
    """
    packages = read_list(recipe_dir / "packages.txt")
    script = recipe_dir / "customize.sh"
    # Scratch space inside the build directory: on the cache disk (the tar is ~200 MB, /tmp
    # may be RAM) and removed with it if the build dies.
    with tempfile.TemporaryDirectory(prefix=".work-", dir=ctx.out) as tmp_name:
        tmp = Path(tmp_name)
        tar = tmp / "rootfs.tar"
        hooks = [
            f'sh {shlex.quote(str(script))} "$1"',
            "chroot \"$1\" dpkg-query -W -f='${Package}\\t${Version}\\n' > "
            + shlex.quote(str(target.parent / PACKAGES)),
            'cat "$1/etc/debian_version" > ' + shlex.quote(str(tmp / "debian_version")),
        ]
        extra = [f"--hook-dir={MERGED_USR_HOOKS}"] if MERGED_USR_HOOKS.is_dir() else []
        extra += [*mmdebstrap_args, *(f"--customize-hook={hook}" for hook in hooks)]
        ctx.report(f"mmdebstrap ({len(packages)} packages)")
        mmdebstrap(
            tar,
            arch=ARCH,
            packages=packages,
            extra_args=extra,
            lists=[recipe_dir / "packages.txt"],
        )
        ctx.report("compress")
        with (
            tar.open("rb") as src,
            target.open("wb") as raw,
            gzip.GzipFile("", "wb", GZIP_LEVEL, raw, mtime=0) as dst,
        ):
            shutil.copyfileobj(src, dst, 1 << 20)
        return {
            "suite": SUITE,
            "arch": ARCH,
            "debian_version": (tmp / "debian_version").read_text().strip(),
            "unpacked_bytes": str(tar.stat().st_size),
            "packages": str(len((target.parent / PACKAGES).read_text().splitlines())),
        }


def dep_manifest(ctx: BuildContext, name: str) -> Manifest:
    return Manifest.from_file(ctx.deps[name] / MANIFEST)


class SystemRootfs(Recipe):
    """Debian with systemd, sshd and ifupdown: the root filesystem of the system container."""

    name = "system-rootfs"
    description = "Debian bookworm rootfs with systemd and sshd, for the LXD system container"
    recipe_dir = "container/rootfs"
    code_deps = ("labctl.images.debian",)

    def inputs(self) -> Mapping[str, object]:
        """Suite and architecture; the package list and hook are recipe files."""
        return {"suite": SUITE, "arch": ARCH, "gzip": GZIP_LEVEL}

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        """Leave ``rootfs.tar.gz`` and ``packages.tsv`` in the cache."""
        return None, build_rootfs(ctx, IMAGES_DIR / self.recipe_dir, ctx.out / ROOTFS)
