"""A command's stdin through the engines' own exec, at the library boundary: LXD (a file the
command reads, then removes) and Docker/Podman (an attached exec's multiplexed stream)."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from labctl.backends.lxd import LxdBackend
from labctl.docker_client import exec_with_stdin
from labctl.errors import EngineError
from labctl.instance.state import GuestRecord
from labctl.keys import KeyPair


class _Result:
    def __init__(self, rc: int, out: bytes | str, err: bytes | str) -> None:
        self.exit_code, self.stdout, self.stderr = rc, out, err


class _Files:
    """The container's files, kept in a host folder (the path's last part names them)."""

    def __init__(self, root: Path) -> None:
        self.root, self.deleted = root, []  # type: ignore[var-annotated]

    def here(self, path: str) -> Path:
        return self.root / Path(path).name

    def put(self, path: str, data: bytes, mode: str) -> None:
        assert mode == "0600"
        self.here(path).write_bytes(data)

    def delete(self, path: str) -> None:
        self.deleted.append(path)
        self.here(path).unlink()


class _Container:
    """A running container whose exec runs the command on the host, its files remapped."""

    def __init__(self, root: Path) -> None:
        self.status, self.files, self.broken = "Running", _Files(root), False

    def execute(self, argv: list[str], decode: bool = True) -> _Result:
        if self.broken:
            raise EngineError("the daemon went away")
        argv = [str(self.files.here(a)) if a.startswith("/tmp/.labctl-") else a for a in argv]
        done = subprocess.run(argv, capture_output=True, check=False)
        if done.returncode in (126, 127):  # as LXD: the operation fails, the output is lost
            raise EngineError("Command not found")
        if decode:  # as pylxd: strict UTF-8, a binary output raises
            return _Result(done.returncode, done.stdout.decode(), done.stderr.decode())
        return _Result(done.returncode, done.stdout, done.stderr)


class _Lxd:
    def __init__(self, box: _Container) -> None:
        class Instances:
            def get(_self, name: str) -> _Container:
                return box

        self.instances = Instances()


@pytest.fixture
def box(tmp_path: Path) -> tuple[Any, _Container]:
    container = _Container(tmp_path)
    backend = LxdBackend(_Lxd(container))  # type: ignore[arg-type]
    record = GuestRecord("sys", "lxd", "labctl-lab-t1-sys", "ready")
    return backend.connect(record, KeyPair(tmp_path / "key")), container


def test_lxd_gives_the_input_as_a_file_the_command_reads_then_removes(
    box: tuple[Any, _Container], tmp_path: Path
) -> None:
    conn, container = box
    result = conn.run("wc -c; read -r first < /dev/null; exit 3", timeout=None, stdin=b"x" * 70_000)
    assert (result.rc, result.stdout.strip()) == (3, "70000")
    assert list(tmp_path.glob(".labctl-stdin-*")) == []  # the command's wrapper removed it
    bounded = conn.run("tr a-z A-Z", timeout=30, stdin=b"hola\n")  # inside the guest's timeout
    assert bounded.stdout == "HOLA\n"
    assert conn.run("cat; echo eof", timeout=None).stdout == "eof\n"  # none: end of file


#: every byte value, and a UTF-8 sequence cut in two: what a text decoding loses
BINARY = bytes(range(256)) + "ñ".encode()[:1]


def test_lxd_keeps_a_binary_output_whole(box: tuple[Any, _Container]) -> None:
    conn, _ = box
    result = conn.run("cat", timeout=None, stdin=BINARY)
    assert result.raw_stdout == BINARY and result.stdout.endswith("\ufffd")
    assert conn.run("cat", timeout=30, stdin=BINARY).raw_stdout == BINARY  # under timeout too


def test_lxd_passes_a_command_not_found_and_not_executable_through(
    box: tuple[Any, _Container],
) -> None:
    conn, _ = box
    missing = conn.run("echo before; nosuchcmd-labctl", timeout=None)
    assert (missing.rc, missing.stdout) == (127, "before\n")
    assert missing.stderr.rstrip().endswith("not found")  # the shell's words, not LXD's
    assert conn.run("exit 126", timeout=None, stdin=b"x").rc == 126
    # a line like the tail's is the command's own: its code stands
    assert conn.run("echo @labctl-exit-0:127 >&2; exit 3", timeout=None).rc == 3
    said = conn.run("echo @labctl-exit-0:127 >&2", timeout=None)
    assert (said.rc, said.stderr) == (0, "@labctl-exit-0:127\n")
    # a process left behind that writes after the tail's line: the code is still the command's
    late = conn.run("(sleep .3; echo late >&2) & exit 127", timeout=None)
    assert (late.rc, late.stderr) == (127, "late\n")


def test_lxd_removes_the_input_when_the_exec_fails(
    box: tuple[Any, _Container], tmp_path: Path
) -> None:
    conn, container = box
    container.broken = True
    with pytest.raises(EngineError, match="went away"):
        conn.run("cat", timeout=None, stdin=b"secret")
    assert len(container.files.deleted) == 1 and list(tmp_path.glob(".labctl-stdin-*")) == []


class _Api:
    """Docker's exec API: the daemon's end of an attached exec is a socket pair's other end."""

    def __init__(self, exit_code: int | None) -> None:
        self.exit_code = exit_code
        self.ours, self.theirs = socket.socketpair()

    def exec_create(
        self, container: str, argv: list[str], stdin: bool, user: str
    ) -> dict[str, str]:
        assert stdin and user == "root"
        threading.Thread(target=self._daemon, daemon=True).start()
        return {"Id": "e1"}

    def _daemon(self) -> None:
        """Read the input to its end, then answer as Docker frames it: stdout, stderr."""
        got = b""
        while chunk := self.theirs.recv(65536):
            got += chunk
        for stream, data in ((1, f"{len(got)}\n".encode()), (2, b"err\n")):
            self.theirs.sendall(struct.pack(">BxxxL", stream, len(data)) + data)
        self.theirs.close()

    def exec_start(self, exec_id: str, socket: bool) -> Any:
        return self.ours

    def exec_inspect(self, exec_id: str) -> dict[str, int | None]:
        return {"ExitCode": self.exit_code}


def test_docker_sends_the_input_and_splits_the_answer_by_stream() -> None:
    api = _Api(3)
    assert exec_with_stdin(api, "c", ["wc", "-c"], b"y" * 300_000) == (  # type: ignore[arg-type]
        3,
        b"300000\n",
        b"err\n",
    )


def test_docker_without_an_exit_code_is_an_engine_error_not_a_success() -> None:
    with pytest.raises(EngineError, match="no exit code"):
        exec_with_stdin(_Api(None), "c", ["true"], b"")  # type: ignore[arg-type]
