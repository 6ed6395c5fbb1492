"""The dashboard's ASGI app: pages, their live fragments, a JSON API and the reset action.

Every route but ``/login`` and ``/static/*`` needs the instructor's or a student's token
(:mod:`labctl.dashboard.auth`): 401 without it, 403 for a student asking for someone else.
Pages are rendered on the server (Jinja2, autoescaped); ``static/live.js`` re-fetches each
page's ``/live/...`` fragment every few seconds. Nothing is loaded from outside the app.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from labctl.dashboard import views
from labctl.dashboard.auth import Sessions, TokenBook, Who
from labctl.dashboard.data import ClassData, Health, Source, utcnow
from labctl.dashboard.flags import Rules
from labctl.dashboard.guard import MAX_BODY, Guard
from labctl.errors import LabctlError

HERE = Path(__file__).parent
COOKIE = "labctl_session"
#: the files under /static: a fixed list, so no path can reach anything else
STATIC = {"app.css": "text/css", "live.js": "text/javascript"}

Reset = Callable[[str, "str | None", "str | None"], str]


@dataclass(frozen=True)
class Settings:
    """What the app reads and does; ``class serve`` fills it, the tests hand fakes."""

    load: Callable[[], ClassData]
    source: Source
    tokens: TokenBook
    health: Callable[[], Mapping[str, Health]] = dict
    #: a problem to show above the grid (the engines could not be asked), or None
    notice: Callable[[], str | None] = lambda: None
    rules: Rules = field(default_factory=Rules)
    reset: Reset | None = None
    guests: tuple[str, ...] = ()
    refresh_seconds: float = 5.0
    limit: int = MAX_BODY
    now: Callable[[], datetime] = utcnow


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _clock(when: datetime | None) -> str:
    return when.strftime("%H:%M:%S") if when else "-"


def templates() -> Jinja2Templates:
    """The page templates, with the filters they use."""
    t = Jinja2Templates(directory=str(HERE / "templates"))
    t.env.filters["duration"] = _duration
    t.env.filters["clock"] = _clock
    return t


def create_app(settings: Settings) -> ASGIApp:
    """The dashboard, behind its body-size guard."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    pages = templates()
    sessions = Sessions()
    s = settings

    def who_of(request: Request) -> tuple[Who, str | None]:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            found = s.tokens.who(auth[7:].strip())
            if found is None:
                raise HTTPException(401, "wrong token")
            return found, None
        sid = request.cookies.get(COOKIE, "")
        found = sessions.get(sid) if sid else None
        if found is None:
            raise HTTPException(401, "log in first")
        return found, sid

    def instructor(request: Request) -> tuple[Who, str | None]:
        who, sid = who_of(request)
        if not who.instructor:
            raise HTTPException(403, "only the instructor may see this")
        return who, sid

    def page(request: Request, name: str, code: int = 200, **context: Any) -> Response:
        sid = request.cookies.get(COOKIE, "")
        context.setdefault("who", sessions.get(sid) if sid else None)
        context.setdefault("csrf", sessions.csrf(sid) if sid else "")
        context.setdefault("refresh", int(s.refresh_seconds * 1000))
        context.setdefault("guests", s.guests)
        context.setdefault("notice", s.notice())
        context.setdefault("cls", None)
        return pages.TemplateResponse(request, name, context, status_code=code)

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> Response:
        path = request.url.path
        if path.startswith(("/api/", "/live/")):
            return JSONResponse({"error": exc.detail}, exc.status_code)
        if exc.status_code == 401:
            return page(request, "login.html", 401, error=None, who=None)
        return page(request, "error.html", exc.status_code, status=exc.status_code, say=exc.detail)

    @app.exception_handler(LabctlError)
    async def failed(request: Request, exc: LabctlError) -> Response:
        # the class removed, the store unreachable...: said on the page, the server goes on
        said = exc.message + (f" ({exc.hint})" if exc.hint else "")
        return await refused(request, HTTPException(503, said))

    # ---- the pieces of every page ---------------------------------------------------------

    def data() -> ClassData:
        return s.load()

    def grid() -> views.Grid:
        return views.grid(data(), s.source.attempts(), s.health(), s.now(), s.rules)

    def student_page(who: Who, student_id: str) -> views.StudentPage:
        d = data()
        seat = d.seat(student_id)
        if seat is None:
            raise HTTPException(403 if not who.instructor else 404, "no such student")
        if not who.may_see(student_id):
            raise HTTPException(403, "you may see your own page only")
        mine = s.source.attempts(student=student_id)
        health = s.health().get(student_id)
        if not who.instructor:  # a student's page, its JSON too, names no classmate
            d = dataclasses.replace(d, seats=(seat,))
        return views.student_page(d, seat, mine, health, s.now(), s.rules)

    def exercise(exercise_id: str) -> views.ExercisePage:
        d = data()
        info = d.exercise(exercise_id)
        if info is None:
            raise HTTPException(404, "no such exercise")
        attempts = s.source.attempts(exercise=exercise_id)
        return views.exercise_page(d, info, attempts, s.now(), s.rules)

    # ---- login ----------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        return page(request, "login.html", error=None, who=None)

    @app.post("/login")
    def login(request: Request, token: str = Form("")) -> Response:
        found = s.tokens.who(token.strip()) if token.strip() else None
        if found is None:
            return page(request, "login.html", 401, error="That token opens nothing.", who=None)
        sid = sessions.open(found)
        response = RedirectResponse("/", 303)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/")
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        who, sid = who_of(request)
        if sid is not None:
            if not sessions.csrf_ok(sid, csrf):
                raise HTTPException(403, "the form's CSRF token is missing or wrong")
            sessions.close(sid)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, "no such file")
        return Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name])

    # ---- pages and their live fragments ---------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        who, _ = who_of(request)
        if not who.instructor:
            return RedirectResponse(f"/students/{who.student}", 303)
        return page(request, "grid.html", grid=grid())

    @app.get("/live/grid", response_class=HTMLResponse)
    def live_grid(request: Request) -> Response:
        instructor(request)
        return page(request, "_grid.html", grid=grid())

    @app.get("/students/{student_id}", response_class=HTMLResponse)
    def student_html(request: Request, student_id: str) -> Response:
        who, _ = who_of(request)
        return page(request, "student.html", view=student_page(who, student_id))

    @app.get("/live/students/{student_id}", response_class=HTMLResponse)
    def live_student(request: Request, student_id: str) -> Response:
        who, _ = who_of(request)
        return page(request, "_student.html", view=student_page(who, student_id))

    @app.get("/exercises/{exercise_id}", response_class=HTMLResponse)
    def exercise_html(request: Request, exercise_id: str) -> Response:
        instructor(request)
        return page(request, "exercise.html", view=exercise(exercise_id))

    @app.get("/live/exercises/{exercise_id}", response_class=HTMLResponse)
    def live_exercise(request: Request, exercise_id: str) -> Response:
        instructor(request)
        return page(request, "_exercise.html", view=exercise(exercise_id))

    # ---- the JSON API ---------------------------------------------------------------------

    def as_json(view: object) -> JSONResponse:
        body = dataclasses.asdict(view)  # type: ignore[call-overload]
        return JSONResponse(jsonable_encoder(body, custom_encoder={frozenset: sorted}))

    @app.get("/api/grid")
    def api_grid(request: Request) -> Response:
        instructor(request)
        return as_json(grid())

    @app.get("/api/students/{student_id}")
    def api_student(request: Request, student_id: str) -> Response:
        who, _ = who_of(request)
        return as_json(student_page(who, student_id))

    @app.get("/api/exercises/{exercise_id}")
    def api_exercise(request: Request, exercise_id: str) -> Response:
        instructor(request)
        return as_json(exercise(exercise_id))

    # ---- actions: confirm, then do ----------------------------------------------------------

    def target(student_id: str, exercise_id: str, guest: str) -> tuple[str | None, str | None]:
        d = data()
        if d.seat(student_id) is None:
            raise HTTPException(404, "no such student")
        if bool(exercise_id) == bool(guest):
            raise HTTPException(400, "name an exercise or a guest, one of them")
        if exercise_id and d.exercise(exercise_id) is None:
            raise HTTPException(404, "no such exercise")
        if guest and guest not in s.guests:
            raise HTTPException(404, "no such guest")
        return exercise_id or None, guest or None

    @app.get("/actions/reset", response_class=HTMLResponse)
    def confirm_reset(
        request: Request, student: str = "", exercise: str = "", guest: str = ""
    ) -> Response:
        who, _ = instructor(request)
        ex, g = target(student, exercise, guest)
        view = student_page(who, student)
        # what an exercise's reset takes back, and whether it can be earned again
        passed = next((c.done for c in view.row.cells if c.exercise == ex), 0)
        ended = not view.data.window.scores(s.now())
        return page(
            request,
            "confirm.html",
            seat=view.row.seat,
            exercise=ex,
            guest=g,
            passed=passed,
            ended=ended,
            cls=view.data,
        )

    @app.post("/actions/reset", response_class=HTMLResponse)
    def do_reset(
        request: Request,
        student: str = Form(""),
        exercise: str = Form(""),
        guest: str = Form(""),
        csrf: str = Form(""),
    ) -> Response:
        _, sid = instructor(request)
        if sid is not None and not sessions.csrf_ok(sid, csrf):
            raise HTTPException(403, "the form's CSRF token is missing or wrong")
        ex, g = target(student, exercise, guest)
        if s.reset is None:
            raise HTTPException(503, "this dashboard cannot reset")
        try:
            said, ok = s.reset(student, ex, g), True
        except LabctlError as err:
            said, ok = err.message + (f" ({err.hint})" if err.hint else ""), False
        return page(
            request, "done.html", 200 if ok else 500, said=said, ok=ok, student=student, cls=data()
        )

    return Guard(app, s.limit)
