"""Running host commands with errors that say what failed and what it printed."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from labctl import console
from labctl.errors import LabctlError


def run(
    argv: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float | None = None,
    error: type[LabctlError] = LabctlError,
    hint: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv``; on failure raise ``error`` with the command and its last output lines.

    ``check=False``: a non-zero exit is the caller's to judge (a missing program or a
    timeout still raise ``error``).
    """
    args = [str(a) for a in argv]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            args, cwd=cwd, env=env, input=input, timeout=timeout, capture_output=True, check=False
        )
    except FileNotFoundError as exc:
        raise error(f"{args[0]} is not installed", hint or "run: labctl host setup") from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{shlex.join(args)} did not finish in {timeout:.0f} s", hint) from exc
    console.debug(f"$ {shlex.join(args)}: exit {proc.returncode}, {time.monotonic() - t0:.2f} s")
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()[-8:]
        detail = "\n  ".join(tail)
        raise error(
            f"{shlex.join(args)} failed with exit code {proc.returncode}:\n  {detail}", hint
        )
    return proc


def output(argv: Sequence[str | Path], **kwargs: object) -> str:
    """Run ``argv`` and return its stdout as text (see :func:`run`)."""
    return run(argv, **kwargs).stdout.decode()  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    """The process ``pid`` exists (signal 0: asks the kernel, sends nothing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), or None: gone, a zombie, or no ``/proc``.

    A PID and its start time name one process for good: a PID alone may be a new process's by
    now, or a killed one's that nobody reaped yet.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])
