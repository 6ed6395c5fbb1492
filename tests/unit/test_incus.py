"""Incus or LXD for the system containers: the one host setup chose is the one labctl talks to."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl import lxd_client, paths
from labctl.errors import HostError


def test_the_chosen_engine_keeps_its_own_sockets_only(tmp_path: Path) -> None:
    incus = lxd_client.socket_candidates({}, chosen="incus")
    assert incus == [Path("/var/lib/incus/unix.socket")]
    lxd = lxd_client.socket_candidates({}, chosen="lxd")
    assert Path("/var/lib/incus/unix.socket") not in lxd and lxd[0] == Path(
        "/var/lib/lxd/unix.socket"
    )
    mine = tmp_path / "mine.socket"  # an explicit socket still comes first
    assert lxd_client.socket_candidates({"LABCTL_LXD_SOCKET": str(mine)}, "incus")[0] == mine


def test_the_choice_comes_from_the_environment_then_host_setups_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = tmp_path / "system-containers"
    monkeypatch.setattr(paths, "SYSTEM_CONTAINERS_FILE", written)
    monkeypatch.delenv("LABCTL_SYSTEM_CONTAINERS", raising=False)
    assert paths.system_containers() is None  # nothing chose: whichever answers first
    written.write_text("incus\n")
    assert paths.system_containers() == "incus"
    monkeypatch.setenv("LABCTL_SYSTEM_CONTAINERS", "lxd")
    assert paths.system_containers() == "lxd"


def test_a_choice_labctl_does_not_know_is_refused_with_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = tmp_path / "system-containers"
    written.write_text("docker\n")
    monkeypatch.setattr(paths, "SYSTEM_CONTAINERS_FILE", written)
    monkeypatch.delenv("LABCTL_SYSTEM_CONTAINERS", raising=False)
    with pytest.raises(HostError, match="neither lxd nor incus") as err:
        paths.system_containers()
    assert err.value.hint and "--system-containers" in err.value.hint


def test_connect_looks_only_where_the_chosen_engine_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LABCTL_SYSTEM_CONTAINERS", "incus")
    for var in ("LABCTL_LXD_SOCKET", "LXD_DIR", "INCUS_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(Path, "exists", lambda self: False)
    with pytest.raises(Exception, match=r"looked at /var/lib/incus/unix.socket\)"):
        lxd_client.connect_socket()
