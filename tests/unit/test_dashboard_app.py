"""The dashboard over HTTP (TestClient, synthetic class): who sees what, CSRF, limits."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from labctl.dashboard.app import COOKIE, Settings, create_app
from labctl.dashboard.data import ClassData
from labctl.errors import LabctlError
from tests.unit import dashboard_data as d

BEARER = {"Authorization": f"Bearer {d.INSTRUCTOR}"}
PAGES = [
    "/",
    "/live/grid",
    "/students/ana",
    "/live/students/ana",
    "/exercises/emu",
    "/live/exercises/emu",
    "/api/grid",
    "/api/students/ana",
    "/api/exercises/emu",
    "/actions/reset?student=ana&exercise=emu",
]


class Resets:
    def __init__(self) -> None:
        self.done: list[tuple[str, str | None, str | None]] = []

    def __call__(self, student: str, exercise: str | None, guest: str | None) -> str:
        if student == "cy":
            raise LabctlError("cy's lab is down", "labctl class up")
        self.done.append((student, exercise, guest))
        return f"{student}: reset"


@pytest.fixture
def resets() -> Resets:
    return Resets()


@pytest.fixture
def client(resets: Resets) -> TestClient:
    settings = Settings(
        load=lambda: d.DATA,
        source=d.SOURCE,
        tokens=d.TOKENS,
        health=lambda: d.HEALTH,
        now=lambda: d.NOW,
        rules=d.RULES,
        reset=resets,
        guests=("vm", "box"),
    )
    return TestClient(create_app(settings))


def login(client: TestClient, token: str) -> None:
    r = client.post("/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html
    return found.group(1)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_and_api_call_needs_a_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    forged = TestClient(client.app)
    forged.cookies.set(COOKIE, "forged")
    assert forged.get(path).status_code == 401
    assert client.get(path, headers=BEARER).status_code == 200


def test_a_page_without_a_token_is_the_login_form(client: TestClient) -> None:
    r = client.get("/students/ana")
    assert r.status_code == 401 and 'action="/login"' in r.text and "Ana" not in r.text


def test_login_sets_an_http_only_strict_cookie(client: TestClient) -> None:
    r = client.post("/login", data={"token": d.INSTRUCTOR}, follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert r.status_code == 303 and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert d.INSTRUCTOR not in cookie  # the cookie holds a session id, never the token
    assert client.get("/").status_code == 200
    bad = TestClient(client.app).post("/login", data={"token": "wrong"})
    assert bad.status_code == 401 and "opens nothing" in bad.text


def test_a_student_sees_only_their_own_page(client: TestClient) -> None:
    login(client, d.ANA)
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/students/ana"
    assert client.get("/students/ana").status_code == 200
    for path in [
        "/students/bo",
        "/api/students/bo",
        "/live/students/bo",
        "/students/zz",
        "/live/grid",
        "/api/grid",
        "/exercises/emu",
        "/actions/reset?student=ana&exercise=emu",
    ]:
        assert client.get(path).status_code == 403, path
    page = client.get("/students/ana").text
    assert "Bo Núñez" not in page and "reset…" not in page
    own = client.get("/api/students/ana")
    assert own.status_code == 200 and own.json()["row"]["seat"]["student"] == "ana"
    assert [s["student"] for s in own.json()["data"]["seats"]] == ["ana"]  # no classmate
    assert "Bo Núñez" not in own.text and "demo-bo" not in own.text


def test_the_grid_shows_progress_health_and_marks(client: TestClient) -> None:
    page = client.get("/", headers=BEARER).text
    assert 'id="row-ana"' in page and "Ana García" in page
    assert "3/3" in page and "2/3" in page  # guests' health
    assert 'class="cell done"' in page  # ana finished emu
    assert 'class="cell stuck"' in page  # bo failed emu/arch four times in a row
    assert "same-wrong-answer" in page and "seconds-apart" in page
    assert "Cy &lt;script&gt;" in page and "Cy <script>" not in page  # escaped
    assert "1 late" in page  # cy's check after the window closed


def test_the_student_page_lists_every_attempt_with_messages(client: TestClient) -> None:
    page = client.get("/students/bo", headers=BEARER).text
    attempts = page.split('id="attempts"')[1]
    assert attempts.count("the guest&#39;s CPU is not x86_64") == 4
    assert "failing" in page


def test_the_exercise_page_shows_where_students_get_stuck(client: TestClient) -> None:
    data = client.get("/api/exercises/emu", headers=BEARER).json()
    arch = data["steps"][0]
    assert (arch["id"], arch["passed"], arch["tried"], arch["failures"]) == ("arch", 2, 3, 5)
    assert arch["stuck"] == ["bo"]
    assert data["completed"] == 1  # ana; cy's run step came late
    assert client.get("/exercises/nope", headers=BEARER).status_code == 404


def test_unknown_paths_are_404(client: TestClient) -> None:
    for path in [
        "/nope",
        "/static/../class.json",
        "/static/secret.txt",
        "/students/zz",
        "/../../etc/passwd",
    ]:
        assert client.get(path, headers=BEARER).status_code == 404, path
    assert client.get("/static/live.js").status_code == 200  # assets need no token


def test_an_oversized_body_is_413_and_does_nothing(client: TestClient, resets: Resets) -> None:
    login(client, d.INSTRUCTOR)
    csrf = csrf_of(client.get("/actions/reset?student=ana&exercise=emu").text)
    form = {"student": "ana", "exercise": "emu", "csrf": csrf, "pad": "x" * 100_000}
    assert client.post("/actions/reset", data=form).status_code == 413
    assert resets.done == []

    def chunks():  # a body that never says its length
        yield b"student=ana&exercise=emu"

    r = client.post(
        "/actions/reset",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413 and resets.done == []


def test_a_reset_is_confirmed_then_done_with_the_sessions_csrf(
    client: TestClient, resets: Resets
) -> None:
    login(client, d.INSTRUCTOR)
    confirm = client.get("/actions/reset?student=bo&exercise=emu")
    assert confirm.status_code == 200 and "Yes, reset" in confirm.text and resets.done == []
    form = {"student": "bo", "exercise": "emu", "guest": ""}
    assert client.post("/actions/reset", data=form).status_code == 403  # no CSRF token
    assert client.post("/actions/reset", data={**form, "csrf": "0" * 64}).status_code == 403
    other = TestClient(client.app)
    login(other, d.INSTRUCTOR)
    other_csrf = csrf_of(other.get("/actions/reset?student=bo&exercise=emu").text)
    assert client.post("/actions/reset", data={**form, "csrf": other_csrf}).status_code == 403
    assert resets.done == []
    done = client.post("/actions/reset", data={**form, "csrf": csrf_of(confirm.text)})
    assert done.status_code == 200 and "bo: reset" in done.text
    assert "class <b>demo</b>" in done.text
    assert resets.done == [("bo", "emu", None)]
    guest = {"student": "ana", "exercise": "", "guest": "vm", "csrf": csrf_of(confirm.text)}
    assert client.post("/actions/reset", data=guest).status_code == 200
    assert resets.done[-1] == ("ana", None, "vm")


def test_a_reset_refuses_what_is_not_there(client: TestClient, resets: Resets) -> None:
    login(client, d.INSTRUCTOR)
    csrf = csrf_of(client.get("/actions/reset?student=ana&exercise=emu").text)
    for form, code in [
        ({"student": "zz", "exercise": "emu"}, 404),
        ({"student": "ana", "exercise": "nope"}, 404),
        ({"student": "ana", "guest": "nope"}, 404),
        ({"student": "ana", "exercise": "emu", "guest": "vm"}, 400),
        ({"student": "ana"}, 400),
    ]:
        assert client.post("/actions/reset", data={**form, "csrf": csrf}).status_code == code
    assert resets.done == []
    failed = client.post("/actions/reset", data={"student": "cy", "exercise": "emu", "csrf": csrf})
    assert failed.status_code == 500 and "cy&#39;s lab is down" in failed.text


def test_a_bearer_script_needs_no_csrf_but_a_student_token_cannot_reset(
    client: TestClient, resets: Resets
) -> None:
    form = {"student": "ana", "exercise": "emu"}
    r = client.post("/actions/reset", data=form, headers={"Authorization": f"Bearer {d.ANA}"})
    assert r.status_code == 403 and resets.done == []
    assert client.post("/actions/reset", data=form, headers=BEARER).status_code == 200
    assert resets.done == [("ana", "emu", None)]


def test_logout_needs_csrf_and_ends_the_session(client: TestClient) -> None:
    login(client, d.INSTRUCTOR)
    csrf = csrf_of(client.get("/").text)
    assert client.post("/logout", data={"csrf": "bad"}).status_code == 403
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/").status_code == 401


def test_pages_carry_security_headers_and_load_nothing_from_outside(client: TestClient) -> None:
    r = client.get("/", headers=BEARER)
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert not re.search(r'(src|href)="(https?:)?//', r.text)


def test_a_notice_shows_above_the_grid() -> None:
    settings = Settings(load=lambda: d.DATA, source=d.SOURCE, tokens=d.TOKENS,
                        notice=lambda: "Guests' health unknown: lxd is down")  # fmt: skip
    page = TestClient(create_app(settings)).get("/live/grid", headers=BEARER).text
    assert "Guests&#39; health unknown: lxd is down" in page


def test_a_labctl_error_behind_a_page_is_said_not_crashed() -> None:
    def gone() -> ClassData:
        raise LabctlError("there is no class 'demo' on this host", "labctl class up")

    app = create_app(Settings(load=gone, source=d.SOURCE, tokens=d.TOKENS))
    r = TestClient(app).get("/", headers=BEARER)
    assert r.status_code == 503 and "there is no class" in r.text
    api = TestClient(app).get("/api/grid", headers=BEARER)
    assert api.status_code == 503 and "labctl class up" in api.json()["error"]


def test_the_reset_confirmation_says_what_it_takes_back_and_if_the_exam_is_over(
    client: TestClient,
) -> None:
    login(client, d.INSTRUCTOR)
    ana = client.get("/actions/reset?student=ana&exercise=emu").text
    assert "the 2 steps ana passed count no more" in ana and "exam-over" not in ana
    assert "class <b>demo</b> · lab virtualization" in ana  # the header of every page
    bo = client.get("/actions/reset?student=bo&exercise=emu").text
    assert "no step passed yet, so no points are taken back" in bo
    later = Settings(load=lambda: d.DATA, source=d.SOURCE, tokens=d.TOKENS,
                     now=lambda: d.at(90), reset=Resets())  # fmt: skip
    over = TestClient(create_app(later)).get(
        "/actions/reset?student=ana&exercise=emu", headers=BEARER
    )
    assert "The exam window has ended: what ana passes again now is late" in over.text


def test_the_live_pages_say_whether_the_exam_window_is_open() -> None:
    def said(minutes: float, path: str) -> str:
        app = create_app(Settings(load=lambda: d.DATA, source=d.SOURCE, tokens=d.TOKENS,
                                  now=lambda: d.at(minutes)))  # fmt: skip
        page = TestClient(app).get(path, headers=BEARER).text  # refreshed while it is open
        return page.split('<p class="stamp">')[1].split("</p>")[0]

    for path in ("/live/grid", "/live/students/ana", "/live/exercises/emu"):
        assert 'exam window <b class="window-state">not open yet</b>' in said(-5, path)
        assert 'exam window <b class="window-state">open</b>' in said(30, path)
        assert 'exam window <b class="window-state">ended</b>' in said(90, path)
