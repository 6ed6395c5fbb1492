"""Talking to the application-container engine (Docker, or Podman's Docker-compatible API)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import docker
import docker.errors
import requests
from docker.utils.socket import consume_socket_output, demux_adaptor, frames_iter

from labctl.errors import DaemonDown, EngineError, NotFoundError
from labctl.paths import podman_socket

START_HINT = "start dockerd: labctl host setup (DOCKER_HOST names another daemon)"


@dataclass(frozen=True)
class ApiEngine:
    """An engine speaking Docker's API: its name in messages, its socket, how to start it."""

    name: str  # as messages say it: Docker, Podman
    start_hint: str
    from_env: bool  # DOCKER_HOST (or Docker's default socket); else Podman's socket

    def client(self, timeout: int) -> docker.DockerClient:
        """A client of this engine (not yet checked)."""
        if self.from_env:
            return docker.from_env(timeout=timeout)
        return docker.DockerClient(base_url=f"unix://{podman_socket()}", timeout=timeout)


DOCKER = ApiEngine("Docker", START_HINT, from_env=True)
PODMAN = ApiEngine(
    "Podman",
    "install and start Podman's API service: labctl host setup "
    "(LABCTL_PODMAN_SOCKET names another socket)",
    from_env=False,
)

#: Prefixes engines put in front of local image names; Podman answers with ``localhost/...``.
_NAME_PREFIXES = ("docker.io/library/", "docker.io/", "localhost/")


def connect(timeout: int = 600, engine: ApiEngine = DOCKER) -> docker.DockerClient:
    """A client of ``engine`` (Docker: the daemon ``DOCKER_HOST`` names), checked by ping."""
    try:
        client = engine.client(timeout)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
        raise DaemonDown(
            f"the {engine.name} daemon does not answer: {exc}", engine.start_hint
        ) from exc
    return client


def exec_with_stdin(
    api: docker.APIClient, container: str, argv: list[str], stdin: bytes, user: str = "root"
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` in ``container`` with ``stdin`` on its input, then end of file: exit code,
    stdout, stderr (docker-py's ``exec_run`` sends no input)."""
    exec_id = api.exec_create(container, argv, stdin=True, user=user)["Id"]
    stream = api.exec_start(exec_id, socket=True)
    raw = getattr(stream, "_sock", stream)  # the socket under the HTTP response's file

    def feed() -> None:
        try:
            raw.sendall(stdin)
        except OSError:
            return  # the command ended without reading it all: its result says the rest
        finally:
            with suppress(OSError):
                raw.shutdown(socket.SHUT_WR)

    feeding = threading.Thread(target=feed, daemon=True)
    feeding.start()  # while the output is read: neither side waits on a full pipe
    try:
        frames = (demux_adaptor(*frame) for frame in frames_iter(stream, tty=False))
        out, err = consume_socket_output(frames, demux=True)
    except OSError as exc:
        raise EngineError(f"the exec's stream in {container} broke: {exc}") from exc
    finally:
        feeding.join(timeout=5)
        stream.close()
        with suppress(OSError):
            raw.close()
    rc = api.exec_inspect(exec_id)["ExitCode"]
    if rc is None:
        raise EngineError(f"the exec in {container} ended its output but has no exit code")
    return int(rc), out or b"", err or b""


def bare_name(ref: str) -> str:
    """An image name without the registry prefix engines add (``localhost/``, ``docker.io/``)."""
    for prefix in _NAME_PREFIXES:
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def image_id(client: docker.DockerClient, ref: str, engine: ApiEngine = DOCKER) -> str | None:
    """The id of image ``ref`` (name:tag or id), or None when the engine does not have it."""
    try:
        with engine_errors(f"look up image {ref}", engine):
            return str(client.images.get(ref).id)
    except NotFoundError:
        return None


@contextmanager
def engine_errors(action: str, engine: ApiEngine = DOCKER) -> Iterator[None]:
    """Turn docker-py's exceptions into EngineError that keeps the daemon's own message.

    "No such object" becomes :class:`NotFoundError`, which callers that treat "gone" as a
    normal answer catch; nothing of docker-py's reaches the user as a traceback.
    """
    try:
        yield
    except docker.errors.NotFound as exc:
        text = exc.explanation or str(exc)
        raise NotFoundError(f"{engine.name} could not {action}: {text}") from exc
    except docker.errors.APIError as exc:
        text = exc.explanation or str(exc)
        raise EngineError(f"{engine.name} refused to {action}: {text}") from exc
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
        raise EngineError(
            f"lost the {engine.name} daemon while trying to {action}: {exc}", engine.start_hint
        ) from exc


def remove_image(
    client: docker.DockerClient, image_id: str, repo: str, engine: ApiEngine = DOCKER
) -> None:
    """Remove our names (``repo:*``) from an image, and the image if it has no other names.

    Docker deletes an image, and the untagged parents only it used, when its last name goes.
    An image that keeps other names is not only ours (the base of a failed app build, say)
    and stays. The engine refuses while a container uses the image; that refusal is expected
    and ignored (a later ``docker image prune`` finds it). Other refusals raise EngineError.
    """
    try:
        with engine_errors(f"look up image {image_id[:19]}", engine):
            image = client.images.get(image_id)
    except NotFoundError:
        return
    ours = [t for t in image.tags if bare_name(t).startswith(repo + ":")]
    refs = ours if ours or image.tags else [image.id]  # an unnamed intermediate image
    for ref in refs:
        try:
            with engine_errors(f"remove image {ref}", engine):
                client.api.remove_image(ref)
        except NotFoundError:
            pass
        except EngineError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, docker.errors.APIError) and cause.status_code == 409):
                raise
