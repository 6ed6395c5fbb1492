"""A process-wide flag that tells waiting loops to give up (set on Ctrl-C)."""

from __future__ import annotations

import threading

from labctl.errors import ExitCode, LabctlError

CANCEL = threading.Event()


def check() -> None:
    """Raise if the user interrupted; call this inside wait loops."""
    if CANCEL.is_set():
        raise LabctlError(
            "interrupted", "run the same command again to resume", ExitCode.INTERRUPTED
        )
