"""``class up`` and ``class down`` as stage lists on the same executor as a lab's ``up``.

``class up`` validates the roster against the host, takes the class's lock, refuses an
overcommit, gives each student a seat slot (``slots``: their ports' source, kept on a rerun),
writes the class state (every student pending) before anything exists, creates
the students' accounts, then runs each student's own ``lab.lifecycle.up`` with at most
``max_parallel`` at a time. A student's failure is recorded with its reason and the others
go on; a rerun finishes what is missing. ``class down`` removes exactly the class's
instances (through ``lab.lifecycle.down``), accounts and keys, then the class state; with
``forget``, the records in the progress store of each student whose lab went (``forget``).
Interrupted (Ctrl-C), either says how far it got; the same command again resumes it.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

from labctl import cancel
from labctl.classroom import accounts, capacity, reach, slots
from labctl.classroom import forget as records
from labctl.classroom import window as exam
from labctl.classroom.roster import (
    AccountCheck,
    Roster,
    Student,
    check_accounts,
    check_size,
    instance_of,
)
from labctl.classroom.roster import account_check as roster_account_check
from labctl.classroom.roster import account_exists as roster_account_exists
from labctl.classroom.state import DOWN, FAILED, UP, Box, ClassDir, ClassState, Seat, seat_of
from labctl.console import plural
from labctl.errors import ExitCode, LabctlError
from labctl.exercises.model import load_exercises
from labctl.exercises.progress import now
from labctl.images.cache import ImageStore
from labctl.instance.state import InstanceDir
from labctl.lab import lifecycle
from labctl.lab import plan as lab_plan
from labctl.lab.accel import KvmProbe
from labctl.spec.model import Lab
from labctl.stages import Reporter, Stage, execute, quiet
from labctl.store import Forgotten


class Accounts(Protocol):
    """Student Linux accounts: what ``class up`` and ``class down`` ask of them."""

    def ensure(self, student: Student, class_name: str, lab: str, instance: str) -> None:
        """Create (or find, on a rerun) the student's account, bound to their instance."""

    def remove(self, student: str, class_name: str) -> None:
        """Remove the student's account if labctl made it for the class; else touch nothing."""

    def owned(self, user: str, class_name: str) -> bool:
        """True when ``user`` is an account labctl created for the class."""

    def admit(self, student: str, class_name: str) -> None:
        """Let the student's account reach their own instance only (see ``reach``)."""


class HostAccounts:
    """:class:`Accounts` on this host: ``classroom.accounts`` (useradd, its registry).

    ``server``: what the access sheets call this host (None: ``accounts.server_name()``,
    found again for each student).
    """

    def __init__(self, server: str | None = None) -> None:
        self.server = server

    def ensure(self, student: Student, class_name: str, lab: str, instance: str) -> None:
        """Create (or find) the account; the roster's key or a generated one in the sheet."""
        accounts.ensure_account(
            student.id,
            student.name,
            student.ssh_key,
            class_name,
            lab=lab,
            instance=instance,
            server=self.server,
        )

    def remove(self, student: str, class_name: str) -> None:
        """Remove it; a student still logged in keeps userdel from working: end them first."""
        accounts.remove_account(student, class_name, kill_processes=True)

    def owned(self, user: str, class_name: str) -> bool:
        """What labctl's account registry says."""
        return accounts.owned(user, class_name)

    def admit(self, student: str, class_name: str) -> None:
        """The instance's owner, the firewall's uid rules, the sheet's guests."""
        reach.admit(student, class_name)


@dataclass(frozen=True)
class SeatResult:
    """What ``class up`` did for one student."""

    student: str
    instance: str
    ok: bool
    error: str | None
    seconds: float


@dataclass(frozen=True)
class ClassUpResult:
    """What ``class up`` did: one result per student, in roster order.

    ``kept``: the class's students not in this roster, whose labs were left as they were
    (never removed for being left out: ``class down --student`` removes one).
    """

    name: str
    lab: str
    results: tuple[SeatResult, ...]
    plan: capacity.Plan
    kept: tuple[str, ...] = ()

    @property
    def failed(self) -> list[SeatResult]:
        """The students whose labs did not come up."""
        return [r for r in self.results if not r.ok]


UpOne = Callable[[Lab, Path, str, Reporter], object]


def _lab_up(
    store: ImageStore, probe: KvmProbe, ready_timeout: int | None
) -> Callable[[Lab, Path, str, Reporter], object]:
    def up(lab: Lab, path: Path, instance: str, report: Reporter) -> object:
        return lifecycle.up(
            lab, path, instance, store, probe, ready_timeout=ready_timeout, report=report
        )

    return up


@dataclass
class _ClassUp:
    """What ``class up``'s stages share."""

    roster: Roster
    name: str
    lab: Lab
    spec_path: Path
    store: ImageStore
    up_one: UpOne
    max_parallel: int
    report: Reporter
    max_students: int | None = None
    host: capacity.HostCapacity | None = None  # measured at the capacity stage unless given
    account_exists: Callable[[str], bool] | None = None
    accounts: Accounts | None = None
    #: the exam window's ends given to ``class up`` (None: not given, the class's own kept)
    window: exam.Window | None = None
    #: what the class's ports keep clear of (None: this server's, read when needed)
    ports: slots.HostPorts | None = None
    folder: ClassDir | None = None
    box: Box | None = None
    slots: dict[str, int] = field(default_factory=dict)
    plan: capacity.Plan | None = None
    results: dict[str, SeatResult] = field(default_factory=dict)
    kept: tuple[str, ...] = ()  # the class's students this roster leaves out

    @property
    def dir(self) -> ClassDir:
        assert self.folder is not None
        return self.folder

    @property
    def state(self) -> Box:
        assert self.box is not None, "the record stage wrote the class state"
        return self.box


def check_roster(
    roster: Roster,
    name: str,
    account_exists: Callable[[str], bool] | None = None,
    accounts: Accounts | None = None,
) -> None:
    """The roster's checks against this host that change nothing, as ``class up`` makes
    them (``class plan`` too): every instance name fits, and no id is an existing account
    that labctl did not make for the class (``accounts.owned``; None: none is ours)."""
    for s in roster.students:
        instance_of(name, s.id)  # within the instance-name limit by construction
    ours = accounts.owned if accounts else (lambda _user, _cls: False)
    check_accounts(roster, name, account_exists or roster_account_exists, ours)


def account_check(
    name: str,
    account_exists: Callable[[str], bool] | None = None,
    accounts: Accounts | None = None,
) -> AccountCheck:
    """``check_roster``'s check of one id against this host's accounts, for ``roster.load``:
    a clash is then listed with the roster's other problems."""
    ours = accounts.owned if accounts else (lambda _user, _cls: False)
    return roster_account_check(name, account_exists or roster_account_exists, ours)


def _validate(c: _ClassUp) -> None:
    c.folder = ClassDir(c.name)
    previous = c.folder.load_for(c.lab.name)
    if c.window is not None:  # an end before the start is refused before anything exists
        exam.merged(previous, c.window)
    check_size(c.roster, c.max_students)
    check_roster(c.roster, c.name, c.account_exists, c.accounts)
    for image in lab_plan.check_images(c.lab, c.store):
        c.report("", "warning", f"image {image} is older than its recipe: labctl images build")


def _lock(c: _ClassUp) -> AbstractContextManager[object]:
    return c.dir.locked("labctl class up")


def _fresh(c: _ClassUp) -> list[str]:
    """Students whose lab does not exist yet (an existing one already holds its memory)."""
    return [
        s.id
        for s in c.roster.students
        if InstanceDir(c.lab.name, instance_of(c.name, s.id)).load() is None
    ]


def _capacity(c: _ClassUp) -> None:
    c.plan = capacity.plan(c.lab, len(_fresh(c)), c.host)
    capacity.refuse_overcommit(c.plan)


def _describe_capacity(c: _ClassUp) -> str:
    cost = capacity.student_cost(c.lab)
    return f"{cost.memory_mib} MiB and {cost.disk_mib} MiB of disk per student"


def _slots(c: _ClassUp) -> None:
    c.slots = slots.assign(c.dir.load(), [s.id for s in c.roster.students])
    slots.check(load_exercises(c.spec_path.parent / "exercises"), c.slots, c.ports)


def _record(c: _ClassUp) -> None:
    state = c.dir.load() or ClassState(
        c.name, c.lab.name, str(c.spec_path.resolve()), str(Path(c.roster.path).resolve())
    )
    state = replace(state, roster=str(Path(c.roster.path).resolve()))
    if c.window is not None:
        window = exam.merged(state, c.window)
        state = exam.with_window(state, window.start, window.end)
    for s in c.roster.students:
        old = state.seats.get(s.id)
        fresh = seat_of(s, instance_of(c.name, s.id))
        # a rerun keeps the outcome until the student's up says otherwise
        state = state.with_seat(fresh if old is None else replace(fresh, outcome=old.outcome))
    for student, slot in c.slots.items():
        state = state.with_seat(replace(state.seats[student], slot=slot))
    listed = {s.id for s in c.roster.students}
    c.kept = tuple(s for s in state.seats if s not in listed)
    c.box = Box(state, c.dir.save)
    c.dir.save(state)
    remember_seats(state)


def remember_seats(state: ClassState) -> None:
    """Each seat in the progress store too: grading outlives the class (``class report``)."""
    from labctl.exercises.progress import shared
    from labctl.store.engine import remember_url

    remember_url()  # the students' sudo entry point runs without the instructor's LABCTL_DB
    store = shared()
    for seat in state.seats.values():
        store.add_seat(
            state.name,
            seat.student,
            state.lab,
            seat.instance,
            seat.name,
            seat.email,
            state.spec_path,
        )


def _accounts(c: _ClassUp) -> None:
    if c.accounts is None:  # a bench of the labs alone
        c.report("", "warning", "no student accounts made: only root can use these labs")
        return
    for s in c.roster.students:
        c.accounts.ensure(s, c.name, c.lab.name, instance_of(c.name, s.id))
        c.accounts.admit(s.id, c.name)  # before the lab exists: it reaches no lab at all


def _access(c: _ClassUp) -> None:
    if c.accounts is None:
        return
    for s in c.roster.students:  # their lab is up now (or failed: still confined)
        c.accounts.admit(s.id, c.name)


def _student_reporter(report: Reporter, student: str) -> Reporter:
    def said(guest: str, step: str, detail: str) -> None:
        report(student, f"{guest} {step}".strip(), detail)

    return said


def _labs(c: _ClassUp) -> None:
    def one(student: str) -> None:
        seat = c.state.state.seats[student]
        say = _student_reporter(c.report, student)
        t0 = time.monotonic()
        try:
            cancel.check()
            c.up_one(c.lab, c.spec_path, seat.instance, say)
        except Exception as exc:  # one student's failure never stops the others
            if isinstance(exc, LabctlError):
                why = exc.message
                if exc.code == 130:
                    raise
            else:
                why = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            seconds = round(time.monotonic() - t0, 1)
            c.state.put(replace(seat, outcome=FAILED, error=why, seconds=seconds, updated_at=now()))
            c.results[student] = SeatResult(student, seat.instance, False, why, seconds)
            c.report(student, "failed", why.splitlines()[0])
            return
        seconds = round(time.monotonic() - t0, 1)
        c.state.put(replace(seat, outcome=UP, error=None, seconds=seconds, updated_at=now()))
        c.results[student] = SeatResult(student, seat.instance, True, None, seconds)
        c.report(student, "done", f"{seconds:.1f} s")

    cancel.in_parallel(one, [s.id for s in c.roster.students], c.max_parallel, "class")


#: ``labctl class up``: one lab instance per student, converging from whatever exists.
CLASS_UP_STAGES: tuple[Stage[_ClassUp], ...] = (
    Stage("validate", _validate, describe=lambda c: plural(len(c.roster.students), "student")),
    Stage("lock", hold=_lock, silent=True),
    Stage("capacity", _capacity, describe=_describe_capacity),
    Stage("slots", _slots, silent=True),
    Stage("record", _record, silent=True),
    Stage("accounts", _accounts, describe=lambda c: "one Linux account per student"),
    Stage("labs", _labs, describe=lambda c: f"at most {c.max_parallel} at a time"),
    Stage("access", _access, describe=lambda c: "each account reaches its own lab only"),
)


def up(
    roster: Roster,
    name: str,
    lab: Lab,
    spec_path: Path,
    store: ImageStore,
    probe: KvmProbe,
    *,
    max_parallel: int = 2,
    max_students: int | None = None,
    ready_timeout: int | None = None,
    report: Reporter = quiet,
    up_one: UpOne | None = None,
    host: capacity.HostCapacity | None = None,
    account_exists: Callable[[str], bool] | None = None,
    accounts: Accounts | None | Literal["host"] = "host",
    window: exam.Window | None = None,
    ports: slots.HostPorts | None = None,
) -> ClassUpResult:
    """Bring up one lab instance per student of ``roster``; resumable, failures per student.

    ``window``: the exam window's ends to set (see ``classroom.window.given``); an end not
    given keeps the class's own. Each student gets a seat slot (``classroom.slots``), their
    ports' source. ``up_one`` (a student's ``lab.lifecycle.up``), ``host``, ``ports`` (what
    the class's ports keep clear of), ``account_exists`` and ``accounts`` (None: none made)
    are for tests and benches; by default the real lifecycle, host, passwd database and
    accounts (:class:`HostAccounts`) are used.
    """
    c = _ClassUp(
        roster,
        name,
        lab,
        spec_path,
        store,
        up_one or _lab_up(store, probe, ready_timeout),
        max_parallel,
        report,
        max_students,
        host,
        account_exists,
        HostAccounts() if accounts == "host" else accounts,
        window,
        ports,
    )
    with cancel.said(lambda: _up_so_far(c)):
        execute(CLASS_UP_STAGES, c, report)
    assert c.plan is not None
    results = tuple(c.results[s.id] for s in roster.students if s.id in c.results)
    return ClassUpResult(name, lab.name, results, c.plan, c.kept)


def _up_so_far(c: _ClassUp) -> str:
    """How far an interrupted ``class up`` got."""
    if c.box is None:
        return f"class {c.name}: interrupted before any lab was started"
    seats = c.box.state.seats
    up = sum(1 for s in c.roster.students if seats[s.id].outcome == UP)
    return f"class {c.name}: interrupted with {up} of {len(c.roster.students)} labs up"


# -- down -------------------------------------------------------------------------------------


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
        if c.forget and records.stored(state.name, c.only):
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
    if progress.is_dir() and any(progress.glob("*.json*")):
        return True
    if inst.path.is_dir():
        for leftover in ("lock", "lock.holder"):
            (inst.path / leftover).unlink(missing_ok=True)
        if progress.is_dir():
            for f in progress.iterdir():
                f.unlink()
            progress.rmdir()
        try:
            inst.path.rmdir()
        except OSError:
            return True  # something else is in it: not ours to remove
    return False


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
        raise _forgot_but(c, exc) from exc


def _targets(c: _ClassDown) -> list[records.Target]:
    """Whose records to forget: each student whose lab this run removed, and the class's
    seats in the store whose lab went before; never one whose lab is still there."""
    lab = c.state.state.lab
    tried = {s.student for s in c.seats} | set(c.state.state.seats)
    gone = [records.Target(d.student, lab, d.instance) for d in c.done]
    earlier = [t for t in records.stored(c.folder.name, c.only) if t.student not in tried]
    return gone + earlier


def _records(c: _ClassDown) -> None:
    if c.forget:
        c.forgotten = records.forget(c.folder.name, _targets(c))
        c.done = [replace(d, progress_kept=False) for d in c.done]


def _forgot_but(c: _ClassDown, exc: LabctlError) -> LabctlError:
    """A lab not removed: the others' records forgotten, that student's kept, and said."""
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
    return LabctlError(exc.message, f"{exc.hint}. {hint}" if exc.hint else hint, exc.code)


def _down_accounts(c: _ClassDown) -> None:
    if c.accounts is None:
        return
    for seat in c.seats:
        c.accounts.remove(seat.student, c.folder.name)


def _forget(c: _ClassDown) -> None:
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
    Stage("forget", _forget, silent=True),
)


def down(
    folder: ClassDir,
    student: str | None = None,
    report: Reporter = quiet,
    down_one: Callable[[str, str], list[str]] | None = None,
    accounts: Accounts | None | Literal["host"] = "host",
) -> list[SeatDown]:
    """Remove the class's labs (or one student's), accounts and keys; the state last.

    A class not here (never made, or taken down already) is left alone: nothing is removed,
    not even a lock file is made for it.
    """
    return take_down(folder, student, report, down_one, accounts).seats


@dataclass(frozen=True)
class ClassDown:
    """What ``class down`` did: each student's removal, and what ``forget`` removed of the
    progress store (None: not asked)."""

    seats: list[SeatDown]
    forgotten: Forgotten | None = None


def take_down(
    folder: ClassDir,
    student: str | None = None,
    report: Reporter = quiet,
    down_one: Callable[[str, str], list[str]] | None = None,
    accounts: Accounts | None | Literal["host"] = "host",
    forget: bool = False,
) -> ClassDown:
    """:func:`down`, and with ``forget`` the records (``classroom.forget``) of every
    student whose lab is gone, in one transaction of the store, after the labs and accounts.

    A lab that could not be removed keeps its student's records (the error says so); the
    others' are forgotten. A class not here with ``forget``: the store's seats of it (or of
    ``student``) are forgotten, since its labs went before.
    """
    if folder.load() is None:
        if not forget:
            return ClassDown([])
        return ClassDown([], records.forget(folder.name, records.stored(folder.name, student)))
    c = _ClassDown(
        folder,
        student,
        report,
        down_one or (lambda lab, i: lifecycle.down(lab, i)),
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


__all__ = [
    "CLASS_DOWN_STAGES",
    "CLASS_UP_STAGES",
    "Accounts",
    "HostAccounts",
    "ClassDown",
    "ClassUpResult",
    "account_check",
    "check_roster",
    "SeatDown",
    "SeatResult",
    "down",
    "take_down",
    "up",
]
