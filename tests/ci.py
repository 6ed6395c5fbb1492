"""Whether the suite runs under CI: there a missing engine or tool fails, never skips."""

from __future__ import annotations

import os


def running_in_ci() -> bool:
    """True when ``CI`` is ``true``, ``1`` or ``yes`` (as CI services and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
