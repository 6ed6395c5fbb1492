"""One ``class serve`` per class: ``<class>/dashboard.json`` says who serves it, and where.

The file holds the server's PID, the kernel's start time of that process, and its address. A
second ``class serve`` finds it, sees that the same process is alive, and refuses with the
first one's address. A file left by a server that was killed (SIGKILL leaves it behind) is
taken over: its PID is gone, a zombie nobody reaped yet, or by now another process's (the
start time differs).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from labctl import procs
from labctl.errors import ExitCode, LabctlError
from labctl.private import locked, private_dir, write_private

SERVER_FILE = "dashboard.json"


class AlreadyServed(LabctlError):
    """Another ``class serve`` serves this class. Exit 2: nothing ran."""

    code = ExitCode.NOTHING_RAN


@dataclass(frozen=True)
class Server:
    """Who serves a class's dashboard."""

    pid: int
    url: str
    started_at: str
    #: the process's start time (``procs.start_ticks``): the PID with it names one process
    ticks: int | None = None

    @classmethod
    def this_process(cls, url: str, started_at: str) -> Server:
        """The server this process is about to be."""
        pid = os.getpid()
        return cls(pid, url, started_at, procs.start_ticks(pid))

    @property
    def running(self) -> bool:
        """The process that wrote the record still runs (not a new one with its PID)."""
        ticks = procs.start_ticks(self.pid)
        if self.ticks is None:  # an older record, without a start time: a live PID decides
            return ticks is not None
        return ticks == self.ticks


def current(class_root: Path) -> Server | None:
    """The live server of the class, or None (no file, a damaged one, or its PID gone)."""
    try:
        data = json.loads((class_root / SERVER_FILE).read_text())
        ticks = data.get("ticks")
        server = Server(
            int(data["pid"]),
            str(data["url"]),
            str(data.get("started_at", "")),
            int(ticks) if ticks is not None else None,
        )
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return server if server.running else None


def claim(class_root: Path, class_name: str, server: Server) -> None:
    """Record ``server`` as the class's; refuse when another live one holds it."""
    private_dir(class_root)

    def busy() -> LabctlError:
        return AlreadyServed(f"another labctl is starting the dashboard of class {class_name}")

    with locked(class_root / "dashboard.lock", 5.0, busy):
        other = current(class_root)
        if other is not None and other.pid != server.pid:
            raise AlreadyServed(
                f"class {class_name} is already served at {other.url} (pid {other.pid})",
                "open that address, or stop that `labctl class serve` first",
            )
        write_private(class_root / SERVER_FILE, json.dumps(asdict(server)) + "\n")


def release(class_root: Path, pid: int) -> None:
    """Forget the server when it stops (only if the file is still ours)."""
    path = class_root / SERVER_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    if isinstance(data, dict) and data.get("pid") == pid:
        path.unlink(missing_ok=True)
