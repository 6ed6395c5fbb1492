"""Class up and down interrupted, run again or given a shorter roster, through ``labctl``'s
own entry point (what the instructor sees and the exit code); status says what is there now.

The world is test_classroom_lifecycle's: the real lab lifecycle per student on fake engines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import backends, cancel, console
from labctl.classroom import capacity
from labctl.classroom import down as class_down
from labctl.classroom import lifecycle as class_lifecycle
from labctl.classroom.reset import reset
from labctl.classroom.server import Server
from labctl.classroom.state import DOWN, UP, ClassDir, NoClass
from labctl.classroom.status import INCOMPLETE, status
from labctl.exercises.progress import ProgressStore, shared
from labctl.instance.state import InstanceDir
from labctl.lab import down as lab_down
from labctl.stages import Reporter
from tests.labs import exercise_yaml
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
    monkeypatch.setattr(class_down, "HostAccounts", lambda *_a: w.accounts)
    monkeypatch.setattr(class_lifecycle, "roster_account_exists", lambda _name: False)
    monkeypatch.setattr(backends, "engines_here", lambda: list(w.engines))
    yield w
    cancel.CANCEL.clear()  # a Ctrl-C of a test is not the next test's
    console.reset()


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


def test_ctrl_c_in_class_down_says_so_and_the_seats_of_removed_labs_say_down(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.up(world.roster(THREE))
    real_down = lab_down.down

    def down_one(lab: str, instance: str, report: Reporter | None = None) -> list[str]:
        if instance == "so-bo":
            raise KeyboardInterrupt  # Ctrl-C while bo's lab goes
        if instance == "so-cy":  # started beside bo's: gives up once Ctrl-C is known
            assert cancel.CANCEL.wait(5)
            cancel.check()
        return real_down(lab, instance)

    monkeypatch.setattr(lab_down, "down", down_one)
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so")
    assert code == 130
    assert "Error: class so: interrupted with 1 of 3 students' labs removed" in err
    assert "Hint: run the same command again to resume" in err
    seats = ClassDir("so").require().seats
    assert {s: seat.outcome for s, seat in seats.items()} == {"ana": DOWN, "bo": UP, "cy": UP}
    assert [r.outcome for r in status(ClassDir("so").require())] == [DOWN, UP, UP]
    cancel.CANCEL.clear()
    monkeypatch.setattr(lab_down, "down", real_down)
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so")
    assert (code, "3 students' labs removed, with their accounts and keys." in err) == (0, True), (
        err
    )
    assert world.running() == set() and not (world.root / "classes" / "so").exists()


def test_class_status_says_a_seat_left_up_is_down_or_incomplete_now(world: World) -> None:
    world.up(world.roster(THREE))
    lab_down.down("cls", "so-bo")  # bo's lab removed behind the class's back
    world.engines["docker"].guests["labctl-cls-so-cy-app"] = "stopped"
    before = ClassDir("so").path.read_text()
    rows = {r.student: r for r in status(ClassDir("so").require())}
    assert {s: (r.outcome, r.guests_ready) for s, r in rows.items()} == {
        "ana": (UP, 2),
        "bo": (DOWN, 0),
        "cy": (INCOMPLETE, 1),
    }
    assert InstanceDir("cls", "so-bo").load() is None
    assert ClassDir("so").path.read_text() == before  # status reads, never writes


def test_class_down_of_a_class_not_here_is_done_and_makes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.up(world.roster(THREE))
    assert labctl(monkeypatch, capsys, "class", "down", "-c", "so")[0] == 0
    code, out, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so")  # again
    assert (code, out, err) == (0, "", "Nothing of class so is here: nothing removed.")
    code, out, _ = labctl(monkeypatch, capsys, "class", "down", "-c", "zz", "--json")
    assert code == 0 and json.loads(out) == {"students": [], "found": False}
    code, _, err = labctl(monkeypatch, capsys, "class", "down")  # no class at all
    assert (code, err) == (0, "There is no class on this host: nothing removed.")
    assert class_down.down(ClassDir("zz"), accounts=world.accounts).seats == []
    with pytest.raises(NoClass, match="no class 'zz'"):
        reset(ClassDir("zz"), "ana")
    assert labctl(monkeypatch, capsys, "class", "window", "-c", "zz", "--clear")[0] == 2
    assert not (world.root / "classes").exists() or not any((world.root / "classes").iterdir())


def test_a_student_left_out_of_a_rerun_is_kept_and_said(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.up(world.roster(THREE))
    world.roster("id,name\nana,Ana\nbo,Bo\n")  # cy left out
    up = ("class", "up", str(world.roster_file), str(world.path), "-c", "so")
    code, _, err = labctl(monkeypatch, capsys, *up)
    assert code == 0 and "Class so: 2 of 2 labs up." in err
    assert (
        "cy is in the class but not in this roster: kept "
        "(labctl class down --class so --student cy removes them)"
    ) in err
    assert {"labctl-cls-so-cy-vm", "labctl-cls-so-cy-app"} <= world.running()
    assert set(ClassDir("so").require().seats) == {"ana", "bo", "cy"}
    code, out, _ = labctl(monkeypatch, capsys, *up, "--json")
    assert code == 0 and json.loads(out)["not_in_roster"] == ["cy"]


# -- class down --forget ----------------------------------------------------------------------


def _started(*students: str) -> None:
    """Each student of class so opened exercise ex1 in their own lab: one attempt each."""
    for s in students:
        ProgressStore("cls", f"so-{s}", s).start("ex1")


def _attempts() -> dict[str, int]:
    found = shared().attempts("cls")
    return {
        i: sum(1 for a in found if a.instance == i) for i in sorted({a.instance for a in found})
    }


def test_class_down_forget_one_student_then_the_class_and_again_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.up(world.roster(THREE))
    _started("ana", "bo")
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "-s", "bo", "--forget")
    assert code == 0, err
    assert "Forgot 1 attempt of 1 student of class so" in err
    assert _attempts() == {"so-ana": 1}  # ana's attempts are left
    assert [s.student for s in shared().seats("so")] == ["ana", "cy"]
    code, out, _ = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "--forget", "--json")
    said = json.loads(out)
    assert code == 0 and said["found"] is True
    assert [(s["student"], s["progress_kept"]) for s in said["students"]] == [
        ("ana", False),
        ("cy", False),
    ]
    assert said["forgotten"] == {
        "class_name": "so",
        "students": ["ana", "cy"],
        "attempts": 1,
        "seats": 2,
        "records": 2,
        "files": 0,
    }
    assert _attempts() == {} and shared().seats("so") == [] and shared().students() == []
    code, out, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "--forget")
    assert (code, out) == (0, "")
    assert err == (
        "Nothing of class so is here: no lab or account to remove. "
        "Nothing of class so to forget: the progress store holds none of it."
    )
    code, out, _ = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "--forget", "--json")
    assert code == 0 and json.loads(out)["forgotten"]["attempts"] == 0


def test_a_lab_not_removed_keeps_its_student_s_records_and_says_so(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from labctl.errors import EngineError

    world.up(world.roster(THREE))
    _started("ana", "bo", "cy")
    real_down = lab_down.down

    def down_one(lab: str, instance: str, report: Reporter | None = None) -> list[str]:
        if instance == "so-bo":
            raise EngineError("the engine refused to remove labctl-cls-so-bo-vm")
        return real_down(lab, instance)

    monkeypatch.setattr(lab_down, "down", down_one)
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "--forget")
    assert code == 4, err  # the engine's error, with its exit code
    assert "Error: the engine refused to remove labctl-cls-so-bo-vm" in err
    assert "Hint: forgot 2 attempts of 2 students of class so" in err
    assert "the records of bo are kept while the lab is still there" in err
    assert _attempts() == {"so-bo": 1}
    assert [s.student for s in shared().seats("so")] == ["bo"]
    monkeypatch.setattr(lab_down, "down", real_down)
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "--forget")
    assert code == 0 and "Forgot 1 attempt of 1 student of class so" in err, err
    assert _attempts() == {} and world.running() == set()


def test_a_shared_database_forgets_only_the_labs_this_server_removes(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # LABCTL_DB: one database for several servers (as lab hosts may share a PostgreSQL)
    monkeypatch.setenv("LABCTL_DB", f"sqlite:///{tmp_path / 'shared.db'}")
    world.up(world.roster(THREE))
    _started("ana", "bo")
    shared().add_seat("so", "dan", "cls", "so-dan")  # another server's student, whose lab runs
    ProgressStore("cls", "so-dan", "dan").start("ex1")
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "--forget")
    assert code == 0 and "Forgot 2 attempts of 3 students of class so" in err, err
    assert _attempts() == {"so-dan": 1} and [s.student for s in shared().seats("so")] == ["dan"]
    # the class gone from this server: dan's seat is still not this server's to forget
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "--forget")
    assert code == 0 and "Nothing of class so to forget" in err, err
    assert _attempts() == {"so-dan": 1}


def test_class_down_says_forget_removes_what_it_kept_and_forget_later_does(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.up(world.roster(THREE))
    _started("ana")
    older = InstanceDir("cls", "so-bo").path / "progress"  # an older labctl's progress file
    older.mkdir(parents=True)
    (older / "bo.json.migrated").write_text("{}")
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so")
    assert code == 0 and _attempts() == {"so-ana": 1}
    assert (
        "Progress of 2 students (ana, bo) kept for grading (in the progress store: labctl "
        "class report; labctl class down --class so --forget removes it)." in err
    )
    assert (older / "bo.json.migrated").exists()
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "--forget")
    assert code == 0
    assert (
        "Forgot 1 attempt of 3 students of class so (their seats and records in the progress "
        "store, and 1 older progress file)." in err
    )
    assert _attempts() == {} and not InstanceDir("cls", "so-bo").path.exists()


def test_forget_of_a_student_whose_lab_went_before_leaves_the_class_up(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.up(world.roster(THREE))
    _started("bo", "cy")
    assert labctl(monkeypatch, capsys, "class", "down", "-c", "so", "-s", "cy")[0] == 0
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "-s", "cy")
    assert code == 1 and "no student 'cy' in class so" in err  # without --forget, as ever
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "-s", "cy", "--forget")
    assert code == 0 and "Forgot 1 attempt of 1 student of class so" in err, err
    assert [s.student for s in shared().seats("so")] == ["ana", "bo"]
    assert _attempts() == {"so-bo": 1} and len(world.running()) == 4


def test_an_exercise_reset_that_takes_points_back_asks_first(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from labctl.store import NewAttempt

    world.up(world.roster(THREE))
    shared().record(NewAttempt("cls", "so-bo", "bo", "ex1", "check", step="s1", passed=True))
    made = world.creates()
    # no terminal to ask on (stdin: a pipe): refused before anything is re-created
    code, _, err = labctl(monkeypatch, capsys, "class", "reset", "bo", "-e", "ex1", "-c", "so")
    assert code == 2 and made == []
    assert "bo has passed 1 step of ex1: its reset takes them back" in err
    assert "labctl class reset bo --class so --exercise ex1 --yes;" in err  # whole commands
    assert "labctl class reset bo --class so --guest GUEST" in err
    assert ProgressStore("cls", "so-bo", "bo").state("ex1").step("s1").passed_once
    # on a terminal it asks; "no" resets nothing (exit 1, not an interrupt's 130)
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, _, err = labctl(monkeypatch, capsys, "class", "reset", "bo", "-e", "ex1", "-c", "so")
    assert (code, made) == (1, []) and err.endswith("Nothing reset.") and "Interrupted" not in err
    # end of input (Ctrl-D) is a no too, not an interrupt
    monkeypatch.setattr("sys.stdin", Terminal(""))
    code, _, err = labctl(monkeypatch, capsys, "class", "reset", "bo", "-e", "ex1", "-c", "so")
    assert (code, made) == (1, []) and err.endswith("Nothing reset.") and "Interrupted" not in err
    # a fresh guest keeps the points, and needs no question
    code, _, err = labctl(monkeypatch, capsys, "class", "reset", "bo", "-g", "app", "-c", "so")
    assert code == 0 and made == ["labctl-cls-so-bo-app"], err
    # the instructor's reset of an exercise is recorded as theirs: not bo's last activity
    (world.path.parent / "exercises").mkdir()
    (world.path.parent / "exercises" / "ex1.yaml").write_text(exercise_yaml("ex1"))
    checked = shared().attempts("cls", ["so-bo"])[0].at
    code, _, err = labctl(
        monkeypatch, capsys, "class", "reset", "bo", "-e", "ex1", "-c", "so", "-y"
    )
    assert code == 0, err
    done = shared().attempts("cls", ["so-bo"])
    assert [(a.kind, a.made_by) for a in done] == [("check", None), ("reset", "instructor")]
    bo = next(r for r in status(ClassDir("so").require()) if r.student == "bo")
    assert bo.last_activity == checked.isoformat(timespec="seconds")


def test_down_on_a_terminal_asks_first_and_no_removes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from labctl.cli import classroom
    from labctl.store import NewAttempt

    world.up(world.roster(THREE))
    shared().record(NewAttempt("cls", "so-ana", "ana", "ex1", "check", step="s1", passed=True))
    monkeypatch.setattr(classroom, "_on_a_terminal", lambda: True)  # stdin and stderr
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so")
    assert "This removes the labs and accounts of 3 students of class so, with the files" in err
    assert "their home folders (their progress stays, for grading). Go on? [y/N]:" in err
    assert (code, err.endswith("Nothing removed.")) == (1, True)
    assert set(ClassDir("so").load().seats) == {"ana", "bo", "cy"}  # type: ignore[union-attr]
    assert world.accounts.removed == [] and world.running()  # nobody's account nor lab went
    monkeypatch.setattr("sys.stdin", io.StringIO("s\n"))  # a yes in Spanish is a yes too
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "-s", "bo")
    assert code == 0 and "the lab and account of bo of class so," in err, err
    assert set(ClassDir("so").load().seats) == {"ana", "cy"}  # type: ignore[union-attr]
    assert world.accounts.removed == [("bo", "so")]
    # --yes (a script; the controller, for each lab host's part of a class over hosts)
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "--yes")
    assert code == 0 and "Go on?" not in err and ClassDir("so").load() is None
    # nothing left here but the records: --forget asks before they go
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, _, err = labctl(monkeypatch, capsys, "class", "down", "-c", "so", "--forget")
    assert code == 1 and "This removes the progress records of class so: export" in err, err
    assert ProgressStore("cls", "so-ana", "ana").state("ex1").step("s1").passed_once
