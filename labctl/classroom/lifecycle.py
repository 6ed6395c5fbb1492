"""``class up`` as a stage list on the same executor as a lab's ``up`` (``class down``:
``classroom.down``).

``class up`` validates the roster against the host, takes the class's lock, refuses an
overcommit, gives each student a seat slot (``slots``: their ports' source, kept on a rerun),
writes the class state (every student pending) before anything exists, creates
the students' accounts, then runs each student's own ``lab.lifecycle.up`` with at most
``max_parallel`` at a time. A student's failure is recorded with its reason and the others
go on; a rerun finishes what is missing. Interrupted (Ctrl-C), it says how far it got; the
same command again resumes it.
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
from labctl.classroom.state import FAILED, UP, Box, ClassDir, ClassState, seat_of
from labctl.console import plural
from labctl.errors import LabctlError
from labctl.exercises.model import load_exercises
from labctl.exercises.progress import now
from labctl.i18n import Lang
from labctl.images.cache import ImageStore
from labctl.instance.state import InstanceDir
from labctl.lab import lifecycle
from labctl.lab import plan as lab_plan
from labctl.lab.accel import KvmProbe
from labctl.spec.model import Lab
from labctl.stages import Reporter, Stage, execute, quiet


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
    found again for each student); ``lang``: the sheets' language.
    """

    def __init__(self, server: str | None = None, lang: Lang = "en") -> None:
        self.server, self.lang = server, lang

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
            lang=self.lang,
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
    lang: Lang | None = None  # the access sheets' language (None: the class's own kept)
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
    state = exam.with_ends(replace(state, roster=str(Path(c.roster.path).resolve())), c.window)
    state = replace(state, lang=c.lang or state.lang)
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
    lang: Lang | None = None,
) -> ClassUpResult:
    """Bring up one lab instance per student of ``roster``; resumable, failures per student.

    ``window``: the exam window's ends to set (see ``classroom.window.given``); an end not
    given keeps the class's own; ``lang``, the access sheets' language, likewise. Each
    student gets a seat slot (``classroom.slots``), their ports' source. ``up_one`` (a
    student's ``lab.lifecycle.up``), ``host``, ``ports`` (what the class's ports keep clear
    of), ``account_exists`` and ``accounts`` (None: none made) are for tests and benches; by
    default the real lifecycle, host, passwd database and accounts (:class:`HostAccounts`)
    are used.
    """
    lang = lang or ClassDir(name).lang(None)  # the sheets': the class's own, if not given
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
        HostAccounts(lang=lang) if accounts == "host" else accounts,
        window,
        ports,
        lang,
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


__all__ = [
    "CLASS_UP_STAGES",
    "Accounts",
    "HostAccounts",
    "ClassUpResult",
    "account_check",
    "check_roster",
    "SeatResult",
    "up",
]
