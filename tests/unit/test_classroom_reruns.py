"""Class up and down interrupted and run again, through ``labctl``'s own entry point (what
the instructor sees and the exit code).

The world is test_classroom_lifecycle's: the real lab lifecycle per student on fake engines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import backends, cancel, console
from labctl.classroom import capacity
from labctl.classroom import lifecycle as class_lifecycle
from labctl.classroom.server import Server
from labctl.classroom.state import UP, ClassDir
from labctl.lab import lifecycle
from labctl.stages import Reporter
from tests.unit.test_classroom_lifecycle import ROOMY, THREE, World, make_world
from tests.unit.test_recovery import NoKvm


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The world, with what ``labctl class up`` looks up on the host given by fakes."""
    w = make_world(tmp_path, monkeypatch)
    monkeypatch.setattr("labctl.images.registry.store", lambda: w.store)
    monkeypatch.setattr("labctl.host.accel.detect", NoKvm)
    monkeypatch.setattr(capacity, "host_capacity", lambda: ROOMY)
    monkeypatch.setattr(
        "labctl.cli.classroom.find_server", lambda: Server("lab.example.org", "env")
    )
    monkeypatch.setattr(class_lifecycle, "HostAccounts", lambda *_a: w.accounts)
    monkeypatch.setattr(class_lifecycle, "roster_account_exists", lambda _name: False)
    monkeypatch.setattr(backends, "engines_here", lambda: list(w.engines))
    yield w
    cancel.CANCEL.clear()  # a Ctrl-C of a test is not the next test's
    console.json_reset()


def labctl(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """``labctl ARGS`` in this process: exit code, stdout, stderr (its lines joined)."""
    from labctl.cli import main

    monkeypatch.setattr("sys.argv", ["labctl", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    said = capsys.readouterr()
    return int(exit_.value.code or 0), said.out, " ".join(said.err.split())


def test_ctrl_c_in_class_up_says_how_far_it_got_and_the_same_command_resumes(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.roster(THREE)
    docker = world.engines["docker"]
    real_create = docker.create

    def create(plan):  # type: ignore[no-untyped-def]
        if plan.resource == "labctl-cls-so-bo-app":
            raise KeyboardInterrupt  # Ctrl-C while bo's lab comes up
        return real_create(plan)

    monkeypatch.setattr(docker, "create", create)
    up = ("class", "up", str(world.roster_file), str(world.path), "-c", "so", "--max-parallel", "1")
    code, _, err = labctl(monkeypatch, capsys, *up)
    assert code == 130
    assert "Error: class so: interrupted with 1 of 3 labs up" in err
    assert "Hint: run the same command again to resume" in err
    seats = ClassDir("so").require().seats
    assert [seats[s].outcome for s in ("ana", "bo", "cy")] == [UP, "pending", "pending"]
    cancel.CANCEL.clear()  # the process that saw it has ended
    monkeypatch.setattr(docker, "create", real_create)
    code, _, err = labctl(monkeypatch, capsys, *up)
    assert (code, "Class so: 3 of 3 labs up." in err) == (0, True), err


def test_ctrl_c_in_class_down_says_how_far_it_got_and_the_same_command_resumes(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.up(world.roster(THREE))
    real_down = lifecycle.down

    def down_one(lab: str, instance: str, report: Reporter | None = None) -> list[str]:
        if instance == "so-bo":
            raise KeyboardInterrupt  # Ctrl-C while bo's lab goes
        if instance == "so-cy":  # started beside bo's: gives up once Ctrl-C is known
            assert cancel.CANCEL.wait(5)
            cancel.check()
        return real_down(lab, instance)

    monkeypatch.setattr(lifecycle, "down", down_one)
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so")
    assert code == 130
    assert "Error: class so: interrupted with 1 of 3 students' labs removed" in err
    assert "Hint: run the same command again to resume" in err
    cancel.CANCEL.clear()
    monkeypatch.setattr(lifecycle, "down", real_down)
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so")
    assert (code, "3 students' labs removed." in err) == (0, True), err
    assert world.running() == set() and not (world.root / "classes" / "so").exists()
