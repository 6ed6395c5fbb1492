"""Another labctl holding an instance's lock, played by a background thread of the test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from labctl.instance.state import InstanceDir


@contextmanager
def held(inst: InstanceDir, command: str, seconds: float = 5.0) -> Iterator[None]:
    """``inst`` is locked by ``command`` in another thread until the block ends or ``seconds``
    pass, whichever comes first; the block starts once the lock is held."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with inst.locked(command=command):
            holding.set()
            release.wait(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(5)
    try:
        yield
    finally:
        release.set()
        thread.join()
