"""Shared test settings: integration tests use the real engines and never skip in CI."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.ci import running_in_ci
from tests.interrupts import SIGNALS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Integration tests are marked by folder, so `-m "not integration"` runs only unit tests.
    for item in items:
        if "/tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
    # Tests marked `teardown_last` take the shared lab down: they run after everything else.
    items.sort(key=lambda item: item.get_closest_marker("teardown_last") is not None)


@pytest.fixture(scope="session")
def in_ci() -> bool:
    """True under CI (CI=true): a missing engine must fail there, never skip."""
    return running_in_ci()


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """A test that leaves SIGINT/SIGTERM handled otherwise fails (and they are put back).

    A leaked handler (ansible-runner's, with no ``cancel_callback``) swallows every later
    Ctrl-C and SIGTERM: the run could no longer be stopped.
    """
    before = {s: signal.getsignal(s) for s in SIGNALS}
    yield
    leaked = [s.name for s in SIGNALS if signal.getsignal(s) != before[s]]
    for s, handler in before.items():
        signal.signal(s, handler)
    if leaked:
        pytest.fail(f"the test left its own handler of {', '.join(leaked)}", pytrace=False)


@pytest.fixture(autouse=True)
def _not_confined(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as root's labctl; a test of the student entry point (which marks the
    process confined for good, as its one command) leaves no student behind."""
    from labctl import console

    monkeypatch.setattr(console, "CONFINED", False)
    console.reset()  # English, no --json: as a command's start


@pytest.fixture(autouse=True)
def _english_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's locale does not choose the language tests read (a Spanish one would turn
    the students' errors Spanish); a test wanting Spanish sets LANG or --lang itself."""
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.delenv("LABCTL_LANG", raising=False)
