"""``labctl class report``: grades from the store as gradebook CSV, JSON and one HTML file."""

from __future__ import annotations

import csv
import io
import json
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.classroom.grades import class_grades
from labctl.classroom.state import ClassDir, ClassState, Seat
from labctl.classroom.window import with_window
from labctl.cli import app
from labctl.errors import LabctlError
from labctl.exercises.progress import shared
from labctl.store import NewAttempt
from tests.labs import exercise_yaml

LAB = """\
name: cls
grading: {hint_penalty: 0.25}
guests:
  app: {engine: docker, technique: app-container, image: docker-app}
"""
T = datetime(2026, 3, 1, 9, tzinfo=timezone.utc)


@pytest.fixture
def klass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ClassDir:
    monkeypatch.setenv("LABCTL_STATE", str(tmp_path / "state"))
    (tmp_path / "lab" / "exercises").mkdir(parents=True)
    (tmp_path / "lab" / "lab.yaml").write_text(LAB)
    for ex in ("ex1", "ex2"):
        (tmp_path / "lab" / "exercises" / f"{ex}.yaml").write_text(exercise_yaml(ex))
    seats = {
        "ana": Seat("ana", "Ana Núñez", "so-ana", email="ana@example.org"),
        "bo": Seat("bo", 'Bo, "the" <b>', "so-bo", email="bo@example.org"),
    }
    folder = ClassDir("so")
    folder.save(ClassState("so", "cls", str(tmp_path / "lab" / "lab.yaml"), "r.csv", seats))

    def new(student: str, ex: str, kind: str, **kw: object) -> NewAttempt:
        return NewAttempt("cls", f"so-{student}", student, ex, kind, at=T, **kw)  # type: ignore[arg-type]

    shared().record(
        new("ana", "ex1", "hint", step="s1"),
        new("ana", "ex1", "check", step="s1", passed=True),
        new("ana", "ex2", "check", step="s1", passed=True),
        new("bo", "ex1", "check", step="s1", passed=True),
        new("bo", "ex1", "check", step="s1", passed=False),  # broken since
    )
    return folder


def run(*args: str) -> str:
    result = CliRunner().invoke(app, ["class", "report", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_csv_is_a_gradebook_moodle_imports(klass: ClassDir) -> None:
    rows = list(csv.reader(io.StringIO(run("--format", "csv"))))
    assert rows == [
        ["email", "name", "ex1", "ex2", "total"],
        ["ana@example.org", "Ana Núñez", "0.75", "1", "1.75"],
        ["bo@example.org", 'Bo, "the" <b>', "1", "0", "1"],
    ]


def test_without_every_email_the_key_is_the_student_id(klass: ClassDir) -> None:
    state = klass.require()
    klass.save(state.with_seat(Seat("cy", "Cy", "so-cy")))
    assert run().splitlines()[0] == "id,name,ex1,ex2,total"
    assert run().splitlines()[3] == "cy,Cy,0,0,0"


def test_json_says_what_passes_now(klass: ClassDir) -> None:
    data = json.loads(run("--format", "json"))
    bo = data["students"][1]
    assert bo["exercises"]["ex1"]["broken"] == ["s1"] and bo["total"] == 1
    assert data["max_total"] == 2 and data["exercises"][0]["grading"]["hint_penalty"] == 0.25


def test_html_is_one_file_that_fetches_nothing(klass: ClassDir, tmp_path: Path) -> None:
    out = tmp_path / "grades.html"
    run("--format", "html", "--out", str(out))
    page = out.read_text()
    assert "Ana Núñez" in page and "Bo, &quot;the&quot; &lt;b&gt;" in page
    assert "http" not in page and "<script" not in page and 'class="broken"' in page
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_the_class_is_graded_after_down_from_the_store(klass: ClassDir) -> None:
    run()  # the report notes the seats (class up does too)
    klass.remove()
    assert [s.student for s in class_grades("so").students] == ["ana", "bo"]
    assert run("--class", "so").splitlines()[1].startswith("ana@example.org,")
    # its window went with it: what was recorded late stays late
    shared().record(
        NewAttempt("cls", "so-bo", "bo", "ex2", "check", "s1", passed=True, scored=False)
    )
    bo = class_grades("so").students[1]
    assert (bo.late, bo.scores["ex2"].points) == (1, 0)
    audit = list(csv.DictReader(io.StringIO(run("--class", "so", "--attempts"))))
    assert audit[-1]["scored"] == "false"


def test_a_student_taken_down_alone_is_still_graded_while_the_class_runs(klass: ClassDir) -> None:
    run()  # the report notes the seats (class up does too)
    st = klass.require()
    klass.save(ClassState(st.name, st.lab, st.spec_path, st.roster, {"ana": st.seats["ana"]}))
    graded = class_grades("so").students  # bo's lab went (class down --student bo)
    assert [(s.student, s.name) for s in graded] == [("ana", "Ana Núñez"), ("bo", 'Bo, "the" <b>')]
    assert run("--class", "so").splitlines()[2].startswith("bo@example.org,")


def test_an_unknown_class_names_the_classes_there_are(klass: ClassDir, tmp_path: Path) -> None:
    run()  # so's seats are in the store now
    ClassDir("up1").save(ClassState("up1", "cls", str(tmp_path / "lab" / "lab.yaml"), "r.csv"))
    shared().add_seat("gone", "cy", "cls", "gone-cy")  # a class taken down, still gradable
    result = CliRunner().invoke(app, ["class", "report", "--class", "nope"])
    err = result.exception
    assert isinstance(err, LabctlError) and err.code == 2
    assert err.message == "no class 'nope' on this host, and none in the progress store"
    assert err.hint == "classes here: gone, so, up1"


def test_attempts_csv_has_a_row_per_attempt(klass: ClassDir) -> None:
    rows = list(csv.DictReader(io.StringIO(run("--attempts"))))
    assert len(rows) == 5 and rows[0]["kind"] == "hint" and rows[4]["passed"] == "false"
    assert {r["made_by"] for r in rows} == {""}  # every one the student's own
    shared().record(NewAttempt("cls", "so-bo", "bo", "ex2", "reset", made_by="instructor"))
    last = list(csv.DictReader(io.StringIO(run("--attempts"))))[-1]
    assert (last["kind"], last["made_by"]) == ("reset", "instructor")


def test_an_unknown_format_is_refused(klass: ClassDir) -> None:
    result = CliRunner().invoke(app, ["class", "report", "--format", "xls"])
    assert isinstance(result.exception, LabctlError) and result.exception.code == 2
    # every attempt as HTML is no format there is: said, not CSV given instead
    result = CliRunner().invoke(app, ["class", "report", "--attempts", "--format", "html"])
    assert isinstance(result.exception, LabctlError) and result.exception.code == 2
    assert result.exception.message == "--attempts writes CSV or JSON, not HTML"


def test_attempts_after_the_exam_window_are_late_and_never_score(klass: ClassDir) -> None:
    state = klass.require()
    klass.save(with_window(state, None, T))  # closed at T: every attempt above came at T

    def late(kind: str, step: str | None, days: int, **kw: object) -> NewAttempt:
        when = T + timedelta(days)
        return NewAttempt("cls", "so-bo", "bo", "ex2", kind, step, at=when, **kw)  # type: ignore[arg-type]

    shared().record(
        late("check", "s1", 1, passed=True),
        late("check", "s2", 1, passed=False),  # the same check run, its other step
        late("hint", "s2", 2),
        late("start", None, 3),  # no doing of bo's to count
    )
    data = json.loads(run("--format", "json"))
    bo = data["students"][1]
    # as the dashboard counts: a check run once whatever its steps; answers and checks tried
    # (no hint, no start), late ones among them
    assert (bo["attempts"], bo["late_attempts"]) == (2, 1)
    assert bo["exercises"]["ex2"]["points"] == 0
    assert data["window"]["end"].startswith("2026-03-01T09:00")
    assert "late attempts are kept, never scored" in run("--format", "html")
    # recorded while the window was open (no end then), judged late now: so says the audit
    audit = csv.DictReader(io.StringIO(run("--attempts")))
    after = [r for r in audit if datetime.fromisoformat(r["at"]) > T]
    assert len(after) == 4 and {r["scored"] for r in after} == {"false"}
    shipped = json.loads(run("--attempts", "--format", "json"))  # to a controller: as made
    assert {a["scored"] for a in shipped if datetime.fromisoformat(a["at"]) > T} == {True}
    # recorded late (the window had closed then), and the end moved a week later: they count
    shared().record(late("check", "s2", 4, passed=True, scored=False))
    klass.save(with_window(state, None, T + timedelta(days=7)))
    bo = json.loads(run("--format", "json"))["students"][1]
    assert bo["late_attempts"] == 0 and bo["exercises"]["ex2"]["points"] == 1  # was 0
