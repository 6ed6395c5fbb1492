"""A fake at the connection boundary: a guest that answers commands by rules, in memory.

Checks, answers and setup only ever talk to a :class:`~labctl.connection.Connection`; this
one answers ``run`` by the first rule whose regular expression matches the command (else
exit 127, as a shell without the tool), records every command, and keeps files in a dict.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from labctl.command import CommandResult
from labctl.connection import DEFAULT, Connection, HttpAnswer, Timeout

#: regular expression -> (rc, stdout) or (rc, stdout, stderr)
Rules = dict[str, tuple[int, str] | tuple[int, str, str]]


class FakeConnection(Connection):
    """A guest named ``name`` that answers by ``rules`` (or by ``respond``) and holds ``files``."""

    def __init__(
        self,
        rules: Rules | None = None,
        name: str = "g",
        files: dict[str, bytes] | None = None,
        respond: Callable[[str], CommandResult] | None = None,
        pages: dict[str, HttpAnswer] | None = None,
    ) -> None:
        self.name = name
        self.rules = rules or {}
        self.files = files if files is not None else {}
        self.respond = respond
        self.pages = pages or {}
        self.commands: list[str] = []
        self.timeouts: list[float | None] = []

    def run(
        self, command: str, timeout: Timeout = DEFAULT, stdin: bytes | None = None
    ) -> CommandResult:
        self.commands.append(command)
        self.timeouts.append(self._timeout(timeout))
        if self.respond is not None:
            return self.respond(command)
        for pattern, answer in self.rules.items():
            if re.search(pattern, command):
                rc, out, *err = answer
                return CommandResult(command, rc, out, err[0] if err else "")
        return CommandResult(command, 127, "", f"sh: {command}: not found")

    def shell_argv(self) -> list[str]:
        return ["fake-shell", self.name]

    def read_file(self, path: str) -> bytes | None:
        self.commands.append(f"read {path}")
        return self.files.get(path)

    def fetch(self, url: str, timeout: float = 10.0) -> HttpAnswer:
        self.commands.append(f"fetch {url}")
        return self.pages.get(url, HttpAnswer(404, "not found"))
