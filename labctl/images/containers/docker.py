"""Application container images in Docker: a small Debian base and the lab's app.

``docker-base`` is a Debian minbase imported into the engine (no registry is reachable);
``docker-app`` is the lab's web app built on top of it. Whatever a build puts into the
engine is removed again if the build fails. The recipes speak Docker's API to the engine
their ``api`` names, so Podman's images (``.podman``) are these with another engine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from labctl import docker_client
from labctl.docker_client import DOCKER, ApiEngine
from labctl.errors import BuildError, EngineError
from labctl.images.containers.rootfs import ARCH, GZIP_LEVEL, ROOTFS, build_rootfs, dep_manifest
from labctl.images.debian import SUITE
from labctl.images.recipe import BuildContext, Manifest, Recipe
from labctl.paths import IMAGES_DIR

BASE_REPO = "labctl/debian-base"
APP_REPO = "labctl/webapp"


def _docker_present(manifest: Manifest, repo: str, api: ApiEngine) -> bool:
    if not manifest.engine_ref:
        return False
    # an engine that does not answer is said as such (EngineError), never taken for "missing"
    client = docker_client.connect(engine=api)
    tag = f"{repo}:{manifest.recipe_hash}"
    return docker_client.image_id(client, tag, api) == manifest.engine_ref


def _import_result(text: str, api: ApiEngine = DOCKER) -> str:
    """The image id from the JSON lines ``POST /images/create`` answers an import with."""
    image_id = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg.get("error"):
            raise EngineError(f"{api.name} refused to import the base image: {msg['error']}")
        status = str(msg.get("status", ""))
        if re.fullmatch(r"(sha256:)?[0-9a-f]{64}", status):
            image_id = status if status.startswith("sha256:") else f"sha256:{status}"
    if not image_id:
        raise EngineError(f"{api.name}'s import answer names no image: {text.strip()[:200]}")
    return image_id


def _name_import(client: Any, image_id: str, tag: str, api: ApiEngine) -> None:
    """Give an imported base image the tag asked for, and only that name.

    Podman 4.3's import ignores the tag and names the image ``<repo>:latest``; Docker's
    import has already done it right and nothing changes.
    """
    wanted = f"{BASE_REPO}:{tag}"
    with docker_client.engine_errors(f"tag {wanted}", api):
        names = client.images.get(image_id).tags
        if not any(docker_client.bare_name(n) == wanted for n in names):
            client.api.tag(image_id, BASE_REPO, tag)
            for name in names:
                if docker_client.bare_name(name) == f"{BASE_REPO}:latest":
                    client.api.remove_image(name)


class DockerBase(Recipe):
    """A small Debian imported into Docker: the base of the lab's application images."""

    name = "docker-base"
    description = f"Debian bookworm minbase + busybox in Docker ({BASE_REPO}:<hash>)"
    recipe_dir = "docker/base"
    code_deps: tuple[str, ...] = ("labctl.images.debian", "labctl.images.containers.rootfs")
    #: the engine the image goes into
    api: ClassVar[ApiEngine] = DOCKER

    def inputs(self) -> Mapping[str, object]:
        """Suite and architecture; the package list and hook are recipe files."""
        return {"suite": SUITE, "arch": ARCH, "gzip": GZIP_LEVEL}

    def rootfs(self, ctx: BuildContext) -> tuple[Path, Mapping[str, str]]:
        """The rootfs tarball to import, and its facts: built here with mmdebstrap."""
        tarball = ctx.out / ROOTFS
        # mmdebstrap deletes /usr/sbin/policy-rc.d at the end unless told not to manage it;
        # customize.sh writes the one the image keeps (minbase + busybox start no daemons).
        facts = build_rootfs(
            ctx, IMAGES_DIR / self.recipe_dir, tarball, ["--skip=chroot/policy-rc.d"]
        )
        return tarball, facts

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        """Get the rootfs tarball and import it into the engine; engine_ref is the image id."""
        api = self.api
        client = docker_client.connect(engine=api)  # fail before minutes of mmdebstrap
        tarball, facts = self.rootfs(ctx)
        ctx.report(f"{api.name.lower()} import")
        changes = [
            f"LABEL labctl.image={self.name} labctl.recipe={ctx.recipe_hash}",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["/bin/bash"]',
        ]
        with docker_client.engine_errors("import the base image", api):
            answer = client.api.import_image(
                src=str(tarball), repository=BASE_REPO, tag=ctx.recipe_hash, changes=changes
            )
        image_id = _import_result(answer if isinstance(answer, str) else answer.decode(), api)
        tag = f"{BASE_REPO}:{ctx.recipe_hash}"
        try:
            _name_import(client, image_id, ctx.recipe_hash, api)
            found = docker_client.image_id(client, tag, api)
            if found != image_id:
                raise BuildError(f"{tag} is {found}, but the import made {image_id}")
            size = str(client.images.get(image_id).attrs.get("Size", ""))
        except BaseException:
            docker_client.remove_image(client, image_id, BASE_REPO, api)
            raise
        return image_id, {**facts, "tag": tag, "docker_size_bytes": size}

    def present(self, manifest: Manifest) -> bool:
        """The image is in the engine under its hash tag."""
        return _docker_present(manifest, BASE_REPO, self.api)

    def forget(self, manifest: Manifest) -> None:
        """Untag and delete the image."""
        _forget(manifest, BASE_REPO, self.api)


def _forget(manifest: Manifest, repo: str, api: ApiEngine) -> None:
    """Remove the image of ``manifest`` (its names under ``repo``) from the engine."""
    if manifest.engine_ref:
        client = docker_client.connect(engine=api)
        docker_client.remove_image(client, manifest.engine_ref, repo, api)


_STEP = re.compile(r"^Step (\d+)/(\d+) ?: (.*)$", re.IGNORECASE)  # Podman: "STEP 1/4: FROM"
_LAYER = re.compile(r"^ ?-{2,3}> ([0-9a-f]{11,64})$")  # Docker " ---> id", Podman "--> id"
_BUILT = re.compile(r"^Successfully built ([0-9a-f]{12,64})$")


class DockerApp(Recipe):
    """The lab's web app: busybox httpd with a page and a CGI script, on ``docker-base``."""

    name = "docker-app"
    description = f"web app image in Docker ({APP_REPO}:<hash> and :latest), port 8080"
    needs = ("docker-base",)
    recipe_dir = "docker/app"
    #: the engine the image goes into, and the image it is built on there
    api: ClassVar[ApiEngine] = DOCKER
    base_image: ClassVar[str] = "docker-base"

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        """``docker build`` the app FROM the base; engine_ref is the image id."""
        api = self.api
        app_dir = IMAGES_DIR / self.recipe_dir
        base = dep_manifest(ctx, self.base_image)
        base_tag = f"{BASE_REPO}:{base.recipe_hash}"
        client = docker_client.connect(engine=api)
        if docker_client.image_id(client, base_tag, api) != base.engine_ref:
            raise BuildError(
                f"the base image {base_tag} is not in {api.name}",
                f"rebuild it: labctl images build {self.base_image}",
            )
        version = (app_dir / "VERSION").read_text().strip()
        tag = f"{APP_REPO}:{ctx.recipe_hash}"
        log: list[str] = []
        layers: list[str] = []
        image_id = ""
        try:
            ctx.report(f"{api.name.lower()} build")
            with docker_client.engine_errors(f"build {tag}", api):
                for line in self._build_lines(client, app_dir, tag, base_tag, version, ctx):
                    log.append(line)
                    if m := _LAYER.match(line):
                        layers.append(m.group(1))
                    elif m := _BUILT.match(line):
                        image_id = m.group(1)
            found = docker_client.image_id(client, tag, api)
            if not found or not found.removeprefix("sha256:").startswith(image_id):
                raise BuildError(f"{api.name} build finished, but {tag} is {found or 'missing'}")
            image_id = found
            ctx.report("tag latest")
            with docker_client.engine_errors(f"tag {APP_REPO}:latest", api):
                client.api.tag(image_id, APP_REPO, "latest", force=True)
            size = str(client.images.get(image_id).attrs.get("Size", ""))
        except BaseException:
            # Intermediate images of this build; ones shared with cached builds are refused.
            base_hex = (base.engine_ref or "").removeprefix("sha256:")
            for ref in reversed([*layers, image_id]):
                if ref and not base_hex.startswith(ref.removeprefix("sha256:")):
                    docker_client.remove_image(client, ref, APP_REPO, api)
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

    def _build_lines(
        self, client: Any, app_dir: Path, tag: str, base_tag: str, version: str, ctx: BuildContext
    ) -> Iterator[str]:
        stream = client.api.build(
            path=str(app_dir),
            tag=tag,
            buildargs={"BASE": base_tag, "APP_VERSION": version},
            labels={"labctl.image": self.name, "labctl.recipe": ctx.recipe_hash},
            rm=True,  # Podman: hidden build containers would block image removal
            forcerm=True,
            pull=False,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                what = f"{self.api.name.lower()} build"
                raise BuildError(f"{what} of {tag} failed: {str(detail).strip()}")
            for line in str(chunk.get("stream", "")).splitlines():
                if m := _STEP.match(line):
                    ctx.report(f"{self.api.name.lower()} build step {m.group(1)}/{m.group(2)}")
                yield line

    def present(self, manifest: Manifest) -> bool:
        """The image is in the engine under its hash tag."""
        return _docker_present(manifest, APP_REPO, self.api)

    def forget(self, manifest: Manifest) -> None:
        """Untag (``:hash`` and ``:latest`` if it is this one) and delete the image."""
        _forget(manifest, APP_REPO, self.api)
