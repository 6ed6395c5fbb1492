"""class serve's records: tokens stored hashed, students' tokens in their sheets, one server."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl import procs
from labctl.classroom.state import ClassDir, ClassState, Seat
from labctl.cli import app
from labctl.dashboard import serving
from labctl.dashboard.auth import TokenFile, digest, sheet_token
from labctl.dashboard.serving import AlreadyServed, Server
from labctl.errors import SpecError
from labctl.private import private_dir

SEATS = (Seat("ana", "Ana", "c-ana"), Seat("bo", "Bo", "c-bo"))
LAB = "virtualization"


def make_class(root: Path) -> ClassDir:
    folder = ClassDir("c1", root)
    seats = {s.student: Seat(s.student, s.name, s.instance) for s in SEATS}
    folder.save(ClassState("c1", "virtualization", str(root / "lab.yaml"), "r.csv", seats))
    return folder


def test_the_instructor_token_is_stored_hashed_and_root_only(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "c1")
    token = tokens.new_instructor()
    text = tokens.path.read_text()
    assert token not in text and digest(token) in text
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    assert tokens.load().who(token).instructor  # type: ignore[union-attr]
    again = tokens.new_instructor()  # each serve makes a new one; the old one stops working
    assert tokens.load().who(token) is None and tokens.load().who(again) is not None


def test_students_tokens_go_into_their_sheets_and_survive_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "c1"
    sheet = root / "access" / "ana.txt"
    sheet.parent.mkdir(parents=True)
    sheet.write_text("labctl class c1: access for Ana\n\nServer: lab\n")
    tokens = TokenFile(root)
    assert tokens.ensure_students(SEATS, "http://127.0.0.1:8765/") == ["ana", "bo"]
    text = sheet.read_text()
    token = sheet_token(text)
    assert text.startswith("labctl class c1: access for Ana") and token
    assert token not in tokens.path.read_text()
    who = tokens.load().who(token)
    assert who is not None and who.student == "ana" and not who.instructor
    assert stat.S_IMODE((root / "access" / "bo.txt").stat().st_mode) == 0o600
    # a second serve keeps the students' tokens, and moves the address if it changed
    assert tokens.ensure_students(SEATS, "http://10.0.0.1:9000/") == []
    assert sheet_token(sheet.read_text()) == token and "10.0.0.1:9000" in sheet.read_text()
    assert sheet.read_text().count("--- progress page") == 1
    # a student gone from the class loses theirs
    tokens.ensure_students(SEATS[1:], "http://10.0.0.1:9000/")
    assert tokens.load().who(token) is None


def test_a_page_on_the_servers_loopback_says_how_a_laptop_reaches_it(tmp_path: Path) -> None:
    root = tmp_path / "c1"
    tokens = TokenFile(root)
    private_dir(root / "access")
    (root / "access" / "ana.txt").write_text("Host labctl-c1\n    HostName lab\n")  # her sheet
    tokens.ensure_students(SEATS, "http://127.0.0.1:8765/", "labctl-c1")
    said = (root / "access" / "ana.txt").read_text()
    assert (
        "from your laptop, ssh -N -L 8765:127.0.0.1:8765 labctl-c1, then open "
        "http://127.0.0.1:8765/" in said
    )
    # a sheet made for the token alone defines no Host: it names none
    alone = (root / "access" / "bo.txt").read_text()
    assert "labctl-c1" not in alone and "ssh -N -L 8765:127.0.0.1:8765 YOU@SERVER" in alone
    tokens.ensure_students(SEATS, "http://[::1]:8765/", "labctl-c1")
    assert "ssh -N -L 8765:[::1]:8765 labctl-c1" in (root / "access" / "ana.txt").read_text()
    tokens.ensure_students(SEATS, "http://lab.example.org:8765/", "labctl-c1")  # on the network
    said = (root / "access" / "ana.txt").read_text()
    assert "ssh -N" not in said and "http://lab.example.org:8765/" in said


def test_a_spanish_class_gets_its_token_section_in_spanish_and_keeps_the_token(
    tmp_path: Path,
) -> None:
    root = tmp_path / "c1"
    tokens = TokenFile(root)
    tokens.ensure_students(SEATS, "http://127.0.0.1:8765/")
    english = (root / "access" / "ana.txt").read_text()
    token = sheet_token(english)
    # the class turned Spanish: the section is rewritten in place, the token kept
    assert tokens.ensure_students(SEATS, "http://127.0.0.1:8765/", lang="es") == []
    said = (root / "access" / "ana.txt").read_text()
    assert said.startswith("--- página de progreso (labctl class serve) ---")
    assert f"Token de la página de progreso: {token}" in said
    assert "progress page" not in said and sheet_token(said) == token
    assert "pide a tu profesor un acceso" in said


def test_a_second_server_is_refused_with_the_first_ones_address(tmp_path: Path) -> None:
    root = tmp_path / "c1"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        serving.claim(root, "c1", Server(sleeper.pid, "http://127.0.0.1:8765/", "t"))
        with pytest.raises(AlreadyServed, match=r"already served at http://127.0.0.1:8765/"):
            serving.claim(root, "c1", Server(os.getpid(), "http://127.0.0.1:9999/", "t"))
    finally:
        sleeper.kill()
        sleeper.wait()
    # its PID gone, the file is taken over
    serving.claim(root, "c1", Server(os.getpid(), "http://127.0.0.1:9999/", "t"))
    assert serving.current(root) == Server(os.getpid(), "http://127.0.0.1:9999/", "t")
    serving.release(root, os.getpid())
    assert serving.current(root) is None


def test_class_up_while_a_server_runs_says_each_tokens_part_in_the_classs_language(
    state_root: Path,
) -> None:
    from labctl.cli.class_serve import restate_sheets

    folder = make_class(state_root)
    url = "http://lab.example.org:8765/"
    tokens = TokenFile(folder.root)
    tokens.ensure_students(SEATS[:1], url)  # ana's sheet has her token; bo has none yet
    token = sheet_token((folder.root / "access" / "ana.txt").read_text())
    book = tokens.path.read_text()
    restate_sheets(folder)  # no server runs: nothing to say again
    assert "progress page" in (folder.root / "access" / "ana.txt").read_text()
    serving.claim(folder.root, "c1", Server.this_process(url, "t"))
    folder.save(dataclasses.replace(folder.require(), lang="es"))  # class up --lang es
    try:
        restate_sheets(folder)
    finally:
        serving.release(folder.root, os.getpid())
    said = (folder.root / "access" / "ana.txt").read_text()
    assert f"Token de la página de progreso: {token}" in said and "progress page" not in said
    # the server knows the tokens it started with: nobody got a new one
    assert not (folder.root / "access" / "bo.txt").exists() and tokens.path.read_text() == book


def test_taking_the_class_down_stops_its_dashboard_and_nothing_else(
    state_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from labctl.cli.classroom import _dashboard_goes_with

    folder = make_class(state_root)
    served = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ticks = procs.start_ticks(served.pid)
        serving.claim(folder.root, "c1", Server(served.pid, "http://127.0.0.1:8765/", "t", ticks))
        with _dashboard_goes_with(folder, json_out=False):
            pass  # one student taken down: the class stays, and so does its dashboard
        assert served.poll() is None
        with _dashboard_goes_with(folder, json_out=False):
            folder.remove()  # the whole class
        assert served.wait(timeout=10) == -15  # SIGTERM, to the PID the record named
        said = capsys.readouterr().err
        assert f"Its dashboard (labctl class serve, pid {served.pid}) stopped too." in said
    finally:
        served.kill()
        served.wait()


def test_a_dashboard_that_outlives_sigterm_is_not_said_stopped(
    state_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from labctl.cli import classroom

    monkeypatch.setattr(classroom, "SERVE_STOP_SECONDS", 0.5)
    folder = make_class(state_root)
    deaf = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    deaf += "print(flush=True); time.sleep(60)"
    served = subprocess.Popen([sys.executable, "-c", deaf], stdout=subprocess.PIPE)
    try:
        assert served.stdout is not None and served.stdout.readline()  # SIGTERM ignored now
        ticks = procs.start_ticks(served.pid)
        serving.claim(folder.root, "c1", Server(served.pid, "http://127.0.0.1:8765/", "t", ticks))
        with classroom._dashboard_goes_with(folder, json_out=False):
            folder.remove()
        said = " ".join(capsys.readouterr().err.split())
        assert "was asked to stop (SIGTERM) and still runs after 0.5 s" in said
        assert "stopped too" not in said and served.poll() is None
    finally:
        served.kill()
        served.wait()
        if served.stdout is not None:
            served.stdout.close()


def test_class_serve_refuses_a_served_class_before_starting(state_root: Path) -> None:
    folder = make_class(state_root)
    (folder.root / serving.SERVER_FILE).write_text(
        json.dumps({"pid": os.getppid(), "url": "http://127.0.0.1:8765/", "started_at": "t"})
    )
    result = CliRunner().invoke(app, ["class", "serve", "--class", "c1", "--port", "8799"])
    assert isinstance(result.exception, AlreadyServed) and result.exception.code == 2
    assert "already served at http://127.0.0.1:8765/" in result.exception.message
    assert not (folder.root / "dashboard-tokens.json").exists()  # nothing made


def test_class_window_sets_shows_and_clears(state_root: Path) -> None:
    make_class(state_root)
    cli = CliRunner()
    r = cli.invoke(
        app,
        [
            "class",
            "window",
            "-c",
            "c1",
            "--start",
            "2026-12-03T10:00",
            "--end",
            "2026-12-03T12:00Z",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {
        "class": "c1",
        "start": "2026-12-03T10:00:00+00:00",
        "end": "2026-12-03T12:00:00+00:00",
        "now": "ended",  # it is in the past
    }
    said = cli.invoke(app, ["class", "window", "-c", "c1", "--end", "2026-12-03T12:00Z"])
    assert said.exit_code == 0 and "that end has passed already" in said.stderr
    assert "ended" in said.stdout
    st = ClassDir("c1").require()
    assert (st.window_start, st.window_end) == (
        "2026-12-03T10:00:00+00:00",
        "2026-12-03T12:00:00+00:00",
    )
    bad = cli.invoke(app, ["class", "window", "-c", "c1", "--end", "2026-12-03T09:00"])
    assert isinstance(bad.exception, SpecError) and "before it starts" in bad.exception.message
    # "-" opens one end and keeps the other
    assert cli.invoke(app, ["class", "window", "-c", "c1", "--start", "-"]).exit_code == 0
    st = ClassDir("c1").require()
    assert (st.window_start, st.window_end) == (None, "2026-12-03T12:00:00+00:00")
    assert cli.invoke(app, ["class", "window", "-c", "c1", "--clear"]).exit_code == 0
    assert ClassDir("c1").require().window_start is None


def _serve(port: int) -> tuple[subprocess.Popen[str], str]:
    """``labctl class serve -c c1`` as a subprocess, listening; it and its instructor token."""
    from tests.browser import class_serve

    return class_serve("c1", port)


def _stop(server: subprocess.Popen[str]) -> None:
    import signal

    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    server.communicate(timeout=30)  # waits, and closes the pipes


def test_class_serve_end_to_end_without_engines(state_root: Path) -> None:
    """The real command as a subprocess: token printed once, 401 without it, pages with it."""
    import requests

    from labctl.store import NewAttempt, open_store
    from tests.browser import free_port

    folder = make_class(state_root)
    store = open_store()  # the host's store under LABCTL_STATE, as class serve opens it
    store.record(NewAttempt("virtualization", "c-ana", "ana", "emu", "check", step="arch",
                            answer="x86_64", passed=False))  # fmt: skip
    store.close()
    port = free_port()
    server, token = _serve(port)
    try:
        base = f"http://127.0.0.1:{port}/"
        assert requests.get(base, timeout=5).status_code == 401
        grid = requests.get(base + "api/grid", headers={"Authorization": f"Bearer {token}"},
                            timeout=5).json()  # fmt: skip
        assert grid["attempts"] == 1 and [r["seat"]["student"] for r in grid["rows"]] == [
            "ana",
            "bo",
        ]
        assert serving.current(folder.root).url == base  # type: ignore[union-attr]
        assert token not in (folder.root / "dashboard-tokens.json").read_text()
        assert sheet_token((folder.root / "access" / "bo.txt").read_text())
    finally:
        _stop(server)
    assert serving.current(folder.root) is None
    assert not (folder.root / serving.SERVER_FILE).exists()


def test_a_record_left_by_a_killed_server_is_taken_over(tmp_path: Path) -> None:
    """SIGKILL leaves dashboard.json behind: a zombie or a reused PID must not hold the class."""
    root = tmp_path / "c1"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = Server(child.pid, "http://127.0.0.1:8765/", "t", procs.start_ticks(child.pid))
        assert record.ticks is not None
        serving.claim(root, "c1", record)
        assert serving.current(root) == record  # running: a second server is refused
        with pytest.raises(AlreadyServed):
            serving.claim(root, "c1", Server.this_process("http://127.0.0.1:9999/", "t"))
        child.kill()
        deadline = time.monotonic() + 10
        while procs.start_ticks(child.pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        # killed and not reaped yet: a zombie, which kill(pid, 0) still finds
        assert procs.alive(child.pid) and procs.start_ticks(child.pid) is None
        assert serving.current(root) is None
    finally:
        child.kill()
        child.wait()
    # the PID alive again, but another process: its start time differs
    me = Server.this_process("http://127.0.0.1:8765/", "t")
    stale = Server(me.pid, me.url, "t", (me.ticks or 0) + 1)
    (root / serving.SERVER_FILE).write_text(json.dumps(dataclasses.asdict(stale)))
    assert serving.current(root) is None
    serving.claim(root, "c1", me)
    assert serving.current(root) == me


def _until_every_seat_wrote(lab: str, timeout: float = 60.0) -> None:
    """Wait until each seat's writer has committed a batch to the store."""
    import time

    from labctl.store import open_store

    deadline = time.monotonic() + timeout
    while True:
        store = open_store()
        try:
            wrote = {(a.instance, a.student) for a in store.attempts(lab)}
        finally:
            store.close()
        if all((s.instance, s.student) in wrote for s in SEATS):
            return
        assert time.monotonic() < deadline, f"writers never wrote: only {sorted(wrote)}"
        time.sleep(0.2)


def test_class_serve_killed_while_students_write_restarts_on_a_whole_store(
    state_root: Path,
) -> None:
    """SIGKILL on `class serve` while writers fill the store: restarted, it serves every attempt."""
    import signal

    import requests

    from labctl.store import engine as engines
    from labctl.store import open_store
    from tests.browser import free_port
    from tests.unit.store_writer import SIZE

    folder = make_class(state_root)
    url = engines.default_url()
    store = open_store()
    store.close()
    root = Path(__file__).resolve().parents[2]
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.unit.store_writer", url, s.instance, LAB, s.student],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for s in SEATS
    ]
    port = free_port()
    server, token = _serve(port)
    bearer = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}/"
    try:
        _until_every_seat_wrote(LAB)  # a loaded host starts a writer late: the kill must not
        for _ in range(3):  # the grid read while writes go on, then the server killed
            assert requests.get(base + "api/grid", headers=bearer, timeout=10).ok
        os.kill(server.pid, signal.SIGKILL)
        server.communicate(timeout=30)
        assert server.returncode == -signal.SIGKILL
        left = json.loads((folder.root / serving.SERVER_FILE).read_text())
        assert left["pid"] == server.pid  # the record is left behind, and must not block
        server, token = _serve(port)
        bearer = {"Authorization": f"Bearer {token}"}
        assert serving.current(folder.root).pid == server.pid  # type: ignore[union-attr]
    finally:
        for w in writers:
            w.kill()
            w.communicate(timeout=30)
    try:
        grid = requests.get(base + "api/grid", headers=bearer, timeout=10).json()
    finally:
        _stop(server)
    store = open_store()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    stored = store.attempts(LAB)
    store.close()
    for s in SEATS:  # whole batches only, from both writers
        mine = [a for a in stored if (a.instance, a.student) == (s.instance, s.student)]
        assert mine and len(mine) % SIZE == 0, (s.student, len(mine))
    # the restarted server reads them all (counted as the grid counts: a check once)
    from labctl.store.fold import times_done

    students = {(a.instance, a.student) for a in stored}
    assert grid["attempts"] == sum(
        times_done([a for a in stored if (a.instance, a.student) == s]) for s in students
    )
    assert [r["seat"]["student"] for r in grid["rows"]] == ["ana", "bo"]
    assert not (folder.root / serving.SERVER_FILE).exists()
