"""One exception root for everything labctl reports to a user.

Raised deep, rendered once at the CLI edge as ``Error: ...`` / ``Hint: ...``
with the exit code the error carries (see README "Exit codes").
"""

from __future__ import annotations


class ExitCode:
    """Documented process exit codes."""

    OK = 0
    FAILED = 1  # a check or a step failed
    NOTHING_RAN = 2  # nothing could run (bad input, engine missing)
    USAGE = 2
    HOST = 3  # the host is not fit: not root, unsupported OS, no disk, daemon down
    ENGINE = 4  # an engine refused an operation
    TIMEOUT = 5  # something never became ready
    INTERRUPTED = 130


class LabctlError(Exception):
    """An error already explained for the user: a message, a hint and an exit code.

    ``es``: the message and hint in Spanish, for what a student meets in the exercises (the
    command line shows them when the command speaks Spanish: ``--lang es`` or the locale).
    """

    code: int = ExitCode.FAILED

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        code: int | None = None,
        *,
        es: tuple[str, str | None] | None = None,
        lang: str = "en",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.es = es
        #: the language ``message`` and ``hint`` are written in (one made in the student's)
        self.lang = lang
        if code is not None:
            self.code = code

    def said(self, lang: str) -> tuple[str, str | None]:
        """The message and hint in ``lang``: Spanish where it was given, else English."""
        return self.es if lang == "es" and self.es is not None else (self.message, self.hint)

    def spanish(self, lang: str) -> bool:
        """Whether :meth:`said` in ``lang`` is Spanish (its labels are then Spanish too)."""
        return self.es is not None and lang == "es" or self.lang == "es"

    def __str__(self) -> str:
        return self.message


class SpecError(LabctlError):
    """The lab or exercise YAML is invalid; the message names file, line and field."""

    code = ExitCode.USAGE


class HostError(LabctlError):
    """The host cannot do what was asked (not root, no package, daemon down, no space)."""

    code = ExitCode.HOST


class EngineError(LabctlError):
    """An engine (libvirt, LXD, Docker) refused; the message keeps the daemon's own text."""

    code = ExitCode.ENGINE


class DaemonDown(EngineError):
    """An engine's daemon does not answer at all: the host is not fit yet (exit 3, as README's
    table says), not an engine refusing an operation."""

    code = ExitCode.HOST


class NotFoundError(EngineError):
    """The engine has no such object (removed behind labctl's back, or never made)."""


class NotSupported(EngineError):
    """The engine cannot do what was asked, by design; callers record a gap, not a failure."""


class BuildError(LabctlError):
    """An image build failed; nothing half-built is left in the cache."""

    code = ExitCode.FAILED


class ReadyTimeout(LabctlError):
    """A guest did not become usable in time."""

    code = ExitCode.TIMEOUT
