"""``labctl exec`` and ``labctl ssh`` in-process: both go through the guest's connection."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from labctl import backends
from labctl.cli import app
from labctl.command import CommandResult
from labctl.errors import ExitCode, LabctlError
from labctl.instance.state import GuestRecord, LabState
from labctl.keys import KeyPair
from labctl.lab import status as lab_status
from tests.unit.fake_connection import FakeConnection


class OneGuest:
    """A backend whose only guest answers every command with exit 3 and some output."""

    def __init__(self) -> None:
        self.guest = FakeConnection(
            respond=lambda command: CommandResult(command, 3, "out\n", "err\n"), name="kvm-full"
        )
        self.asked: list[tuple[str, Path]] = []

    def connect(self, record: GuestRecord, key: KeyPair) -> FakeConnection:
        self.asked.append((record.name, key.private))
        return self.guest


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> OneGuest:
    rec = GuestRecord("kvm-full", "libvirt", "labctl-v-main-kvm-full", stage="ready")
    state = LabState("v", "main", "x", guests={"kvm-full": rec})
    inst = SimpleNamespace(key=tmp_path / "key")
    monkeypatch.setattr(lab_status, "load", lambda lab, instance: (inst, state))
    fake = OneGuest()
    monkeypatch.setattr(backends, "get", lambda engine: fake)
    return fake


def test_exec_passes_output_and_exit_code_through_without_a_silence_bound(
    backend: OneGuest, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["exec", "kvm-full", "--", "uname", "-m"])
    assert result.exit_code == 3
    assert result.stdout == "out\n" and result.stderr == "err\n"
    assert backend.guest.commands == ["uname -m"]
    assert backend.guest.timeouts == [None]  # a VM's command may be silent for long
    assert backend.asked == [("kvm-full", tmp_path / "key")]


def test_exec_passes_a_binary_output_byte_for_byte(backend: OneGuest) -> None:
    raw, said = bytes(range(256)), "cat: aviso en latin-1: año\n".encode("latin-1")
    backend.guest.respond = lambda command: CommandResult.of(command, 0, raw, said)
    result = CliRunner().invoke(app, ["exec", "kvm-full", "--", "cat", "photo.png"])
    assert result.exit_code == 0 and result.stdout_bytes == raw and result.stderr_bytes == said


def test_exec_of_one_argument_runs_it_as_a_shell_line(backend: OneGuest) -> None:
    CliRunner().invoke(app, ["exec", "kvm-full", "--", "echo a | wc -c"])
    assert backend.guest.commands == ["echo a | wc -c"]


def test_ssh_replaces_labctl_with_the_connections_shell(
    backend: OneGuest, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr("os.execvp", lambda file, argv: ran.append(argv))
    result = CliRunner().invoke(app, ["ssh", "kvm-full"])
    assert result.exit_code == 0, result.output
    assert ran == [["fake-shell", "kvm-full"]]


def test_a_guest_not_in_the_lab_is_said_so(backend: OneGuest) -> None:
    result = CliRunner().invoke(app, ["exec", "nope", "--", "true"])
    assert "no guest 'nope' in lab v" in str(result.exception)
    assert isinstance(result.exception, LabctlError)
    assert result.exception.code == ExitCode.USAGE  # never mistaken for the command's exit 1
    assert backend.asked == []
    typo = CliRunner().invoke(app, ["exec", "kvm-ful", "--", "true"]).exception
    assert isinstance(typo, LabctlError) and (typo.hint or "").startswith("did you mean kvm-full?")
