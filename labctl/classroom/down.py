"""``class down`` as a stage list: exactly the class's instances (through
``lab.down``), accounts and keys, then the class state; with ``forget``, the
records in the progress store of each student whose lab went (``classroom.forget``).

Interrupted (Ctrl-C), it says how far it got; the same command again resumes it. A lab that
could not be removed keeps its student's records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from labctl import cancel
from labctl.classroom import forget as records
from labctl.classroom.lifecycle import Accounts, HostAccounts
from labctl.classroom.state import DOWN, Box, ClassDir, Seat
from labctl.console import plural
from labctl.errors import ExitCode, LabctlError
from labctl.exercises.progress import now
from labctl.instance.state import InstanceDir
from labctl.lab import down as lab_down
from labctl.stages import Reporter, Stage, execute, quiet
from labctl.store import Forgotten


@dataclass(frozen=True)
class SeatDown:
    """What ``class down`` removed for one student."""

    student: str
    instance: str
    removed: tuple[str, ...]
    progress_kept: bool


@dataclass
class _ClassDown:
    folder: ClassDir
    only: str | None
    report: Reporter
    down_one: Callable[[str, str], list[str]]
    accounts: Accounts | None
    forget: bool = False
    box: Box | None = None
    seats: list[Seat] = field(default_factory=list)
    done: list[SeatDown] = field(default_factory=list)
    forgotten: Forgotten | None = None

    @property
    def state(self) -> Box:
        assert self.box is not None
        return self.box


def _read(c: _ClassDown) -> None:
    state = c.folder.require()
    c.box = Box(state, c.folder.save)
    if c.only is not None and c.only not in state.seats:
        if c.forget and records.went_before(state.name, c.only):
            return  # their lab went before (a class down without --forget): records only
        raise LabctlError(
            f"no student {c.only!r} in class {state.name}",
            f"students: {', '.join(state.seats)}",
        )
    c.seats = [s for s in state.seats.values() if c.only in (None, s.student)]


def _has_progress(lab: str, instance: str) -> bool:
    """Whether the store holds attempts of the instance (kept unless ``--forget``)."""
    from labctl.exercises.progress import shared

    return shared().last_activity(lab, instance) is not None


def _remove_key(inst: InstanceDir) -> bool:
    """The instance's key pair and owner record go; its progress (the student's work) stays
    for grading.

    Progress lives in the store (``labctl.store``), which ``down`` never touches; an older
    labctl's progress files (and the ``.migrated`` copies the store left) stay too.
    """
    for path in (inst.key, inst.key.with_name(inst.key.name + ".pub"), inst.owner_file):
        path.unlink(missing_ok=True)
    progress = inst.path / "progress"
    if progress.is_dir():
        if any(progress.glob("*.json*")):
            return True
        for f in progress.iterdir():
            f.unlink()
    return not inst.remove_leftovers()


def _down_labs(c: _ClassDown) -> None:
    lab = c.state.state.lab

    def one(seat: Seat) -> None:
        removed = c.down_one(lab, seat.instance)
        c.report(seat.student, "removed", ", ".join(removed) or "nothing was running")
        kept = _remove_key(InstanceDir(lab, seat.instance)) or _has_progress(lab, seat.instance)
        # its seat goes at the end: until then (an interrupted down) it says the lab is gone
        c.state.put(replace(seat, outcome=DOWN, error=None, updated_at=now()))
        c.done.append(SeatDown(seat.student, seat.instance, tuple(removed), kept))

    # Ctrl-C: a lab being removed stops at its next stage, the others are not started
    try:
        cancel.in_parallel(one, c.seats, min(4, len(c.seats)), "down")
    except LabctlError as exc:
        if not c.forget or exc.code == ExitCode.INTERRUPTED or cancel.CANCEL.is_set():
            raise
        _forgot_but(c, exc)
        raise


def _targets(c: _ClassDown) -> list[records.Target]:
    """Whose records to forget: each student whose lab this run removed, and the class's
    seats in this host's own store whose lab went before; never one whose lab is still
    there (see ``forget.went_before``)."""
    lab = c.state.state.lab
    tried = {s.student for s in c.seats} | set(c.state.state.seats)
    gone = [records.Target(d.student, lab, d.instance) for d in c.done]
    earlier = records.went_before(c.folder.name, c.only, tried)
    return gone + earlier


def _records(c: _ClassDown) -> None:
    if c.forget:
        c.forgotten = records.forget(c.folder.name, _targets(c))
        c.done = [replace(d, progress_kept=False) for d in c.done]


def _forgot_but(c: _ClassDown, exc: LabctlError) -> None:
    """A lab not removed: the others' records forgotten, that student's kept, and said in
    ``exc``'s hint (its own kind and exit code kept)."""
    _records(c)
    assert c.forgotten is not None
    gone = {d.student for d in c.done}
    kept = sorted(s.student for s in c.seats if s.student not in gone)
    said = records.said(c.forgotten).rstrip(".")
    forgot = "nothing forgotten" if c.forgotten.nothing else said[0].lower() + said[1:]
    hint = (
        f"{forgot}; the records of {', '.join(kept)} are kept while "
        f"{'their labs are' if len(kept) > 1 else 'the lab is'} still there: run the same "
        "command again to remove and forget them"
    )
    exc.hint = f"{exc.hint}. {hint}" if exc.hint else hint
    exc.es = None  # said whole in English rather than half in Spanish


def _down_accounts(c: _ClassDown) -> None:
    if c.accounts is None:
        return
    for seat in c.seats:
        c.accounts.remove(seat.student, c.folder.name)


def _drop_seats(c: _ClassDown) -> None:
    for seat in c.seats:
        c.state.drop(seat.student)
    if not c.state.state.seats:
        c.folder.remove()


#: ``labctl class down``: the class's instances, accounts and keys, then its state.
CLASS_DOWN_STAGES: tuple[Stage[_ClassDown], ...] = (
    Stage("lock", hold=lambda c: c.folder.locked("labctl class down"), silent=True),
    Stage("read", _read, silent=True),
    Stage("labs", _down_labs, describe=lambda c: plural(len(c.seats), "student")),
    Stage("accounts", _down_accounts, silent=True),
    Stage("records", _records, silent=True),
    Stage("state", _drop_seats, silent=True),
)


@dataclass(frozen=True)
class ClassDown:
    """What ``class down`` did: each student's removal, and what ``forget`` removed of the
    progress store (None: not asked)."""

    seats: list[SeatDown]
    forgotten: Forgotten | None = None


def down(
    folder: ClassDir,
    student: str | None = None,
    report: Reporter = quiet,
    down_one: Callable[[str, str], list[str]] | None = None,
    accounts: Accounts | None | Literal["host"] = "host",
    forget: bool = False,
) -> ClassDown:
    """Remove the class's labs (or one student's), accounts and keys, the state last; with
    ``forget`` the records (``classroom.forget``) of every student whose lab is gone, in one
    transaction of the store, after the labs and accounts.

    A class not here (never made, or taken down already) is left alone: nothing is removed,
    not even a lock file is made for it.

    A lab that could not be removed keeps its student's records (the error says so); the
    others' are forgotten. A class not here with ``forget``: the store's seats of it (or of
    ``student``) are forgotten, since its labs went before.
    """
    if folder.load() is None:
        if not forget:
            return ClassDown([])
        return ClassDown([], records.forget(folder.name, records.went_before(folder.name, student)))
    c = _ClassDown(
        folder,
        student,
        report,
        down_one or (lambda lab, i: lab_down.down(lab, i)),
        HostAccounts() if accounts == "host" else accounts,
        forget,
    )
    with cancel.said(lambda: _down_so_far(c)):
        execute(CLASS_DOWN_STAGES, c, report)
    return ClassDown(sorted(c.done, key=lambda d: d.student), c.forgotten)


def _down_so_far(c: _ClassDown) -> str:
    """How far an interrupted ``class down`` got."""
    if not c.seats:
        return f"class {c.folder.name}: interrupted before anything was removed"
    n = len(c.seats)
    return f"class {c.folder.name}: interrupted with {len(c.done)} of {n} students' labs removed"


__all__ = ["CLASS_DOWN_STAGES", "ClassDown", "SeatDown", "down"]
