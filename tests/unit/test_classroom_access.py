"""A student's identity comes from their account; their commands work on their own lab only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from labctl import backends
from labctl.classroom import access, accounts, sudo
from labctl.classroom.accounts import Account
from labctl.cli import app, student
from labctl.command import CommandResult
from labctl.errors import HostError
from labctl.instance.state import GuestRecord, LabState
from labctl.lab import status as lab_status
from tests.ci import require
from tests.unit.fake_accounts import FakeSystem
from tests.unit.fake_connection import FakeConnection


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    monkeypatch.setenv("LABCTL_STATE", str(tmp_path / "state"))
    return FakeSystem(tmp_path / "home")


@pytest.fixture
def ana(fake: FakeSystem) -> Account:
    return accounts.ensure_account("ana", "Ana", None, "so24a", lab="net", system=fake)


def sudo_env(user: str, uid: int) -> dict[str, str]:
    return {"SUDO_USER": user, "SUDO_UID": str(uid)}


# ---- identify ------------------------------------------------------------------------------


def test_the_student_is_the_account_sudo_names(fake: FakeSystem, ana: Account) -> None:
    found = access.identify(sudo_env("ana", fake.users["ana"].uid), 0, fake)  # type: ignore[arg-type]
    assert (found.student, found.lab, found.instance) == ("ana", "net", "so24a-ana")


def test_only_root_runs_the_entry_point(fake: FakeSystem, ana: Account) -> None:
    with pytest.raises(HostError, match="only works as root"):
        access.identify(sudo_env("ana", 2001), 1000, fake)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        ({}, "for students' accounts, through sudo"),
        ({"SUDO_USER": "ana"}, "for students' accounts, through sudo"),
        (sudo_env("ana", 2999), "not a student account"),  # another uid than ana's
        (sudo_env("bob", 2002), "not a student account"),  # an account labctl did not make
        (sudo_env("../ana", 2001), "not a student account"),
    ],
)
def test_anyone_else_is_refused(
    fake: FakeSystem, ana: Account, environ: dict[str, str], match: str
) -> None:
    fake.add("bob")
    with pytest.raises(access.Refused, match=match):
        access.identify(environ, 0, fake)  # type: ignore[arg-type]


def test_an_account_made_again_by_someone_else_is_not_the_student(
    fake: FakeSystem, ana: Account
) -> None:
    del fake.users["ana"]
    entry = fake.add("ana")  # same name, another uid
    with pytest.raises(access.Refused, match="not a student account"):
        access.identify(sudo_env("ana", entry.uid), 0, fake)  # type: ignore[arg-type]


# ---- confine -------------------------------------------------------------------------------

OWN = ["--lab", "net", "--instance", "so24a-ana"]


@pytest.mark.parametrize(
    ("args", "argv"),
    [
        (["exercise", "list"], ["exercise", "list", *OWN, "--student", "ana"]),
        (
            ["-v", "exercise", "check", "e1", "--json"],
            ["-v", "exercise", "check", "e1", "--json", *OWN, "--student", "ana"],
        ),
        (
            ["exercise", "answer", "e1", "2", "x", "--instance", "so24a-ana", "-s", "ana"],
            ["exercise", "answer", "e1", "2", "x", *OWN, "--student", "ana"],
        ),
        (["status", "--lab=net"], ["status", *OWN]),
        (["ssh", "box"], ["ssh", "box", *OWN]),
        (["exercise"], ["exercise", "--help", *OWN, "--student", "ana"]),
        (
            ["app", "build", ".", "--tag", "labctl/webapp:v2-ana"],
            ["app", "build", ".", "--tag", "labctl/webapp:v2-ana", *OWN, "--student", "ana"],
        ),
        (["app", "rm", "web-ana", "-s", "ana"], ["app", "rm", "web-ana", *OWN, "--student", "ana"]),
        # after --, -i and --instance belong to the student's command
        (
            ["exec", "box", "--", "grep", "-i", "x", "--instance", "bob"],
            ["exec", "box", *OWN, "--", "grep", "-i", "x", "--instance", "bob"],
        ),
    ],
)
def test_a_student_s_command_runs_on_their_own_lab(
    ana: Account, args: list[str], argv: list[str]
) -> None:
    assert access.confine(args, ana).argv == argv


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["exercise", "list", "--instance", "so24a-bob"], "--instance so24a-bob"),
        (["exercise", "list", "--instance=so24a-bob"], "--instance so24a-bob"),
        (["exercise", "list", "-i", "so24a-bob"], "--instance so24a-bob"),
        (["exercise", "list", "-iso24a-bob"], "--instance so24a-bob"),
        (["exercise", "progress", "--student", "bob"], "--student bob"),
        (["exercise", "progress", "-s", "bob"], "--student bob"),
        (["status", "--lab", "other"], "--lab other"),
        (["exec", "box", "-l", "other", "--", "true"], "--lab other"),
        (["ssh", "box", "--instance", "main"], "--instance main"),
        (["app", "ls", "--student", "bob"], "--student bob"),
        (["app", "run", "labctl/webapp:v2-bob", "-i", "so24a-bob"], "--instance so24a-bob"),
    ],
)
def test_someone_else_s_lab_instance_or_student_is_refused(
    ana: Account, args: list[str], named: str
) -> None:
    with pytest.raises(access.Refused) as err:
        access.confine(args, ana)
    assert err.value.message == f"you (ana) can only work on your own lab: {named} is not yours"
    assert "labctl knows you are ana" in (err.value.hint or "")


@pytest.mark.parametrize(
    "args",
    [
        ["exercise", "list", "-xi", "so24a-bob"],  # click reads -i inside a cluster
        ["exec", "box", "ls", "-l"],  # without --, click reads -l as --lab
        ["exercise", "list", "--instance"],
    ],
)
def test_an_option_that_could_name_another_lab_is_refused(ana: Account, args: list[str]) -> None:
    with pytest.raises(access.Refused, match="needs a value, and only yours is allowed"):
        access.confine(args, ana)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["up"],
        ["down", "--instance", "so24a-ana"],
        ["class", "down"],
        ["host", "setup"],
        ["images", "build"],
        ["compare"],
        ["exercise", "reset", "e1", "--yes"],
        ["exercise", "schema"],
        ["app", "prune"],
        ["-v"],
    ],
)
def test_only_the_student_commands_are_there(ana: Account, args: list[str]) -> None:
    with pytest.raises(access.Refused, match="not for students") as err:
        access.confine(args, ana)
    assert "labctl exercise list" in (err.value.hint or "")
    message, hint = err.value.said("es")  # a student reading Spanish
    assert message.endswith("no es para alumnos")
    assert "como alumno puedes usar: labctl exercise list" in (hint or "")


def test_a_student_asking_to_reset_an_exercise_is_told_the_instructor_does(ana: Account) -> None:
    with pytest.raises(access.Refused) as err:
        access.confine(["exercise", "reset", "app-contenido", "-y"], ana)
    assert (err.value.hint or "").startswith(
        "your instructor resets an exercise for you (labctl class reset); as a student you can"
    )
    assert (err.value.said("es")[1] or "").startswith("tu profesor reinicia un ejercicio por ti")


@pytest.fixture
def lab_of(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, str]]:
    """The real typer commands, a fake guest: which (lab, instance) each command loaded."""
    loaded: list[tuple[str, str]] = []
    rec = GuestRecord("box", "lxd", "labctl-net-so24a-ana-box", stage="ready")
    guest = FakeConnection(respond=lambda c: CommandResult(c, 0, "ok\n", ""), name="box")

    def load(lab: str, instance: str) -> tuple[SimpleNamespace, LabState]:
        loaded.append((lab, instance))
        state = LabState(lab, instance, "x", guests={"box": rec})
        return SimpleNamespace(key=tmp_path / "key"), state

    monkeypatch.setattr(lab_status, "load", load)
    monkeypatch.setattr(backends, "get", lambda engine: SimpleNamespace(connect=lambda r, k: guest))
    return loaded


@pytest.mark.parametrize(
    "args",
    [
        ["exec", "box", "--", "true"],
        ["exec", "box", "true"],  # no --: the forced options still win
        ["exec", "box", "-i", "so24a-ana", "--", "grep", "-i", "--instance=x"],
    ],
)
def test_labctl_itself_reads_the_confined_line_as_the_student_s_own_lab(
    ana: Account, lab_of: list[tuple[str, str]], args: list[str]
) -> None:
    result = CliRunner().invoke(app, access.confine(args, ana).argv)
    assert result.exit_code == 0, result.output
    assert lab_of == [("net", "so24a-ana")]


# ---- ssh for a student ---------------------------------------------------------------------


def test_ssh_for_a_student_cannot_open_forwardings_or_escapes() -> None:
    argv = ["ssh", "-i", "/k", "-p", "22", "root@10.1.2.3"]
    hardened = access.harden_ssh(argv)
    assert hardened[0] == "ssh" and hardened[-5:] == argv[1:]
    assert access.harden_ssh(["docker", "exec", "-it", "c", "sh"]) == [
        "docker",
        "exec",
        "-it",
        "c",
        "sh",
    ]
    require(shutil.which("ssh") is not None, "no ssh client to ask how it reads these options")
    # ssh -G prints the configuration it would use, without connecting
    shown = subprocess.run([*hardened[:-1], "-G", "root@10.1.2.3"], capture_output=True, text=True)
    config = dict(line.split(" ", 1) for line in shown.stdout.splitlines())
    assert shown.returncode == 0, shown.stderr
    assert config["escapechar"] == "none"
    assert config["clearallforwardings"] == "yes"
    assert config["forwardagent"] == "no" and config["permitlocalcommand"] == "no"


def _ana_runs(fake: FakeSystem, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """``labctl ARGS`` typed by ana: the entry point as sudo runs it (root, her name and uid
    in SUDO_*); its exit code."""
    monkeypatch.setattr(student.os, "geteuid", lambda: 0)
    monkeypatch.setattr(accounts.System, "lookup", lambda self, user: fake.lookup(user))
    monkeypatch.setenv("SUDO_USER", "ana")
    monkeypatch.setenv("SUDO_UID", str(fake.users["ana"].uid))
    monkeypatch.setattr(sys, "argv", ["labctl-student", *args])
    with pytest.raises(SystemExit) as exit_:
        student.main()
    return int(exit_.value.code or 0)


def test_the_entry_point_runs_a_hardened_ssh_into_the_student_s_own_guest(
    fake: FakeSystem,
    ana: Account,
    lab_of: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[list[str]] = []
    shell = ["ssh", "-i", "/k", "root@10.0.0.5"]
    guest = SimpleNamespace(shell_argv=lambda: shell)
    monkeypatch.setattr(backends, "get", lambda engine: SimpleNamespace(connect=lambda r, k: guest))

    def execvp(path: str, argv: list[str]) -> None:
        ran.append(argv)
        raise SystemExit(0)  # the real one never returns: ssh took the process over

    monkeypatch.setattr(student.os, "execvp", execvp)
    _ana_runs(fake, monkeypatch, "ssh", "box")
    assert lab_of == [("net", "so24a-ana")]
    assert ran == [access.harden_ssh(shell)]


def test_the_entry_point_refuses_another_s_instance_with_exit_2(
    fake: FakeSystem,
    ana: Account,
    lab_of: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _ana_runs(fake, monkeypatch, "exec", "box", "-i", "so24a-bob", "--", "id") == 2
    assert "--instance so24a-bob is not yours" in capsys.readouterr().err
    assert lab_of == []


def test_the_entry_point_s_usage_errors_name_the_program_labctl(
    fake: FakeSystem,
    ana: Account,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _ana_runs(fake, monkeypatch, "exercise", "list", "--nosuch") == 2
    err = capsys.readouterr().err
    assert "No such option: --nosuch" in err
    assert "Usage: labctl exercise list" in err and "python -m" not in err


# ---- from the student's labctl to sudo -----------------------------------------------------


def test_root_and_other_commands_are_not_sent_to_sudo(fake: FakeSystem) -> None:
    assert access.reexec_argv(["exercise", "list"], 0) is None
    assert access.reexec_argv(["up"], 1000) is None
    assert access.reexec_argv(["exercise", "list"], 1000) is None  # no class here: no entry


def test_a_student_s_command_goes_through_sudo_and_the_entry_point(
    fake: FakeSystem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = tmp_path / "labctl-student"
    entry.write_text("#!/bin/sh\n")
    inst = sudo.Installation(tmp_path, entry, tmp_path / "rule", "X")
    monkeypatch.setattr(sudo.Installation, "of", classmethod(lambda cls, state=None: inst))
    asked: list[list[str]] = []
    answer = 0

    def run(argv: list[str], **kw: object) -> SimpleNamespace:
        asked.append(argv)
        return SimpleNamespace(returncode=answer)

    monkeypatch.setattr(access.procs, "run", run)
    argv = access.reexec_argv(["-v", "exec", "box", "--", "id"], 1000)
    assert argv == ["/usr/bin/sudo", "-n", str(entry), "-v", "exec", "box", "--", "id"]
    assert asked == [["/usr/bin/sudo", "-n", "-l", str(entry)]]
    # the instructor's commands: refused for a student's account, nothing run as root
    monkeypatch.setattr(access.accounts, "made_by_labctl", lambda uid: uid == 1000)
    for command in ("down", "up", "doctor", "class", "compare", "images"):
        with pytest.raises(access.Refused, match=f"labctl {command} is not for students") as no:
            access.reexec_argv(["-v", command, "x"], 1000)
        assert no.value.code == 2 and no.value.hint == access.USAGE
    assert access.reexec_argv(["lab", "schema"], 1000) is None  # reads no lab state
    # an instructor whom sudo lets run anything (NOPASSWD) is no student: labctl goes on
    assert access.reexec_argv(["class", "status"], 1001) is None
    answer = 1  # sudo -l: this user may not
    with pytest.raises(HostError, match="not a student of a labctl class"):
        access.reexec_argv(["exercise", "list"], 1000)
    assert access.reexec_argv(["down"], 1000) is None  # no student: labctl goes on as ever
    assert access.reexec_argv(["--help"], 1000) is None


@pytest.mark.parametrize("args", [["exec", "box", "--", "id"], ["ssh", "box"], ["status"]])
def test_a_student_whose_lab_is_down_hears_who_brings_it_up(
    fake: FakeSystem,
    ana: Account,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    assert _ana_runs(fake, monkeypatch, *args) == 2
    err = capsys.readouterr().err
    assert "lab net (instance so24a-ana) is not up" in err
    assert "labctl class up" in err and "labctl up" not in err.replace("labctl class up", "")


def test_a_students_refusal_is_json_under_json_and_spanish_under_lang_es(
    fake: FakeSystem,
    ana: Account,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _ana_runs(fake, monkeypatch, "status", "--json", "--lang", "es") == 2
    said = json.loads(capsys.readouterr().out)["error"]
    assert said["message"] == "el laboratorio net (instancia so24a-ana) no está en marcha"
    assert said["hint"].startswith("tu profesor levanta los laboratorios de la clase")


def test_a_non_root_labctl_hands_a_student_s_command_to_sudo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The root callback of the real app: not root, a student command: exec sudo."""
    app_module = sys.modules["labctl.cli.app"]  # labctl.cli.app, the attribute, is the app

    execs: list[list[str]] = []
    wanted = ["/usr/bin/sudo", "-n", "/usr/local/sbin/labctl-student", "exercise", "list"]

    def execv(path: str, argv: list[str]) -> None:
        execs.append(argv)
        raise SystemExit(0)  # the real one never returns

    monkeypatch.setattr(app_module.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(app_module.os, "execv", execv)
    monkeypatch.setattr(access, "reexec_argv", lambda args, euid: wanted if euid else None)
    monkeypatch.setattr(sys, "argv", ["labctl", "exercise", "list"])
    CliRunner().invoke(app, ["exercise", "list"])
    assert execs == [wanted]


@pytest.mark.parametrize(
    ("args", "at"),
    [
        (["app", "build", "web", "--tag", "labctl/w:v2-ana"], 2),
        (["-v", "app", "build", "-t", "labctl/w:v2-ana", "--lab=net", "web"], 6),
        (["app", "build", "--tag", "labctl/w:v2-ana", "-i", "so24a-ana", "web"], 6),
    ],
)
def test_a_student_s_build_directory_is_made_absolute_before_sudo(
    args: list[str], at: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the entry point runs in /: the student's own cwd is here
    made = access._absolute_context(args)
    assert made[at] == str(tmp_path / "web")
    assert made[:at] + made[at + 1 :] == args[:at] + args[at + 1 :]
    assert access._absolute_context(["app", "run", "x"]) == ["app", "run", "x"]
