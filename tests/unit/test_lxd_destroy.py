"""LxdBackend.destroy while the daemon still runs an operation of a labctl killed in its middle."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pylxd.exceptions import LXDAPIException

from labctl.backends import lxd
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
