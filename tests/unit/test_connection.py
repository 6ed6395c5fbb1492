"""The host's connection for real on ``sh``, and what every connection builds on ``run``.

``read_file`` and a guest's ``fetch`` (curl run where the connection runs commands) are
exercised through :class:`LocalConnection`, whose ``run`` is a real ``sh -c`` on this host.
"""

from __future__ import annotations

import http.server
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.command import CommandResult
from labctl.connection import (
    DEFAULT,
    Account,
    Connection,
    ExecConnection,
    FetchError,
    HttpAnswer,
    LocalConnection,
    ReadError,
    Timeout,
)
from labctl.errors import LabctlError
from tests.ci import needs
from tests.unit.servers import serving, web_page

# ---- run -----------------------------------------------------------------------------------


def test_run_gives_exit_code_and_both_outputs() -> None:
    result = LocalConnection().run("echo out; echo err >&2; exit 3")
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.command == "echo out; echo err >&2; exit 3" and not result.succeeded


@needs(os.geteuid() == 0, "commands run as another account only from root (labctl's own way)")
def test_as_an_account_a_command_has_its_ids_home_and_rights_not_roots() -> None:
    entry = pwd.getpwuid(65534)  # the overflow uid's account (nobody), whatever its home
    nobody = Account.of_uid(65534)
    assert (nobody.name, nobody.home) == (entry.pw_name, entry.pw_dir)
    folder = Path(tempfile.mkdtemp(dir="/var/tmp"))  # one every account may go through
    try:
        folder.chmod(0o755)
        (folder / "open").write_text("anyone's\n")
        (folder / "open").chmod(0o644)
        secret = folder / "root-only"
        secret.write_text("root's\n")
        secret.chmod(0o600)
        as_nobody = LocalConnection(account=nobody)
        said = as_nobody.run('id -un; id -u; echo "$HOME"; pwd; echo "${SUDO_USER:-none}"')
        here = entry.pw_dir if os.path.isdir(entry.pw_dir) else "/"
        assert said.stdout.split() == [entry.pw_name, "65534", entry.pw_dir, here, "none"]
        assert as_nobody.run(f"cat {folder / 'open'}").stdout == "anyone's\n"
        refused = as_nobody.run(f"cat {secret}")  # the file's mode refuses, not the folder's
        assert refused.rc == 1 and "Permission denied" in refused.stderr
        assert LocalConnection().run(f"cat {secret}").stdout == "root's\n"  # root's own: read
    finally:
        shutil.rmtree(folder)


def test_an_account_gone_from_the_host_is_said() -> None:
    with pytest.raises(LabctlError, match="no account with uid 4242424"):
        Account.of_uid(4242424)


def test_stdin_is_closed_so_a_reader_does_not_wait() -> None:
    t0 = time.monotonic()
    assert LocalConnection().run("cat").succeeded
    assert time.monotonic() - t0 < 5


def test_input_given_is_read_then_end_of_file() -> None:
    big = b"x" * 300_000  # more than a pipe holds: written while the output is read
    result = LocalConnection().run("wc -c; echo done >&2", stdin=big)
    assert (result.stdout.strip(), result.stderr) == ("300000", "done\n")
    assert LocalExec().run("tr a-z A-Z", timeout=30, stdin=b"hola\n").stdout == "HOLA\n"


def test_bytes_that_are_no_utf8_are_replaced_not_a_traceback() -> None:
    assert LocalConnection().run("printf 'a\\377b'").stdout == "a\ufffdb"


def test_a_command_that_runs_out_of_time_is_exit_124_and_everything_it_started_dies(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "child.pid"
    t0 = time.monotonic()
    result = LocalConnection(timeout=0.5).run(f"sleep 60 & echo $! > {pidfile}; echo begun; wait")
    assert time.monotonic() - t0 < 10
    assert result.rc == 124 and result.stdout == "begun\n"
    assert result.stderr.endswith("timed out after 0.5 s\n")
    child = int(pidfile.read_text())
    for _ in range(50):  # the kernel reaps the killed orphan a moment later
        if not Path(f"/proc/{child}").exists() or "Z" in _state(child):
            break
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_a_timeout_given_to_run_wins_over_the_connections_own() -> None:
    slow = LocalConnection(timeout=0.2)
    assert slow.run("sleep 1").rc == 124
    assert slow.run("sleep 1", timeout=None).rc == 0
    assert LocalConnection().run("sleep 1", timeout=0.2).rc == 124


class LocalExec(ExecConnection):
    """An engine's exec played by this host: ``argv`` runs here, unbounded, as exec runs it."""

    name = "box"

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.argvs: list[list[str]] = []

    def _exec(self, argv: list[str], stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
        self.argvs.append(argv)
        env = {**os.environ, "PATH": self.path} if self.path else None
        # as the engines: end of file after stdin, the output as bytes
        done = subprocess.run(argv, input=stdin or b"", capture_output=True, env=env, check=False)
        rc = done.returncode if done.returncode >= 0 else 128 - done.returncode  # as engines say
        return rc, done.stdout, done.stderr

    def shell_argv(self) -> list[str]:
        return ["sh"]


def test_an_exec_connection_ends_a_command_and_all_it_started_at_its_timeout(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "child.pid"
    t0 = time.monotonic()
    result = LocalExec().run(f"sleep 60 & echo $! > {pidfile}; echo begun; wait", timeout=0.5)
    assert time.monotonic() - t0 < 10
    assert result.rc == 124 and result.stdout == "begun\n"
    assert result.stderr.endswith("timed out after 0.5 s\n")
    assert result.command.startswith("sleep 60 &")  # the command as asked, not its wrapping
    child = int(pidfile.read_text())
    for _ in range(50):
        if not Path(f"/proc/{child}").exists() or "Z" in _state(child):
            break
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child)


def test_an_exec_connection_ends_a_grandchild_that_ignores_the_polite_end() -> None:
    """The output stays open while anything holds it: the exec returns only when all died."""
    t0 = time.monotonic()
    result = LocalExec().run("(trap '' TERM; sleep 60) & sleep 60", timeout=0.5)
    assert result.rc == 124 and time.monotonic() - t0 < 10


def test_an_exec_connection_kills_a_command_that_ignores_the_polite_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("labctl.connection._GRACE", 1)
    t0 = time.monotonic()
    result = LocalExec().run("trap '' TERM; sleep 60", timeout=0.5)
    assert result.rc == 124 and "timed out after 0.5 s" in result.stderr
    assert 1.4 < time.monotonic() - t0 < 10  # TERM at 0.5 s did nothing, KILL 1 s later did


def test_an_exec_connection_keeps_the_commands_own_exit_codes() -> None:
    box = LocalExec()
    assert box.run("exit 124", timeout=30).stderr == ""  # its own 124: no time ran out
    assert box.run("exit 124", timeout=30).rc == 124
    assert box.run("echo out; echo err >&2; exit 3") == CommandResult(
        "echo out; echo err >&2; exit 3", 3, "out\n", "err\n"
    )
    box.run("true", timeout=None)
    assert box.argvs[-1] == ["sh", "-c", "true"]  # no bound asked: nothing wrapped


def test_an_exec_connection_runs_unbounded_in_a_guest_without_timeout(tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sh", "sleep"):
        (bare / tool).symlink_to(shutil.which(tool) or tool)
    result = LocalExec(path=str(bare)).run("sleep 1; echo done", timeout=0.2)
    assert (result.rc, result.stdout) == (0, "done\n")


def test_the_hosts_shell_is_the_users() -> None:
    assert LocalConnection().shell_argv() == [os.environ.get("SHELL") or "sh"]


# ---- read_file -----------------------------------------------------------------------------


def test_read_file_carries_any_byte(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40 + b"\n\x00end"
    (tmp_path / "bin file").write_bytes(data)
    assert LocalConnection().read_file(str(tmp_path / "bin file")) == data
    (tmp_path / "empty").write_bytes(b"")
    assert LocalConnection().read_file(str(tmp_path / "empty")) == b""


def test_read_file_of_nothing_is_none_and_of_a_directory_an_error(tmp_path: Path) -> None:
    assert LocalConnection().read_file(str(tmp_path / "nope")) is None
    with pytest.raises(ReadError) as err:
        LocalConnection().read_file(str(tmp_path))
    assert "Is a directory" in err.value.reason
    assert err.value.message.startswith(f"{tmp_path} cannot be read on host: ")


def test_read_file_home_paths_are_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "it's.txt").write_text("hola\n")
    assert LocalConnection().read_file("~/it's.txt") == b"hola\n"


# ---- fetch ---------------------------------------------------------------------------------


@pytest.fixture
def web() -> Iterator[str]:
    with web_page("<h1>hola ñ</h1>\nline 2".encode()) as url:
        yield url


def _closed_port() -> int:
    with socket.socket() as s:  # free a moment ago, and nobody listens on it
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class InGuest(LocalConnection):
    """The host's ``run`` with a guest's ``fetch``: curl run through ``run``."""

    fetch = Connection.fetch


class NoCurl(InGuest):
    """A guest whose shell finds no curl."""

    def run(
        self, command: str, timeout: Timeout = DEFAULT, stdin: bytes | None = None
    ) -> CommandResult:
        return super().run(f"PATH=/nonexistent; {command}", timeout, stdin)


@pytest.mark.parametrize("conn", [LocalConnection(), InGuest("g")], ids=["host", "guest"])
def test_fetch_gives_status_and_body(web: str, conn: Connection) -> None:
    assert conn.fetch(f"{web}/") == HttpAnswer(200, "<h1>hola ñ</h1>\nline 2")
    assert conn.fetch(f"{web}/x") == HttpAnswer(404, "nope")


@pytest.mark.parametrize("conn", [LocalConnection(), InGuest("g")], ids=["host", "guest"])
def test_fetch_where_nothing_listens_is_unreachable(conn: Connection) -> None:
    with pytest.raises(FetchError) as err:
        conn.fetch(f"http://127.0.0.1:{_closed_port()}/", timeout=5)
    assert err.value.kind == "unreachable"


@pytest.mark.parametrize("conn", [LocalConnection(), InGuest("g")], ids=["host", "guest"])
def test_fetch_ignores_a_proxy_of_the_environment(
    web: str, conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = f"http://127.0.0.1:{_closed_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    assert conn.fetch(f"{web}/").status == 200


def test_fetch_in_a_guest_without_curl_says_so() -> None:
    with pytest.raises(FetchError) as err:
        NoCurl("app").fetch("http://127.0.0.1:1/")
    assert err.value.message.startswith("app has no curl to fetch http://127.0.0.1:1/")
    assert err.value.hint == "install curl in the guest's image"


def test_fetch_of_something_else_than_http_is_refused_before_running_anything() -> None:
    with pytest.raises(FetchError, match="not an http"):
        NoCurl("g").fetch("-o/etc/passwd file:///etc/shadow")


def test_the_hosts_fetch_asks_first_whether_it_may_contact_the_url_host(web: str) -> None:
    asked: list[str] = []

    def allow(host: str) -> None:
        asked.append(host)
        if host != "127.0.0.1":
            raise LabctlError(f"labctl will not contact {host}")

    conn = LocalConnection(allow=allow)
    assert conn.fetch(f"{web}/").status == 200
    with pytest.raises(LabctlError, match="will not contact 198.51.100.7"):
        conn.fetch("http://198.51.100.7:8080/")  # refused before any packet
    assert asked == ["127.0.0.1", "198.51.100.7"]


def test_the_hosts_fetch_never_follows_a_redirect() -> None:
    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://198.51.100.7/")  # nobody checked that host
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    with serving(server):
        answer = LocalConnection().fetch(f"http://127.0.0.1:{server.server_port}/", timeout=5)
    assert answer.status == 302


def test_an_app_container_is_entered_as_root_whatever_user_its_app_runs_as() -> None:
    """As in every other guest, a student is root in their own app container (labctl exec)."""
    from labctl.backends.docker import DockerBackend
    from labctl.instance.state import GuestRecord
    from tests.unit.fake_engines import FakeContainer, FakeDockerClient

    fake = FakeDockerClient()
    box = fake.containers.by_name["labctl-v-i-app"] = FakeContainer("labctl-v-i-app", {})
    rec = GuestRecord("app", "docker", "labctl-v-i-app", "ready")
    conn = DockerBackend(fake).connect(rec, None)  # type: ignore[arg-type]
    assert conn.run("id -u", timeout=None).stdout == "ok\n"
    assert box.execs == [(["sh", "-c", "id -u"], "root")]
    assert conn.shell_argv()[-4:] == ["-u", "root", "labctl-v-i-app", "sh"]


@pytest.mark.parametrize("conn", [LocalConnection(), LocalExec()], ids=["host", "exec"])
@pytest.mark.parametrize("bound", [None, 30.0], ids=["unbounded", "bounded"])
def test_the_output_is_also_kept_byte_for_byte(conn: Connection, bound: float | None) -> None:
    raw = bytes(range(256))
    result = conn.run("cat", timeout=bound, stdin=raw)
    assert result.raw_stdout == raw and result.stdout == raw.decode(errors="replace")
