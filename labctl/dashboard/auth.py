"""Who may see the dashboard: the instructor's token, each student's, sessions and CSRF.

``class serve`` makes a new instructor token every time it starts, prints it once and keeps
only its SHA-256 (tokens are 192 random bits: a slow hash would add nothing) in
``<class>/dashboard-tokens.json`` (root only). Each student gets a token of their own, written
into their access sheet (``access/<student>.txt``, root only like the rest of the sheet) and kept
hashed beside the instructor's; a student's token opens their own page and nothing else.

A browser logs in once with the token and gets a session cookie (HttpOnly, SameSite=Strict);
scripts send ``Authorization: Bearer TOKEN``. Forms that change something carry a CSRF token
bound to the session (an HMAC of the session id with a secret that lives as long as the
server).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from labctl.classroom.state import Seat
from labctl.i18n import Lang, tr
from labctl.private import private_dir, read_saved, write_private

INSTRUCTOR, STUDENT = "instructor", "student"
TOKENS_FILE = "dashboard-tokens.json"
#: the access sheet's section about the progress page, by language; it starts with ``--- ``
#: so that a sheet ``class up`` writes anew keeps it (``classroom.sheet``'s appendix)
SECTIONS = {
    "en": "--- progress page (labctl class serve) ---",
    "es": "--- página de progreso (labctl class serve) ---",
}
TOKEN_LINES = {"en": "Progress page token: ", "es": "Token de la página de progreso: "}


def sheet_token(text: str) -> str | None:
    """The progress page token written in an access sheet (in either language), or None."""
    for line in text.splitlines():
        for label in TOKEN_LINES.values():
            if line.startswith(label):
                return line[len(label) :].strip() or None
    return None


def with_section(
    text: str, url: str, token: str, ssh_host: str | None = None, lang: Lang = "en"
) -> str:
    """The sheet with its progress page section (replacing an older one, in either language)
    at the end, in ``lang``.

    A page served on the server's loopback is reached from a laptop through an SSH tunnel:
    through ``ssh_host`` when the sheet's ssh_config defines that ``Host``.
    """
    kept = text
    for heading in SECTIONS.values():
        kept = kept.split(heading)[0]
    kept = kept.rstrip("\n")
    section = [
        SECTIONS[lang],
        tr(
            lang,
            f"Tu página de progreso: {url} (entra con este token; solo muestra tu trabajo)",
            f"Your progress page: {url} (log in with this token; it shows your own work only)",
        ),
        f"{TOKEN_LINES[lang]}{token}",
    ]
    parts = urlsplit(url)
    if parts.port and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        port, there = parts.port, "[::1]" if parts.hostname == "::1" else "127.0.0.1"
        tunnel = f"ssh -N -L {port}:{there}:{port}"
        if ssh_host and f"Host {ssh_host}\n" in kept:  # the sheet's own ssh_config defines it
            how = tr(lang, "desde tu portátil, ", "from your laptop, ") + f"{tunnel} {ssh_host}"
        else:  # a sheet labctl made for the token alone: no account of the student's here
            how = tr(
                lang,
                f"pide a tu profesor un acceso; luego, desde tu portátil, {tunnel} TU@SERVIDOR",
                f"ask your instructor for a way in, then from your laptop {tunnel} YOU@SERVER",
            )
        section.append(
            tr(
                lang,
                f"La página solo se abre en el propio servidor (127.0.0.1): {how}, y abre "
                f"http://127.0.0.1:{port}/",
                f"It listens on the server's loopback: {how}, then open http://127.0.0.1:{port}/",
            )
        )
    return (kept + "\n\n" if kept else "") + "\n".join(section) + "\n"


def new_token() -> str:
    """A fresh token: 32 URL-safe characters, never starting with ``-`` (a command line would
    read it as an option)."""
    while (token := secrets.token_urlsafe(24)).startswith("-"):
        pass
    return token


def digest(token: str) -> str:
    """What is stored of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Who:
    """Whoever a request speaks for."""

    role: str  # instructor | student
    student: str | None = None

    @property
    def instructor(self) -> bool:
        """The instructor sees and does everything."""
        return self.role == INSTRUCTOR

    def may_see(self, student: str) -> bool:
        """The instructor sees every student; a student only themselves."""
        return self.instructor or self.student == student


@dataclass(frozen=True)
class TokenBook:
    """The hashes of the tokens that open the dashboard."""

    instructor: str | None = None
    students: dict[str, str] = field(default_factory=dict)

    def who(self, token: str) -> Who | None:
        """Whose token this is, or None (compared in constant time)."""
        d = digest(token)
        if self.instructor and hmac.compare_digest(d, self.instructor):
            return Who(INSTRUCTOR)
        for student, h in self.students.items():
            if hmac.compare_digest(d, h):
                return Who(STUDENT, student)
        return None


def _parse_book(text: str) -> TokenBook:
    data = json.loads(text)
    return TokenBook(data.get("instructor"), dict(data.get("students", {})))


class TokenFile:
    """``<class>/dashboard-tokens.json``: the hashes, root only."""

    def __init__(self, class_root: Path) -> None:
        self.root = class_root
        self.path = class_root / TOKENS_FILE

    def load(self) -> TokenBook:
        """The stored hashes (an empty book when there are none yet)."""
        book = read_saved(
            self.path,
            _parse_book,
            f"dashboard token file {self.path}",
            "remove it: the next `labctl class serve` makes new tokens",
        )
        return book if book is not None else TokenBook()

    def save(self, book: TokenBook) -> None:
        """Write the hashes atomically, 0600."""
        private_dir(self.root)
        text = json.dumps({"instructor": book.instructor, "students": book.students}, indent=2)
        write_private(self.path, text + "\n")

    def new_instructor(self) -> str:
        """Make the instructor's token, store its hash, return it (shown once)."""
        token = new_token()
        book = self.load()
        self.save(TokenBook(digest(token), book.students))
        return token

    def ensure_students(
        self,
        seats: tuple[Seat, ...],
        url: str,
        ssh_host: str | None = None,
        lang: Lang = "en",
        make: bool = True,
    ) -> list[str]:
        """Give every student whose sheet has no valid token a new one; their ids.

        The token goes into the student's access sheet (``access/<student>.txt``, made if
        labctl made no account); students no longer in the class lose theirs. ``ssh_host``
        and ``lang`` (the sheets'): see :func:`with_section`. ``make=False`` only says each
        valid token's section again (``class up`` while a server runs, which knows the
        tokens it started with): nobody gets or loses one.
        """
        book = self.load()
        hashes = {s: h for s, h in book.students.items() if any(x.student == s for x in seats)}
        made = []
        folder = private_dir(self.root / "access")
        for seat in seats:
            path = folder / f"{seat.student}.txt"
            text = path.read_text() if path.is_file() else ""
            token = sheet_token(text)
            if token is not None and hashes.get(seat.student) == digest(token):
                again = with_section(text, url, token, ssh_host, lang)
                if again != text:  # same token, a new address
                    write_private(path, again)
                continue
            if not make:
                continue
            token = new_token()
            hashes[seat.student] = digest(token)
            write_private(path, with_section(text, url, token, ssh_host, lang))
            made.append(seat.student)
        if make:
            self.save(TokenBook(book.instructor, hashes))
        return made


class Sessions:
    """Logged-in browsers: a random session id per login, kept in memory with its CSRF key."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._who: dict[str, Who] = {}
        self._lock = threading.Lock()

    def open(self, who: Who) -> str:
        """A new session for ``who``; its id goes into the cookie."""
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._who[sid] = who
        return sid

    def get(self, sid: str) -> Who | None:
        """Whose session this is, or None."""
        with self._lock:
            return self._who.get(sid)

    def close(self, sid: str) -> None:
        """Log out."""
        with self._lock:
            self._who.pop(sid, None)

    def csrf(self, sid: str) -> str:
        """The CSRF token of a session (what its forms carry)."""
        return hmac.new(self._secret, sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str, token: str) -> bool:
        """The form's CSRF token belongs to this session."""
        return hmac.compare_digest(self.csrf(sid), token)
