"""One Linux account per student on the lab server, made by labctl and removed only by it.

The interface ``class up`` and ``class down`` call (as root)::

    account = ensure_account("ana07", "Ana García", "ssh-ed25519 AAAA... ana@laptop", "redes",
                             lab="virtualization", instance="ana07")
    account.user, account.sheet   # 'ana07', <state>/classes/redes/access/ana07.txt
    remove_account("ana07", "redes")            # True: removed; False: labctl had none to remove

``ensure_account`` is idempotent (a rerun after an interruption finishes the job) and:

- refuses a student id that names an account labctl did not create for this class (``root``,
  an employee, a student of another class): such an account is never taken over or reused;
- creates the account with ``useradd`` (home 0700, password locked: only SSH keys log in), its
  GECOS "other" field saying ``labctl class <class>`` (a hint for people; the record below is
  what labctl trusts, since only root writes it);
- records it first in the host-wide, root-only registry ``<state>/accounts/<user>.json``
  (student, class, lab, instance, uid, key): this record is what makes it labctl's
  (``owned(user, class)`` asks it);
- authorises the roster's SSH key, or generates a key pair whose private half goes into the
  instructor's access sheet ``<state>/classes/<class>/access/<student>.txt`` (0600, in 0700
  directories), with an ``ssh_config`` snippet for the student's laptop;
- binds the account to one lab instance: the privileged entry point (``access.py``) runs
  commands for that instance only; the sudo rule that opens it lists exactly the accounts of
  the registry (``sudo.sync``, after every change).

``remove_account`` removes exactly what ``ensure_account`` made: the account (``userdel -r``)
only while its uid is still the recorded one, then the sheet, the generated key and the record.
"""

from __future__ import annotations

import json
import pwd
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from labctl import procs
from labctl.classroom import sheet, sudo
from labctl.classroom.homes import authorize
from labctl.classroom.roster import key_problem
from labctl.classroom.server import find as find_server
from labctl.errors import HostError, LabctlError, SpecError
from labctl.i18n import Lang
from labctl.instance import isolation
from labctl.instance.naming import DEFAULT_LAB, check_instance, check_lab_name, matching
from labctl.keys import ensure_keypair
from labctl.paths import state_dir, within
from labctl.private import locked, private_dir, write_private

#: what ``useradd`` accepts without ``--badname``, kept to 32 characters (``ls -l`` columns)
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
CLASS_RE = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
MARK = "labctl class"
SHELL = "/bin/bash"

# ---- the boundary: the user database and the commands that change it ----------------------


@dataclass(frozen=True)
class PasswdEntry:
    """The fields of a passwd entry labctl looks at."""

    name: str
    uid: int
    gid: int
    gecos: str
    home: Path


class System:
    """The host's user database and its commands (``useradd``, ``userdel``, ``pkill``).

    Unit tests hand a fake with the same two methods.
    """

    def lookup(self, user: str) -> PasswdEntry | None:
        """The account ``user``, or None when there is none."""
        try:
            p = pwd.getpwnam(user)
        except KeyError:
            return None
        return PasswdEntry(p.pw_name, p.pw_uid, p.pw_gid, p.pw_gecos, Path(p.pw_dir))

    def run(self, argv: Sequence[str]) -> None:
        """Run a host command; a failure is a :class:`HostError` with its output."""
        procs.run(argv, error=HostError, timeout=120)

    def sync_access(self, users: list[str]) -> None:
        """Let exactly ``users`` through the students' sudo rule (:func:`sudo.sync`)."""
        sudo.sync(users)

    def kill(self, uid: int) -> None:
        """End every process of ``uid`` (``userdel`` refuses to remove a user still running)."""
        # pkill exits 1 when nothing matched: that is the goal, not a failure.
        argv = ["pkill", "--signal", "KILL", "--uid", str(uid)]
        proc = procs.run(argv, error=HostError, check=False)
        if proc.returncode not in (0, 1):
            raise HostError(f"pkill --uid {uid} failed with exit code {proc.returncode}")


# ---- the registry --------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """A student's account on this server, as labctl recorded it.

    ``uid`` is None only between the record and ``useradd`` (an interrupted ``class up``);
    ``key`` says where the authorised key came from: ``roster`` or ``generated`` (then the
    private half is in ``sheet``).
    """

    user: str
    student: str
    full_name: str
    class_name: str
    lab: str
    instance: str
    uid: int | None
    key: str
    public_key: str
    created_at: str
    server: str | None = None  # what the students' laptops call this host (the sheet's)
    lang: Lang = "en"  # the language of the sheet (the class's, ``class up --lang``)

    @property
    def sheet(self) -> Path:
        """The instructor's access sheet for this student (0600)."""
        return access_dir(self.class_name) / f"{self.student}.txt"

    @property
    def private_key(self) -> Path:
        """Where a generated private key is kept (root only) until the class is removed."""
        return access_dir(self.class_name) / f"{self.student}_ed25519"

    def to_json(self) -> str:
        """The registry file's content."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)


def registry_dir() -> Path:
    """``<state>/accounts``: one record per account labctl created, host-wide."""
    return state_dir() / "accounts"


def class_dir(class_name: str) -> Path:
    """``<state>/classes/<class>``: what labctl keeps about one class (root only)."""
    return within(state_dir() / "classes", check_class_name(class_name))


def server_name() -> str:
    """What students' laptops call this server: ``LABCTL_SERVER`` (the instructor's, or set
    by a controller that placed the class over several hosts: the inventory's address), else
    labctl's guess (:func:`labctl.classroom.server.find`: never a loopback name if the host
    has an address on its default route)."""
    return find_server().name


def access_dir(class_name: str) -> Path:
    """The class's access sheets and generated keys: for the instructor's eyes only."""
    return class_dir(class_name) / "access"


def record(user: str) -> Account | None:
    """labctl's record of the account ``user``, or None when labctl never created it."""
    path = within(registry_dir(), f"{user}.json")
    try:
        data = json.loads(path.read_text())
        return Account(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise LabctlError(
            f"account record {path} is damaged: {exc}",
            "fix or remove it by hand; labctl will not guess whose account this is",
        ) from exc


def records() -> list[Account]:
    """Every account labctl created on this host, by user name."""
    directory = registry_dir()
    if not directory.is_dir():
        return []
    found = (record(p.stem) for p in sorted(directory.glob("*.json")))
    return [a for a in found if a is not None]


def _save(account: Account) -> None:
    write_private(within(private_dir(registry_dir()), f"{account.user}.json"), account.to_json())


@contextmanager
def _registry_lock() -> Iterator[None]:
    """One account change at a time (``class up`` creates accounts in parallel)."""

    def refuse() -> LabctlError:
        return LabctlError("another labctl is changing student accounts", "wait and run again")

    with locked(private_dir(registry_dir()) / "lock", 120.0, refuse):
        yield


# ---- checks --------------------------------------------------------------------------------


def check_class_name(name: str) -> str:
    """Validate a class name (it names a directory and appears in accounts' GECOS)."""
    return matching(
        name,
        CLASS_RE,
        f"class name {name!r} is not valid",
        "use 1-24 lowercase letters, digits and dashes, starting with a letter",
    )


def check_user(student: str) -> str:
    """A student id usable as a Linux user name, or a :class:`SpecError` saying why not."""
    return matching(
        student,
        USER_RE,
        f"student id {student!r} cannot be a Linux user name",
        "use 1-32 lowercase letters, digits, dashes or underscores, starting with a letter",
    )


def check_public_key(line: str) -> str:
    """One OpenSSH public key line (type, base64, optional comment), or a :class:`SpecError`."""
    line = line.strip()
    if not line or "\n" in line or "\r" in line:
        raise SpecError("the SSH public key must be one line", "paste the content of id_*.pub")
    # the roster's own rule, so a key the roster took (a FIDO sk- key too) is taken here
    problem = key_problem(line)
    if problem is not None:
        raise SpecError(f"not an SSH public key: {line[:40]}...", problem)
    return line


def _gecos(full_name: str, class_name: str) -> str:
    # ':' ends a passwd field and ',' a GECOS subfield: neither may come from a roster.
    name = re.sub(r"[:,\s]+", " ", full_name).strip()
    return f"{name},,,,{MARK} {class_name}"


def made_by_labctl(uid: int) -> bool:
    """True when the account ``uid`` says (in its GECOS) labctl made it for a class.

    What the account's own ``labctl`` asks to refuse the instructor's commands kindly; not a
    safeguard (sudo's rule and the entry point are).
    """
    try:
        return _marked_class(pwd.getpwuid(uid).pw_gecos) is not None
    except KeyError:
        return False


def _marked_class(gecos: str) -> str | None:
    """The class labctl's mark in a GECOS names (its fifth field), or None: no mark."""
    mark = (gecos.split(",")[4:5] or [""])[0]
    return mark.removeprefix(f"{MARK} ") if mark.startswith(f"{MARK} ") else None


def marked(entry: PasswdEntry, class_name: str) -> bool:
    """True when the account's GECOS says labctl created it for ``class_name``."""
    return _marked_class(entry.gecos) == class_name


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---- create and remove ---------------------------------------------------------------------


def ensure_account(
    student_id: str,
    full_name: str,
    ssh_public_key: str | None,
    class_name: str,
    *,
    lab: str = DEFAULT_LAB,
    instance: str | None = None,
    server: str | None = None,
    system: System | None = None,
    lang: Lang = "en",
) -> Account:
    """Create (or find, on a rerun) the student's account; see the module's docstring.

    ``instance`` defaults to ``<class>-<student>`` (as ``roster.instance_of``); ``server``
    (what students' laptops call this host in the ssh_config snippet) to :func:`server_name`
    now, not to the record's: ``class up`` again with another ``LABCTL_SERVER`` rewrites the
    sheet. Raises
    :class:`SpecError` for a bad id, key or name and :class:`HostError` when the account
    exists but is not labctl's for this class, or a command fails.
    """
    user = check_user(student_id)
    check_class_name(class_name)
    check_lab_name(lab)
    instance = check_instance(instance or f"{class_name}-{student_id}")
    key = check_public_key(ssh_public_key) if ssh_public_key else None
    sys_ = system or System()
    with _registry_lock():
        account = _claim(user, full_name, key, class_name, lab, instance, sys_, server, lang)
        entry = sys_.lookup(user)
        if entry is None:
            sys_.run(_useradd(user, full_name, class_name))
            entry = sys_.lookup(user)
            if entry is None:
                raise HostError(f"useradd {user} succeeded but there is no account {user}")
            account = _replace(account, uid=entry.uid)
            _save(account)
        # confined before the key lets the student in: no lab is theirs yet
        isolation.admit(lab, instance, entry.uid)
        authorize(entry, account.public_key)
        write_sheet(account)
        sys_.sync_access(_students())
        return account


def _claim(
    user: str,
    full_name: str,
    key: str | None,
    class_name: str,
    lab: str,
    instance: str,
    sys_: System,
    server: str | None = None,
    lang: Lang = "en",
) -> Account:
    """The account's record, written before ``useradd``; refuses accounts that are not ours."""
    mine = record(user)
    entry = sys_.lookup(user)
    if mine is not None and mine.class_name != class_name:
        raise HostError(
            f"account {user} belongs to class {mine.class_name}, not to {class_name}",
            f"one account per student id on a host: remove class {mine.class_name} first, "
            "or give this student another id",
        )
    if entry is not None and (mine is None or not _ours(mine, entry, class_name)):
        raise HostError(
            f"student id {user} is already an account on this host that labctl did not "
            f"create for class {class_name} (uid {entry.uid}, {entry.gecos or 'no GECOS'})",
            "labctl never takes over an existing account: give this student another id "
            "in the roster",
        )
    if key is None:
        pair = ensure_keypair(
            private_dir(access_dir(class_name)) / f"{user}_ed25519",
            f"{user}@labctl-{class_name}",
        )
        public, source = pair.public_line, "generated"
    else:
        public, source = key, "roster"
    account = Account(
        user=user,
        student=user,
        full_name=full_name,
        class_name=class_name,
        lab=lab,
        instance=instance,
        uid=entry.uid if entry is not None else None,
        key=source,
        public_key=public,
        created_at=mine.created_at if mine is not None else _now(),
        # what class up says now, not an earlier run's (a rerun is how the name is changed);
        # the record keeps it for the sheets rewritten later (reach.admit)
        server=server or server_name(),
        lang=lang,
    )
    if account != mine:
        _save(account)
    return account


def _replace(account: Account, **changes: object) -> Account:
    return Account(**{**asdict(account), **changes})


def _useradd(user: str, full_name: str, class_name: str) -> list[str]:
    # --password '!': locked (never a password login); the home is made by useradd from
    # /etc/skel and tightened to 0700 by _authorize. No subordinate uids or gids: with a
    # range, a user namespace would let the student send packets as uids labctl's firewall
    # does not know (instance/isolation.py matches the account's own uid).
    return [
        "useradd",
        "-K",
        "SUB_UID_COUNT=0",
        "-K",
        "SUB_GID_COUNT=0",
        "--create-home",
        "--shell",
        SHELL,
        "--password",
        "!",
        "--comment",
        _gecos(full_name, class_name),
        user,
    ]


def write_sheet(
    account: Account, hops: tuple[sheet.Hop, ...] = (), forwards: tuple[sheet.Forward, ...] = ()
) -> None:
    """The instructor's access sheet for one student (0600), naming the server as the account
    records it. What was added below the sheet afterwards (the dashboard's token) is kept."""
    private = account.private_key.read_text() if account.key == "generated" else None
    directory = private_dir(access_dir(account.class_name))
    text = sheet.render(account, account.server or server_name(), private, hops, forwards)
    try:
        text += sheet.appendix(account.sheet.read_text())
    except FileNotFoundError:
        pass
    write_private(directory / f"{account.student}.txt", text)


def remove_account(
    student_id: str,
    class_name: str,
    *,
    kill_processes: bool = False,
    system: System | None = None,
) -> bool:
    """Remove the student's account, sheet, generated key and record, if labctl made them.

    Returns False when labctl has no record of such an account for this class (nothing is
    touched). An account whose uid is no longer the recorded one (deleted and made again by
    someone else) is left alone; only the record goes. ``kill_processes`` ends the student's
    processes first (``userdel`` refuses while they run).
    """
    user = check_user(student_id)
    check_class_name(class_name)
    sys_ = system or System()
    with _registry_lock():
        mine = record(user)
        if mine is None or mine.class_name != class_name:
            return False
        entry = sys_.lookup(user)
        if entry is not None and _ours(mine, entry, class_name):
            if kill_processes:
                sys_.kill(entry.uid)
            sys_.run(["userdel", "--remove", user])
            isolation.release(entry.uid)  # the uid may be given to someone else now
        for path in (
            access_dir(class_name) / f"{user}.txt",
            access_dir(class_name) / f"{user}_ed25519",
            access_dir(class_name) / f"{user}_ed25519.pub",
        ):
            path.unlink(missing_ok=True)
        within(registry_dir(), f"{user}.json").unlink()
        sys_.sync_access(_students())
        return True


def _students() -> list[str]:
    """The accounts labctl finished making: those the sudo rule lets in."""
    return [a.user for a in records() if a.uid is not None]


def owned(user: str, class_name: str, system: System | None = None) -> bool:
    """True when the account ``user`` exists and labctl created it for ``class_name``.

    What ``roster.check_accounts`` asks before ``class up`` creates anything.
    """
    mine = record(user)
    entry = (system or System()).lookup(user)
    return mine is not None and entry is not None and _ours(mine, entry, class_name)


def _ours(mine: Account, entry: PasswdEntry, class_name: str) -> bool:
    """The account is the one recorded: same class and uid (or marked, if useradd was cut)."""
    if mine.class_name != class_name:
        return False
    return entry.uid == mine.uid or (mine.uid is None and marked(entry, class_name))
