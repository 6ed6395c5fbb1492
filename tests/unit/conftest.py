"""Unit tests never touch the host's firewall: isolation's nft is a fake here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit import postgres
from tests.unit.fake_nft import FakeNft


@pytest.fixture(autouse=True)
def fake_nft(monkeypatch: pytest.MonkeyPatch) -> FakeNft:
    """The nft every unit test's lifecycle talks to."""
    fake = FakeNft()
    monkeypatch.setattr("labctl.instance.isolation._nft", fake)
    # the host's apt cache account (if any) must not change the rules the tests see
    monkeypatch.setattr("labctl.instance.isolation._uid_of", lambda user: None)
    return fake


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LABCTL_STATE names the test's own state folder (``tmp_path/state``, not made yet)."""
    root = tmp_path / "state"
    monkeypatch.setenv("LABCTL_STATE", str(root))
    return root


@pytest.fixture(autouse=True)
def default_vm_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see the default VM images whatever this host's /etc/labctl/vm-profile says."""
    monkeypatch.setenv("LABCTL_VM_PROFILE", "debian")


@pytest.fixture(scope="session")
def postgres_cluster(in_ci: bool) -> Iterator[str]:
    """A throwaway PostgreSQL server for the session; its admin URL.

    Skipped with the reason when PostgreSQL is not installed, except in CI (``CI=true``),
    where a missing PostgreSQL fails: the store must be tested on both engines there.
    """
    bindir = postgres.find_bin()
    if bindir is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql; host setup --test-tools)"
        if in_ci:
            pytest.fail(reason)
        pytest.skip(reason)
    with postgres.cluster(bindir) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database on each engine the store runs on."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'labctl.db'}"
    admin = request.getfixturevalue("postgres_cluster")
    return postgres.fresh_database(admin)


@pytest.fixture(autouse=True)
def own_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test's progress store is the SQLite file of its own LABCTL_STATE, closed after it.

    A test that sets no LABCTL_STATE gets one in its tmp_path: never the host's own store.
    """
    from labctl.exercises import progress
    from labctl.store import engine

    def url() -> str:
        if "LABCTL_STATE" in os.environ:
            return engine.default_url()
        return f"sqlite:///{tmp_path / 'labctl.db'}"

    monkeypatch.delenv("LABCTL_DB", raising=False)
    monkeypatch.setattr(progress, "default_url", url)
    yield
    for store in progress._OPEN.values():
        store.close()
    progress._OPEN.clear()
