"""Container images, built from Debian packages because no image registry is reachable.

``system-rootfs`` is a Debian tree with systemd and sshd, packed as a tarball; ``lxd-system``
imports it into LXD/Incus as ``labctl/system``. ``docker-base`` is a small Debian imported
into Docker; ``docker-app`` is the lab's web app built on top of it. Whatever a build puts
into an engine is removed again if the build fails.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shlex
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pylxd.exceptions import NotFound

from labctl import docker_client, lxd_client
from labctl.errors import BuildError, EngineError
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

LXD_ALIAS = "labctl/system"
BASE_REPO = "labctl/debian-base"
APP_REPO = "labctl/webapp"


# --- Debian root filesystems -------------------------------------------------------------


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
        mmdebstrap(tar, arch=ARCH, packages=packages, extra_args=extra)
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


def _dep_manifest(ctx: BuildContext, name: str) -> Manifest:
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


# --- LXD ---------------------------------------------------------------------------------


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
        rootfs_manifest = _dep_manifest(ctx, "system-rootfs")
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
        except (EngineError, NotFound):
            return False
        return bool(alias.get("target") == manifest.engine_ref)

    def forget(self, manifest: Manifest) -> None:
        """Delete the image from LXD (containers made from it keep their own copy)."""
        if manifest.engine_ref:
            lxd_client.delete_image(lxd_client.connect(), manifest.engine_ref)


# --- Docker ------------------------------------------------------------------------------


def _docker_present(manifest: Manifest, repo: str) -> bool:
    if not manifest.engine_ref:
        return False
    try:
        client = docker_client.connect()
        return docker_client.image_id(client, f"{repo}:{manifest.recipe_hash}") == (
            manifest.engine_ref
        )
    except EngineError:
        return False


def _import_result(text: str) -> str:
    """The image id from the JSON lines ``POST /images/create`` answers an import with."""
    image_id = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg.get("error"):
            raise EngineError(f"Docker refused to import the base image: {msg['error']}")
        status = str(msg.get("status", ""))
        if re.fullmatch(r"(sha256:)?[0-9a-f]{64}", status):
            image_id = status if status.startswith("sha256:") else f"sha256:{status}"
    if not image_id:
        raise EngineError(f"Docker's import answer names no image: {text.strip()[:200]}")
    return image_id


class DockerBase(Recipe):
    """A small Debian imported into Docker: the base of the lab's application images."""

    name = "docker-base"
    description = f"Debian bookworm minbase + busybox in Docker ({BASE_REPO}:<hash>)"
    recipe_dir = "docker/base"
    code_deps = ("labctl.images.debian",)

    def inputs(self) -> Mapping[str, object]:
        """Suite and architecture; the package list and hook are recipe files."""
        return {"suite": SUITE, "arch": ARCH, "gzip": GZIP_LEVEL}

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        """Build the rootfs tarball and ``docker import`` it; engine_ref is the image id."""
        client = docker_client.connect()  # fail before minutes of mmdebstrap
        tarball = ctx.out / ROOTFS
        # mmdebstrap deletes /usr/sbin/policy-rc.d at the end unless told not to manage it;
        # customize.sh writes the one the image keeps (minbase + busybox start no daemons).
        facts = build_rootfs(
            ctx, IMAGES_DIR / self.recipe_dir, tarball, ["--skip=chroot/policy-rc.d"]
        )
        ctx.report("docker import")
        changes = [
            f"LABEL labctl.image={self.name} labctl.recipe={ctx.recipe_hash}",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["/bin/bash"]',
        ]
        with docker_client.engine_errors("import the base image"):
            answer = client.api.import_image(
                src=str(tarball), repository=BASE_REPO, tag=ctx.recipe_hash, changes=changes
            )
        image_id = _import_result(answer if isinstance(answer, str) else answer.decode())
        tag = f"{BASE_REPO}:{ctx.recipe_hash}"
        try:
            found = docker_client.image_id(client, tag)
            if found != image_id:
                raise BuildError(f"{tag} is {found}, but the import made {image_id}")
            size = str(client.images.get(image_id).attrs.get("Size", ""))
        except BaseException:
            docker_client.remove_image(client, image_id, BASE_REPO)
            raise
        return image_id, {**facts, "tag": tag, "docker_size_bytes": size}

    def present(self, manifest: Manifest) -> bool:
        """The image is in the engine under its hash tag."""
        return _docker_present(manifest, BASE_REPO)

    def forget(self, manifest: Manifest) -> None:
        """Untag and delete the image."""
        if manifest.engine_ref:
            docker_client.remove_image(docker_client.connect(), manifest.engine_ref, BASE_REPO)


_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_LAYER = re.compile(r"^ ---> ([0-9a-f]{12,64})$")
_BUILT = re.compile(r"^Successfully built ([0-9a-f]{12,64})$")


class DockerApp(Recipe):
    """The lab's web app: busybox httpd with a page and a CGI script, on ``docker-base``."""

    name = "docker-app"
    description = f"web app image in Docker ({APP_REPO}:<hash> and :latest), port 8080"
    needs = ("docker-base",)
    recipe_dir = "docker/app"

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        """``docker build`` the app FROM the base; engine_ref is the image id."""
        app_dir = IMAGES_DIR / self.recipe_dir
        base = _dep_manifest(ctx, "docker-base")
        base_tag = f"{BASE_REPO}:{base.recipe_hash}"
        client = docker_client.connect()
        if docker_client.image_id(client, base_tag) != base.engine_ref:
            raise BuildError(
                f"the base image {base_tag} is not in the engine",
                "rebuild it: labctl images build docker-base",
            )
        version = (app_dir / "VERSION").read_text().strip()
        tag = f"{APP_REPO}:{ctx.recipe_hash}"
        log: list[str] = []
        layers: list[str] = []
        image_id = ""
        try:
            ctx.report("docker build")
            with docker_client.engine_errors(f"build {tag}"):
                for line in self._build_lines(client, app_dir, tag, base_tag, version, ctx):
                    log.append(line)
                    if m := _LAYER.match(line):
                        layers.append(m.group(1))
                    elif m := _BUILT.match(line):
                        image_id = m.group(1)
            found = docker_client.image_id(client, tag)
            if not found or not found.removeprefix("sha256:").startswith(image_id):
                raise BuildError(f"docker build finished, but {tag} is {found or 'missing'}")
            image_id = found
            ctx.report("tag latest")
            with docker_client.engine_errors(f"tag {APP_REPO}:latest"):
                client.api.tag(image_id, APP_REPO, "latest", force=True)
            size = str(client.images.get(image_id).attrs.get("Size", ""))
        except BaseException:
            # Intermediate images of this build; ones shared with cached builds are refused.
            base_hex = (base.engine_ref or "").removeprefix("sha256:")
            for ref in reversed([*layers, image_id]):
                if ref and not base_hex.startswith(ref.removeprefix("sha256:")):
                    docker_client.remove_image(client, ref, APP_REPO)
            raise
        finally:
            (ctx.out / "build.log").write_text("\n".join(log) + "\n")
        return image_id, {
            "tag": tag,
            "latest": f"{APP_REPO}:latest",
            "base": base_tag,
            "app_version": version,
            "docker_size_bytes": size,
        }

    @staticmethod
    def _build_lines(
        client: Any, app_dir: Path, tag: str, base_tag: str, version: str, ctx: BuildContext
    ) -> Iterator[str]:
        stream = client.api.build(
            path=str(app_dir),
            tag=tag,
            buildargs={"BASE": base_tag, "APP_VERSION": version},
            labels={"labctl.image": "docker-app", "labctl.recipe": ctx.recipe_hash},
            rm=True,  # Podman: hidden build containers would block image removal
            forcerm=True,
            pull=False,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise BuildError(f"docker build of {tag} failed: {str(detail).strip()}")
            for line in str(chunk.get("stream", "")).splitlines():
                if m := _STEP.match(line):
                    ctx.report(f"docker build step {m.group(1)}/{m.group(2)}")
                yield line

    def present(self, manifest: Manifest) -> bool:
        """The image is in the engine under its hash tag."""
        return _docker_present(manifest, APP_REPO)

    def forget(self, manifest: Manifest) -> None:
        """Untag (``:hash`` and ``:latest`` if it is this one) and delete the image."""
        if manifest.engine_ref:
            docker_client.remove_image(docker_client.connect(), manifest.engine_ref, APP_REPO)


def recipes() -> list[Recipe]:
    """The container images, dependencies first."""
    return [SystemRootfs(), LxdSystem(), DockerBase(), DockerApp()]
