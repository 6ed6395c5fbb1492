"""The students' sudo rule and entry point: rendered, checked by visudo, written, removed."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from labctl.classroom import sudo
from labctl.errors import HostError
from tests.ci import needs

needs_root = needs(os.geteuid() == 0, "files are chowned to root")
needs_visudo = needs(
    shutil.which("visudo", path="/usr/sbin:/usr/bin") is not None, "sudo is not installed"
)


def test_the_default_state_gets_plain_names_and_any_other_its_own() -> None:
    default = sudo.Installation.of(Path("/var/lib/labctl"))
    assert default.entry == Path("/usr/local/sbin/labctl-student")
    assert default.sudoers == Path("/etc/sudoers.d/labctl-students")
    one, two = sudo.Installation.of(Path("/tmp/a")), sudo.Installation.of(Path("/tmp/b"))
    assert len({one.entry, two.entry, default.entry}) == 3
    assert len({one.alias, two.alias, default.alias}) == 3
    for inst in (default, one, two):
        assert "." not in inst.sudoers.name  # sudo would skip the file
        assert inst.alias.isupper()


@needs_visudo
def test_visudo_accepts_the_rule_and_it_allows_the_entry_point_only(tmp_path: Path) -> None:
    inst = sudo.Installation.of(tmp_path)
    rule = sudo.render_rule(inst, ["ana", "b-ruiz07", "lt1a2bs1"])
    path = tmp_path / "rule"
    path.write_text(rule)
    sudo.check_rule(path)
    grants = [line for line in rule.splitlines() if "NOPASSWD" in line]
    assert grants == [f"{inst.alias} ALL = (root) NOPASSWD:NOSETENV: {inst.entry}"]
    assert f"User_Alias {inst.alias} = ana, b-ruiz07, lt1a2bs1" in rule
    path.write_text(rule.replace("NOPASSWD:", "NOPASSWD"))  # and visudo does refuse
    with pytest.raises(HostError, match="visudo"):
        sudo.check_rule(path)


def test_the_entry_point_passes_nothing_of_the_student_s_environment(tmp_path: Path) -> None:
    """Run the rendered script with a stand-in Python that prints what it got."""
    shown = tmp_path / "python"
    shown.write_text('#!/bin/sh\nenv | sort\nfor a in "$@"; do echo "arg=$a"; done\n')
    shown.chmod(0o755)
    inst = sudo.Installation.of(tmp_path / "state dir")
    entry = tmp_path / "entry"
    entry.write_text(sudo.render_entry(inst, str(shown)))
    entry.chmod(0o755)
    env = {
        "SUDO_USER": "ana",
        "SUDO_UID": "2001",
        "TERM": "xterm",
        "PYTHONPATH": "/home/ana/evil",
        "LABCTL_STATE": "/home/ana/state",
        "LD_PRELOAD": "/home/ana/x.so",
        "PATH": "/home/ana/bin:/usr/bin:/bin",
    }
    out = subprocess.run(
        [str(entry), "exec", "box", "--", "echo", "a b"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    got = dict(line.split("=", 1) for line in out if not line.startswith("arg="))
    assert got["LABCTL_STATE"] == str(tmp_path / "state dir")
    assert got["SUDO_USER"] == "ana" and got["SUDO_UID"] == "2001" and got["TERM"] == "xterm"
    assert "PYTHONPATH" not in got and "LD_PRELOAD" not in got
    assert "/home/ana" not in got["PATH"] and got["PWD"] == "/"
    args = [line[4:] for line in out if line.startswith("arg=")]
    assert args == ["-I", "-m", "labctl.cli.student", "exec", "box", "--", "echo", "a b"]


@needs_root
def test_code_others_can_change_is_never_run_as_root(tmp_path: Path) -> None:
    code = tmp_path / "lib" / "mod.py"
    code.parent.mkdir()
    code.write_text("")
    sudo.check_trusted([code])  # root's, under a sticky /tmp: fine
    code.parent.chmod(0o777)
    with pytest.raises(HostError, match="can be changed by a user other than root"):
        sudo.check_trusted([code])
    code.parent.chmod(0o755)
    os.chown(code, 1234, 1234)
    with pytest.raises(HostError, match="owner uid 1234"):
        sudo.check_trusted([code])


@pytest.fixture
def inst(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> sudo.Installation:
    """labctl's entry point and rule under ``tmp_path`` (the rule in ``sudoers.d/``); the
    host's sudoers is ``tmp_path/sudoers``, which each test writes; this checkout's code
    counts as root's."""
    monkeypatch.setattr(sudo, "SUDOERS", tmp_path / "sudoers")
    monkeypatch.setattr(sudo, "check_trusted", lambda paths: None)  # this checkout's owner
    return sudo.Installation(
        tmp_path, tmp_path / "entry", tmp_path / "sudoers.d" / "labctl-x", "LX"
    )


@needs_root
@needs_visudo
def test_sync_writes_both_files_for_students_and_removes_them_for_none(
    inst: sudo.Installation,
) -> None:
    rules = inst.sudoers.parent
    sudo.SUDOERS.write_text(f"root ALL=(ALL) ALL\n@includedir {rules}\n")
    sudo.sync(["bob", "ana"], inst)
    assert stat.S_IMODE(inst.entry.stat().st_mode) == 0o755
    assert stat.S_IMODE(inst.sudoers.stat().st_mode) == 0o440
    assert "User_Alias LX = ana, bob\n" in inst.sudoers.read_text()
    assert "-m labctl.cli.student" in inst.entry.read_text()
    assert sorted(p.name for p in rules.iterdir()) == ["labctl-x"]  # no check file left
    sudo.sync(["ana"], inst)
    assert "User_Alias LX = ana\n" in inst.sudoers.read_text()
    sudo.sync([], inst)
    assert not inst.sudoers.exists() and not inst.entry.exists()


@needs_root
@needs_visudo
def test_a_sudo_that_does_not_read_the_directory_is_refused(inst: sudo.Installation) -> None:
    sudo.SUDOERS.write_text("root ALL=(ALL) ALL\n")
    with pytest.raises(HostError, match="does not read"):
        sudo.sync(["ana"], inst)
    assert not inst.entry.exists() and not inst.sudoers.exists()


@needs_root
@needs_visudo
def test_students_get_a_labctl_command_unless_one_is_there(
    tmp_path: Path, inst: sudo.Installation
) -> None:
    sudo.SUDOERS.write_text(f"@includedir {inst.sudoers.parent}\n")
    command = tmp_path / "bin" / "labctl"
    inst = replace(inst, command=command)
    sudo.sync(["ana"], inst)
    assert command.is_symlink() and command.resolve().name == "labctl"
    sudo.sync([], inst)
    assert not command.exists() and not command.is_symlink()
    command.write_text("#!/bin/sh\n# the instructor's own\n")
    sudo.sync(["ana"], inst)
    sudo.sync([], inst)
    assert command.read_text().endswith("the instructor's own\n")
