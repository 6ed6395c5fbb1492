"""Every exercise on the real lab, in both directions.

For each exercise, with a fresh student id (so per-student parameters are new): on the guest
as it is, every check FAILS (none errors); after the scripted solution
(``exercise_solutions.py``) every check PASSES through ``labctl exercise check``; then a wrong
answer to every answer step FAILS against what the lab measures. ``reset`` is proven on the
two guests that are cheap to recreate, after every other test (it changes their addresses).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from labctl.cli import app
from labctl.exercises import runner
from labctl.exercises.model import load_exercises
from labctl.exercises.progress import ProgressStore, shared
from labctl.images.debian import DEFAULT_MIRROR
from tests.integration.conftest import LAB_DIR, RunningLab
from tests.integration.exercise_solutions import (
    CLEANUP,
    PLACES,
    SOLUTIONS,
    WRONG,
    Student,
    apt_reaches_mirror,
    wrong_answer,
)

# pylxd's exec websockets (ws4py) may end their manager thread on a closed epoll object at
# garbage collection; it is the library's teardown, after every result was received.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception in thread WebSocketManager:pytest.PytestUnhandledThreadExceptionWarning"
)

cli = CliRunner()
LABCTL = str(Path(sys.executable).parent / "labctl")
EXERCISES = [e.id for e in load_exercises(LAB_DIR / "exercises")]


def _args(s: Student, *extra: str) -> list[str]:
    return ["-l", str(LAB_DIR), "-i", s.ws.instance, "-s", s.student, *extra]


def _check_json(s: Student, *extra: str) -> tuple[int, dict]:
    args = _args(s, "--json", "--lang", "es", *extra)
    result = cli.invoke(app, ["exercise", "check", s.exercise.id, *args])
    assert result.exit_code in (0, 1, 2) and result.stdout, (result.output, result.exception)
    return result.exit_code, json.loads(result.stdout)


def _results(report: dict) -> list[dict]:
    return [r for step in report["steps"] for r in step["results"]]


def _table(results: list[dict]) -> str:
    return "\n".join(f"  {r['status']:6} {r['what']}: {r['detail']}" for r in results)


MakeStudent = Callable[[str], Student]


@pytest.fixture
def student(
    running_lab: RunningLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeStudent]:
    """A new student (unique id, own $HOME) for one exercise; what it leaves is cleaned up."""
    monkeypatch.setenv("HOME", str(tmp_path))  # host checks and solutions share ~
    made: list[Student] = []

    def make(exercise_id: str) -> Student:
        s = Student.new(LAB_DIR, running_lab.instance, exercise_id, tmp_path)
        made.append(s)
        return s

    yield make
    for s in made:
        if s.exercise.id in CLEANUP:
            CLEANUP[s.exercise.id](s)


def test_every_exercise_has_a_solution_and_a_wrong_answer_per_answer_step() -> None:
    exercises = load_exercises(LAB_DIR / "exercises")
    assert set(SOLUTIONS) == {e.id for e in exercises}
    asks = {(e.id, s.id) for e in exercises for s in e.steps if s.answer_check is not None}
    assert {(e, step) for e, steps in WRONG.items() for step in steps} == asks


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_untouched_fails_solution_passes_wrong_answers_fail(
    running_lab: RunningLab, student: MakeStudent, exercise_id: str
) -> None:
    s = student(exercise_id)
    ex = s.exercise

    # 1. The guest as it is (after the exercise's own setup): every check fails, none errors.
    code, report = _check_json(s)
    before = _results(report)
    assert code == 1, _table(before)
    assert [r["status"] for r in before] == ["failed"] * len(before), _table(before)

    # 2. The scripted solution: every check passes, the exercise is completed.
    SOLUTIONS[exercise_id](s)
    code, report = _check_json(s)
    after = _results(report)
    assert code == 0, _table(after)
    assert report["progress"]["state"] == "completed"

    # 3. A wrong answer to every answer step fails against what the lab measures now.
    answer_steps = [st for st in ex.steps if st.answer_check is not None]
    for st in answer_steps:
        s.answer(st.id, wrong_answer(s, st.id))
    for st in answer_steps:
        code, report = _check_json(s, "--step", st.id)
        results = _results(report)
        wrong = results[st.checks.index(st.answer_check)]
        assert code == 1 and wrong["status"] == "failed", _table(results)
    print(
        f"\n{exercise_id}: {len(before)} checks failed untouched, {len(after)} passed solved, "
        f"{len(answer_steps)} wrong answers failed"
    )


def test_a_hypervisor_in_the_wrong_place_fails_its_own_check_only(
    running_lab: RunningLab, student: MakeStudent
) -> None:
    s = student("pv-hipervisores")
    wrong = {**PLACES, "virtualbox": "tipo1", "zvm": "drivers-pv"}  # the usual mix-ups
    placed = "".join(f"{product}: {category}\n" for product, category in wrong.items())
    (s.home / f"hipervisores-{s.student}.txt").write_text(placed)
    code, report = _check_json(s, "--step", "clasifica")
    results = _results(report)
    failed = [r["what"] for r in results if r["status"] == "failed"]
    assert code == 1 and failed == ["VirtualBox: tipo 2", "z/VM: paravirtualización pura"], _table(
        results
    )
    assert [r["status"] for r in results].count("passed") == len(PLACES) - 2, _table(results)


APT_CACHE_PORT = 3142  # playbooks/vars/host.yml: labctl_apt_cache_port
# The cache listens on LXD's bridge address (labctl_lxd_ipv4), not on the instance's own
# LXD network that the container sits on: the container reaches it through its gateway.
APT_CACHE_ADDRESS = "10.203.0.1"
PROXY_CONF = "/etc/apt/apt.conf.d/00labctl-test-proxy"


def _host_cache_reaches_mirror() -> bool:
    """Whether the host's apt cache can fetch the mirror's Release file (loopback only)."""
    url = f"{DEFAULT_MIRROR}/dists/bookworm/InRelease"
    proxies = {"http": f"http://127.0.0.1:{APT_CACHE_PORT}"}
    try:
        return requests.get(url, proxies=proxies, timeout=60).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def _network(run: Callable[[str], object], gateway: str, how: str) -> Iterator[str | None]:
    """lxc-system with its route to the world cut, or with apt sent through the host's cache.

    Yields the answer the mirror step must have, when this test can know it. The container
    gets its route and its apt configuration back afterwards.
    """
    try:
        if how == "cut":
            run(f"rm -f {PROXY_CONF} && ip route del default")
            yield "no"
        else:
            proxy = f'Acquire::http::Proxy "http://{APT_CACHE_ADDRESS}:{APT_CACHE_PORT}";'
            run(f"echo {shlex.quote(proxy)} > {PROXY_CONF}")
            yield "si" if _host_cache_reaches_mirror() else None
    finally:
        run(f"rm -f {PROXY_CONF}; ip route replace default via {gateway} dev eth0")


@pytest.mark.parametrize("how", ["cut", "apt-cache"])
def test_mirror_step_agrees_with_the_lab_whatever_the_network(
    running_lab: RunningLab, student: MakeStudent, how: str
) -> None:
    """The lab and a careful student decide "does apt reach the mirror?" the same way.

    Both networks are produced for real: the container's default route removed (nothing is
    reachable), and apt pointed at the apt cache that host setup runs on LXD's bridge.
    """
    s = student("lxc-servicio")
    run = runner.Connections(s.ws)("lxc-system").run
    route = run("ip -4 route show default").stdout.split()
    assert route[:2] == ["default", "via"], route
    with _network(run, route[2], how) as expected:
        reaches = "si" if apt_reaches_mirror(s) else "no"
        s.answer("mirror", reaches)
        code, report = _check_json(s, "--step", "mirror")
    result = _results(report)[0]
    assert result["status"] == "passed", _table(_results(report))
    if expected is not None:
        assert reaches == expected
    print(f"\nmirror step, network {how}: apt reaches the mirror: {reaches}")


def test_every_attempt_is_recorded_in_the_store_with_score_and_time(
    running_lab: RunningLab, student: MakeStudent, state_root: Path
) -> None:
    s = student("lxc-nucleo")
    shown = cli.invoke(app, ["exercise", "show", s.exercise.id, *_args(s, "--json")])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["step"]["number"] == 1
    hint = cli.invoke(app, ["exercise", "hint", s.exercise.id, *_args(s, "--lang", "en")])
    assert hint.exit_code == 0 and "no hints" in hint.stdout
    SOLUTIONS["lxc-nucleo"](s)
    _check_json(s)
    progress = cli.invoke(app, ["exercise", "progress", *_args(s, "--json")])
    data = json.loads(progress.stdout)
    mine = next(e for e in data["exercises"] if e["exercise"] == "lxc-nucleo")
    assert mine["state"] == "completed" and mine["steps_passed"] == 3
    assert data["steps_passed"] == 3 and 0 < data["score"] < 100

    # A wrong answer afterwards: the step passed once and fails now, and progress says so.
    first = s.exercise.steps[0]
    s.answer(first.id, wrong_answer(s, first.id))
    code, _ = _check_json(s, "--step", first.id)
    assert code == 1
    data = json.loads(cli.invoke(app, ["exercise", "progress", *_args(s, "--json")]).stdout)
    mine = next(e for e in data["exercises"] if e["exercise"] == "lxc-nucleo")
    assert (mine["steps_passed"], mine["steps_passing_now"], mine["broken"]) == (3, 2, [first.id])
    assert mine["wrong_answers"] == 1
    text = cli.invoke(app, ["exercise", "progress", *_args(s, "--lang", "en")]).stdout
    assert f"Passed once and failing now: lxc-nucleo/{first.id}" in " ".join(text.split())

    # Every attempt is in the store, with the checks' messages, not only the last.
    attempts = shared().attempts(s.ws.lab, [s.ws.instance], s.student, "lxc-nucleo")
    kinds = [a.kind for a in attempts]
    assert kinds[0] == "start" and kinds.count("check") == len(s.exercise.steps) + 1, kinds
    assert kinds.count("answer") == len(s.exercise.steps) + 1, kinds
    checks = [a for a in attempts if a.kind == "check"]
    assert all(a.messages and a.messages[0].status in ("passed", "failed") for a in checks)
    last = checks[-1]
    assert (last.step, last.passed, last.answer_passed) == (first.id, False, False)
    db = state_root / "labctl.db"  # beside the instances: `down` removes run/, never this
    assert db.is_file() and db.stat().st_mode & 0o777 == 0o600
    print(f"\nstore: {len(attempts)} attempts of {s.student} in lxc-nucleo ({kinds})")


def test_the_sudo_group_alone_does_not_make_a_key_only_user_an_administrator(
    running_lab: RunningLab, student: MakeStudent
) -> None:
    """A user with no password cannot answer sudo's question: the sudo check must fail."""
    s = student("lxc-usuario")
    user = s.p("user")
    s.guest("lxc-system", f"useradd -m -s /bin/bash {user} && usermod -aG sudo {user}")
    _, report = _check_json(s, "--step", "entra")
    results = {r["what"]: r for r in _results(report)}
    assert results[f"{user} puede usar sudo"]["status"] == "failed", _table(_results(report))


def test_check_as_a_subprocess_exits_1_with_teacher_notes(
    running_lab: RunningLab, student: MakeStudent
) -> None:
    s = student("lxc-usuario")
    out = subprocess.run(
        [LABCTL, "exercise", "check", "lxc-usuario", *_args(s, "--lang", "es")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert f"{s.p('user')} todavía no existe en lxc-system: créalo con useradd." in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    # the other process recorded its attempts, one per step, with the checks' own words
    attempts = shared().attempts(s.ws.lab, [s.ws.instance], s.student, "lxc-usuario")
    checks = [a for a in attempts if a.kind == "check"]
    assert len(checks) == len(s.exercise.steps) and not any(a.passed for a in checks)
    said = [m.note for a in checks for m in a.messages]
    assert any(f"{s.p('user')} todavía no existe" in d for d in said), said


def test_check_on_an_instance_that_is_not_up_exits_2(running_lab: RunningLab) -> None:
    out = subprocess.run(
        [LABCTL, "exercise", "check", "lxc-nucleo", "-l", str(LAB_DIR), "-i", "nadie"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and "is not up" in out.stderr, out.stderr


@pytest.mark.teardown_last
@pytest.mark.parametrize(
    ("exercise_id", "undone"),
    [
        ("lxc-averia", "/usr/local/bin/reloj is executable"),
        ("app-contenido", "The site shows your keyword"),
    ],
)
def test_reset_recreates_the_guest_and_starts_over(
    running_lab: RunningLab, student: MakeStudent, exercise_id: str, undone: str
) -> None:
    s = student(exercise_id)
    _check_json(s)  # runs the exercise's setup, whatever ran before in the session
    SOLUTIONS[exercise_id](s)
    code, _ = _check_json(s)
    assert code == 0
    result = cli.invoke(app, ["exercise", "reset", exercise_id, *_args(s, "--yes")])
    assert result.exit_code == 0, result.output
    code, report = _check_json(s, "--lang", "en")
    results = {r["what"]: r for r in _results(report)}
    assert code == 1 and results[undone]["status"] == "failed", _table(_results(report))
    progress = ProgressStore(s.ws.lab, s.ws.instance, s.student).state(exercise_id)
    assert progress.resets == 1 and progress.completed_at([x.id for x in s.exercise.steps]) is None
    assert all(st.answer is None for st in progress.steps.values())
