"""Incus or LXD for the system containers: the one host setup chose is the one labctl talks to."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from labctl import backends, lxd_client, paths
from labctl.backends.lxd import LxdBackend
from labctl.errors import HostError
from labctl.host import doctor, engines
from labctl.host.doctor import Status
from labctl.instance.state import GuestRecord, LabState
from labctl.lab import status as lab_status


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


class _Server:
    """The part of a pylxd.Client ``status`` uses: who the server is, and one container."""

    def __init__(self, server: str) -> None:
        self.host_info = {"environment": {"server": server, "server_version": "6.0.4"}}
        self.instances = SimpleNamespace(get=lambda name: SimpleNamespace(status="Running"))


@pytest.mark.parametrize("server", ["incus", "lxd"])
def test_status_names_the_daemon_that_runs_the_system_container(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LxdBackend(_Server(server))  # type: ignore[arg-type]
    monkeypatch.setattr(backends, "get", lambda engine: {"lxd": backend}[engine])
    record = GuestRecord("lxc-system", "lxd", "labctl-lab-t1-lxc-system", stage="ready")
    state = LabState("lab", "t1", "lab.yaml", guests={"lxc-system": record})
    (row,) = lab_status.status(state)
    assert (row.engine, row.state) == (server, "running")
    assert record.engine == "lxd"  # the backend the record names is unchanged


def test_doctor_shows_the_second_engine_beside_the_chosen_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = tmp_path / "second-system-containers"
    monkeypatch.setattr(paths, "SECOND_SYSTEM_CONTAINERS_FILE", second)
    monkeypatch.setenv("LABCTL_SYSTEM_CONTAINERS", "lxd")
    asked: list[str | None] = []

    def probe(candidates: object = None, engine: str | None = None) -> engines.LxdInfo:
        asked.append(engine)
        return engines.LxdInfo("/var/lib/incus/unix.socket", True, "incus", "6.0.4", True)

    monkeypatch.setattr(engines, "lxd_probe", probe)
    assert doctor._second_lxd() is None  # nothing started beside LXD: no row
    second.write_text("lxd\n")
    assert doctor._second_lxd() is None  # the second one is the chosen one: no second row
    second.write_text("incus\n")
    found = doctor._second_lxd()
    assert asked == ["incus"] and found is not None
    row = doctor.check_second_lxd(*found)
    assert (row.name, row.status) == ("incus (2nd)", Status.OK)
    assert row.detail.startswith("incus 6.0.4 on /var/lib/incus/unix.socket, initialised")
    second.write_text("docker\n")
    with pytest.raises(HostError, match="neither lxd nor incus"):
        paths.second_system_containers()


def test_a_second_engine_that_does_not_answer_warns_and_the_lab_still_runs() -> None:
    down = engines.LxdInfo(None, False, error="no LXD or Incus socket found")
    row = doctor.check_second_lxd("incus", down)
    assert row.status is Status.WARN and "--test-tools" in (row.hint or "")
    assert "no LXD or Incus socket found" in row.detail
    uninitialised = engines.LxdInfo("/var/lib/incus/unix.socket", True, "incus", "6.0.4", False)
    assert doctor.check_second_lxd("incus", uninitialised).status is Status.WARN
    assert row.passed  # a warning: labs run on the chosen engine
