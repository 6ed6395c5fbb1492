"""The suite's own rule: a missing tool skips a test on a developer's host, fails it in CI."""

from __future__ import annotations

import pytest

from tests import ci


def test_a_missing_tool_skips_off_ci_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="needs nft"):
        ci.require(False, "needs nft")
    assert ci.needs(False, "needs nft").args == (True,)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needs nft .in CI nothing is skipped."):
        ci.require(False, "needs nft")
    assert ci.needs(False, "needs nft").args == (False,)  # runs, and fails without the tool
    ci.require(True, "needs nft")  # present: goes on, in CI or not
