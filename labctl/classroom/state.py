"""A class's state file: its lab, its roster and each student's seat, written atomically.

``<state>/classes/<class>/class.json``, readable by root only, changed under
``<state>/classes/<class>/class.lock`` (the folder also holds the students' access sheets,
``classroom.accounts``). It is written before any student's lab is created and
after every student's outcome, so a rerun of ``class up`` knows whom to finish and ``class
down`` whom to remove, and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from labctl.classroom.roster import Student, check_class
from labctl.errors import ExitCode, LabctlError
from labctl.i18n import Lang, detect
from labctl.paths import state_dir, within
from labctl.private import SavedState, locked, private_dir, read_saved, write_private

PENDING, UP, FAILED = "pending", "up", "failed"
#: ``class down`` removed the student's lab; their seat goes when the whole down has run
DOWN = "down"


@dataclass(frozen=True)
class Seat:
    """One student of the class: who, which instance, and what the last ``class up`` did."""

    student: str
    name: str
    instance: str
    email: str | None = None
    ssh_key: str | None = None
    outcome: str = PENDING  # pending -> up | failed; down: removed by an unfinished class down
    error: str | None = None
    seconds: float | None = None
    updated_at: str | None = None
    host: str | None = None  # the lab host running the lab (a class over several hosts)
    #: unique in the class on this server, kept while the seat is (``classroom.slots``)
    slot: int | None = None


@dataclass(frozen=True)
class ClassState:
    """A class: its name, its lab, the roster it came from, its seats by student id."""

    name: str
    lab: str
    spec_path: str
    roster: str
    seats: dict[str, Seat] = field(default_factory=dict)
    #: the exam window (ISO 8601, UTC), see ``classroom.window``; None: always open
    window_start: str | None = None
    window_end: str | None = None
    lang: Lang = "en"  # the access sheets' language (``class up --lang``)

    def with_seat(self, seat: Seat) -> ClassState:
        """A copy with ``seat`` replacing the seat of the same student."""
        return replace(self, seats={**self.seats, seat.student: seat})

    def without(self, student: str) -> ClassState:
        """A copy without the student's seat."""
        return replace(self, seats={k: v for k, v in self.seats.items() if k != student})

    def to_json(self) -> str:
        """Serialise for the state file."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ClassState:
        """Read a state file's content."""
        data = json.loads(text)
        data["seats"] = {k: Seat(**v) for k, v in data.get("seats", {}).items()}
        return cls(**data)


def seat_of(student: Student, instance: str) -> Seat:
    """A new, pending seat for a roster row."""
    return Seat(student.id, student.name, instance, student.email, student.ssh_key)


class NoClass(LabctlError):
    """No class of that name is up. Exit 2: nothing could run."""

    code = ExitCode.NOTHING_RAN


class ClassDir:
    """Where the state of one class is kept."""

    def __init__(self, name: str, root: Path | None = None) -> None:
        self.name = check_class(name)
        self.root = within((root or state_dir()) / "classes", name)
        self.path = self.root / "class.json"

    def load(self) -> ClassState | None:
        """The class's state, or None when there is no such class."""
        return read_saved(
            self.path,
            ClassState.from_json,
            f"class state file {self.path}",
            "its students' labs are still labelled: `labctl down --lab LAB --instance "
            f"{self.name}-ID` removes each; then remove the file",
        )

    def lang(self, given: str | None) -> Lang:
        """The language of the class's access sheets: ``given`` (``--lang``) if any, else the
        class's own on a rerun, else the locale's."""
        if given:
            return detect(given)
        cls = self.load()
        return cls.lang if cls is not None else detect(None)

    def load_for(self, lab: str) -> ClassState | None:
        """The class's state, or None; refused (nothing done) when the class runs another lab."""
        previous = self.load()
        if previous is not None and previous.lab != lab:
            raise self.taken(f"class {self.name} runs lab {previous.lab}, not {lab}")
        return previous

    def taken(self, message: str) -> LabctlError:
        """The class exists as something a command cannot change into (exit 2: nothing done)."""
        return LabctlError(
            message,
            f"take it down first (labctl class down --class {self.name}) or use another --class",
            ExitCode.USAGE,
        )

    def require(self) -> ClassState:
        """The class's state, or an error saying there is no such class."""
        state = self.load()
        if state is None:
            others = classes(self.root.parent.parent)  # <state>/classes/<name>
            raise NoClass(
                f"there is no class {self.name!r} on this host",
                f"classes here: {', '.join(others)}"
                if others
                else f"labctl class up ROSTER [LAB] --class {self.name} brings one up",
            )
        return state

    def save(self, state: ClassState) -> None:
        """Write atomically, readable by root only."""
        private_dir(self.root)
        write_private(self.path, state.to_json())

    def remove(self) -> None:
        """Forget the class (its labs and accounts are gone), and its folder.

        Every file in the folder is the class's: its state and lock, what its dashboard kept
        (tokens, the server's record), a fleet's record and Ansible log, the access sheets.
        A folder inside it that is not ``access`` is left (and with it the class's folder).
        """
        for folder in (self.root / "access", self.root):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if entry.is_file() or entry.is_symlink():
                    entry.unlink(missing_ok=True)
            try:
                folder.rmdir()
            except OSError:
                pass  # a folder in it that labctl did not make

    @contextmanager
    def locked(self, command: str, wait: float = 30.0) -> Iterator[None]:
        """Hold the class's lock: one ``class up``/``down``/``reset`` at a time per class."""
        private_dir(self.root)

        def refuse() -> LabctlError:
            return LabctlError(
                f"another labctl has been working on class {self.name} for {wait:g} s",
                f"wait for it to finish, then run {command} again",
            )

        with locked(self.root / "class.lock", wait, refuse):
            yield

    @contextmanager
    def held(self, command: str) -> Iterator[ClassState]:
        """The state of a class that exists, under its lock (see :meth:`locked`).

        A class not here raises :class:`NoClass` before its lock's folder is made.
        """
        self.require()
        with self.locked(command):
            yield self.require()  # it may have gone while this waited for the lock


def classes(root: Path | None = None) -> list[str]:
    """The names of every class on this host."""
    folder = (root or state_dir()) / "classes"
    return sorted(p.parent.name for p in folder.glob("*/class.json")) if folder.is_dir() else []


def pick(name: str | None, root: Path | None = None) -> ClassDir:
    """The class named, or the only class on this host."""
    if name is not None:
        return ClassDir(name, root)
    found = classes(root)
    if len(found) == 1:
        return ClassDir(found[0], root)
    if not found:
        raise NoClass("there is no class on this host", "labctl class up ROSTER [LAB]")
    raise LabctlError(
        f"{len(found)} classes on this host: {', '.join(found)}",
        "say which with --class NAME",
        ExitCode.USAGE,
    )


class Box(SavedState[ClassState]):
    """The class state shared by worker threads; every change is saved at once."""

    def put(self, seat: Seat) -> None:
        """Replace one seat and save."""
        self.change(lambda state: state.with_seat(seat))

    def drop(self, student: str) -> None:
        """Remove one seat and save."""
        self.change(lambda state: state.without(student))
