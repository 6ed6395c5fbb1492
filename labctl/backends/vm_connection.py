"""A VM's :class:`~labctl.connection.Connection`: SSH with the lab key, behind its own bridge."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from labctl import libvirt_client
from labctl.backends import vm_files
from labctl.backends.base import up_again
from labctl.command import CommandResult
from labctl.connection import DEFAULT, Connection, Timeout
from labctl.errors import EngineError, NotFoundError
from labctl.instance.state import GuestRecord
from labctl.keys import KeyPair
from labctl.ssh import KeyRefused, SshError, SshTarget
from labctl.ssh import run as ssh_run

if TYPE_CHECKING:
    from labctl.backends.libvirt import LibvirtBackend


class VmConnection(Connection):
    """A VM over SSH with the lab key, only while its address lies behind its own bridge.

    ``timeout`` bounds each wait for output, so a hung VM cannot hang a check; ``None`` lets
    a command run silently as long as it likes (``labctl exec``).
    """

    def __init__(self, backend: LibvirtBackend, record: GuestRecord, key: KeyPair) -> None:
        assert record.address
        self.name = record.name
        self._backend = backend
        self._record = record
        self._target = SshTarget(record.address, record.port or 22, "root", key.private)

    def run(
        self, command: str, timeout: Timeout = DEFAULT, stdin: bytes | None = None
    ) -> CommandResult:
        """Run ``command`` over SSH; a session that fails says the VM is not running, else
        shows the console's last lines."""
        rec = self._record
        self._backend._guard(rec.resource, self._target.host, rec.name)
        try:
            return ssh_run(self._target, command, timeout=self._timeout(timeout), stdin=stdin)
        except KeyRefused:
            raise
        except SshError as exc:
            self._require_running(exc)
            # A running VM that stops answering: its console usually says why (a panic, an
            # oops, a stuck NIC), so the error carries the console's last lines.
            tail = ""
            if rec.console_log:
                console = Path(rec.console_log)
                tail = f"\nserial console log {console}, last lines:\n{vm_files.tail(console, 10)}"
            raise SshError(
                f"{rec.name}: {exc.message}{tail}",
                "if it stays unreachable, start it afresh from its image: `labctl exercise reset "
                "EXERCISE` recreates one exercise's guests, `labctl down` + `labctl up` all",
            ) from exc

    def shell_argv(self) -> list[str]:
        """``ssh`` into the VM as root with the lab key, while it runs."""
        self._require_running()
        self._backend._guard(self._record.resource, self._target.host, self._record.name)
        return self._target.argv

    def _require_running(self, cause: SshError | None = None) -> None:
        """Raise :func:`_not_running` unless libvirt says the VM runs (its failing to say
        leaves the ``cause`` to be told)."""
        try:
            now = self._backend._now(self._record.resource)
        except EngineError:
            if cause is None:
                raise
            return
        if now != "running":
            raise not_running(self._record.name, now) from cause


def not_running(guest: str, now: libvirt_client.DomainState) -> EngineError:
    """The error of a VM that cannot answer: stopped, paused or absent."""
    message = f"{guest} is {now} (not running)"
    hint = up_again("starts it again")
    return NotFoundError(message, hint) if now == "absent" else EngineError(message, hint)
