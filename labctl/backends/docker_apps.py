"""``labctl app`` on Docker: a student's images and containers, inside their scope only.

What :mod:`labctl.backends.apps` decides (names, sources) is enforced here before every
call to the engine, and every container is made the same way: on the student's own lab
network (labctl's firewall keeps it from other students' guests), its one port on 127.0.0.1,
no privileges beyond Docker's defaults (no ``--privileged``, no added capability, no device,
no volume, no host network, ``no-new-privileges``), with memory and process limits.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
from typing import Any

import docker
import docker.errors
import requests

from labctl import cancel
from labctl.backends.apps import (
    DOCKERFILE_LIMIT,
    MARK,
    AppContainer,
    AppEngine,
    AppImage,
    AppScope,
    History,
    HistoryRow,
    Listing,
    NotYours,
    Removed,
    dockerfile_sources,
    lab_image,
    no_app_network,
    owner,
    short_id,
)
from labctl.docker_client import DOCKER, ApiEngine, bare_name, connect, engine_errors
from labctl.errors import BuildError, EngineError, NotFoundError, ReadyTimeout, SpecError

#: limits of a student's container and of each step of their build
MEMORY = 256 * 1024 * 1024
PIDS = 256
#: a build step's share of the CPU against the lab's guests (Docker's default is 1024)
BUILD_CPU_SHARES = 256
BUILD_TIMEOUT = 600


def _with_tag(ref: str) -> str:
    """``ref`` with ``:latest`` when it names no tag (as Docker reads it)."""
    return ref if ":" in ref.rpartition("/")[2] else f"{ref}:latest"


class DockerApps(AppEngine):
    """A student's images and containers on the Docker daemon labctl's backend uses."""

    def __init__(self, client: docker.DockerClient | None = None, api: ApiEngine = DOCKER) -> None:
        self._client = client
        self.api = api

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect(engine=self.api)
        return self._client

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return engine_errors(action, self.api)

    # -- which images a student may use ----------------------------------------------------

    def _image(self, ref: str) -> docker.models.images.Image | None:
        try:
            with self._errors(f"look up image {ref}"):
                return self.client.images.get(ref)
        except NotFoundError:
            return None

    def _usable(self, scope: AppScope, ref: str) -> docker.models.images.Image:
        """The image ``ref`` when it is the student's own or one of the lab's."""
        if "@" in ref:
            raise NotYours(
                f"{ref}: name images by tag", f"e.g. labctl/webapp:latest or {scope.example_tag()}"
            )
        ref = _with_tag(ref)
        mine = scope.is_mine(ref)
        if not mine and (not ref.startswith("labctl/") or owner(ref) is not None):
            raise _not_usable(scope, ref)  # not the lab's, or another student's by its name
        image = self._image(ref)
        if image is None:
            raise NotFoundError(
                f"there is no image {ref}",
                f"see labctl app ls (yours) and {scope.example_tag().split(':')[0]}:latest "
                "(the lab's)",
            )
        labels = image.labels or {}
        if (mine and scope.owns(labels)) or (not mine and lab_image(ref, labels)):
            return image
        raise _not_usable(scope, ref)

    # -- the contract ----------------------------------------------------------------------

    def build(self, scope: AppScope, context: bytes, tag: str) -> AppImage:
        tag = _with_tag(scope.tag(tag))
        if scope.network is None:
            raise no_app_network()
        text = _dockerfile(context)
        for _line, ref in dockerfile_sources(text):
            if ref != "scratch":
                self._usable(scope, ref)
        old = self._image(tag)
        if old is not None and not scope.owns(old.labels):
            raise _not_usable(scope, tag)
        try:
            with self._errors(f"build {tag}"):
                image, _log = self.client.images.build(
                    fileobj=io.BytesIO(context),
                    custom_context=True,
                    tag=tag,
                    labels=scope.labels,
                    network_mode=scope.network,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    use_config_proxy=False,
                    container_limits={
                        "memory": MEMORY,
                        "memswap": MEMORY,
                        "cpushares": BUILD_CPU_SHARES,
                    },
                    timeout=BUILD_TIMEOUT,
                )
        except docker.errors.BuildError as exc:
            lines = [str(e.get("stream") or e.get("error") or "").rstrip() for e in exc.build_log]
            tail = "\n".join(line for line in lines if line)[-1500:]
            raise BuildError(
                f"the build of {tag} failed: {exc.msg}\n{tail}",
                "fix the Dockerfile (or the files it copies) and build again",
            ) from exc
        if old is not None and old.id != image.id:
            self._drop_untagged(scope, old.id)
        return _app_image(tag, image)

    def _drop_untagged(self, scope: AppScope, image_id: str) -> None:
        """The student's image a new build took the tag from, unless something still uses it."""
        image = self._image(image_id)
        if image is None or image.tags or not scope.owns(image.labels):
            return
        try:
            with self._errors(f"remove image {short_id(image_id)}"):
                self.client.images.remove(image_id)
        except EngineError:
            pass  # a container of it, or a child image: it goes with them (or with down)

    def history(self, scope: AppScope, ref: str) -> History:
        image = self._usable(scope, ref)
        with self._errors(f"read the history of {ref}"):
            rows = image.history()
        return History(
            _with_tag(ref),
            tuple(
                HistoryRow(
                    str(r.get("Id") or "<missing>"),
                    str(r.get("CreatedBy") or ""),
                    int(r.get("Size") or 0),
                )
                for r in rows
            ),
            _layers(image),
        )

    def run(
        self, scope: AppScope, ref: str, name: str, port: int, inner: int | None, wait: float
    ) -> AppContainer:
        name = scope.container(name)
        if scope.network is None:
            raise no_app_network()
        image = self._usable(scope, ref)
        inner = inner or _exposed(image, ref)
        ref = _with_tag(ref)
        try:
            with self._errors(f"look up container {name}"):
                there = self.client.containers.get(name)
        except NotFoundError:
            there = None
        if there is not None:  # the name is the student's (scope.container): theirs, from before
            raise SpecError(
                f"you have a container {name} already ({there.status})",
                f"remove it first (labctl app rm {name}), or give this one another name (--name)",
            )
        t0 = time.monotonic()
        with self._errors(f"create {name}"):
            container = self.client.containers.create(
                ref,  # by its tag, as `docker run` records it (the exercise checks look)
                name=name,
                hostname=name,
                labels=scope.labels,
                ports={f"{inner}/tcp": ("127.0.0.1", port)},
                network=scope.network,
                mem_limit=MEMORY,
                memswap_limit=MEMORY,
                pids_limit=PIDS,
                security_opt=["no-new-privileges"],
                detach=True,
            )
        try:
            with self._errors(f"start {name}"):
                container.start()
        except EngineError:  # its port taken, say: nothing half-made is left
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True, v=True)
            raise
        after = _first_answer(container, port, t0, wait) if wait > 0 else None
        return AppContainer(name, ref, "running", port, after)

    def listing(self, scope: AppScope) -> Listing:
        labels = [f"{k}={v}" for k, v in scope.labels.items() if k != "labctl.class"]
        with self._errors("list your images and containers"):
            images = self.client.images.list(filters={"label": labels})
            containers = self.client.containers.list(all=True, filters={"label": labels})
        mine = [
            _app_image(bare_name(tag), image)
            for image in images
            for tag in (image.tags or ["<none>"])
        ]
        return Listing(
            tuple(sorted(mine, key=lambda i: i.tag)),
            tuple(sorted((_app_container(c) for c in containers), key=lambda c: c.name)),
        )

    def remove(self, scope: AppScope, name: str) -> Removed:
        if ":" in name or "/" in name:  # an image's tag
            tag = _with_tag(scope.tag(name))
            image = self._image(tag)
            if image is None:
                raise NotFoundError(f"you have no image {tag}", "see labctl app ls")
            if not scope.owns(image.labels):
                raise _not_usable(scope, tag)
            with self._errors(f"remove image {tag}"):
                self.client.images.remove(tag)
            return Removed("image", tag)
        name = scope.container(name)
        try:
            with self._errors(f"look up container {name}"):
                container = self.client.containers.get(name)
        except NotFoundError:
            raise NotFoundError(f"you have no container {name}", "see labctl app ls") from None
        if not scope.owns(container.labels):
            raise NotYours(f"container {name} was not made by labctl app for you")
        with self._errors(f"remove container {name}"):
            container.remove(force=True, v=True)
        return Removed("container", name)

    def remove_all(self, lab: str, instance: str) -> list[str]:
        labels = [f"labctl.lab={lab}", f"labctl.instance={instance}", f"{MARK}=student"]
        with self._errors(f"list the images of {lab}/{instance}"):
            images = self.client.images.list(filters={"label": labels})
        removed: list[str] = []
        refused: list[str] = []
        # newest first: an image built on another of the student's goes before it
        for image in sorted(images, key=lambda i: str(i.attrs.get("Created", "")), reverse=True):
            try:
                with self._errors(f"remove image {short_id(image.id)}"):
                    self.client.images.remove(image.id, force=True)
            except NotFoundError:
                continue
            except EngineError as exc:  # the others still go; then say what stayed
                refused.append(exc.message)
                continue
            removed += [bare_name(t) for t in image.tags] or [short_id(image.id)]
        if refused:
            raise EngineError(
                "; ".join(refused),
                f"remove what uses them, then run labctl down -i {instance} again",
            )
        return removed


def _not_usable(scope: AppScope, ref: str) -> NotYours:
    return NotYours(
        f"{ref} is not yours ({scope.student}) nor one of the lab's images",
        f"use your own images ({scope.example_tag()}) or the lab's (labctl/webapp:latest)",
    )


def _dockerfile(context: bytes) -> str:
    """The context's Dockerfile: a regular file (a link is followed by the engine its own
    way), whole, at most :data:`DOCKERFILE_LIMIT` bytes."""
    try:
        with tarfile.open(fileobj=io.BytesIO(context)) as tar:
            member = tar.getmember("Dockerfile")
            if not member.isfile():
                raise NotYours(
                    "the Dockerfile is a link or not a file", "write the Dockerfile itself there"
                )
            if member.size > DOCKERFILE_LIMIT:
                raise NotYours(
                    f"the Dockerfile is larger than {DOCKERFILE_LIMIT // 1024} KiB",
                    "a Dockerfile for labctl app build is a few lines",
                )
            f = tar.extractfile(member)
            data = f.read() if f is not None else None
    except (tarfile.TarError, KeyError):
        data = None
    if data is None:
        raise NotYours("the build context has no Dockerfile", "write one in the directory")
    return data.decode(errors="replace")  # what is not ASCII is refused at its line


def _layers(image: docker.models.images.Image) -> int:
    return len(((image.attrs.get("RootFS") or {}).get("Layers")) or [])


def _app_image(tag: str, image: docker.models.images.Image) -> AppImage:
    return AppImage(tag, image.id, _layers(image), int(image.attrs.get("Size") or 0))


def _exposed(image: docker.models.images.Image, ref: str) -> int:
    """The one TCP port the image exposes."""
    ports = [
        int(p.split("/")[0])
        for p in ((image.attrs.get("Config") or {}).get("ExposedPorts") or {})
        if p.endswith("/tcp")
    ]
    if len(ports) != 1:
        raise NotYours(
            f"{ref} exposes {len(ports)} TCP ports: say which to publish",
            "--port HOST:CONTAINER, e.g. --port 20080:8080",
        )
    return ports[0]


def _app_container(c: Any) -> AppContainer:
    bindings = ((c.attrs.get("HostConfig") or {}).get("PortBindings")) or {}
    ports = [int(b["HostPort"]) for v in bindings.values() for b in v or [] if b.get("HostPort")]
    image = str((c.attrs.get("Config") or {}).get("Image") or "")
    return AppContainer(c.name, bare_name(image), c.status, ports[0] if ports else None)


def _first_answer(container: Any, port: int, t0: float, wait: float) -> float:
    """Seconds from ``t0`` until the container answers HTTP on 127.0.0.1:``port``."""
    url = f"http://127.0.0.1:{port}/"
    while True:
        try:
            requests.get(url, timeout=1, allow_redirects=False)
            return time.monotonic() - t0
        except requests.RequestException:
            pass
        if time.monotonic() - t0 >= wait:
            with contextlib.suppress(docker.errors.DockerException):
                container.reload()
            raise ReadyTimeout(
                f"{container.name} did not answer on {url} in {wait:.0f} s "
                f"(it is {container.status})",
                f"see what it says: labctl app ls; remove it with labctl app rm {container.name}",
            )
        cancel.check()
        time.sleep(0.05)
