"""Files labctl keeps: readable by root only, written atomically, guarded by file locks.

Lab state, overlay disks, keys, students' progress, reservations and comparison results all
go through here. Directories are made 0700 and files 0600 whatever the umask, and
directories made by older labctl versions with 0755 are tightened the next time labctl
writes into them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

from filelock import FileLock, Timeout

from labctl.errors import LabctlError

DIR_MODE = 0o700
FILE_MODE = 0o600

S = TypeVar("S")
T = TypeVar("T")


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make it readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != DIR_MODE:
        path.chmod(DIR_MODE)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically (temporary file, then rename) as a 0600 file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # O_CREAT's mode is ignored when the file already existed
        with os.fdopen(fd, "w") as f:
            fd = -1
            f.write(text)
    finally:
        if fd != -1:
            os.close(fd)
    os.replace(tmp, path)


class Damaged(LabctlError):
    """A file labctl saved no longer parses (truncated, edited by hand)."""


def read_saved(path: Path, parse: Callable[[str], T], what: str, hint: str) -> T | None:
    """A file labctl saved, parsed; None when there is none.

    A file that does not parse, or parses into the wrong shape, is an error naming ``what``
    (e.g. ``state file PATH``) with ``hint`` saying how to recover.
    """
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, AttributeError) as exc:
        raise Damaged(f"{what} is damaged: {exc}", hint) from exc


def make_private(path: Path) -> None:
    """Tighten an existing file (a disk another program created) to 0600."""
    if path.stat().st_mode & 0o777 != FILE_MODE:
        path.chmod(FILE_MODE)


@contextmanager
def locked(
    path: Path,
    wait: float,
    refuse: Callable[[], LabctlError],
    on_busy: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold the file lock ``path``; wait up to ``wait`` seconds, then raise ``refuse()``.

    ``on_busy`` is called once, before waiting, when another process holds the lock (to say
    whom we wait for).
    """
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_busy is not None:
            on_busy()
        try:
            lock.acquire(timeout=wait)
        except Timeout as exc:
            raise refuse() from exc
    try:
        yield
    finally:
        lock.release()


class SavedState(Generic[S]):
    """A state that worker threads share: one change at a time, each saved at once."""

    def __init__(self, state: S, save: Callable[[S], None]) -> None:
        self.state = state
        self._save = save
        self._lock = threading.Lock()

    def change(self, how: Callable[[S], S]) -> None:
        """Replace the state with ``how(state)`` and save it."""
        with self._lock:
            self.state = how(self.state)
            self._save(self.state)
