"""Unit tests never touch the host's firewall: isolation's nft is a fake here."""

from __future__ import annotations

import pytest

from tests.unit.fake_nft import FakeNft


@pytest.fixture(autouse=True)
def fake_nft(monkeypatch: pytest.MonkeyPatch) -> FakeNft:
    """The nft every unit test's lifecycle talks to."""
    fake = FakeNft()
    monkeypatch.setattr("labctl.instance.isolation._nft", fake)
    return fake


@pytest.fixture(autouse=True)
def default_vm_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see the default VM images whatever this host's /etc/labctl/vm-profile says."""
    monkeypatch.setenv("LABCTL_VM_PROFILE", "debian")
