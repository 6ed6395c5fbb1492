"""ansible-runner inside the pytest process, which Ctrl-C and SIGTERM still stop."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def cancel_on_signals() -> Iterator[Callable[[], bool]]:
    """A ``cancel_callback`` for ``ansible_runner.run``: SIGINT/SIGTERM cancel the playbook
    (ansible-runner kills it), then reach pytest as they would have.

    Without a ``cancel_callback``, ansible-runner installs SIGINT/SIGTERM handlers that only
    set its own flag and never puts the old ones back: every later Ctrl-C or SIGTERM to
    pytest would be swallowed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False  # ansible-runner sets no handler there either
        return
    got: list[int] = []
    taken = [s for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
    saved = {s: signal.signal(s, lambda signum, _frame: got.append(signum)) for s in taken}
    try:
        yield lambda: bool(got)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    if got:
        signal.raise_signal(got[0])
