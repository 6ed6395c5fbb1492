"""doctor finds the engines where labctl itself will: through lxd_client and docker_client.

The LXD probe honours ``LABCTL_LXD_SOCKET``, ``LXD_DIR`` and ``INCUS_DIR`` in
``lxd_client``'s order; an answering fake daemon on a Unix socket in ``tmp_path`` stands in
for LXD, a socket nobody listens on for a stopped daemon.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import lxd_client
from labctl.host import engines
from tests.unit.servers import serving
from tests.unit.test_container_images import _LxdHandler, _UnixHTTPServer


@pytest.fixture
def answering(tmp_path: Path) -> Iterator[Path]:
    """A directory whose unix.socket answers like an LXD (Incus) daemon."""
    path = tmp_path / "incus" / "unix.socket"
    path.parent.mkdir()
    with serving(_UnixHTTPServer(str(path), _LxdHandler)):
        yield path


@pytest.fixture
def no_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The host's own LXD sockets are not looked at."""
    for var in ("LABCTL_LXD_SOCKET", "LXD_DIR", "INCUS_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(lxd_client, "DEFAULT_SOCKETS", (tmp_path / "none.socket",))


@pytest.mark.parametrize("var", ["LABCTL_LXD_SOCKET", "INCUS_DIR", "LXD_DIR"])
def test_the_lxd_probe_looks_where_lxd_client_looks(
    monkeypatch: pytest.MonkeyPatch, no_defaults: None, answering: Path, var: str
) -> None:
    value = answering if var == "LABCTL_LXD_SOCKET" else answering.parent
    monkeypatch.setenv(var, str(value))
    info = engines.lxd_probe()
    assert info.socket == str(answering), info
    assert lxd_client.socket_candidates()[0] == answering


def test_the_lxd_probe_names_the_sockets_that_did_not_answer(
    monkeypatch: pytest.MonkeyPatch, no_defaults: None, tmp_path: Path
) -> None:
    dead = tmp_path / "dead.socket"
    dead.touch()  # exists, nobody listens
    monkeypatch.setenv("LABCTL_LXD_SOCKET", str(dead))
    info = engines.lxd_probe()
    assert not info.reachable and info.socket is None
    assert info.error and str(dead) in info.error


def test_the_docker_probe_reports_the_librarys_own_words(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dead = tmp_path / "docker.sock"
    dead.touch()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{dead}")
    info = engines.docker_probe()
    assert not info.reachable and info.error
    assert not info.error.startswith("the Docker daemon does not answer")
