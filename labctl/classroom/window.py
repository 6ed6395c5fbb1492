"""A class's exam window: before it the exercises are hidden, after it attempts stop scoring.

The window is two ISO 8601 instants kept in the class state (``ClassState.window_start`` and
``window_end``, either may be None: open on that side). Before the start a student's
``exercise list/show/check/hint/answer`` refuse (:func:`require_open`); after the end checks
still run and are recorded as not scoring (:meth:`Window.scores`), and reports, the dashboard
and the student's own progress judge every attempt by the window as it is now, both ways
(:meth:`Window.judged`: an end moved earlier makes attempts after it late, one moved later
makes them count again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from labctl.classroom.state import ClassDir, ClassState, classes
from labctl.errors import ExitCode, LabctlError, SpecError


class NotOpenYet(LabctlError):
    """The class's exam window has not started: the exercises are hidden. Exit 2."""

    code = ExitCode.NOTHING_RAN


class Timed(Protocol):
    """An attempt as a window judges it (the store's, the dashboard's): a frozen dataclass."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def at(self) -> datetime:
        """When it was made."""

    @property
    def scored(self) -> bool:
        """Whether it counts."""


A = TypeVar("A", bound=Timed)


@dataclass(frozen=True)
class Window:
    """An exam window; either end may be open (None)."""

    start: datetime | None
    end: datetime | None

    def opened(self, when: datetime) -> bool:
        """The exercises are visible at ``when`` (the start has come)."""
        return self.start is None or when >= self.start

    def scores(self, when: datetime) -> bool:
        """An attempt made at ``when`` counts (it is not late)."""
        return self.end is None or when <= self.end

    def judged(self, attempts: Iterable[A]) -> list[A]:
        """The attempts, those made after the window closed marked late (not scored), the
        others scored.

        An attempt's ``scored`` is recorded when it is made; the window may have been set or
        moved since, and every reader judges by the window as it is now, both ways: an end
        moved later, or taken away, makes the attempts before it count again. Judge only by a
        class's own window: a class that is down has none to judge by, and its attempts keep
        what was recorded.
        """
        return [
            a if a.scored == self.scores(a.at) else replace(a, scored=not a.scored)
            for a in attempts
        ]

    def state(self, now: datetime) -> str | None:
        """``not open yet``, ``open`` or ``ended`` at ``now``; None without a window."""
        if self.start is None and self.end is None:
            return None
        if not self.opened(now):
            return "not open yet"
        return "open" if self.scores(now) else "ended"

    @property
    def summary(self) -> str:
        """One line for people: ``2026-12-03 10:00 → 12:00 UTC``."""
        if self.start is None and self.end is None:
            return "no exam window"
        a = _show(self.start) if self.start else "…"
        b = _show(self.end) if self.end else "…"
        return f"{a} → {b} UTC"


def _show(when: datetime) -> str:
    """To the minute, or to the second where the time has seconds (an end at 10:42:58 is
    not said 10:42)."""
    utc = when.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%d %H:%M" if utc.second == 0 else "%Y-%m-%d %H:%M:%S")


def parse_instant(text: str, what: str = "time") -> datetime:
    """An ISO 8601 instant; a time without a zone is taken as UTC."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise SpecError(
            f"{what} {text!r} is not an ISO 8601 time", "e.g. 2026-12-03T10:00 or 2026-12-03T10:00Z"
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def window_of(state: ClassState) -> Window:
    """The class's window as instants."""
    return Window(
        parse_instant(state.window_start) if state.window_start else None,
        parse_instant(state.window_end) if state.window_end else None,
    )


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _in_order(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise SpecError(
            f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})",
            "give an end after the start",
        )


#: an end given as this is open: no start (always visible) or no end (always scores)
OPEN = "-"


def given(start: str | None, end: str | None, names: tuple[str, str]) -> Window:
    """The ends given as options (ISO 8601; ``names``: the options', for errors), checked.

    None stands for an end not given (or given as :data:`OPEN`); both given must be in order.
    """
    window = Window(
        parse_instant(start, names[0]) if start and start != OPEN else None,
        parse_instant(end, names[1]) if end and end != OPEN else None,
    )
    _in_order(window.start, window.end)
    return window


def changed(
    state: ClassState, start: str | None, end: str | None, names: tuple[str, str]
) -> Window:
    """The class's window after ``class window --start/--end``: an end not given is kept, one
    given as :data:`OPEN` is opened, any other replaced; checked."""
    ends, old = given(start, end, names), window_of(state)
    window = Window(
        None if start == OPEN else ends.start or old.start,
        None if end == OPEN else ends.end or old.end,
    )
    _in_order(window.start, window.end)
    return window


def merged(state: ClassState | None, ends: Window) -> Window:
    """The class's window with the ends given replacing its own (None: kept), checked."""
    old = window_of(state) if state is not None else Window(None, None)
    window = Window(ends.start or old.start, ends.end or old.end)
    _in_order(window.start, window.end)
    return window


def with_ends(state: ClassState, ends: Window | None) -> ClassState:
    """The state with the ends given merged into its window (None: its own window kept)."""
    if ends is None:
        return state
    window = merged(state, ends)
    return with_window(state, window.start, window.end)


def iso(when: datetime | None) -> str | None:
    """An end as JSON says it: ISO 8601 to the second, null when open."""
    return when.isoformat(timespec="seconds") if when else None


def stamp(when: datetime | None) -> str:
    """An end as ``class window`` prints and takes it: ISO 8601 to the second, ``-`` (OPEN)
    when open."""
    return iso(when) or OPEN


def with_window(state: ClassState, start: datetime | None, end: datetime | None) -> ClassState:
    """A copy of the state with this window (None, None: no window)."""
    _in_order(start, end)
    return replace(
        state,
        window_start=start.isoformat(timespec="seconds") if start else None,
        window_end=end.isoformat(timespec="seconds") if end else None,
    )


def class_of(lab: str, instance: str, root: Path | None = None) -> ClassState | None:
    """The class whose student works in this lab instance, or None for a lab of one's own."""
    for name in classes(root):
        try:
            state = ClassDir(name, root).load()
        except LabctlError:
            continue  # a damaged class is class status's to report
        if state is None or state.lab != lab:
            continue
        if any(seat.instance == instance for seat in state.seats.values()):
            return state
    return None


def require_open(lab: str, instance: str, when: datetime | None = None) -> None:
    """Refuse when the instance belongs to a class whose exam window has not started."""
    state = class_of(lab, instance)
    if state is None:
        return
    window = window_of(state)
    now = _aware(when or datetime.now(timezone.utc))
    if not window.opened(now):
        assert window.start is not None
        raise NotOpenYet(
            f"the exercises of class {state.name} open at {_show(window.start)} UTC",
            "wait for the exam to start; your lab is ready in the meantime",
            es=(
                f"los ejercicios de la clase {state.name} se abren el {_show(window.start)} UTC",
                "espera a que empiece el examen; tu laboratorio ya está listo",
            ),
        )
