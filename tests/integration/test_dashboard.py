"""The dashboard of a real two-student class, in headless Chromium, with progress from real checks.

A containers-only class (each student: the system container and the app container) comes up
on the real engines; one student answers and runs `labctl exercise check` (one step passes,
one fails), the other gives a wrong answer. `labctl class serve` runs as a subprocess, as an
instructor types it; Chromium logs in with the token it printed, loads the grid, a student's
page and the exercise's page, and resets the second student's exercise through its
confirmation form (screenshots: tests/artifacts/screenshots/class-*.png). A second `class
serve` is refused with the first one's address, a student's token from the access sheet opens
their own page only. Then the server is SIGKILLed in the middle of a reset, twice: restarted,
it takes over the record the killed one left, the store is whole and nothing in it changed,
and the same reset done to the end brings the guests back. The class goes down leaving
nothing.
"""

from __future__ import annotations

import json
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from labctl.classroom.state import ClassDir
from labctl.cli import app
from labctl.dashboard.auth import sheet_token
from labctl.exercises.progress import shared
from labctl.store.fold import times_done
from tests import browser
from tests.integration.engines import inventory
from tests.integration.labs import write_lab
from tests.labs import CONTAINERS

LAB = "name: dash\nguests:\n" + CONTAINERS

EXERCISE = """\
id: dash-probe
technique: system-container
title: {es: Sonda del panel, en: Dashboard probe}
instructions: {es: Dos pasos para el panel., en: Two steps for the dashboard.}
guests: [lxc-system]
steps:
  - id: arch
    title: {es: Arquitectura, en: The container's architecture}
    instructions: {es: "uname -m", en: "uname -m"}
    checks:
      - kind: answer
        what: {es: Arquitectura de lxc-system, en: Architecture of lxc-system}
        truth: {target: lxc-system, run: uname -m}
  - id: marker
    title: {es: Un fichero, en: A marker file}
    instructions: {es: "Crea /root/listo.", en: "Create /root/listo."}
    checks:
      - kind: file
        what: {es: /root/listo existe, en: /root/listo exists}
        target: lxc-system
        path: /root/listo
"""

cli = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = cli.invoke(app, list(args), env={"COLUMNS": "100"})
    assert result.exit_code == code, (result.output, result.exception)
    return result.stdout


def test_the_dashboard_of_a_live_class(
    tmp_path_factory: pytest.TempPathFactory, built_images: list[str], state_root: Path
) -> None:
    from selenium.webdriver.common.by import By

    path, lab = write_lab(tmp_path_factory, "dash", LAB)
    (path.parent / "exercises").mkdir()
    (path.parent / "exercises" / "01-dash-probe.yaml").write_text(EXERCISE)
    name = "d" + secrets.token_hex(2)
    ids = ["t" + secrets.token_hex(3) for _ in range(2)]
    roster = path.parent / "roster.csv"
    roster.write_text(f"id,name\n{ids[0]},Ana García\n{ids[1]},Bo Núñez\n")
    server: subprocess.Popen[str] | None = None
    try:
        up = json.loads(run("class", "up", str(roster), str(path), "--class", name, "--json"))
        assert all(s["ok"] for s in up["students"])
        own = ["--lab", str(path), "--instance", f"{name}-{ids[0]}", "--student", ids[0]]
        run("exercise", "answer", "dash-probe", "arch", platform.machine(), *own)
        run("exercise", "check", "dash-probe", *own, code=1)  # arch passes, marker fails
        other = ["--lab", str(path), "--instance", f"{name}-{ids[1]}", "--student", ids[1]]
        run("exercise", "answer", "dash-probe", "arch", "sparc64", *other)
        run("exercise", "check", "dash-probe", *other, code=1)

        port = browser.free_port()
        server, token = _serve(name, port)
        base = f"http://127.0.0.1:{port}/"

        # the first one holds the class: a second one is refused with its address
        second = subprocess.run(
            [sys.executable, "-m", "labctl", "class", "serve", "--class", name,
             "--port", str(browser.free_port())],
            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        assert second.returncode == 2 and base in second.stderr, second.stderr

        # the token is stored hashed, and every page needs it
        folder = ClassDir(name)
        assert token not in (folder.root / "dashboard-tokens.json").read_text()
        assert requests.get(base, timeout=10).status_code == 401
        assert requests.get(base + "api/grid", timeout=10).status_code == 401

        # a student's token, from their access sheet: their own page only
        mine = sheet_token((folder.root / "access" / f"{ids[0]}.txt").read_text())
        assert mine
        bearer = {"Authorization": f"Bearer {mine}"}
        assert requests.get(base + f"students/{ids[0]}", headers=bearer, timeout=10).ok
        assert (
            requests.get(base + f"students/{ids[1]}", headers=bearer, timeout=10).status_code == 403
        )
        assert requests.get(base + "api/grid", headers=bearer, timeout=10).status_code == 403

        with browser.chromium() as b:
            browser.log_in(b, base, token)
            browser.wait_for(lambda: f"row-{ids[0]}" in b.page_source, 20, "the grid")  # type: ignore[attr-defined]

            def row(student: str) -> str:
                return b.find_element(By.ID, f"row-{student}").text  # type: ignore[attr-defined]

            # guests' health comes from the engines in the background: both containers ready
            browser.wait_for(lambda: "2/2" in row(ids[0]), 60, "the guests' health")
            assert "1/2" in row(ids[0]) and "0/2" in row(ids[1])
            browser.shoot(b, "class-grid")

            b.find_element(By.LINK_TEXT, ids[0]).click()  # type: ignore[attr-defined]
            browser.wait_for(lambda: "Every attempt" in b.page_source, 20, "a student's page")  # type: ignore[attr-defined]
            attempts = b.find_element(By.ID, "attempts").text  # type: ignore[attr-defined]
            assert platform.machine() in attempts and "passed" in attempts
            assert "failed" in attempts and "/root/listo" in attempts
            browser.shoot(b, "class-student")

            b.get(base + "exercises/dash-probe")  # type: ignore[attr-defined]
            steps = b.find_element(By.ID, "steps").text  # type: ignore[attr-defined]
            assert "The container's architecture" in steps and "1/2" in steps
            browser.shoot(b, "class-exercise")

            # a reset, confirmed in its form: the same code as `labctl class reset`
            b.get(base + f"actions/reset?student={ids[1]}&exercise=dash-probe")  # type: ignore[attr-defined]
            assert "Yes, reset" in b.page_source  # type: ignore[attr-defined]
            browser.shoot(b, "class-reset-confirm")
            b.find_element(By.ID, "confirm").click()  # type: ignore[attr-defined]
            browser.wait_for(lambda: "starts over" in b.page_source, 180, "the reset")  # type: ignore[attr-defined]
            assert "lxc-system fresh" in b.find_element(By.ID, "said").text  # type: ignore[attr-defined]
            b.get(base + f"students/{ids[1]}")  # type: ignore[attr-defined]
            rows = b.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")  # type: ignore[attr-defined]
            kinds = [r.get_attribute("class").split()[0] for r in rows]  # the attempt's kind
            assert kinds[-1] == "reset", kinds
            browser.shoot(b, "class-student-after-reset")

        # SIGKILL while an action works and writes: a reset of the first student's exercise,
        # the server killed at a random moment of it, twice; restarted each time, it takes over
        # the record the killed one left, serves, and the store is whole
        reset = {"student": ids[0], "exercise": "dash-probe"}
        rng = random.Random()
        for _ in range(2):
            before = _attempts(lab.name)
            bearer = {"Authorization": f"Bearer {token}"}
            answered: list[int] = []
            shot = threading.Thread(
                target=_post_quietly,
                args=(base + "actions/reset", reset, bearer, answered),
                daemon=True,
            )
            shot.start()
            time.sleep(rng.uniform(0.2, 3.0))
            os.kill(server.pid, signal.SIGKILL)
            server.communicate(timeout=30)
            assert server.returncode == -signal.SIGKILL
            shot.join(30)
            assert not answered, "the reset had ended before the kill: it did not land in it"
            left = json.loads((folder.root / "dashboard.json").read_text())
            assert left["pid"] == server.pid  # left behind by the kill
            server, token = _serve(name, port)
            bearer = {"Authorization": f"Bearer {token}"}
            grid = requests.get(base + "api/grid", headers=bearer, timeout=30).json()
            after = _attempts(lab.name)
            assert after[: len(before)] == before  # nothing lost, nothing changed
            assert len(after) - len(before) <= 1  # at most the killed reset's own record
            assert grid["attempts"] == _tried(lab.name)  # every record read, counted as shown
        # the same reset, done to the end by the restarted server: the class is not stuck
        done = requests.post(base + "actions/reset", data=reset, headers=bearer, timeout=240)
        assert done.ok and "starts over" in done.text, done.text
        assert _attempts(lab.name)[-1][2:4] == (ids[0], "reset")

        def healthy() -> bool:
            rows = requests.get(base + "api/grid", headers=bearer, timeout=30).json()["rows"]
            health = next(r["health"] for r in rows if r["seat"]["student"] == ids[0])
            return bool(health) and health["ready"] == health["guests"] == 2

        browser.wait_for(healthy, 90, "the reset guests' health")

        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)  # waits, and closes the pipes
        assert not (folder.root / "dashboard.json").exists()
    finally:
        if server is not None and server.returncode is None:
            server.kill()
            server.communicate()
        down = cli.invoke(app, ["class", "down", "--class", name], env={"COLUMNS": "80"})
    assert down.exit_code == 0, (down.output, down.exception)
    for i in ids:
        left = inventory(lab.name, f"{name}-{i}")
        assert left.empty, f"left behind after class down: {left}"
    # the progress kept for grading, then forgotten on the instructor's word
    mine = {f"{name}-{i}" for i in ids}
    kept = [a for a in _attempts(lab.name) if a[1] in mine]
    assert kept and "--forget removes it" in " ".join(down.output.split())
    forgot = cli.invoke(app, ["class", "down", "--class", name, "--forget", "--json"])
    assert forgot.exit_code == 0, (forgot.output, forgot.exception)
    assert json.loads(forgot.stdout)["forgotten"]["attempts"] == len(kept)
    assert not [a for a in _attempts(lab.name) if a[1] in mine]
    assert not shared().seats(name)


def _serve(name: str, port: int) -> tuple[subprocess.Popen[str], str]:
    """``labctl class serve`` as an instructor types it, listening; it and its token."""
    return browser.class_serve(name, port, None, "--refresh", "2")


def _post_quietly(
    url: str, data: dict[str, str], headers: dict[str, str], answered: list[int]
) -> None:
    """A POST whose server is killed under it: the broken connection is the expected end."""
    try:
        answered.append(requests.post(url, data=data, headers=headers, timeout=240).status_code)
    except requests.RequestException:
        pass


def _attempts(lab: str) -> list[tuple[int, str, str, str, str | None]]:
    """Every attempt of the lab in the store (id, instance, student, kind, step), checked whole."""
    # the process's own store, never a second one closed here: closing the last connection
    # of a SQLite file in WAL mode removes its -wal file under the session's other tests
    store = shared()
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    return [(a.id, a.instance, a.student, a.kind, a.step) for a in store.attempts(lab)]


def _tried(lab: str) -> int:
    """The lab's attempts as the dashboard counts them: answers given and checks run, each
    student's (a check once, whatever its steps)."""
    found = shared().attempts(lab)
    students = {(a.instance, a.student) for a in found}
    return sum(times_done([a for a in found if (a.instance, a.student) == s]) for s in students)


def _answers(base: str) -> bool:
    try:
        requests.get(base + "login", timeout=2)
    except requests.ConnectionError:
        time.sleep(0.2)
        return False
    return True
