"""A class's student without the docker group builds, runs and removes their own app image.

Two real student accounts (random ids, removed in ``finally``), each with an app-container
lab instance that is really up and the default lab's two Docker exercises. As each student
(``su - USER -c labctl ...``, through sudo and the class's entry point): ``labctl app build``
from a directory in their home, ``history``, ``run`` on the port their exercise gives them
(from the seat slot recorded in the class state, as ``class up`` records it), the page
fetched on loopback, ``ls`` and ``rm``. What is not theirs is refused with exit 2: the other's
tag, container name or port, an option that would lift the confinement, a
directory outside their home (or a link out of it). The other student cannot open the
student's published port, the student's container cannot reach the other's guest, and
``down`` leaves neither their containers nor their images behind.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from labctl.classroom import accounts, reach, slots
from labctl.classroom.roster import account_exists
from labctl.classroom.state import ClassDir, ClassState, Seat
from labctl.docker_client import connect
from labctl.exercises import params
from labctl.exercises.model import load_exercises
from labctl.host.accel import detect
from labctl.images.registry import store
from labctl.instance import naming
from labctl.instance.state import InstanceDir
from labctl.lab import lifecycle
from labctl.paths import LABS_DIR
from tests.integration import test_students as students
from tests.integration.engines import inventory
from tests.integration.labs import taken_down, write_lab
from tests.labs import lab_yaml

APP = """\
  docker-app:
    engine: docker
    technique: app-container
    image: docker-app
    port: 8080
"""
LAB = lab_yaml("sapp", APP)
EXERCISES = LABS_DIR / "virtualization" / "exercises"


# test_students.py's: a state directory others may traverse (as /var/lib/labctl), and a
# student's login shell and labctl
state = students.state
shell, as_student, refused = students.shell, students.as_student, students.refused


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def test_a_student_builds_runs_and_removes_their_own_app_only(
    tmp_path_factory: pytest.TempPathFactory, state: Path
) -> None:
    store().build(["docker-app"])
    path, lab = write_lab(tmp_path_factory, "sapp", LAB)
    (path.parent / "exercises").mkdir()
    for name in ("52-app-imagen.yaml", "53-app-arranque.yaml"):
        shutil.copy(EXERCISES / name, path.parent / "exercises")
    tag = secrets.token_hex(2)
    cls = "a" + tag
    ana, bob = f"la{tag}a", f"la{tag}b"
    inst = {ana: f"{cls}-{ana}", bob: f"{cls}-{bob}"}
    for user in inst:
        assert not account_exists(user)
    # as class up's record stage does: a seat slot per student, in roster order
    given = slots.assign(None, list(inst))
    slots.check(load_exercises(path.parent / "exercises"), given, None)  # this server's ports
    seats = {u: Seat(u, f"Test {u}", i, slot=given[u]) for u, i in inst.items()}
    ClassDir(cls).save(ClassState(cls, lab.name, str(path), "roster.csv", seats))
    try:
        for user, instance in inst.items():  # as class up does: account, admit, up, admit
            accounts.ensure_account(
                user, f"Test {user}", None, cls, lab=lab.name, instance=instance
            )
            reach.admit(user, cls)
        with taken_down(lab, list(inst.values())):
            for instance in inst.values():
                lifecycle.up(lab, path, instance, store(), detect())
            for user in inst:
                reach.admit(user, cls)
            _build_run_and_remove(ana, bob, lab.name, cls, inst, state, path.parent)
        for instance in inst.values():  # taken_down checked the inventory; say it here too
            assert not inventory(lab.name, instance).labelled
    finally:
        for user in inst:
            accounts.remove_account(user, cls, kill_processes=True)
        ClassDir(cls).remove()
    for user in inst:
        assert not account_exists(user)
    assert accounts.records() == []


def _port(cls: str, lab_dir: Path, exercise: str, student: str) -> int:
    """The student's port: from the seat slot class up recorded, never from a hash."""
    exercises = load_exercises(lab_dir / "exercises")
    slot = ClassDir(cls).require().seats[student].slot
    seat = params.Seat(cls, student, slot, params.port_keys(exercises))
    spec = next(e for e in exercises if e.id == exercise).params["port"]
    return seat.port(spec, exercise, "port")


def _build_run_and_remove(
    ana: str, bob: str, lab: str, cls: str, inst: dict[str, str], state: Path, lab_dir: Path
) -> None:
    v2 = {u: f"labctl/webapp:v2-{u}" for u in (ana, bob)}
    port = {u: _port(cls, lab_dir, "app-imagen", u) for u in (ana, bob)}
    assert port[ana] != port[bob]  # classmates: their seat slots differ
    token = {u: secrets.token_hex(4) for u in (ana, bob)}
    docker = connect()
    for user in (ana, bob):  # a directory of their own, written as themselves
        ok(
            shell(
                user,
                "mkdir -p ~/web-v2 && cd ~/web-v2 && "
                f"echo '<h1>v2 {token[user]}</h1>' > index.html && printf '%s\\n' "
                "'FROM labctl/webapp:latest' 'COPY index.html /srv/www/index.html' > Dockerfile",
            )
        )
        # a relative directory, as typed in their home (sudo keeps the working directory)
        built = ok(as_student(user, state, "app", "build", "web-v2", "--tag", v2[user]))
        assert f"Built {v2[user]}" in built
    image = docker.images.get(v2[ana])
    assert {k: image.labels[k] for k in ("labctl.lab", "labctl.instance", "labctl.student")} == {
        "labctl.lab": lab,
        "labctl.instance": inst[ana],
        "labctl.student": ana,
    }
    history = ok(as_student(ana, state, "app", "history", v2[ana], "--json"))
    base = ok(as_student(ana, state, "app", "history", "labctl/webapp:latest", "--json"))
    assert json.loads(history)["layers"] == json.loads(base)["layers"] + 1

    ran = ok(
        as_student(
            ana, state, "app", "run", v2[ana], "--name", f"web-{ana}",
            "--port", str(port[ana]), "--wait",
        )
    )  # fmt: skip
    assert "answered" in ran
    page = ok(shell(ana, f"curl -fsS http://127.0.0.1:{port[ana]}/"))
    assert token[ana] in page
    # the other student's uid cannot open it (labctl's firewall), root can
    closed = shell(bob, f"curl -sS -m 5 http://127.0.0.1:{port[ana]}/")
    assert closed.returncode != 0 and token[ana] not in closed.stdout
    container = docker.containers.get(f"web-{ana}")
    host = container.attrs["HostConfig"]
    assert host["NetworkMode"] == naming.network(lab, inst[ana])
    assert not host["Privileged"] and not host["CapAdd"] and not host["Binds"]
    binding = {"HostIp": "127.0.0.1", "HostPort": f"{port[ana]}"}
    assert host["PortBindings"] == {"8080/tcp": [binding]}
    # from ana's container: her own lab's app answers, bob's guest does not
    for instance, expected in ((inst[ana], True), (inst[bob], False)):
        guest = InstanceDir(lab, instance).load()
        assert guest is not None
        app = docker.containers.get(guest.guests["docker-app"].resource)
        target = app.attrs["NetworkSettings"]["Networks"][naming.network(lab, instance)]
        target = target["IPAddress"]
        probe = container.exec_run(
            ["bash", "-c", f"timeout 5 bash -c 'exec 3<>/dev/tcp/{target}/8080' && echo open"]
        )
        assert (b"open" in probe.output) is expected, (instance, probe.output)

    # what is not hers: exit 2, nothing made
    refused(as_student(ana, state, "app", "history", v2[bob]), "is not yours")
    refused(as_student(ana, state, "app", "rm", v2[bob]), "is not a tag of yours")
    refused(
        as_student(ana, state, "app", "build", "web-v2", "--tag", v2[bob]), "not a tag of yours"
    )
    refused(
        as_student(
            ana, state, "app", "run", v2[bob], "--name", f"web-{ana}", "--port", str(port[ana])
        ),
        "is not yours",
    )
    refused(
        as_student(
            ana, state, "app", "run", v2[ana], "--name", f"web-{bob}", "--port", str(port[ana])
        ),
        "is not a container name of yours",
    )
    refused(
        as_student(
            ana, state, "app", "run", v2[ana], "--name", f"x-{ana}", "--port", str(port[bob])
        ),
        f"port {port[bob]} is not one of yours",
    )
    refused(as_student(ana, state, "app", "ls", "--student", bob), f"--student {bob} is not yours")
    for lifting in ("--privileged", "--network=host", "--volume=/:/host", "--cap-add=ALL"):
        run = as_student(
            ana, state, "app", "run", v2[ana], "--name", f"y-{ana}", "--port", str(port[ana]),
            lifting,
        )  # fmt: skip
        refused(run, "No such option")
    refused(
        as_student(ana, state, "app", "build", "/etc", "--tag", f"labctl/x:v1-{ana}"),
        "is not inside your home",
    )
    ok(shell(ana, "ln -sfn /usr/share ~/outside"))
    refused(
        as_student(ana, state, "app", "build", "outside", "--tag", f"labctl/x:v1-{ana}"),
        "is not inside your home",
    )
    dockerfile = "FROM labctl/webapp:latest\\nADD http://10.0.0.1/ /x\\n"
    ok(shell(ana, f"mkdir -p ~/bad && printf '{dockerfile}' > ~/bad/Dockerfile"))
    refused(
        as_student(ana, state, "app", "build", "bad", "--tag", f"labctl/x:v1-{ana}"),
        "Dockerfile:2: ADD is not taken by labctl app build",
    )
    assert not docker.containers.list(all=True, filters={"name": f"y-{ana}"})

    listed = json.loads(ok(as_student(ana, state, "app", "ls", "--json")))
    assert [i["tag"] for i in listed["images"]] == [v2[ana]]
    assert [c["name"] for c in listed["containers"]] == [f"web-{ana}"]
    removed = ok(as_student(ana, state, "app", "rm", f"web-{ana}", v2[ana]))
    assert f"Removed container web-{ana}" in removed and f"Removed image {v2[ana]}" in removed
    assert json.loads(ok(as_student(ana, state, "app", "ls", "--json"))) == {
        "images": [],
        "containers": [],
    }
    # app-arranque needs kvm-full, which this lab does not run: it is not the lab's exercise,
    # and its port is not the student's
    arranque = _port(cls, lab_dir, "app-arranque", ana)
    refused(
        as_student(
            ana, state, "app", "run", "labctl/webapp:latest", "--name", f"prueba-{ana}",
            "--port", str(arranque),
        ),
        f"port {arranque} is not one of yours",
    )  # fmt: skip
    # left for down: one of ana's containers and bob's image
    ok(
        as_student(
            ana, state, "app", "run", "labctl/webapp:latest", "--name", f"prueba-{ana}",
            "--port", str(port[ana]),
        )
    )  # fmt: skip
    assert f"container prueba-{ana}" in inventory(lab, inst[ana]).labelled
    assert f"image {docker.images.get(v2[bob]).id}" in inventory(lab, inst[bob]).labelled
