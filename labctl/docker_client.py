"""Talking to the application-container engine (Docker, or Podman's Docker-compatible API)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import docker
import docker.errors
import requests

from labctl.errors import EngineError, NotFoundError

START_HINT = "start dockerd: labctl host setup (DOCKER_HOST names another daemon)"

#: Prefixes engines put in front of local image names; Podman answers with ``localhost/...``.
_NAME_PREFIXES = ("docker.io/library/", "docker.io/", "localhost/")


def connect(timeout: int = 600) -> docker.DockerClient:
    """A client of the daemon ``DOCKER_HOST`` names (default: the local socket), checked by ping."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
        raise EngineError(f"the Docker daemon does not answer: {exc}", START_HINT) from exc
    return client


def bare_name(ref: str) -> str:
    """An image name without the registry prefix engines add (``localhost/``, ``docker.io/``)."""
    for prefix in _NAME_PREFIXES:
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def image_id(client: docker.DockerClient, ref: str) -> str | None:
    """The id of image ``ref`` (name:tag or id), or None when the engine does not have it."""
    try:
        with engine_errors(f"look up image {ref}"):
            return str(client.images.get(ref).id)
    except NotFoundError:
        return None


@contextmanager
def engine_errors(action: str) -> Iterator[None]:
    """Turn docker-py's exceptions into EngineError that keeps the daemon's own message.

    "No such object" becomes :class:`NotFoundError`, which callers that treat "gone" as a
    normal answer catch; nothing of docker-py's reaches the user as a traceback.
    """
    try:
        yield
    except docker.errors.NotFound as exc:
        text = exc.explanation or str(exc)
        raise NotFoundError(f"Docker could not {action}: {text}") from exc
    except docker.errors.APIError as exc:
        text = exc.explanation or str(exc)
        raise EngineError(f"Docker refused to {action}: {text}") from exc
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
        raise EngineError(
            f"lost the Docker daemon while trying to {action}: {exc}", START_HINT
        ) from exc


def remove_image(client: docker.DockerClient, image_id: str, repo: str) -> None:
    """Remove our names (``repo:*``) from an image, and the image if it has no other names.

    Docker deletes an image, and the untagged parents only it used, when its last name goes.
    An image that keeps other names is not only ours (the base of a failed app build, say)
    and stays. The engine refuses while a container uses the image; that refusal is expected
    and ignored (a later ``docker image prune`` finds it). Other refusals raise EngineError.
    """
    try:
        with engine_errors(f"look up image {image_id[:19]}"):
            image = client.images.get(image_id)
    except NotFoundError:
        return
    ours = [t for t in image.tags if bare_name(t).startswith(repo + ":")]
    refs = ours if ours or image.tags else [image.id]  # an unnamed intermediate image
    for ref in refs:
        try:
            with engine_errors(f"remove image {ref}"):
                client.api.remove_image(ref)
        except NotFoundError:
            pass
        except EngineError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, docker.errors.APIError) and cause.status_code == 409):
                raise
