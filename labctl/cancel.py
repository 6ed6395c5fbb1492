"""A process-wide flag that tells waiting loops to give up (set on Ctrl-C), and work in
parallel that sets it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from labctl.errors import ExitCode, LabctlError

CANCEL = threading.Event()

T = TypeVar("T")


def interrupted(message: str = "interrupted") -> LabctlError:
    """The error of work the user interrupted: the same command again resumes it."""
    return LabctlError(message, "run the same command again to resume", ExitCode.INTERRUPTED)


def check() -> None:
    """Raise if the user interrupted; call this inside wait loops."""
    if CANCEL.is_set():
        raise interrupted()


@contextmanager
def said(message: Callable[[], str]) -> Iterator[None]:
    """Ctrl-C in the block, or :func:`check`'s error, raised as ``interrupted(message())``.

    ``message`` says how far the work got. A bare KeyboardInterrupt would not reach the CLI's
    edge: typer turns it into exit code 130 without a word.
    """
    try:
        yield
    except KeyboardInterrupt as exc:
        raise interrupted(message()) from exc
    except LabctlError as exc:
        if exc.code != ExitCode.INTERRUPTED:
            raise
        raise interrupted(message()) from exc


def in_parallel(work: Callable[[T], None], items: Iterable[T], workers: int, name: str) -> None:
    """Run ``work(item)`` for each item, ``workers`` at a time, in threads named ``name``.

    Returns when every started call has ended, raising the first error in the items' order.
    Ctrl-C sets :data:`CANCEL`, so the running calls give up at their next :func:`check`,
    and the calls not started yet never start.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=name)
    try:
        futures = [pool.submit(work, item) for item in items]
        for f in futures:
            f.result()
    except KeyboardInterrupt:
        CANCEL.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
