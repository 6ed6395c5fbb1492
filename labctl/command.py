"""The result of a command run inside a guest, whatever the transport."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CommandResult:
    """Exit code and output of one command (SSH, docker exec or LXD exec)."""

    command: str
    rc: int
    stdout: str
    stderr: str
    #: stdout and stderr byte for byte as the command wrote them (``stdout`` and ``stderr``
    #: are their text), where kept
    raw_stdout: bytes | None = field(default=None, repr=False, compare=False)
    raw_stderr: bytes | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, command: str, rc: int, out: bytes, err: bytes) -> CommandResult:
        """From what the command wrote: its text (an undecodable byte said as U+FFFD) and
        its output kept whole, for who passes it on (``labctl exec``)."""
        text = out.decode(errors="replace"), err.decode(errors="replace")
        return cls(command, rc, *text, raw_stdout=out, raw_stderr=err)

    @property
    def succeeded(self) -> bool:
        """True when the command exited 0."""
        return self.rc == 0

    @property
    def detail(self) -> str:
        """One line for error messages: the exit code and the last line of output."""
        last = (self.stderr.strip() or self.stdout.strip()).splitlines()[-1:] or [""]
        return f"exit {self.rc}: {last[0]}"
