"""Seat slots: each student of a class gets their own, and their ports never meet a classmate's.

Class up runs on test_classroom_lifecycle's fakes (in-memory engines, accounts in a fake
passwd); the slot goes the product's way: the class state, ``reach.admit``'s owner record,
the exercise runner and ``labctl app run``. The host's ports are given, never read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from labctl import backends
from labctl.backends import apps as app_rules
from labctl.backends.apps import NotYours
from labctl.classroom import accounts, reach, slots
from labctl.classroom import down as class_down
from labctl.classroom.roster import Student
from labctl.classroom.state import ClassDir, ClassState, Seat
from labctl.cli import app
from labctl.errors import LabctlError, SpecError
from labctl.exercises import params, runner
from labctl.exercises.model import ParamSpec
from labctl.instance.state import InstanceDir, Owner
from labctl.spec.model import Lab
from labctl.stages import Reporter
from tests.labs import exercise_yaml
from tests.unit.fake_accounts import FakeSystem
from tests.unit.test_classroom_lifecycle import World, make_world

CLEAR = slots.HostPorts((32768, 60999), frozenset())
#: three port parameters over overlapping ranges (two of them in one exercise)
PORTS = {
    "uno": "  web: {kind: port, min: 20000, max: 20999}\n"
    "  api: {kind: port, min: 20000, max: 20999}",
    "dos": "  port: {kind: port, min: 20500, max: 21999}\n  token: {kind: token, length: 8}",
    "tres": "  user: {kind: name}",
}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    return make_world(tmp_path, monkeypatch)


def with_exercises(world: World, ports: dict[str, str] = PORTS) -> None:
    folder = world.path.parent / "exercises"
    folder.mkdir(exist_ok=True)
    for n, (ex, p) in enumerate(ports.items()):
        first = p.split(":")[0].strip()
        text = exercise_yaml(ex, instructions=f'"{{param.{first}}}"', params=p)
        (folder / f"{n:02d}-{ex}.yaml").write_text(text)


class ServerAccounts:
    """``classroom.accounts`` and ``reach`` themselves, on a fake passwd database."""

    def __init__(self, homes: Path) -> None:
        self.system = FakeSystem(homes)

    def ensure(self, student: Student, class_name: str, lab: str, instance: str) -> None:
        accounts.ensure_account(
            student.id, student.name, None, class_name, lab=lab, instance=instance,
            server="lab.example.org", system=self.system,
        )  # fmt: skip

    def remove(self, student: str, class_name: str) -> None:
        accounts.remove_account(student, class_name, system=self.system)

    def owned(self, user: str, class_name: str) -> bool:
        return accounts.owned(user, class_name)

    def admit(self, student: str, class_name: str) -> None:
        reach.admit(student, class_name)


def no_lab(lab: Lab, path: Path, instance: str, report: Reporter) -> object:
    return None  # the ports need the class state and the owner record, not the guests


def roster_of(world: World, ids: list[str]) -> Any:
    return world.roster("id,name\n" + "".join(f"{i},{i.title()}\n" for i in ids))


def slots_of(name: str = "so") -> dict[str, int | None]:
    return {k: s.slot for k, s in ClassDir(name).require().seats.items()}


def port_specs(world: World) -> dict[tuple[str, str], ParamSpec]:
    ws = runner.open_workspace(str(world.path), "any")
    return {(e.id, n): e.params[n] for e in ws.exercises() for _, n in params.port_keys([e])}


def ports_of(world: World, instance: str) -> dict[tuple[str, str], int]:
    """Every port parameter's value as the exercise runner gives it on ``instance``."""
    ws = runner.open_workspace(str(world.path), instance)
    owner = InstanceDir(ws.lab, instance).owner()
    assert owner is not None
    found = {}
    for exercise in ws.exercises():
        vals = runner.values(ws, exercise, owner.student)
        for key in params.port_keys([exercise]):
            found[key] = int(vals[f"param.{key[1]}"])
    return found


def test_sixty_students_of_a_class_never_share_a_port(world: World, tmp_path: Path) -> None:
    with_exercises(world)
    ids = [f"s{n:02d}" for n in range(60)]
    server = ServerAccounts(tmp_path / "homes")
    result = world.up(roster_of(world, ids), up_one=no_lab, accounts=server, ports=CLEAR)
    assert not result.failed
    assert slots_of() == {s: n for n, s in enumerate(ids)}  # roster order
    specs = port_specs(world)
    taken: dict[int, str] = {}
    for s in ids:
        owner = InstanceDir("cls", f"so-{s}").owner()
        assert owner is not None and owner.slot == slots_of()[s]
        for key, port in ports_of(world, f"so-{s}").items():
            assert specs[key].min <= port <= specs[key].max, (s, key, port)
            assert port not in taken, f"{s}'s {key} is {taken[port]}'s too: {port}"
            taken[port] = f"{s} {key}"
    assert len(taken) == 60 * 3
    # the hash a student of their own gets would have given two of them one port
    hashed = [params.value(spec, "cls", *key, s) for s in ids for key, spec in specs.items()]
    assert len(set(hashed)) < len(hashed)


def test_a_slot_is_kept_on_a_rerun_and_never_given_to_another_while_its_student_exists(
    world: World,
) -> None:
    world.up(roster_of(world, ["ana", "bo", "cy"]), ports=CLEAR)
    assert slots_of() == {"ana": 0, "bo": 1, "cy": 2}
    # another order, bo left out (still in the class: he keeps 1), a newcomer
    world.up(roster_of(world, ["dee", "cy", "ana"]), ports=CLEAR)
    assert slots_of() == {"ana": 0, "bo": 1, "cy": 2, "dee": 3}
    class_down.down(ClassDir("so"), student="bo", accounts=world.accounts)
    world.up(roster_of(world, ["ana", "cy", "dee", "eve", "fay"]), ports=CLEAR)
    assert slots_of() == {"ana": 0, "cy": 2, "dee": 3, "eve": 1, "fay": 4}  # bo's 1 was freed


def test_a_class_of_an_older_labctl_gets_its_slots_on_the_next_class_up(world: World) -> None:
    old = ClassState("so", "cls", str(world.path), "r.csv")
    ClassDir("so").save(old.with_seat(Seat("zed", "Zed", "so-zed")))  # no slot, not in roster
    world.up(roster_of(world, ["ana", "bo"]), ports=CLEAR)
    assert slots_of() == {"ana": 0, "bo": 1, "zed": 2}


@pytest.mark.parametrize(
    ("ports", "host", "said"),
    [
        (  # 3 parameters share 20000-20059: 20 seats each, 25 wanted
            {"uno": "  web: {kind: port, min: 20000, max: 20059}\n"
                    "  api: {kind: port, min: 20000, max: 20059}",
             "dos": "  port: {kind: port, min: 20000, max: 29999}"},
            CLEAR,
            "exercise uno: {param.web} (20000-20059) holds 20 seat slots, the class needs 25",
        ),
        (
            {"uno": "  web: {kind: port, min: 40000, max: 49999}"},
            CLEAR,
            "exercise uno: {param.web} (40000-49999) gives port 40000, inside the kernel's "
            "ephemeral range 32768-60999",
        ),
        (
            {"uno": "  web: {kind: port, min: 20000, max: 29999}"},
            slots.HostPorts((32768, 60999), frozenset({20007})),
            "exercise uno: {param.web} (20000-29999) gives port 20007, reserved by a lab on "
            "this server",
        ),
    ],
)  # fmt: skip
def test_ports_a_class_cannot_own_are_refused_before_anything_exists(
    world: World, ports: dict[str, str], host: slots.HostPorts, said: str
) -> None:
    with_exercises(world, ports)
    with pytest.raises(SpecError) as err:
        world.up(roster_of(world, [f"s{n:02d}" for n in range(25)]), ports=host)
    assert said in err.value.message and err.value.code == 2
    assert "below 32768" in (err.value.hint or "")
    assert ClassDir("so").load() is None and world.accounts.made == [] and not world.running()


def test_outside_class_mode_ports_are_today_s_hash(world: World) -> None:
    with_exercises(world)
    ws = runner.open_workspace(str(world.path), "alumno07")
    vals = runner.values(ws, ws.exercise("dos"), "alumno07")
    spec = ws.exercise("dos").params["port"]
    assert vals["param.port"] == params.value(spec, "cls", "dos", "port", "alumno07")


def test_an_instance_whose_class_gave_no_slot_has_no_ports_until_class_up(
    world: World,
) -> None:
    with_exercises(world)
    InstanceDir("cls", "so-ana").save_owner(Owner("so", "ana", "ssh-ed25519 AAAA x", 2001))
    ws = runner.open_workspace(str(world.path), "so-ana")
    assert runner.values(ws, ws.exercise("tres"), "ana")["param.user"].startswith("alu")
    with pytest.raises(LabctlError, match="ana has no seat slot in class so") as err:
        runner.values(ws, ws.exercise("dos"), "ana")
    assert "labctl class up" in (err.value.hint or "")


class RecordingApps:
    def __init__(self) -> None:
        self.ran: list[int] = []

    def run(self, scope: Any, ref: str, name: str, port: int, inner: Any, wait: float) -> Any:
        self.ran.append(port)
        return app_rules.AppContainer(name, ref, "running", port, None)


def test_app_run_takes_the_seat_s_ports_and_refuses_a_classmate_s(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_nft: Any
) -> None:
    with_exercises(world)
    server = ServerAccounts(tmp_path / "homes")
    world.up(roster_of(world, ["ana", "bo"]), up_one=no_lab, accounts=server, ports=CLEAR)
    ana, bo = ports_of(world, "so-ana"), ports_of(world, "so-bo")
    # slot 0's and 1's: one in three ports of dos's range, from its residue (index 2) on
    assert (ana[("dos", "port")], bo[("dos", "port")]) == (20501, 20504)
    recording = RecordingApps()
    monkeypatch.setattr(backends, "app_engine", lambda: recording)

    def run(port: int) -> Any:
        argv = ["app", "run", "labctl/webapp:latest", "--name", "web-ana", "-l", str(world.path)]
        return CliRunner().invoke(app, [*argv, "-i", "so-ana", "-s", "ana", "--port", str(port)])

    refused = run(bo[("dos", "port")]).exception
    assert isinstance(refused, NotYours), refused
    assert refused.message == f"port {bo[('dos', 'port')]} is not one of yours (ana)"
    assert f"{ana[('dos', 'port')]} for dos (its port)" in (refused.hint or "")
    ran = run(ana[("dos", "port")])
    assert ran.exit_code == 0, ran.output
    assert recording.ran == [ana[("dos", "port")]]
    assert fake_nft.sets["ports"] == {ana[("dos", "port")]: "labctl cls/so-ana"}
