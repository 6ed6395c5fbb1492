"""SSH failures become labctl errors that say which guest and why, never a paramiko traceback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.backends.libvirt import LibvirtBackend
from labctl.command import CommandResult
from labctl.errors import LabctlError, ReadyTimeout
from labctl.instance.state import GuestRecord
from labctl.keys import ensure_keypair
from labctl.ssh import SshError, SshTarget, run, wait_for_login


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mute_server() -> Iterator[int]:
    """Accepts TCP connections and never says a word (a guest whose sshd hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield int(server.getsockname()[1])
    server.close()
    for conn in held:
        conn.close()


def test_refused_connection_is_an_ssh_error(tmp_path: Path) -> None:
    key = ensure_keypair(tmp_path / "id", "t")
    port = _closed_port()
    with pytest.raises(SshError) as info:
        run(SshTarget("127.0.0.1", port, "root", key.private), "true", timeout=2)
    assert isinstance(info.value, LabctlError)
    assert f"root@127.0.0.1:{port}" in info.value.message
    assert "NoValidConnectionsError" in info.value.message


def test_silent_server_is_an_ssh_error_after_the_timeout(tmp_path: Path, mute_server: int) -> None:
    key = ensure_keypair(tmp_path / "id", "t")
    t0 = time.monotonic()
    with pytest.raises(SshError, match="no SSH session"):
        run(SshTarget("127.0.0.1", mute_server, "root", key.private), "true", connect_timeout=1)
    assert time.monotonic() - t0 < 10


def test_wait_for_login_gives_up_at_the_deadline_with_the_last_reason(tmp_path: Path) -> None:
    key = ensure_keypair(tmp_path / "id", "t")
    target = SshTarget("127.0.0.1", _closed_port(), "root", key.private)
    with pytest.raises(ReadyTimeout) as info:
        wait_for_login(target, time.monotonic() + 0.5, poll=0.1)
    assert info.value.message.startswith("no SSH login to root@127.0.0.1:")
    assert info.value.message.endswith(
        "NoValidConnectionsError: [Errno None] Unable to connect "
        f"to port {target.port} on 127.0.0.1"
    )


def test_vm_exec_that_cannot_connect_names_the_guest_and_shows_its_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # libvirt says the VM runs, behind its own bridge: it just does not answer
    monkeypatch.setattr(LibvirtBackend, "_guard", lambda self, resource, address, guest: None)
    monkeypatch.setattr(LibvirtBackend, "_now", lambda self, resource: "running")
    key = ensure_keypair(tmp_path / "id", "t")
    console = tmp_path / "kvm-virtio.console.log"
    console.write_text("LABCTL-READY\nvirtio_net virtio0 eth0: TX timeout on queue: 0\n")
    record = GuestRecord(
        "kvm-virtio",
        "libvirt",
        "labctl-virtualization-main-kvm-virtio",
        stage="ready",
        address="127.0.0.1",
        port=_closed_port(),
        console_log=str(console),
    )
    with pytest.raises(SshError) as info:
        LibvirtBackend().connect(record, key).run("true")
    message = info.value.message
    assert message.startswith("kvm-virtio: no SSH session with root@127.0.0.1:")
    assert str(console) in message and "TX timeout on queue: 0" in message
    assert info.value.hint and "labctl exercise reset" in info.value.hint


def test_a_command_that_outlives_its_timeout_is_an_ssh_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Stalled:
        """An SSH channel whose command never finishes (paramiko raises socket.timeout)."""

        def read(self) -> bytes:
            raise TimeoutError

    class Client:
        closed = False

        def exec_command(self, command: str, timeout: float) -> tuple[_Stdin, Stalled, Stalled]:
            return _Stdin(_Channel()), Stalled(), Stalled()

        def close(self) -> None:
            Client.closed = True

    monkeypatch.setattr("labctl.ssh._connect", lambda target, timeout: Client())
    key = ensure_keypair(tmp_path / "id", "t")
    with pytest.raises(SshError, match=r"'sleep 99' said nothing for 3 s"):
        run(SshTarget("10.0.0.9", 22, "root", key.private), "sleep 99", timeout=3)
    assert Client.closed


class _Channel:
    def __init__(self) -> None:
        self.closed_for_writing = False

    def shutdown_write(self) -> None:
        self.closed_for_writing = True

    def recv_exit_status(self) -> int:
        return 0


class _Stdin:
    """A command's stdin over SSH: what was written, and whether it was ended."""

    def __init__(self, channel: _Channel) -> None:
        self.channel, self.written = channel, b""

    def write(self, data: bytes) -> None:
        self.written += data

    def flush(self) -> None:
        pass


class _Output:
    def __init__(self, channel: _Channel) -> None:
        self.channel = channel

    def read(self) -> bytes:
        return b""


@pytest.mark.parametrize("given", [None, b"hola\n"])
def test_a_command_gets_what_is_given_then_end_of_file_never_an_open_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: bytes | None
) -> None:
    channel = _Channel()
    stdin = _Stdin(channel)

    class Client:
        def exec_command(self, command: str, timeout: float) -> tuple[_Stdin, _Output, _Output]:
            return stdin, _Output(channel), _Output(channel)

        def close(self) -> None:
            pass

    monkeypatch.setattr("labctl.ssh._connect", lambda target, timeout: Client())
    key = ensure_keypair(tmp_path / "id", "t")
    run(SshTarget("10.0.0.9", 22, "root", key.private), "cat", stdin=given)
    for _ in range(100):  # the input is written beside the reading of the output
        if channel.closed_for_writing:
            break
        time.sleep(0.01)
    assert channel.closed_for_writing and stdin.written == (given or b"")


def test_a_slow_handshake_gets_twice_as_long_next_time_a_refusal_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    budgets: list[float] = []
    outcomes = iter(["slow", "slow", "refused", "slow", "slow", "slow", "ok"])

    def fake_run(
        target: SshTarget, command: str, timeout: float | None, connect_timeout: float
    ) -> CommandResult:
        budgets.append(connect_timeout)
        outcome = next(outcomes)
        if outcome == "slow":  # the whole budget goes by without a banner
            time.sleep(connect_timeout)
            raise SshError("no SSH session") from TimeoutError("timed out")
        if outcome == "refused":
            raise SshError("no SSH session") from ConnectionRefusedError(111, "refused")
        return CommandResult(command, 0, "aarch64\n", "")

    monkeypatch.setattr("labctl.ssh.run", fake_run)
    monkeypatch.setattr("labctl.ssh.ATTEMPT_TIMEOUT", (0.05, 0.3))
    target = SshTarget("10.0.0.9", 22, "root", Path("/nonexistent"))
    result = wait_for_login(target, time.monotonic() + 30, command="uname -m", poll=0.01)
    assert result.stdout == "aarch64\n"
    assert budgets == [0.05, 0.1, 0.2, 0.2, 0.3, 0.3, 0.3]
