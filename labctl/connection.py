"""One door to every guest and to the host: a :class:`Connection` runs shell commands there.

On the pytest-testinfra model, every connection implements one ``run(command) ->
CommandResult``; what the checks need beyond it (reading a file, fetching a URL from where
the student would) is built on that ``run``, so a new transport only has to run commands.
The host's connection is :class:`LocalConnection`; a backend hands out the connection of one
of its guests (``Backend.connect``): SSH for VMs, the engine's own exec for containers.
"""

from __future__ import annotations

import base64
import binascii
import os
import pwd
import shlex
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal
from urllib.parse import urlsplit

import requests

from labctl.command import CommandResult
from labctl.errors import LabctlError


class _Default(Enum):
    TIMEOUT = "the connection's own timeout"


#: ``run(command)`` without a timeout: the connection's own (:attr:`Connection.timeout`).
DEFAULT: Final = _Default.TIMEOUT
Timeout = float | None | _Default

#: exit code of a command that ran out of time (as coreutils' ``timeout``)
TIMED_OUT = 124
#: exit code of ``read_file``'s script when the file does not exist
_ABSENT = 100
#: seconds a command bounded by the guest's ``timeout`` gets between TERM and KILL
_GRACE = 5


class ReadError(LabctlError):
    """A file exists but cannot be read; ``reason`` is what the shell said."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


FetchFailure = Literal["unreachable", "timeout", "other"]


class FetchError(LabctlError):
    """Nothing answered at a URL: ``kind`` says whether it was refused, slow or else."""

    def __init__(self, message: str, kind: FetchFailure, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.kind = kind


@dataclass(frozen=True)
class HttpAnswer:
    """What an HTTP GET got: the status and the body as text."""

    status: int
    body: str


def shell_path(path: str) -> str:
    """Quote a path for the shell; ``~/x`` stays relative to $HOME."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


class Connection(ABC):
    """Somewhere commands run: the host or one guest of a lab."""

    #: the guest's name in the lab, or ``host``
    name: str
    #: what ``run`` allows a command when not told: seconds (None: no bound)
    timeout: float | None = 60.0

    @abstractmethod
    def run(
        self, command: str, timeout: Timeout = DEFAULT, stdin: bytes | None = None
    ) -> CommandResult:
        """Run a shell command line; its failure is a result with its exit code.

        ``timeout`` (default :attr:`timeout`, ``None``: none) bounds the wait as the
        transport can: each connection says how. The command reads ``stdin``, then end of
        file (None: end of file at once). A connection that breaks raises a
        :class:`LabctlError` (``SshError``, ``EngineError``...), never anything else.
        """

    @abstractmethod
    def shell_argv(self) -> list[str]:
        """A command line that opens an interactive shell there."""

    def _timeout(self, timeout: Timeout) -> float | None:
        """``timeout`` with :data:`DEFAULT` replaced by the connection's own."""
        return self.timeout if isinstance(timeout, _Default) else timeout

    def read_file(self, path: str) -> bytes | None:
        """The content of ``path`` (``~/x``: under $HOME), or None if there is no such file.

        Raises :class:`ReadError` when the file exists but cannot be read.
        """
        quoted = shell_path(path)
        # base64 carries any byte through a text transport; every guest image has it.
        script = f"[ -e {quoted} ] || [ -L {quoted} ] || exit {_ABSENT}; base64 < {quoted}"
        result = self.run(script)
        if result.rc == _ABSENT:
            return None
        if not result.succeeded:
            why = _said(result)
            raise ReadError(f"{path} cannot be read on {self.name}: {why}", why)
        try:
            return base64.b64decode(result.stdout)
        except binascii.Error as exc:
            why = f"base64 that does not decode ({exc})"
            raise ReadError(f"{path} cannot be read on {self.name}: {why}", why) from exc

    def fetch(self, url: str, timeout: float = 10.0) -> HttpAnswer:
        """GET ``url`` from here (``curl`` run in the guest); :class:`FetchError` if none answers.

        Proxies are ignored: only the server at the URL may answer for it.
        """
        if not url.startswith(("http://", "https://")):
            raise FetchError(f"{url!r} is not an http(s) URL", "other")
        script = (
            f"curl -sS --noproxy '*' --max-time {timeout:g} -w '\\n%{{http_code}}' "
            f"{shlex.quote(url)}"
        )
        result = self.run(script, timeout=timeout + 10)
        if result.rc == 127:
            raise FetchError(
                f"{self.name} has no curl to fetch {url}: {_said(result)}",
                "other",
                "install curl in the guest's image",
            )
        if result.rc in (6, 7):  # could not resolve the host, could not connect
            raise FetchError(f"nothing answers at {url} from {self.name}", "unreachable")
        if result.rc == 28:
            raise FetchError(f"{url} did not answer {self.name} in {timeout:g} s", "timeout")
        body, _, status = result.stdout.rpartition("\n")
        if not result.succeeded or not status.isdigit():
            raise FetchError(f"curl {url} on {self.name}: {_said(result)}", "other")
        return HttpAnswer(int(status), body)


def _said(result: CommandResult) -> str:
    """The last line a command printed (stderr first), or its exit code."""
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return lines[-1][:160] if lines else f"exit {result.rc}"


class ExecConnection(Connection):
    """A guest reached through its engine's exec (a container), not through the network.

    The engine's exec has no bound of its own, so the guest keeps ``timeout``: its
    ``timeout`` command ends the command (TERM, then KILL :data:`_GRACE` seconds later),
    whatever it started goes with it, and the result has exit 124, as on the host. A guest
    without a ``timeout`` command runs it unbounded.
    """

    #: containers are processes of the host: the host's bound
    timeout: float | None = 300.0

    @abstractmethod
    def _exec(self, argv: list[str], stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
        """Run ``argv`` in the guest to its end, ``stdin`` then end of file on its input:
        exit code, stdout, stderr as the command wrote them."""

    def run(
        self, command: str, timeout: Timeout = DEFAULT, stdin: bytes | None = None
    ) -> CommandResult:
        """Run ``command`` with ``sh -c`` in the guest."""
        bound = self._timeout(timeout)
        if bound is None:
            return CommandResult.of(command, *self._exec(["sh", "-c", command], stdin))
        inner = shlex.quote(command)
        # timeout leads its own process group; once it is done with its child, whatever of
        # the group outlived TERM (a grandchild holding the output open) goes too; fd 3
        # keeps stdin for it, which sh gives a job run with `&` as /dev/null
        line = (
            "if command -v timeout >/dev/null 2>&1; then "
            f"exec 3<&0; timeout -k {_GRACE} {bound:g} sh -c {inner} <&3 3<&- & p=$!; "
            "exec 3<&-; wait $p; rc=$?; "
            "case $rc in 124|137) kill -9 -$p 2>/dev/null;; esac; exit $rc; "
            f"else exec sh -c {inner}; fi"
        )
        t0 = time.monotonic()
        rc, out, err = self._exec(["sh", "-c", line], stdin)
        ended = rc in (TIMED_OUT, 128 + signal.SIGKILL) and time.monotonic() - t0 >= bound
        if ended:
            note = f"timed out after {bound:g} s\n".encode()
            return CommandResult.of(command, TIMED_OUT, out, err + note)
        return CommandResult.of(command, rc, out, err)


@dataclass(frozen=True)
class Account:
    """A user account of the host that commands run as: its ids, groups and home."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def of_uid(cls, uid: int) -> Account:
        """The account with ``uid``, as the host's password database has it now."""
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            raise LabctlError(
                f"the host has no account with uid {uid} any more",
                "labctl class up makes the student's account again",
            ) from None
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    def environment(self) -> dict[str, str]:
        """A login's variables: its own ``HOME``, names and a plain ``PATH``; nothing of root's."""
        return {
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }


class LocalConnection(Connection):
    """The host itself: ``sh -c`` with labctl's environment, the way testinfra's local backend.

    ``timeout`` bounds the whole command; one that runs out of it is killed with everything
    it started and gives exit code 124 (as coreutils' ``timeout``), never an exception.
    With ``account`` (labctl runs as root), commands run as that account instead: its ids
    and groups, its home as ``HOME`` and working folder, so ``~`` is its own and a file it
    points at is read with its rights, never root's.
    """

    def __init__(
        self,
        name: str = "host",
        timeout: float | None = 300.0,
        allow: Callable[[str], None] | None = None,
        account: Account | None = None,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.allow = allow  # raises unless ``fetch`` may send packets to this host name
        self.account = account

    def run(
        self, command: str, timeout: Timeout = DEFAULT, stdin: bytes | None = None
    ) -> CommandResult:
        """Run ``command`` with ``sh -c`` on the host (stdin: ``stdin``, else none)."""
        bound = self._timeout(timeout)
        who = self.account
        try:
            proc = subprocess.Popen(
                ["sh", "-c", command],
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout kills all of it
                user=who.uid if who else None,
                group=who.gid if who else None,
                extra_groups=os.getgrouplist(who.name, who.gid) if who else None,
                env=who.environment() if who else None,
                cwd=(who.home if os.path.isdir(who.home) else "/") if who else None,
            )
        except OSError as exc:  # no sh at all
            return CommandResult(command, 127, "", f"sh: {exc}")
        try:
            out, err = proc.communicate(stdin, timeout=bound)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            try:
                out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired as exc:  # a child left its session, pipes open
                out, err = exc.stdout or b"", exc.stderr or b""
            note = f"timed out after {bound:g} s\n".encode()
            return CommandResult.of(command, TIMED_OUT, out, err + note)
        return CommandResult.of(command, proc.returncode, out, err)

    def shell_argv(self) -> list[str]:
        """The user's shell."""
        return [os.environ.get("SHELL") or "sh"]

    def fetch(self, url: str, timeout: float = 10.0) -> HttpAnswer:
        """GET ``url`` from the host with requests, ignoring any proxy of the environment.

        With ``allow``, the URL's host is asked first: a lab's checks fetch only from its own
        guests (or loopback), never from an address that would leave by the default route.
        """
        host = urlsplit(url).hostname
        if self.allow is not None and host:
            self.allow(host)
        session = requests.Session()
        session.trust_env = False  # a proxy from the environment must not answer for a guest
        try:
            # A redirect would send the request on to a host nobody checked.
            answer = session.get(url, timeout=timeout, allow_redirects=False)
        except requests.ConnectionError as exc:
            kind: FetchFailure = "timeout" if isinstance(exc, requests.Timeout) else "unreachable"
            raise FetchError(f"nothing answers at {url}: {exc}", kind) from exc
        except requests.Timeout as exc:
            raise FetchError(f"{url} did not answer in {timeout:g} s", "timeout") from exc
        except requests.RequestException as exc:
            raise FetchError(f"{url}: {type(exc).__name__}: {exc}", "other") from exc
        finally:
            session.close()
        return HttpAnswer(answer.status_code, answer.text)
