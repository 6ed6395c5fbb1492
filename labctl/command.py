"""The result of a command run inside a guest, whatever the transport."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    """Exit code and output of one command (SSH, docker exec or LXD exec)."""

    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def succeeded(self) -> bool:
        """True when the command exited 0."""
        return self.rc == 0

    @property
    def detail(self) -> str:
        """One line for error messages: the exit code and the last line of output."""
        last = (self.stderr.strip() or self.stdout.strip()).splitlines()[-1:] or [""]
        return f"exit {self.rc}: {last[0]}"
