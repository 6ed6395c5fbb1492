"""A class's exam window: hidden before, scored inside, late after."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from labctl.classroom import window
from labctl.classroom.state import ClassDir, ClassState, Seat
from labctl.errors import SpecError

T = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)


def state(start: datetime | None, end: datetime | None) -> ClassState:
    seats = {"ana": Seat("ana", "Ana", "c1-ana")}
    return window.with_window(
        ClassState("c1", "virtualization", "lab.yaml", "r.csv", seats), start, end
    )


def test_scored_inside_the_window_and_not_after_it() -> None:
    w = window.window_of(state(T, T + timedelta(hours=2)))
    assert w.scores(T + timedelta(hours=1))
    assert w.scores(T + timedelta(hours=2))
    assert not w.scores(T + timedelta(hours=2, seconds=1))
    assert window.window_of(state(None, None)).scores(T + timedelta(days=9))


def test_a_window_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(SpecError, match="before it starts"):
        state(T, T - timedelta(minutes=1))
    with pytest.raises(SpecError, match="ISO 8601"):
        window.parse_instant("tomorrow")
    assert window.parse_instant("2026-12-03T11:00+01:00") == T


def test_exercises_are_hidden_from_a_class_instance_before_the_start(state_root: Path) -> None:
    ClassDir("c1").save(state(T, None))
    with pytest.raises(window.NotOpenYet, match="open at 2026-12-03 10:00 UTC") as exc:
        window.require_open("virtualization", "c1-ana", T - timedelta(seconds=1))
    assert exc.value.code == 2
    window.require_open("virtualization", "c1-ana", T)
    window.require_open("virtualization", "someone-else", T - timedelta(days=1))  # not the class's
    window.require_open("other-lab", "c1-ana", T - timedelta(days=1))
    assert window.class_of("virtualization", "c1-ana") is not None


def test_exercise_list_and_show_refuse_before_the_window_opens(state_root: Path) -> None:
    from typer.testing import CliRunner

    from labctl.cli import app

    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    ClassDir("c1").save(state(soon, None))
    for args in (["exercise", "list"], ["exercise", "show", "emu-arquitecturas"]):
        result = CliRunner().invoke(app, [*args, "--instance", "c1-ana", "--student", "ana"])
        assert isinstance(result.exception, window.NotOpenYet), result.output
        assert "the exercises of class c1 open at" in result.exception.message
    # the same commands on a lab of one's own are not affected
    ok = CliRunner().invoke(app, ["exercise", "list", "--instance", "mine", "--json"])
    assert ok.exit_code == 0, ok.output


def test_show_says_when_the_exam_ends_and_that_it_has(state_root: Path) -> None:
    from typer.testing import CliRunner

    from labctl.cli import app

    def show() -> str:
        args = ["exercise", "show", "emu-arquitecturas", "-i", "c1-ana", "-s", "ana"]
        result = CliRunner().invoke(app, [*args, "--lang", "en"])
        assert result.exit_code == 0, result.output
        return " ".join(result.stdout.split())

    now = datetime.now(timezone.utc).replace(microsecond=0)
    ClassDir("c1").save(state(None, now + timedelta(hours=1)))
    end = (now + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"The exam ends at {end}." in show()
    ClassDir("c1").save(state(None, now - timedelta(minutes=1)))  # late now
    ended = (now - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"The exam ended at {ended}: what you do is recorded but does not score." in show()
    ClassDir("c1").save(state(None, None))  # no window: nothing said
    assert "exam" not in show()


def test_the_window_as_it_is_now_judges_both_ways() -> None:
    from labctl.dashboard.data import Attempt

    made_late = Attempt("ana", "emu", "s", "check", T + timedelta(minutes=5), True, scored=False)
    made_on_time = Attempt("ana", "emu", "s", "check", T - timedelta(minutes=5), True)
    # the end moved later (or taken away): what was late counts again
    later = window.Window(None, T + timedelta(hours=1))
    assert [a.scored for a in later.judged([made_late, made_on_time])] == [True, True]
    assert [a.scored for a in window.Window(None, None).judged([made_late])] == [True]
    # the end moved earlier: what counted is late
    assert [a.scored for a in window.Window(None, T).judged([made_late, made_on_time])] == [
        False,
        True,
    ]


def test_a_window_is_said_to_the_minute_or_to_the_second() -> None:
    w = window.Window(T, T + timedelta(hours=2, seconds=58))
    assert w.summary == "2026-12-03 10:00 → 2026-12-03 12:00:58 UTC"
