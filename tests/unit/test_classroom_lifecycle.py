"""Class up/down/status on fake engines: the real lab lifecycle per student, fakes below it.

The backends are test_recovery's in-memory FakeBackend; accounts are a fake recording what
``class up``/``down`` asked; the host's capacity is given, never measured.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl import backends, cancel
from labctl.classroom import capacity, roster
from labctl.classroom import down as class_down
from labctl.classroom import lifecycle as class_lifecycle
from labctl.classroom.reset import reset
from labctl.classroom.roster import Student
from labctl.classroom.server import Server
from labctl.classroom.state import FAILED, UP, ClassDir, classes, pick
from labctl.classroom.status import status
from labctl.classroom.window import with_window
from labctl.cli import app
from labctl.errors import EngineError, HostError, LabctlError, SpecError
from labctl.exercises.progress import ProgressStore
from labctl.images.cache import ImageStore
from labctl.instance.reservations import Reservations
from labctl.instance.state import InstanceDir
from labctl.lab import lifecycle
from labctl.spec.model import Lab, load_lab
from labctl.stages import Reporter
from labctl.store import NewAttempt
from tests.labs import APP, VM, exercise_yaml, lab_yaml
from tests.unit.test_recovery import Empty, FakeBackend, NoKvm

LAB = lab_yaml("cls", VM, APP)
ROOMY = capacity.HostCapacity(64_000, 500_000, 2, capacity.Ksm(True, False, 0))


@dataclass
class FakeAccounts:
    """Accounts in memory: who was made, who removed, which are labctl's."""

    made: list[tuple[str, str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    ours: set[tuple[str, str]] = field(default_factory=set)
    admitted: list[tuple[str, str]] = field(default_factory=list)

    def ensure(self, student: Student, class_name: str, lab: str, instance: str) -> None:
        self.made.append((student.id, class_name, instance))
        self.ours.add((student.id, class_name))

    def remove(self, student: str, class_name: str) -> None:
        self.removed.append((student, class_name))
        self.ours.discard((student, class_name))

    def owned(self, user: str, class_name: str) -> bool:
        return (user, class_name) in self.ours

    def admit(self, student: str, class_name: str) -> None:
        assert (student, class_name) in self.ours, "an account is made before it is admitted"
        self.admitted.append((student, class_name))


@dataclass
class World:
    root: Path
    lab: Lab
    path: Path
    store: ImageStore
    engines: dict[str, FakeBackend]
    accounts: FakeAccounts
    roster_file: Path

    def roster(self, text: str) -> roster.Roster:
        self.roster_file.write_text(text)
        return roster.load(self.roster_file)

    def up(self, r: roster.Roster, name: str = "so", **kw: object) -> class_lifecycle.ClassUpResult:
        kw.setdefault("host", ROOMY)
        kw.setdefault("account_exists", lambda user: self.accounts.owned(user, name))
        kw.setdefault("accounts", self.accounts)
        return class_lifecycle.up(
            r,
            name,
            self.lab,
            self.path,
            self.store,
            NoKvm(),
            **kw,  # type: ignore[arg-type]
        )

    def running(self) -> set[str]:
        return {r for e in self.engines.values() for r in e.guests}

    def creates(self) -> list[str]:
        """From now on, each guest the engines create, by resource name, in order."""
        made: list[str] = []
        for e in self.engines.values():
            real = e.create

            def create(plan, real=real):  # type: ignore[no-untyped-def]
                made.append(plan.resource)
                return real(plan)

            e.create = create  # type: ignore[method-assign]
        return made


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    return make_world(tmp_path, monkeypatch)


def make_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """The lab on fake engines, its images built, accounts in memory (test_classroom_slots)."""
    root = tmp_path / "state"
    monkeypatch.setenv("LABCTL_STATE", str(root))
    path = tmp_path / "lab.yaml"
    path.write_text(LAB)
    store = ImageStore([Empty("vm-amd64"), Empty("docker-app")], root=tmp_path / "cache")
    store.build(["vm-amd64", "docker-app"])
    engines = {e: FakeBackend(e) for e in ("libvirt", "docker")}
    monkeypatch.setattr(backends, "get", engines.__getitem__)
    monkeypatch.setattr(backends, "engines", lambda: list(engines))
    # the roster's ids are no accounts of this host's, whatever the host has (ana, bo...)
    monkeypatch.setattr(class_lifecycle, "roster_account_exists", lambda _name: False)
    return World(root, load_lab(path), path, store, engines, FakeAccounts(), tmp_path / "r.csv")


THREE = "id,name\nana,Ana García\nbo,Bo\ncy,Cy\n"


def failing_for(student_instance: str, why: str) -> class_lifecycle.UpOne:
    """The real lab up for every student but one, whose engine refuses."""

    def up_one(lab: Lab, path: Path, instance: str, report: Reporter) -> object:
        if instance == student_instance:
            raise EngineError(why)
        return lifecycle.up(lab, path, instance, _store(path), NoKvm(), report=report)  # type: ignore[arg-type]

    return up_one


def _store(path: Path) -> ImageStore:
    return ImageStore([Empty("vm-amd64"), Empty("docker-app")], root=path.parent / "cache")


def test_each_student_gets_an_instance_named_by_class_and_id_and_an_account(world: World) -> None:
    result = world.up(world.roster(THREE))
    assert [(r.student, r.instance, r.ok) for r in result.results] == [
        ("ana", "so-ana", True),
        ("bo", "so-bo", True),
        ("cy", "so-cy", True),
    ]
    assert world.running() == {
        f"labctl-cls-so-{s}-{g}" for s in ("ana", "bo", "cy") for g in ("vm", "app")
    }
    assert world.accounts.made == [
        ("ana", "so", "so-ana"),
        ("bo", "so", "so-bo"),
        ("cy", "so", "so-cy"),
    ]
    st = ClassDir("so").require()
    assert (st.lab, st.roster) == ("cls", str(world.roster_file.resolve()))
    assert {s: seat.outcome for s, seat in st.seats.items()} == {"ana": UP, "bo": UP, "cy": UP}
    assert st.seats["ana"].name == "Ana García"
    assert InstanceDir("cls", "so-bo").load() is not None  # `labctl status -i so-bo` works
    # each account is confined once made (no lab yet) and again once its lab is up
    assert world.accounts.admitted == [(s, "so") for s in ("ana", "bo", "cy")] * 2


def test_the_validate_stage_counts_students_in_words(world: World) -> None:
    said: list[tuple[str, str, str]] = []
    world.up(world.roster("id,name\nana,Ana\n"), report=lambda *a: said.append(a))
    assert ("", "validate", "1 student") in said  # not "1 students"
    said.clear()
    world.up(world.roster(THREE), report=lambda *a: said.append(a))
    assert ("", "validate", "3 students") in said
    said.clear()
    class_down.down(ClassDir("so"), "bo", lambda *a: said.append(a), accounts=world.accounts)
    assert ("", "labs", "1 student") in said


def test_a_student_whose_lab_failed_is_still_confined(world: World) -> None:
    world.up(world.roster(THREE), up_one=failing_for("so-bo", "libvirt: no space"))
    assert world.accounts.admitted.count(("bo", "so")) == 2


def test_one_students_failure_is_recorded_and_the_others_come_up(world: World) -> None:
    result = world.up(world.roster(THREE), up_one=failing_for("so-bo", "libvirt: no space"))
    assert [(r.student, r.ok) for r in result.results] == [
        ("ana", True),
        ("bo", False),
        ("cy", True),
    ]
    assert result.failed[0].error == "libvirt: no space"
    seat = ClassDir("so").require().seats["bo"]
    assert (seat.outcome, seat.error) == (FAILED, "libvirt: no space")
    # a rerun finishes the class: bo comes up, ana and cy are found up
    again = world.up(world.roster(THREE))
    assert not again.failed
    assert ClassDir("so").require().seats["bo"].outcome == UP
    assert again.plan.students == 1  # only bo's lab was new: only it needed capacity


def test_a_failure_that_is_not_a_labctl_error_is_recorded_too(world: World) -> None:
    def up_one(lab: Lab, path: Path, instance: str, report: Reporter) -> object:
        raise OSError(28, "No space left on device")

    result = world.up(world.roster("id,name\nana,Ana\n"), up_one=up_one)
    assert "No space left on device" in (result.failed[0].error or "")


def test_parallelism_is_bounded(world: World) -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def up_one(lab: Lab, path: Path, instance: str, report: Reporter) -> object:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return None

    text = "id,name\n" + "".join(f"s{i},S {i}\n" for i in range(7))
    result = world.up(world.roster(text), up_one=up_one, max_parallel=3)
    assert len(result.results) == 7 and not result.failed
    assert peak[0] == 3


def test_an_overcommit_is_refused_before_anything_is_created(world: World) -> None:
    tight = capacity.HostCapacity(1024 + 2 * 600, 500_000, 2, capacity.Ksm(False, False, 0))
    with pytest.raises(HostError, match="3 students do not fit") as err:
        world.up(world.roster(THREE), host=tight)
    assert "--max-students 2" in (err.value.hint or "")
    assert world.running() == set() and world.accounts.made == []
    assert classes() == [] and Reservations().entries()["subnets"] == {}


def test_max_students_refuses_a_longer_roster(world: World) -> None:
    with pytest.raises(LabctlError, match="3 students, --max-students is 2"):
        world.up(world.roster(THREE), max_students=2)
    assert classes() == []


def test_an_id_that_is_a_host_account_is_refused_before_anything(world: World) -> None:
    with pytest.raises(SpecError, match="r.csv:3: id 'bo' is an existing account"):
        world.up(world.roster(THREE), account_exists={"bo"}.__contains__)
    assert world.running() == set() and classes() == []


def test_class_up_sets_the_exam_window_where_class_window_does(world: World) -> None:
    from datetime import timedelta, timezone

    from labctl.classroom import window as exam

    t = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)
    world.up(world.roster("id,name\nana,Ana\n"), window=exam.Window(t, t + timedelta(hours=2)))
    st = ClassDir("so").require()
    assert (st.window_start, st.window_end) == (
        "2026-12-03T10:00:00+00:00",
        "2026-12-03T12:00:00+00:00",
    )
    assert exam.window_of(st) == exam.Window(t, t + timedelta(hours=2))
    # a rerun given one end moves that end only; given none, it keeps the window
    world.up(world.roster("id,name\nana,Ana\n"), window=exam.Window(None, t + timedelta(hours=3)))
    assert exam.window_of(ClassDir("so").require()) == exam.Window(t, t + timedelta(hours=3))
    world.up(world.roster("id,name\nana,Ana\n"))
    assert exam.window_of(ClassDir("so").require()) == exam.Window(t, t + timedelta(hours=3))
    # an end before the class's own start is refused before anything is made for bo
    with pytest.raises(SpecError, match="before it starts"):
        world.up(
            world.roster("id,name\nana,Ana\nbo,Bo\n"),
            window=exam.Window(None, t - timedelta(minutes=1)),
        )
    assert [m[0] for m in world.accounts.made].count("bo") == 0
    assert list(ClassDir("so").require().seats) == ["ana"]
    assert exam.window_of(ClassDir("so").require()) == exam.Window(t, t + timedelta(hours=3))


def test_class_up_refuses_a_bad_window_before_reading_anything(world: World) -> None:
    cli = CliRunner()
    world.roster_file.write_text("id,name\nana,Ana\n")
    base = ["class", "up", str(world.roster_file), str(world.path), "-c", "so"]
    bad = cli.invoke(app, [*base, "--window-start", "tomorrow"])
    assert isinstance(bad.exception, SpecError) and bad.exception.code == 2
    assert "--window-start 'tomorrow' is not an ISO 8601 time" in bad.exception.message
    late = cli.invoke(
        app, [*base, "--window-start", "2026-12-03T10:00", "--window-end", "2026-12-03T09:59Z"]
    )
    assert isinstance(late.exception, SpecError) and late.exception.code == 2
    assert "before it starts" in late.exception.message
    assert classes() == [] and world.running() == set() and world.accounts.made == []


def test_a_class_keeps_its_lab(world: World, tmp_path: Path) -> None:
    world.up(world.roster("id,name\nana,Ana\n"))
    other = tmp_path / "other.yaml"
    other.write_text(lab_yaml("cls2", APP))
    with pytest.raises(LabctlError, match="class so runs lab cls, not cls2") as err:
        class_lifecycle.up(
            world.roster("id,name\nana,Ana\n"),
            "so",
            load_lab(other),
            other,
            world.store,
            NoKvm(),
            host=ROOMY,
            accounts=world.accounts,  # type: ignore[arg-type]
            account_exists=lambda u: True,
        )
    assert err.value.code == 2  # nothing was done: a usage error, not a failure


def test_down_removes_exactly_the_class_and_nothing_else(world: World) -> None:
    # someone's own lab of the same lab file, and a second class, share the host
    lifecycle.up(world.lab, world.path, "main", world.store, NoKvm())  # type: ignore[arg-type]
    world.up(world.roster("id,name\nana,Ana\n"), name="b")
    world.up(world.roster(THREE))
    ProgressStore("cls", "so-ana", "ana").start("ex1")
    done = class_down.down(ClassDir("so"), student="bo", accounts=world.accounts).seats
    assert [(d.student, d.instance) for d in done] == [("bo", "so-bo")]
    assert "labctl-cls-so-bo-vm" not in world.running()
    assert set(ClassDir("so").require().seats) == {"ana", "cy"}
    assert not InstanceDir("cls", "so-bo").path.exists()  # its key went too
    done = class_down.down(ClassDir("so"), accounts=world.accounts).seats
    assert [(d.student, d.progress_kept) for d in done] == [("ana", True), ("cy", False)]
    assert world.running() == {
        "labctl-cls-main-vm",
        "labctl-cls-main-app",
        "labctl-cls-b-ana-vm",
        "labctl-cls-b-ana-app",
    }
    assert world.accounts.removed == [("bo", "so"), ("ana", "so"), ("cy", "so")]
    assert classes() == ["b"] and not (world.root / "classes" / "so").exists()
    ana = InstanceDir("cls", "so-ana")
    assert not ana.key.exists() and ProgressStore("cls", "so-ana", "ana").state("ex1").started_at
    held = {t["instance"] for t in Reservations().entries()["subnets"].values()}
    assert held == {"main", "b-ana"}


def test_down_of_an_unknown_class_or_student_changes_nothing(world: World) -> None:
    # nothing to take down is done (a second class down): not even the class's lock is made
    assert class_down.down(ClassDir("zz"), accounts=world.accounts).seats == []
    assert not (world.root / "classes" / "zz").exists()
    world.up(world.roster("id,name\nana,Ana\n"))
    with pytest.raises(LabctlError, match="no student 'bo' in class so"):
        class_down.down(ClassDir("so"), student="bo", accounts=world.accounts)
    assert len(world.running()) == 2


def test_pick_finds_the_only_class_or_asks(world: World) -> None:
    with pytest.raises(LabctlError, match="no class on this host"):
        pick(None)
    world.up(world.roster("id,name\nana,Ana\n"), name="a")
    assert pick(None).name == "a"
    world.up(world.roster("id,name\nbo,Bo\n"), name="b")
    with pytest.raises(LabctlError, match="2 classes on this host: a, b"):
        pick(None)


def test_status_has_a_row_per_student_with_guests_and_progress(world: World) -> None:
    world.up(world.roster(THREE), up_one=failing_for("so-cy", "docker: pull refused"))
    (world.path.parent / "exercises").mkdir()
    for ex in ("ex1", "ex2"):
        (world.path.parent / "exercises" / f"{ex}.yaml").write_text(exercise_yaml(ex))
    store, t = ProgressStore("cls", "so-ana", "ana").store, datetime.fromisoformat

    def new(ex: str, kind: str, at: str, **kw: object) -> NewAttempt:
        at_ = t(f"2026-12-03T{at}+00:00")
        return NewAttempt("cls", "so-ana", "ana", ex, kind, at=at_, **kw)  # type: ignore[arg-type]

    store.record(
        new("ex1", "start", "08:00:00"),
        new("ex1", "check", "08:10:00", step="s1", passed=True),
        new("ex2", "check", "08:30:00", step="s1", passed=False),
    )
    world.engines["docker"].guests["labctl-cls-so-bo-app"] = "stopped"
    rows = {r.student: r for r in status(ClassDir("so").require())}
    assert (rows["ana"].guests_ready, rows["ana"].guests) == (2, 2)
    assert rows["ana"].exercises_done == 1
    # the VM asks for KVM, which this world's host cannot run: said, as labctl status says it
    assert [n.split(": ", 1)[0] for n in rows["ana"].accel_notes] == ["vm"]
    assert "running under TCG" in rows["ana"].accel_notes[0]
    assert rows["ana"].last_activity == "2026-12-03T08:30:00+00:00"
    assert rows["bo"].guests_ready == 1 and rows["bo"].last_activity is None
    assert (rows["cy"].outcome, rows["cy"].guests_ready, rows["cy"].error) == (
        "failed",
        0,
        "docker: pull refused",
    )
    # an exam's end set before ana's pass (after it was made): status counts it no more
    ended = with_window(ClassDir("so").require(), None, t("2026-12-03T08:05:00+00:00"))
    assert {r.student: r for r in status(ended)}["ana"].exercises_done == 0


# -- reset and the CLI ------------------------------------------------------------------------


@pytest.fixture
def no_host(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Images and KVM as the fakes know them, for the commands that look them up."""
    monkeypatch.setattr("labctl.images.registry.store", lambda: world.store)
    monkeypatch.setattr("labctl.host.accel.detect", NoKvm)


def test_reset_recreates_one_guest_or_the_whole_lab_of_one_student_only(
    world: World, no_host: None
) -> None:
    world.up(world.roster(THREE))
    made = world.creates()
    said = reset(ClassDir("so"), "bo", guest="app")
    assert said == "bo: app fresh from its image" and made == ["labctl-cls-so-bo-app"]
    made.clear()
    assert "progress kept" in reset(ClassDir("so"), "cy")
    assert sorted(made) == ["labctl-cls-so-cy-app", "labctl-cls-so-cy-vm"]
    with pytest.raises(LabctlError, match="no student 'zed' in class so"):
        reset(ClassDir("so"), "zed", guest="app")
    with pytest.raises(LabctlError, match="not both"):
        reset(ClassDir("so"), "bo", exercise="x", guest="app")
    with pytest.raises(LabctlError, match="no guest 'nosuch' in lab cls") as err:
        reset(ClassDir("so"), "bo", guest="nosuch")
    assert (err.value.code, err.value.hint) == (2, "guests: vm, app")  # as --exercise nosuch
    (world.path.parent / "exercises").mkdir()
    (world.path.parent / "exercises" / "ex1.yaml").write_text(exercise_yaml("ex1"))
    with pytest.raises(LabctlError, match="no exercise 'nosuch'") as err:
        reset(ClassDir("so"), "bo", exercise="nosuch")
    # the instructor's command lists bo's lab (a lab not shipped: by its file)
    assert f"labctl exercise list --lab {world.path} -i so-bo shows" in (err.value.hint or "")


def test_the_status_table_fits_80_columns(world: World, no_host: None) -> None:
    text = "id,name\nana,Ana María de los Ángeles García-Núñez y Fernández de Córdoba\nbo,Bo\n"
    world.up(world.roster(text))
    result = CliRunner().invoke(app, ["class", "status"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert "Córdoba" in result.stdout and "2/2" in result.stdout
    assert lines[0].strip() == "Class so, lab cls"  # which class, when --class is left out
    window = ["class", "window", "--start", "2026-03-01T09:00", "--end", "2026-03-01T11:00"]
    assert CliRunner().invoke(app, window).exit_code == 0
    lines = CliRunner().invoke(app, ["class", "status"], env={"COLUMNS": "80"}).stdout.splitlines()
    assert lines[0].strip() == "Class so, lab cls" and all(len(line) <= 80 for line in lines)
    assert lines[-1] == "Exam window 2026-03-01 09:00 → 2026-03-01 11:00 UTC (ended)."


def test_class_status_names_the_guests_defined_before_a_change(world: World) -> None:
    world.up(world.roster("id,name\nana,Ana\nbo,Bo\n"))
    world.engines["libvirt"].changed["vm"] = "memory 384 MiB -> 512 MiB"
    world.up(world.roster("id,name\nana,Ana\nbo,Bo\n"))  # the instructor's class up again
    result = CliRunner().invoke(app, ["class", "status"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert "Running as defined before a change" in said
    assert "ana vm: memory 384 MiB -> 512 MiB" in said and "bo vm: memory 384 MiB" in said
    rows = json.loads(CliRunner().invoke(app, ["class", "status", "--json"]).stdout)["students"]
    assert [r["outdated"] for r in rows] == [["vm: memory 384 MiB -> 512 MiB"]] * 2


def test_class_plan_exits_1_when_the_roster_does_not_fit(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    tight = capacity.HostCapacity(1024 + 2 * 600, 500_000, 2, capacity.Ksm(True, False, 0))
    monkeypatch.setattr(capacity, "host_capacity", lambda: tight)
    world.roster(THREE)
    args = ["class", "plan", str(world.roster_file), str(world.path)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 1, result.output
    assert "does NOT fit" in result.stdout and "--max-students 2" in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    data = CliRunner().invoke(app, [*args, "--json"])
    assert '"fit": 2' in data.stdout and '"fits": false' in data.stdout


def test_class_plan_refuses_an_id_that_is_an_account_of_the_host_as_class_up_does(
    world: World,
    no_host: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from labctl.cli import main

    monkeypatch.setattr(capacity, "host_capacity", lambda: ROOMY)
    given = Server("lab.example.org", "env")  # not this host's DNS
    monkeypatch.setattr("labctl.cli.classroom.find_server", lambda: given)
    world.roster("id,name\nana,Ana\nroot,Root\n")  # root is an account of every host
    # ... and ana of none, whatever this host has
    monkeypatch.setattr(class_lifecycle, "roster_account_exists", lambda name: name == "root")
    said = f"{world.roster_file}:3: id 'root' is an existing account on this host"

    def run(*args: str) -> tuple[int, str]:
        monkeypatch.setattr("sys.argv", ["labctl", "class", *args])
        with pytest.raises(SystemExit) as exit_:
            main()
        return int(exit_.value.code or 0), capsys.readouterr().err

    code, err = run("plan", str(world.roster_file), str(world.path))
    assert code == 2 and said in err and "Traceback" not in err
    assert "fits" not in capsys.readouterr().out
    up_code, up_err = run("up", str(world.roster_file), str(world.path))  # refused alike
    assert (up_code, said in up_err) == (2, True)
    assert classes() == [] and world.running() == set()
    # the same roster without root fits, and so does one whose accounts labctl made
    world.roster("id,name\nana,Ana\n")
    assert run("plan", str(world.roster_file), str(world.path))[0] == 0
    monkeypatch.setattr(class_lifecycle, "roster_account_exists", lambda name: name == "ana")
    monkeypatch.setattr(class_lifecycle.accounts, "owned", lambda u, c: (u, c) == ("ana", "so"))
    assert run("plan", str(world.roster_file), str(world.path), "-c", "so")[0] == 0
    code, err = run("plan", str(world.roster_file), str(world.path), "-c", "b")
    assert code == 2 and "id 'ana' is an existing account" in err
    # listed with the roster's other problems, not after they are fixed
    monkeypatch.setattr(class_lifecycle, "roster_account_exists", lambda name: name == "root")
    world.roster_file.write_text("id,name\nbo,\nroot,Root\n")
    for command in ("plan", "up"):
        code, err = run(command, str(world.roster_file), str(world.path))
        assert code == 2 and "2 problem(s) in the roster" in err
        assert ":2: the name is empty" in err and said in err
    assert classes() == [] and world.running() == set()


def test_an_interrupted_class_up_stops_and_a_rerun_finishes_it(world: World) -> None:
    def up_one(lab: Lab, path: Path, instance: str, report: Reporter) -> object:
        if instance == "so-bo":
            cancel.CANCEL.set()  # Ctrl-C while bo's lab comes up
            cancel.check()
        return lifecycle.up(lab, path, instance, world.store, NoKvm(), report=report)  # type: ignore[arg-type]

    try:
        with pytest.raises(LabctlError, match="interrupted") as err:
            world.up(world.roster(THREE), up_one=up_one, max_parallel=1)
    finally:
        cancel.CANCEL.clear()
    assert err.value.code == 130
    seats = ClassDir("so").require().seats
    assert {s: seat.outcome for s, seat in seats.items()} == {
        "ana": UP,
        "bo": "pending",  # never recorded as failed: it was stopped, not broken
        "cy": "pending",
    }
    again = world.up(world.roster(THREE))
    assert [r.ok for r in again.results] == [True, True, True]
    assert len(world.running()) == 6


def test_a_class_taken_down_leaves_no_folder_whatever_its_dashboard_kept(world: World) -> None:
    world.up(world.roster(THREE))
    folder = ClassDir("so")
    for name in ("dashboard-tokens.json", "dashboard.json", "dashboard.lock"):  # class serve's
        (folder.root / name).write_text("{}")
    class_down.down(folder, None, lambda *_a: None, accounts=world.accounts)
    assert not folder.root.exists()


def test_a_class_that_is_not_here_names_those_that_are(tmp_path: Path) -> None:
    from labctl.classroom.state import ClassState

    with pytest.raises(LabctlError) as none:
        ClassDir("zz9", tmp_path).require()
    assert none.value.message == "there is no class 'zz9' on this host"
    assert none.value.hint == "labctl class up ROSTER [LAB] --class zz9 brings one up"
    ClassDir("so24a", tmp_path).save(ClassState("so24a", "virtualization", "lab.yaml", "r.csv"))
    with pytest.raises(LabctlError) as other:
        ClassDir("zz9", tmp_path).require()
    assert other.value.hint == "classes here: so24a"
