"""A class roster: a CSV of students, validated line by line before anything is created.

``id,name[,email][,ssh_key]`` with a header line; UTF-8 (a BOM is fine), LF or CRLF line
ends, names with accents. A student's id names their Linux account and, with the class
name, their lab instance (``<class>-<id>``), so it must suit both: lowercase, starting with a
letter, short enough that ``labctl-<lab>-<class>-<id>-<guest>`` fits every engine. No two
students share an id, an email (the grades export keys its rows by email) or a public key
(either could log in as the other). Every problem is reported at once, each at ``FILE:LINE``
with what to do.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import pwd
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labctl.errors import LabctlError, SpecError
from labctl.instance import naming

#: A class name: part of every student's instance name (``<class>-<id>``).
CLASS_RE = re.compile(r"^[a-z][a-z0-9]{0,4}$")
MAX_CLASS = 5
#: ``<class>-<id>`` is an instance name: at most naming.MAX_INSTANCE (16) characters.
MAX_ID = naming.MAX_INSTANCE - MAX_CLASS - 1
#: A Linux user name and an instance-name part: no dots or underscores (engines refuse them).
ID_RE = re.compile(rf"^[a-z](?:[a-z0-9-]{{0,{MAX_ID - 2}}}[a-z0-9])?$")
#: More students than one server holds; a larger roster is a mistake (or several servers).
MAX_STUDENTS = 500
MAX_NAME = 100
COLUMNS = ("id", "name", "email", "ssh_key")
REQUIRED = ("id", "name")
#: Public key types OpenSSH accepts in authorized_keys (FIDO keys included).
KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
EMAIL_RE = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
#: Why an id cannot be a student's account of the class, or None (see :func:`account_check`).
AccountCheck = Callable[[str], str | None]
#: Shown with every problem: how a roster must look.
HINT = (
    "a roster is a UTF-8 CSV with the header id,name[,email][,ssh_key]; ids are 1-10 "
    "lowercase letters, digits and dashes starting with a letter (e.g. ana, b-ruiz07)"
)


@dataclass(frozen=True)
class Student:
    """One roster row."""

    id: str
    name: str
    line: int  # where it is in the roster file, for later messages
    email: str | None = None
    ssh_key: str | None = None


@dataclass(frozen=True)
class Roster:
    """A validated roster: students in file order, ids unique."""

    path: str
    students: tuple[Student, ...]

    @property
    def ids(self) -> list[str]:
        """The students' ids, in file order."""
        return [s.id for s in self.students]

    def student(self, student_id: str) -> Student:
        """One student by id, or an error listing the roster's ids."""
        for s in self.students:
            if s.id == student_id:
                return s
        raise SpecError(
            f"no student {student_id!r} in the class roster {self.path}",
            f"students: {', '.join(self.ids[:20])}{' ...' if len(self.ids) > 20 else ''}",
        )


def check_class(name: str) -> str:
    """Validate a class name (it starts every student's instance name)."""
    return naming.matching(
        name,
        CLASS_RE,
        f"class name {name!r} is not valid",
        f"use 1-{MAX_CLASS} lowercase letters and digits starting with a letter, "
        "e.g. --class so24a",
    )


def instance_of(class_name: str, student_id: str) -> str:
    """The lab instance of one student of a class: ``<class>-<id>`` (at most 16 characters)."""
    return naming.check_instance(f"{class_name}-{student_id}")


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a student id, or None."""
    if not value:
        return "the id is empty; give every student an id"
    if len(value) > MAX_ID:
        return (
            f"id {value!r} has {len(value)} characters, at most {MAX_ID} fit "
            f"(it is part of the engine names labctl-<lab>-<class>-{value}-<guest>); shorten it"
        )
    if not ID_RE.match(value):
        return (
            f"id {value!r} is not a valid Linux user name and engine name: use lowercase "
            "letters, digits and dashes, starting with a letter and not ending with a dash"
        )
    return None


#: The base64 of an RSA 4096 key is 716 characters: larger keys would not fit, beside the
#: lab's own key, on a VM's kernel command line (2048 bytes), where labctl passes them.
MAX_KEY_DATA = 800


def key_problem(value: str) -> str | None:
    """Why ``value`` is not one OpenSSH public key line, or None."""
    parts = value.split()
    if len(parts) < 2:
        return "ssh_key is not a public key line (TYPE BASE64 [COMMENT]); paste the .pub file"
    kind, blob = parts[0], parts[1]
    if kind not in KEY_TYPES:
        if "PRIVATE KEY" in value:
            return "ssh_key holds a PRIVATE key; paste the .pub file instead and keep the key"
        return f"ssh_key type {kind!r} is not one OpenSSH accepts ({', '.join(sorted(KEY_TYPES))})"
    try:
        raw = base64.b64decode(blob, validate=True)
        (size,) = struct.unpack(">I", raw[:4])
        inner = raw[4 : 4 + size].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        return "ssh_key's key data is not valid base64 of a key; paste the whole .pub line"
    if inner != kind:
        return f"ssh_key says {kind} but its data is a {inner or 'damaged'} key; paste it again"
    if len(blob) > MAX_KEY_DATA:
        return (
            "ssh_key is too long (an RSA key over 4096 bits): it travels on the VMs' kernel "
            "command line; use an ed25519 key (ssh-keygen -t ed25519)"
        )
    return None


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # a BOM (spreadsheets write one) is dropped
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{path}:{line}: the roster is not UTF-8 (byte {data[exc.start]:#04x})",
            "save it as CSV UTF-8 (your spreadsheet's 'CSV UTF-8' format); " + HINT,
        ) from None


def _header(path: Path, row: list[str], line: int) -> list[str]:
    names = [c.strip().lower() for c in row]
    found = (
        ("unknown column(s) ", [repr(c) for c in names if c not in COLUMNS]),
        ("missing column(s) ", [c for c in REQUIRED if c not in names]),
        ("column(s) named twice: ", sorted({c for c in names if names.count(c) > 1})),
    )
    problems = [what + ", ".join(columns) for what, columns in found if columns]
    if problems:
        raise SpecError(
            f"{path}:{line}: the header {','.join(row)!r} is not valid: {'; '.join(problems)}",
            HINT,
        )
    return names


@dataclass
class _Seen:
    """What the rows read so far hold, by line: a later row holding it again is refused."""

    ids: dict[str, int] = field(default_factory=dict)
    keys: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, base64)
    emails: dict[str, int] = field(default_factory=dict)  # lowercase


def _row(
    cells: dict[str, str], line: int, seen: _Seen, account: AccountCheck | None
) -> tuple[Student | None, list[str]]:
    problems: list[str] = []
    sid = cells.get("id", "")
    bad = id_problem(sid)
    if bad:
        problems.append(bad)
    elif sid in seen.ids:
        problems.append(
            f"id {sid!r} is already the student of line {seen.ids[sid]}; ids are unique"
        )
    else:
        seen.ids[sid] = line  # even when the row has other problems: a later duplicate is one too
        clash = account(sid) if account is not None else None
        if clash:
            problems.append(f"{clash}; give the student another id (e.g. add a digit)")
    name = cells.get("name", "")
    if not name:
        problems.append("the name is empty; give the student's name")
    elif "\n" in name or "\r" in name:  # a quoted cell that runs over a line's end
        problems.append("the name holds a line break; put it on one line")
    elif len(name) > MAX_NAME or any(not c.isprintable() for c in name):
        problems.append(f"the name must be printable text of at most {MAX_NAME} characters")
    email = cells.get("email") or None
    if email is not None and not EMAIL_RE.match(email):
        problems.append(f"email {email!r} is not an address like ana@example.org")
    elif email is not None and email.lower() in seen.emails:
        # the grades export keys its rows by email: an LMS would merge the two students
        problems.append(
            f"email {email!r} is already the address of line {seen.emails[email.lower()]}; "
            "give each student their own (the grades export keys its rows by email)"
        )
    elif email is not None:
        seen.emails[email.lower()] = line
    key = cells.get("ssh_key") or None
    if key is not None:
        bad_key = key_problem(key)
        if bad_key:
            problems.append(bad_key)
        else:
            kind, blob = key.split()[:2]  # another comment does not make another key
            if (kind, blob) in seen.keys:
                problems.append(
                    f"ssh_key is the key of line {seen.keys[kind, blob]} too (comments aside): "
                    "either student could log in as the other; give each student their own key"
                )
            else:
                seen.keys[kind, blob] = line
    if problems:
        return None, problems
    return Student(sid, name, line, email, key), []


def parse(
    path: Path,
    data: bytes,
    max_students: int = MAX_STUDENTS,
    account: AccountCheck | None = None,
) -> Roster:
    """Validate roster bytes; one SpecError listing every problem at ``FILE:LINE``.

    ``account`` (see :func:`account_check`): ids that clash with this host's accounts are
    listed with the other problems (None: not asked here).
    """
    reader = csv.reader(io.StringIO(_decode(path, data), newline=""), strict=True)
    header: list[str] | None = None
    students: list[Student] = []
    seen = _Seen()
    problems: list[str] = []
    rows = 0
    start = 1  # where the record being read begins: a quote left open runs on from there
    try:
        for row in reader:
            line = start  # a record whose quoted cell holds a newline is cited where it begins
            start = reader.line_num + 1
            if not any(c.strip() for c in row):
                continue  # blank lines (a trailing one, say) are not students
            if header is None:
                header = _header(path, row, line)
                continue
            rows += 1
            if rows > max_students:
                raise SpecError(
                    f"{path}:{line}: more than {max_students} students; one server holds fewer",
                    "split the class into several rosters (and classes), or check that the "
                    "file is the roster",
                )
            if len(row) > len(header):
                problems.append(
                    f"{path}:{line}: {len(row)} cells for {len(header)} columns "
                    f"({','.join(header)}); quote a name that holds a comma"
                )
                continue
            cells = {
                h: c.strip() for h, c in zip(header, row, strict=False)
            }  # short rows: empty cells
            student, bad = _row(cells, line, seen, account)
            problems.extend(f"{path}:{line}: {p}" for p in bad)
            if student is not None:
                students.append(student)
    except csv.Error as exc:
        if "end of data" in str(exc):  # the file ended inside a quoted field
            problems.append(
                f"{path}:{start}: not valid CSV: a quote opened on this line is never closed; "
                "close it, or remove it"
            )
        else:
            problems.append(f"{path}:{reader.line_num}: not valid CSV: {exc}")
    if header is None:
        raise SpecError(f"{path}:1: the roster is empty", HINT)
    if not students and not problems:
        raise SpecError(f"{path}: the roster has a header and no students", HINT)
    if problems:
        shown = problems[:25]
        more = f"\n  ... and {len(problems) - 25} more" if len(problems) > 25 else ""
        head = f"{len(problems)} problem(s) in the roster {path}, nothing was created:\n  "
        raise SpecError(head + "\n  ".join(shown) + more, HINT)
    return Roster(str(path), tuple(students))


def load(
    path: Path, max_students: int = MAX_STUDENTS, account: AccountCheck | None = None
) -> Roster:
    """Read and validate a roster file (``account``: as :func:`parse`)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read the roster {path}: {exc.strerror}", HINT) from None
    return parse(path, data, max_students, account)


def account_exists(name: str) -> bool:
    """True when the host has a user account ``name`` (from the passwd database)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def check_size(roster: Roster, max_students: int | None) -> None:
    """Refuse a roster longer than ``--max-students`` (None: no limit given)."""
    if max_students is not None and len(roster.students) > max_students:
        raise LabctlError(
            f"the roster has {len(roster.students)} students, --max-students is {max_students}",
            "bring up part of the class with a shorter roster, or raise --max-students",
        )


def account_check(
    class_name: str,
    exists: Callable[[str], bool] = account_exists,
    ours: Callable[[str, str], bool] = lambda _user, _cls: False,
) -> AccountCheck:
    """Why an id cannot be a student's account of the class, or None: it is an existing
    account that labctl did not make for the class.

    ``ours(user, class)`` says whether labctl created the account for the class (the
    accounts module marks them); any other account (``root``, ``www-data``, a colleague's)
    is never reused as a student's.
    """

    def problem(student_id: str) -> str | None:
        if exists(student_id) and not ours(student_id, class_name):
            return (
                f"id {student_id!r} is an existing account on this host, "
                f"not one labctl made for class {class_name!r}"
            )
        return None

    return problem


def check_accounts(
    roster: Roster,
    class_name: str,
    exists: Callable[[str], bool] = account_exists,
    ours: Callable[[str, str], bool] = lambda _user, _cls: False,
) -> None:
    """Refuse ids that are existing accounts, unless labctl made them for this class
    (see :func:`account_check`)."""
    problem = account_check(class_name, exists, ours)
    clashes = [(s, why) for s in roster.students if (why := problem(s.id)) is not None]
    if clashes:
        lines = "\n  ".join(f"{roster.path}:{s.line}: {why}" for s, why in clashes)
        raise SpecError(
            f"{len(clashes)} student id(s) clash with accounts of this host, nothing was "
            f"created:\n  {lines}",
            "give those students other ids (e.g. add a digit); labctl never takes over an "
            "account it did not create",
        )
