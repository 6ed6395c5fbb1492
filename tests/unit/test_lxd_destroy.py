"""LxdBackend.start and destroy: a daemon still running an operation of a labctl killed in its
middle, and a container a student paused; whose a container is, by its labels."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from pylxd import exceptions as pylxd_exceptions
from pylxd.exceptions import LXDAPIException

from labctl.backends import lxd
from labctl.backends.base import RESUMED, RUNNING, Started
from labctl.backends.lxd import LxdBackend
from labctl.errors import EngineError


def _refusal(text: str) -> LXDAPIException:
    return LXDAPIException(SimpleNamespace(status_code=400, json=lambda: {"error": text}))


class _Instance:
    """A container whose delete LXD refuses ``refusals`` times, then does."""

    def __init__(self, refusals: list[str]) -> None:
        self.status = "Stopped"
        self.refusals = refusals
        self.deleted = False

    def delete(self, wait: bool) -> None:
        if self.refusals:
            raise _refusal(self.refusals.pop(0))
        self.deleted = True


def _backend(instance: _Instance) -> LxdBackend:
    def get(name: str) -> _Instance:
        return instance

    return LxdBackend(SimpleNamespace(instances=SimpleNamespace(get=get)))  # type: ignore[arg-type]


def _not_found(name: str) -> _Instance:
    raise pylxd_exceptions.NotFound(
        SimpleNamespace(status_code=404, json=lambda: {"error": "not found"})
    )


BUSY = 'Failed to create instance delete operation: Instance is busy running a "create" operation'


def test_destroy_waits_for_the_operation_a_killed_labctl_left_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lxd, "BUSY_POLL", 0.0)
    instance = _Instance([BUSY, BUSY])
    assert _backend(instance).destroy("labctl-lab-t1-lxc-system")
    assert instance.deleted and instance.refusals == []


def test_destroy_gives_up_on_other_refusals_at_once_and_on_busy_after_its_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lxd, "BUSY_POLL", 0.0)
    other = _Instance(["permission denied", BUSY])
    with pytest.raises(EngineError, match="LXD refused to remove .*: permission denied"):
        _backend(other).destroy("labctl-lab-t1-lxc-system")
    assert other.refusals == [BUSY]  # not asked again
    monkeypatch.setattr(lxd, "BUSY_WAIT", -1.0)
    stuck = _Instance([BUSY] * 3)
    with pytest.raises(EngineError, match="is busy running"):
        _backend(stuck).destroy("labctl-lab-t1-lxc-system")
    assert not stuck.deleted


class _Paused:
    """A container frozen by ``lxc pause``: LXD refuses to start or delete it as it is."""

    def __init__(self) -> None:
        self.status = "Frozen"
        self.calls: list[str] = []

    def start(self, wait: bool) -> None:
        raise _refusal("The instance is already running")

    def unfreeze(self, wait: bool) -> None:
        self.calls.append("unfreeze")
        self.status = "Running"

    def stop(self, force: bool, wait: bool) -> None:
        self.calls.append("stop")
        self.status = "Stopped"

    def delete(self, wait: bool) -> None:
        if self.status != "Stopped":
            raise _refusal("Instance is running")
        self.calls.append("delete")


def test_a_paused_container_is_resumed_by_start_and_stopped_before_it_is_removed() -> None:
    plan = SimpleNamespace(resource="labctl-lab-t1-lxc-system", name="lxc-system")
    paused = _Paused()
    backend = _backend(paused)  # type: ignore[arg-type]
    assert backend.state(plan.resource) == "paused"  # status says so; not running for up
    assert backend.start(plan) == Started(RESUMED)  # type: ignore[arg-type]
    assert backend.start(plan) == Started(RUNNING)  # type: ignore[arg-type]
    paused.status = "Frozen"
    assert backend.destroy(plan.resource)
    assert paused.calls == ["unfreeze", "stop", "delete"]


@pytest.mark.parametrize(("status", "said"), [("Stopped", "stopped"), ("Frozen", "paused")])
def test_a_container_that_does_not_run_says_so_to_exec_and_ssh(
    status: str, said: str, tmp_path: Path
) -> None:
    from labctl.instance.state import GuestRecord
    from labctl.keys import ensure_keypair

    box = _Paused()
    box.status = status
    rec = GuestRecord("lxc-system", "lxd", "labctl-lab-t1-lxc-system", "ready", address="10.0.3.9")
    connection = _backend(box).connect(rec, ensure_keypair(tmp_path / "key", "t"))  # type: ignore[arg-type]
    for attempt in (lambda: connection.run("true", timeout=None), connection.shell_argv):
        with pytest.raises(EngineError) as err:
            attempt()
        assert err.value.message == f"lxc-system is {said} (not running)"  # not "No route to host"
        assert err.value.hint and err.value.hint.startswith("labctl up starts it again")


def test_a_containers_labels_are_its_user_keys_and_none_when_it_is_absent() -> None:
    container = _Instance([])
    container.config = {  # type: ignore[attr-defined]
        "limits.memory": "256MB",
        "user.labctl.lab": "net-adv",
        "user.labctl.instance": "1",
    }
    backend = _backend(container)
    assert backend.labels_of("labctl-net-adv-1-www") == {
        "labctl.lab": "net-adv",
        "labctl.instance": "1",
    }
    assert backend.foreign("labctl-net-adv-1-www", "net", "adv-1") == "lab net-adv (instance 1)"
    assert backend.foreign("labctl-net-adv-1-www", "net-adv", "1") is None
    absent = LxdBackend(
        SimpleNamespace(instances=SimpleNamespace(get=_not_found))  # type: ignore[arg-type]
    )
    assert absent.labels_of("labctl-net-adv-1-www") is None
