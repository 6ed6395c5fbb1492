"""doctor finds the engines where labctl itself will: through the engines' client modules.

The LXD probe honours ``LABCTL_LXD_SOCKET``, ``LXD_DIR`` and ``INCUS_DIR`` in
``lxd_client``'s order; an answering fake daemon on a Unix socket in ``tmp_path`` stands in
for LXD, a socket nobody listens on for a stopped daemon.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import libvirt
import pytest

from labctl import libvirt_client, lxd_client
from labctl.errors import EngineError
from labctl.host import doctor, engines
from tests.unit.fake_engines import libvirt_error
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
    none = (tmp_path / "none.socket",)  # whichever engine host setup chose here
    monkeypatch.setattr(lxd_client, "ENGINE_SOCKETS", {"lxd": none, "incus": none})


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


def test_a_host_set_up_with_no_system_containers_says_so(
    monkeypatch: pytest.MonkeyPatch, no_defaults: None
) -> None:
    monkeypatch.setenv("LABCTL_SYSTEM_CONTAINERS", "none")
    with pytest.raises(EngineError) as refused:
        lxd_client.connect()
    assert "no system containers" in refused.value.message and refused.value.hint
    info = engines.lxd_probe()
    assert info.none_chosen and not info.reachable
    check = doctor.check_lxd(info)
    assert check.status is doctor.Status.WARN and "none" in check.detail, check
    # a socket named on purpose still wins over the choice
    assert not engines.lxd_probe(engine="lxd").none_chosen


def test_the_docker_probe_reports_the_librarys_own_words(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dead = tmp_path / "docker.sock"
    dead.touch()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{dead}")
    info = engines.docker_probe()
    assert not info.reachable and info.error
    assert not info.error.startswith("the Docker daemon does not answer")


class _CapsConn:
    """A libvirt connection that answers what the doctor asks."""

    def getCapabilities(self) -> str:
        return "<capabilities/>"

    def getLibVersion(self) -> int:
        return 9_000_000

    def getVersion(self) -> int:
        return 7_002_022


def test_the_libvirt_probe_connects_as_the_backend_does(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    @contextmanager
    def connection(uri: str = libvirt_client.URI) -> Iterator[_CapsConn]:
        asked.append(uri)
        yield _CapsConn()

    monkeypatch.setattr(libvirt_client, "connection", connection)
    info = engines.libvirt_probe()
    assert asked == [libvirt_client.URI] and info.uri == libvirt_client.URI
    assert info.reachable and (info.version, info.hypervisor_version) == ("9.0.0", "7.2.22")


def test_the_libvirt_probe_reports_the_librarys_own_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    words = "Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory"

    def refuse(uri: str) -> None:
        raise libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR, words)

    monkeypatch.setattr(libvirt, "open", refuse)
    info = engines.libvirt_probe()
    assert not info.reachable and info.error == words
