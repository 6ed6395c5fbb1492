"""SSH into guests with the lab key: run a command, wait until a login really works.

A TCP connect proves nothing on this network (any 10.x address answers on port 22), so
readiness means: the SSH handshake completes, the key is accepted and a command runs.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from labctl import cancel
from labctl.command import CommandResult
from labctl.errors import EngineError, ReadyTimeout

# While a guest boots, failed handshakes are expected; paramiko would log each with a traceback.
logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)


class SshError(EngineError):
    """No SSH session: the guest does not answer, drops the connection or times out."""


class KeyRefused(SshError):
    """sshd answers but does not accept the lab key."""


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom to log in."""

    host: str
    port: int
    user: str
    key: Path

    @property
    def argv(self) -> list[str]:
        """An ``ssh`` command line a student can paste."""
        return [
            "ssh",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            f"{self.user}@{self.host}",
        ]


def _connect(target: SshTarget, timeout: float) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    # Guests are ours and recreated often; their host keys are not worth pinning.
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        target.host,
        port=target.port,
        username=target.user,
        key_filename=str(target.key),
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
        allow_agent=False,
        look_for_keys=False,
    )
    return client


def _feed(channel_file: paramiko.ChannelFile, data: bytes) -> None:
    """Write ``data`` to a command's stdin, then end of file."""
    try:
        channel_file.write(data)
        channel_file.flush()
    except (OSError, EOFError, paramiko.SSHException):
        return  # the command ended without reading it all: its result says the rest
    finally:
        try:
            channel_file.channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def run(
    target: SshTarget,
    command: str,
    timeout: float | None = 60.0,
    connect_timeout: float = 15.0,
    stdin: bytes | None = None,
) -> CommandResult:
    """Run ``command`` on the target over SSH and return its result.

    ``connect_timeout`` bounds the TCP connection, the handshake and the login; ``timeout``
    each wait for the command's output (``None``: it may run silently as long as it likes).
    The command reads ``stdin``, then end of file (at once without it: never a command left
    waiting for input nobody sends).
    Raises :class:`SshError` (:class:`KeyRefused` for a refused key) when there is no session
    or it breaks; the command's own failure is a result with its exit code, not an error.
    """
    where = f"{target.user}@{target.host}:{target.port}"
    try:
        client = _connect(target, timeout=connect_timeout)
    except paramiko.AuthenticationException as exc:
        raise KeyRefused(
            f"{where} refuses the lab key ({exc})",
            "the guest knows another key than the lab's (one restored or replaced by hand): "
            "put the lab's back, or remove it (id_ed25519 and .pub in the instance's folder) "
            "and run labctl up, which makes a new one and gives it to every guest",
        ) from exc
    except (OSError, EOFError, paramiko.SSHException) as exc:  # socket errors are OSErrors
        raise SshError(f"no SSH session with {where}: {_describe(exc)}") from exc
    try:
        given, stdout, stderr = client.exec_command(command, timeout=timeout)
        if stdin:
            feeding = threading.Thread(target=_feed, args=(given, stdin), daemon=True)
            feeding.start()  # while the output is read: neither side waits on a full pipe
        else:
            given.channel.shutdown_write()
        out = stdout.read()
        err = stderr.read()
        rc = stdout.channel.recv_exit_status()
    except TimeoutError as exc:
        raise SshError(f"on {where}, {command!r} said nothing for {timeout:.0f} s") from exc
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise SshError(f"SSH session with {where} broke: {_describe(exc)}") from exc
    finally:
        client.close()
    return CommandResult.of(command, rc, out, err)


#: first and largest time one login attempt may take (handshake, login and the command)
ATTEMPT_TIMEOUT = (10.0, 120.0)


def wait_for_login(
    target: SshTarget, deadline: float, command: str = "true", poll: float = 1.0
) -> CommandResult:
    """Retry a key login that runs ``command`` until it succeeds or ``deadline`` (monotonic).

    An attempt that uses up its whole time means a slow guest, not a dead one (an arm64 guest
    translated twice needs tens of seconds for the key exchange): the next attempt gets twice
    as long. Abandoning slow handshakes every few seconds would only pile up half-done
    sessions in the guest's sshd, each eating the CPU the next one needs.
    """
    last = "no answer"
    refused = 0
    allowed, largest = ATTEMPT_TIMEOUT
    while True:
        cancel.check()
        started = time.monotonic()
        budget = min(allowed, max(1.0, deadline - started))
        try:
            result = run(target, command, timeout=budget, connect_timeout=budget)
            if result.succeeded:
                return result
            last = result.detail
        except KeyRefused as exc:
            # sshd answers but refuses the lab key: waiting longer will not change that.
            refused += 1
            if refused >= 3:
                raise ReadyTimeout(exc.message, exc.hint) from exc
        except SshError as exc:
            last = _describe(exc.__cause__) if exc.__cause__ else exc.message
            if time.monotonic() - started >= 0.9 * budget:
                allowed = min(2 * allowed, largest)
        if time.monotonic() >= deadline:
            raise ReadyTimeout(f"no SSH login to {target.user}@{target.host}:{target.port}: {last}")
        time.sleep(poll)
