"""The dashboard's health thread: its last answer, its errors, and an answer that is slow."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest

from labctl.classroom.state import ClassState
from labctl.dashboard.data import Health
from labctl.dashboard.health import SLOW, Watch
from labctl.errors import LabctlError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _state() -> ClassState:
    return None  # type: ignore[return-value]  # the fake asks below never read it


def test_the_last_answer_stays_through_an_error_which_the_page_says() -> None:
    answers: list[Mapping[str, Health] | Exception] = [
        {"ana": Health(2, 2)},
        LabctlError("libvirtd is not running"),
        RuntimeError("boom"),
        {"ana": Health(1, 2, "vm: shut off")},
    ]

    def ask(_state: ClassState) -> Mapping[str, Health]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    watch = Watch(_state, ask)
    assert watch.snapshot() == {} and watch.notice() is None
    watch.refresh()
    assert watch.snapshot() == {"ana": Health(2, 2)} and watch.notice() is None
    watch.refresh()
    assert watch.snapshot() == {"ana": Health(2, 2)}
    assert watch.notice() == "Guests' health unknown: libvirtd is not running"
    watch.refresh()  # anything else is said too, and the thread would go on
    assert watch.notice() == "Guests' health unknown: RuntimeError: boom"
    watch.refresh()
    assert watch.snapshot() == {"ana": Health(1, 2, "vm: shut off")} and watch.notice() is None


@pytest.mark.parametrize("answered_before", [False, True])
def test_an_answer_slow_to_come_is_said_with_the_one_the_grid_shows(answered_before: bool) -> None:
    clock = Clock()
    go_on, asking = threading.Event(), threading.Event()
    hangs = [False, True] if answered_before else [True]  # each ask in turn: does it hang?

    def ask(_state: ClassState) -> Mapping[str, Health]:
        if hangs.pop(0):  # a lab host that hangs, until the test lets it go
            asking.set()
            assert go_on.wait(30)
        return {"ana": Health(2, 2)}

    watch = Watch(_state, ask, clock=clock)
    if answered_before:
        watch.refresh()
    thread = threading.Thread(target=watch.refresh)
    thread.start()
    try:
        assert asking.wait(30)
        clock.now += SLOW - 1
        assert watch.notice() is None  # not slow yet
        clock.now += 1
        said = watch.notice()
        assert said is not None
        assert said.startswith(f"Asking for the guests' health for {int(SLOW)} s: a lab host")
        if answered_before:
            assert "the grid shows the answer of " in said and said.endswith(" UTC.")
        else:
            assert said.endswith("none has come yet.")
    finally:
        go_on.set()
        thread.join(30)
    assert watch.notice() is None and watch.snapshot() == {"ana": Health(2, 2)}
