"""The system container image in LXD or Incus: ``system-rootfs`` imported as ``labctl/system``.

Whatever a build puts into the engine is removed again if the build fails.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from labctl import lxd_client
from labctl.errors import BuildError, NotFoundError
from labctl.images.containers.rootfs import ARCH, ROOTFS, dep_manifest
from labctl.images.recipe import BuildContext, Manifest, Recipe
from labctl.paths import IMAGES_DIR

LXD_ALIAS = "labctl/system"


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def write_lxd_metadata(
    target: Path, recipe_dir: Path, *, created: int, properties: Mapping[str, str]
) -> dict[str, Any]:
    """Write LXD's metadata tarball (``metadata.yaml`` + ``templates/``); return the metadata.

    Same inputs give the same bytes, hence the same image fingerprint: a rebuild of an
    unchanged image finds it already in LXD.
    """
    meta: dict[str, Any] = yaml.safe_load((recipe_dir / "metadata.yaml").read_text())
    meta["architecture"] = "x86_64"
    meta["creation_date"] = created
    meta["properties"] = {**meta.get("properties", {}), "architecture": ARCH, **properties}
    templates = sorted((recipe_dir / "templates").glob("*.tpl"))
    with (
        target.open("wb") as raw,
        gzip.GzipFile("", "wb", 9, raw, mtime=0) as gz,  # no name, no time: same bytes
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        _tar_add(tar, "metadata.yaml", yaml.safe_dump(meta, sort_keys=True).encode())
        for tpl in templates:
            _tar_add(tar, f"templates/{tpl.name}", tpl.read_bytes())
    return meta


def lxd_fingerprint(*parts: Path) -> str:
    """LXD's fingerprint of a split image: sha256 over the metadata, then the rootfs tarball."""
    h = hashlib.sha256()
    for part in parts:
        with part.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class LxdSystem(Recipe):
    """The system container image in LXD/Incus, alias ``labctl/system``."""

    name = "lxd-system"
    description = f"system container image in LXD/Incus (alias {LXD_ALIAS})"
    needs = ("system-rootfs",)
    recipe_dir = "container/lxd"

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        """Import metadata + the rootfs tarball into LXD; engine_ref is the fingerprint."""
        rootfs_manifest = dep_manifest(ctx, "system-rootfs")
        rootfs = ctx.deps["system-rootfs"] / ROOTFS
        ctx.report("metadata")
        metadata = ctx.out / "metadata.tar.gz"
        created = int(datetime.fromisoformat(rootfs_manifest.built_at).timestamp())
        props = {"labctl.image": self.name, "labctl.recipe": ctx.recipe_hash}
        meta = write_lxd_metadata(
            metadata, IMAGES_DIR / self.recipe_dir, created=created, properties=props
        )
        fingerprint = lxd_fingerprint(metadata, rootfs)
        client = lxd_client.connect()
        created_now = False
        with lxd_client.engine_errors("check the image list"):
            exists = client.images.exists(fingerprint)
        if not exists:
            ctx.report(f"import into {lxd_client.server_name(client)}")
            with (
                metadata.open("rb") as m,
                rootfs.open("rb") as r,
                lxd_client.engine_errors("import the system container image"),
            ):
                image = client.images.create(r, metadata=m)
            created_now = True
            if image.fingerprint != fingerprint:
                lxd_client.delete_image(client, image.fingerprint)
                raise BuildError(
                    f"LXD computed fingerprint {image.fingerprint}, expected {fingerprint}"
                )
        try:
            ctx.report(f"alias {LXD_ALIAS}")
            lxd_client.point_alias(
                client, LXD_ALIAS, fingerprint, meta["properties"]["description"]
            )
        except BaseException:
            if created_now:
                lxd_client.delete_image(client, fingerprint)
            raise
        return fingerprint, {
            "alias": LXD_ALIAS,
            "server": lxd_client.server_name(client),
            "creation_date": str(created),
        }

    def present(self, manifest: Manifest) -> bool:
        """The image is in LXD and the alias names it."""
        if not manifest.engine_ref:
            return False
        try:
            client = lxd_client.connect()
            with lxd_client.engine_errors("read the image alias"):
                alias = client.api.images.aliases[LXD_ALIAS].get().json()["metadata"]
        except NotFoundError:  # no alias, no image; a daemon down is said as such
            return False
        return bool(alias.get("target") == manifest.engine_ref)

    def forget(self, manifest: Manifest) -> None:
        """Delete the image from LXD (containers made from it keep their own copy)."""
        if manifest.engine_ref:
            lxd_client.delete_image(lxd_client.connect(), manifest.engine_ref)
