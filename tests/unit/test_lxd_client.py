"""pylxd's exec leaves a known harmless thread exception behind; only that one is dropped."""

from __future__ import annotations

import threading

import pytest
from ws4py.manager import WebSocketManager

from labctl import lxd_client


def _args(exc: BaseException, thread: threading.Thread) -> threading.ExceptHookArgs:
    return threading.ExceptHookArgs([type(exc), exc, None, thread])


@pytest.fixture
def passed_on(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    seen: list[BaseException] = []
    monkeypatch.setattr(lxd_client, "_previous_excepthook", lambda a: seen.append(a.exc_value))
    return seen


def test_the_hook_is_installed() -> None:
    assert threading.excepthook is lxd_client._quiet_ws4py_shutdown_race


def test_the_ws4py_epoll_race_is_dropped(passed_on: list[BaseException]) -> None:
    race = ValueError("I/O operation on closed epoll object")
    lxd_client._quiet_ws4py_shutdown_race(_args(race, WebSocketManager()))
    assert passed_on == []


@pytest.mark.parametrize(
    ("exc", "thread"),
    [
        (ValueError("I/O operation on closed epoll object"), threading.Thread()),
        (ValueError("something else"), WebSocketManager()),
        (RuntimeError("I/O operation on closed epoll object"), WebSocketManager()),
    ],
)
def test_every_other_thread_exception_is_passed_on(
    passed_on: list[BaseException], exc: BaseException, thread: threading.Thread
) -> None:
    lxd_client._quiet_ws4py_shutdown_race(_args(exc, thread))
    assert passed_on == [exc]
