"""Whether the suite runs under CI: there a missing engine or tool fails, never skips."""

from __future__ import annotations

import os

import pytest


def running_in_ci() -> bool:
    """True when ``CI`` is ``true``, ``1`` or ``yes`` (as CI services and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(available: bool, reason: str) -> None:
    """Go on when ``available``; else skip with ``reason``, or fail under CI, where the host was
    set up with every tool the suite needs."""
    if available:
        return
    if running_in_ci():
        pytest.fail(f"{reason} (in CI nothing is skipped)")
    pytest.skip(reason)


def needs(available: bool, reason: str) -> pytest.MarkDecorator:
    """A mark skipping the test when not ``available``, except under CI, where it runs (and
    fails for want of what it needs)."""
    return pytest.mark.skipif(not available and not running_in_ci(), reason=reason)
