"""A fake at the user-database boundary of ``classroom.accounts``: passwd in memory."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from labctl.classroom.accounts import PasswdEntry


class FakeSystem:
    """A passwd database in memory; homes are real directories under ``homes``."""

    def __init__(self, homes: Path) -> None:
        self.homes = homes
        self.users: dict[str, PasswdEntry] = {}
        self.calls: list[list[str]] = []
        self.killed: list[int] = []
        self.allowed: list[list[str]] = []  # each sync of the students' sudo rule
        self.next_uid = 2001

    def add(self, name: str, gecos: str = "") -> PasswdEntry:
        """An account made by someone else than labctl."""
        home = self.homes / name
        home.mkdir(parents=True, exist_ok=True)
        entry = PasswdEntry(name, self.next_uid, os.getgid(), gecos, home)
        self.next_uid += 1
        self.users[name] = entry
        return entry

    def lookup(self, user: str) -> PasswdEntry | None:
        return self.users.get(user)

    def run(self, argv: Sequence[str]) -> None:
        self.calls.append(list(argv))
        if argv[0] == "useradd":
            self.add(argv[-1], argv[argv.index("--comment") + 1])
        elif argv[0] == "userdel":
            del self.users[argv[-1]]

    def kill(self, uid: int) -> None:
        self.killed.append(uid)

    def sync_access(self, users: list[str]) -> None:
        self.allowed.append(users)
