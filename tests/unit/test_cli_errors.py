"""What the command line's edge says when a command fails: a sentence and an exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import labctl.cli as cli
from labctl import backends, console
from labctl.command import CommandResult
from labctl.errors import EngineError
from labctl.instance.state import GuestRecord, LabState
from labctl.lab import status as lab_status
from tests.unit.fake_connection import FakeConnection


@pytest.fixture(autouse=True)
def _no_json_left() -> Iterator[None]:
    yield
    console.reset()  # as the next command's start does


def main(monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["labctl", *argv])
    cli.main()


def run_main(monkeypatch: pytest.MonkeyPatch, raised: BaseException) -> int:
    def command(**kw: object) -> int:
        raise raised

    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(SystemExit) as done:
        cli.main()
    return int(done.value.code or 0)


def test_a_labctl_error_is_its_message_hint_and_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(monkeypatch, EngineError("libvirt said no", "start libvirtd")) == 4
    assert capsys.readouterr().err == "Error: libvirt said no\nHint: start libvirtd\n"


@pytest.mark.parametrize(("euid", "hint"), [(1000, True), (0, False)])
def test_a_file_the_host_refuses_is_said_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], euid: int, hint: bool
) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: euid)
    refused = PermissionError(13, "Permission denied", "/var/lib/labctl/v-main/run/state.json")
    assert run_main(monkeypatch, refused) == 3
    err = capsys.readouterr().err
    assert err.startswith(
        "Error: [Errno 13] Permission denied: '/var/lib/labctl/v-main/run/state.json'\n"
    )
    assert ("Hint: labctl keeps its labs and images as root's: run it as root" in err) is hint
    assert "Traceback" not in err


def test_a_full_disk_is_said_with_the_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(monkeypatch, OSError(28, "No space left on device", "/var/cache/x")) == 3
    assert capsys.readouterr().err == (
        "Error: [Errno 28] No space left on device: '/var/cache/x'\n"
    )


def test_verbose_shows_where_a_refused_file_came_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli.console, "VERBOSE", True)
    assert run_main(monkeypatch, OSError(28, "No space left on device", "/var/cache/x")) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "in command" in err
    assert err.rstrip().endswith("Error: [Errno 28] No space left on device: '/var/cache/x'")


def test_a_guests_hint_names_this_instance(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from labctl import backends
    from labctl.backends.base import up_again
    from labctl.instance.state import GuestRecord, InstanceDir, LabState
    from labctl.paths import LABS_DIR

    monkeypatch.setenv("LABCTL_STATE", str(tmp_path))
    rec = GuestRecord("lxc-system", "lxd", "labctl-virtualization-walk-lxc-system", "ready")
    InstanceDir("virtualization", "walk").save(
        LabState(
            "virtualization",
            "walk",
            str(LABS_DIR / "virtualization" / "lab.yaml"),
            guests={"lxc-system": rec},
        )
    )

    def stopped(*_: object, **__: object) -> None:
        raise EngineError("lxc-system is stopped (not running)", up_again("starts it again"))

    monkeypatch.setattr(backends, "connect", lambda *_: SimpleNamespace(run=stopped))
    said = CliRunner().invoke(cli.app, ["exec", "-i", "walk", "lxc-system", "--", "true"])
    assert isinstance(said.exception, EngineError), said.output
    assert said.exception.hint == (  # `labctl up` alone would bring up instance main
        "labctl up --instance walk starts it again "
        "(for a class's student, the instructor's labctl class up does)"
    )


def test_under_json_an_error_is_json_on_stdout_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], state_root: Path
) -> None:
    with pytest.raises(SystemExit) as done:
        main(monkeypatch, "status", "--lab", "nosuch", "--json")
    assert done.value.code == 2
    out, err = capsys.readouterr()
    said = json.loads(out)["error"]
    assert said["message"] == "lab nosuch (instance main) is not up" and said["exit_code"] == 2
    assert said["hint"].startswith("run: labctl up LAB_FILE")
    assert err.startswith("Error: lab nosuch (instance main) is not up\nHint: run: labctl up")
    with pytest.raises(SystemExit):  # the next command without --json: its error on stderr only
        main(monkeypatch, "status", "--lab", "nosuch")
    assert capsys.readouterr().out == ""


def test_an_error_after_the_json_is_not_a_second_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def command(**kw: object) -> int:
        console.json_asked(True)
        console.print_json({"removed": []})
        raise EngineError("libvirt said no")

    monkeypatch.setattr(cli, "app", command)
    with pytest.raises(SystemExit):
        cli.main()
    assert json.loads(capsys.readouterr().out) == {"removed": []}


def test_ctrl_c_in_a_command_says_interrupted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def pressed(_name: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr("labctl.classroom.state.pick", pressed)
    with pytest.raises(SystemExit) as done:
        main(monkeypatch, "class", "status")  # typer makes Ctrl-C exit code 130, silently
    assert done.value.code == 130
    assert capsys.readouterr().err == "Interrupted.\n"


def test_a_guest_command_that_exits_130_is_passed_through_not_said_interrupted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rec = GuestRecord("box", "lxd", "labctl-net-t1-box", stage="ready")
    guest = FakeConnection(respond=lambda c: CommandResult(c, 130, "out\n", ""), name="box")
    state = LabState("net", "t1", "x", guests={"box": rec})
    monkeypatch.setattr(lab_status, "load", lambda lab, i: (SimpleNamespace(key=tmp_path), state))
    monkeypatch.setattr(backends, "get", lambda engine: SimpleNamespace(connect=lambda r, k: guest))
    with pytest.raises(SystemExit) as done:
        main(monkeypatch, "exec", "box", "--lab", "net", "--instance", "t1", "--", "exit 130")
    said = capsys.readouterr()
    assert done.value.code == 130 and said.out == "out\n" and said.err == ""


def test_an_option_exec_does_not_know_is_refused_not_run_in_the_guest(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # click hands an unknown option on as the command: "--json true" would run in the guest
    monkeypatch.setattr(lab_status, "load", lambda *_a: pytest.fail("the guest was reached"))
    with pytest.raises(SystemExit) as done:
        main(monkeypatch, "exec", "box", "--json", "--", "true")
    err = capsys.readouterr().err
    assert done.value.code == 2 and "Error: no such option: --json" in err
    assert "labctl exec box [--lab LAB] [-i INSTANCE] -- COMMAND" in " ".join(err.split())
    # a class's student is not offered the options labctl refuses them
    monkeypatch.setattr(console, "CONFINED", True)
    with pytest.raises(SystemExit):
        main(monkeypatch, "exec", "box", "--json", "--", "true")
    said = " ".join(capsys.readouterr().err.split())
    assert "labctl exec box -- COMMAND" in said and "--lab LAB" not in said
