"""What a check says: its result (passed, failed, error) and why, in the student's language."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from labctl.command import CommandResult
from labctl.connection import Connection
from labctl.errors import LabctlError
from labctl.exercises.model import HOST, STUDENT
from labctl.i18n import Lang, tr

#: the connection to a check's target: a guest's name, or ``host``
Connect = Callable[[str], Connection]
Status = Literal["passed", "failed", "error"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: passed, failed (with why) or error (could not run)."""

    what: str
    status: Status
    detail: str
    note: str | None = None

    @property
    def passed(self) -> bool:
        """True when the check passed."""
        return self.status == "passed"


class CheckError(LabctlError):
    """A check could not run (the guest lacks a tool, a measurement made no sense)."""


@dataclass(frozen=True)
class Verdict:
    """What a check kind decided: passed or not, and why."""

    passed: bool
    detail: str


def failed(lang: Lang, es: str, en: str) -> Verdict:
    """A failed verdict, its reason said in the student's language."""
    return Verdict(False, tr(lang, es, en))


def where(target: str, lang: Lang) -> str:
    """``en kvm-full`` / ``on the host``."""
    if target == HOST:
        return tr(lang, "en el anfitrión", "on the host")
    if target == STUDENT:
        return tr(lang, "en tu cuenta del anfitrión", "in your account on the host")
    return tr(lang, f"en {target}", f"in {target}")


def last_line(result: CommandResult) -> str:
    """The last line a command printed (stderr first), cut to a readable length."""
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return lines[-1][:160] if lines else ""
