"""Finding the LXD (or Incus) daemon and talking to it through pylxd.

LXD lives in different places depending on how it was installed (Debian package, snap) and
Incus speaks the same API from its own socket; labctl uses whichever answers first.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pylxd
import requests
from pylxd.exceptions import ClientConnectionFailed, LXDAPIException, NotFound

from labctl.errors import DaemonDown, EngineError, NotFoundError
from labctl.paths import NO_SYSTEM_CONTAINERS, system_containers

log = logging.getLogger(__name__)
#: pylxd's websocket library logs an error when an exec's stream breaks because the container
#: stopped under it (compare's timed restarts do that): the exec's own result says what counts
logging.getLogger("ws4py").setLevel(logging.CRITICAL)

#: Where each engine puts its socket, in the order labctl tries them.
ENGINE_SOCKETS = {
    "lxd": (
        Path("/var/lib/lxd/unix.socket"),  # Debian's lxd package
        Path("/var/snap/lxd/common/lxd/unix.socket"),  # snap
    ),
    "incus": (Path("/var/lib/incus/unix.socket"),),
}
DEFAULT_SOCKETS = (*ENGINE_SOCKETS["lxd"], *ENGINE_SOCKETS["incus"])

START_HINT = (
    "start the daemon (lxd --group root, or incusd --group root) or run: labctl host setup "
    "[--system-containers lxd|incus]; LABCTL_LXD_SOCKET names another socket"
)

NONE_CHOSEN = (
    "this host runs no system containers: host setup chose none for it (a host that is "
    "itself a container)"
)
NONE_HINT = (
    "bring up labs with a system container on another host, or run: labctl host setup "
    "--system-containers lxd (or incus) where the host can run them"
)


class NoSystemContainers(EngineError):
    """Host setup chose no system-container engine for this host: no socket is looked for."""


def _quiet_ws4py_shutdown_race(args: threading.ExceptHookArgs) -> None:
    """Drop one known, harmless exception of pylxd's exec; pass every other one on.

    ``Instance.execute`` stops ws4py's WebSocketManager (closing its epoll object) while the
    manager's thread may still be unregistering a finished websocket; that thread then dies
    with ``ValueError: I/O operation on closed epoll object`` and Python prints its traceback
    after the command's output, although the command and its result are complete.
    """
    if (
        isinstance(args.exc_value, ValueError)
        and "closed epoll object" in str(args.exc_value)
        and type(args.thread).__module__.startswith("ws4py")
    ):
        log.debug("ignored ws4py shutdown race in %s: %s", args.thread, args.exc_value)
        return
    _previous_excepthook(args)


_previous_excepthook = threading.excepthook
threading.excepthook = _quiet_ws4py_shutdown_race


def socket_candidates(
    env: Mapping[str, str] | None = None, chosen: str | None = None
) -> list[Path]:
    """Sockets to try, first wins: ``LABCTL_LXD_SOCKET``, ``LXD_DIR``, ``INCUS_DIR``, defaults.

    ``chosen`` (``lxd`` or ``incus``, what host setup chose) keeps that engine's default
    sockets only, so that a host running both never uses the other one by surprise.
    """
    env = os.environ if env is None else env
    found: list[Path] = []
    if env.get("LABCTL_LXD_SOCKET"):
        found.append(Path(env["LABCTL_LXD_SOCKET"]))
    for var in ("LXD_DIR", "INCUS_DIR"):
        if env.get(var):
            found.append(Path(env[var]) / "unix.socket")
    defaults = DEFAULT_SOCKETS if chosen is None else ENGINE_SOCKETS.get(chosen, ())
    for path in defaults:
        if path not in found:
            found.append(path)
    return found


def _refuses(path: Path, timeout: float = 2.0) -> str | None:
    """Why nobody accepts connections on ``path``, or None if someone does.

    A quick look before pylxd, which waits 60 s on a stale socket and leaks it on failure.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            return exc.strerror or type(exc).__name__
    return None


def connect(candidates: list[Path] | None = None) -> pylxd.Client:
    """A client of the first LXD/Incus daemon that answers; EngineError if none does."""
    return connect_socket(candidates)[1]


def connect_socket(
    candidates: list[Path] | None = None, timeout: float | None = None
) -> tuple[Path, pylxd.Client]:
    """The socket of the first LXD/Incus daemon that answers, and a client of it.

    ``candidates`` default to :func:`socket_candidates` of the engine host setup chose;
    ``timeout`` bounds each request of the client (None: pylxd's own). EngineError, naming
    every socket tried, if none answers.
    """
    if candidates is None:
        chosen = system_containers()
        candidates = socket_candidates(chosen=chosen)
        if chosen == NO_SYSTEM_CONTAINERS and not candidates:
            raise NoSystemContainers(NONE_CHOSEN, NONE_HINT)
    tried: list[str] = []
    for path in candidates:
        if not path.exists():
            continue
        refused = _refuses(path)
        if refused:
            tried.append(f"{path}: {refused}")
            continue
        try:
            return path, pylxd.Client(endpoint=str(path), timeout=timeout)
        except ClientConnectionFailed as exc:
            tried.append(f"{path}: {exc or 'no answer'}")
    if not tried:
        where = ", ".join(str(p) for p in candidates)
        raise DaemonDown(f"no LXD or Incus socket found (looked at {where})", START_HINT)
    raise DaemonDown("no LXD or Incus daemon answers: " + "; ".join(tried), START_HINT)


def server_name(client: pylxd.Client) -> str:
    """``lxd`` or ``incus`` with its version, e.g. ``lxd 5.0.2``."""
    env = client.host_info.get("environment", {})
    return f"{env.get('server', 'lxd')} {env.get('server_version', '?')}"


@contextmanager
def engine_errors(action: str) -> Iterator[None]:
    """Turn pylxd's exceptions into EngineError that keeps the daemon's own message.

    "Not found" becomes :class:`NotFoundError`, which callers that treat "gone" as a normal
    answer catch.
    """
    try:
        yield
    except NotFound as exc:
        raise NotFoundError(f"LXD could not {action}: {exc}") from exc
    except LXDAPIException as exc:
        raise EngineError(f"LXD refused to {action}: {exc}") from exc
    except (ClientConnectionFailed, requests.exceptions.ConnectionError) as exc:
        raise EngineError(
            f"lost the LXD daemon while trying to {action}: {exc}", START_HINT
        ) from exc


def point_alias(client: pylxd.Client, alias: str, fingerprint: str, description: str) -> None:
    """Make ``alias`` name image ``fingerprint``, creating it or moving it from another image."""
    body = {"target": fingerprint, "description": description}
    with engine_errors(f"point alias {alias} at image {fingerprint[:12]}"):
        try:
            client.api.images.aliases[alias].put(json=body)
        except NotFound:
            client.api.images.aliases.post(json={"name": alias, **body})


def delete_image(client: pylxd.Client, fingerprint: str) -> None:
    """Delete an image; one that is already gone is fine."""
    try:
        with engine_errors(f"delete image {fingerprint[:12]}"):
            client.images.get(fingerprint).delete(wait=True)
    except NotFoundError:
        pass
