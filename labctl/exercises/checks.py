"""Check kinds, on the pytest-testinfra model: every check is built on one ``run(command)``.

A check gets ``connect(target)``, which returns the :class:`~labctl.connection.Connection` of a
guest or of the host (its ``run``, and ``read_file`` and ``fetch`` built on it), and gives
back a :class:`CheckResult` whose ``detail`` reads like a teacher's note. A check that could
not run at all (guest down, engine error) is ``error``, never a stack trace. Answer checks
live in :mod:`labctl.exercises.answers`.
"""

from __future__ import annotations

import re
import shlex

from labctl.connection import Connection, FetchError, ReadError, shell_path
from labctl.errors import LabctlError
from labctl.exercises.answers import check_answer
from labctl.exercises.model import (
    AnswerCheck,
    Check,
    CommandCheck,
    FileCheck,
    HttpCheck,
    PortCheck,
    ServiceCheck,
)
from labctl.exercises.outcome import (
    CheckError,
    CheckResult,
    Connect,
    Status,
    Verdict,
    failed,
    last_line,
    where,
)
from labctl.i18n import Lang, tr

__all__ = ["CheckError", "CheckResult", "Connect", "Status", "evaluate"]


# ---- command -------------------------------------------------------------------------------


#: a pattern that is only text: characters that mean themselves, punctuation escaped
_TEXT = re.compile(r"(?:\\[^A-Za-z0-9]|[^\\\[\](){}*+?|^$.])*")


def _text_of(pattern: str) -> str | None:
    """What ``pattern`` matches when that is one text (``^/bin/bash$``: ``/bin/bash``);
    None for a pattern that is more than text, which a student should not have to read."""
    body = pattern.removeprefix("^")
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    if not body or not _TEXT.fullmatch(body):
        return None
    return re.sub(r"\\(.)", r"\1", body)


def _expected(pattern: str, lang: Lang) -> str:
    """The end of a failure: what was expected, as text when the pattern is text."""
    text = _text_of(pattern)
    if text is None:
        return tr(lang, "no es lo que se pide", "not what is asked for")
    return tr(lang, f"se esperaba «{text}»", f"expected “{text}”")


def _lacks(pattern: str, lang: Lang) -> str:
    """``does not contain`` what ``pattern`` asks for, as text when it is text."""
    text = _text_of(pattern)
    if text is None:
        return tr(lang, "no contiene lo que se pide", "does not contain what is asked for")
    return tr(lang, f"no contiene «{text}»", f"does not contain “{text}”")


def _shown(command: str, lang: Lang, width: int = 60) -> str:
    """The check's command in backquotes, when it is short enough to read and run again;
    a longer one (the check's plumbing) is named, not shown cut."""
    line = " ".join(command.split())
    if len(line) <= width:
        return f"`{line}`"
    return tr(lang, "la orden de la comprobación", "the check's command")


def _unmatched(pattern: str, text: str) -> str | None:
    """How ``text`` starts (one line, at most 80 characters) when no line of it matches
    ``pattern``; None when one does."""
    if re.search(pattern, text, re.MULTILINE):
        return None
    return " ".join(text.split())[:80]


def check_command(c: CommandCheck, connect: Connect, lang: Lang) -> Verdict:
    """Exit code and/or output of a command."""
    r = connect(c.target).run(c.run)
    cmd, at = _shown(c.run, lang), where(c.target, lang)
    if c.rc is not None and r.rc != c.rc:
        last = last_line(r)
        said = tr(lang, f": «{last}»", f": “{last}”") if last else ""
        return failed(
            lang,
            f"{cmd} {at} terminó con código {r.rc} (se esperaba {c.rc}){said}",
            f"{cmd} {at} exited with {r.rc} (expected {c.rc}){said}",
        )
    if c.stdout is not None and (out := _unmatched(c.stdout, r.stdout)) is not None:
        if not out:
            return failed(
                lang,
                f"{cmd} {at} no escribió nada ({_expected(c.stdout, lang)})",
                f"{cmd} {at} printed nothing ({_expected(c.stdout, lang)})",
            )
        return failed(
            lang,
            f"{cmd} {at} escribió «{out}» ({_expected(c.stdout, lang)})",
            f"{cmd} {at} printed “{out}” ({_expected(c.stdout, lang)})",
        )
    return Verdict(True, tr(lang, "correcto", "correct"))


# ---- file ----------------------------------------------------------------------------------


def check_file(c: FileCheck, connect: Connect, lang: Lang) -> Verdict:
    """Existence, mode, owner and content of a file."""
    conn = connect(c.target)
    at = where(c.target, lang)
    st = conn.run(f"stat -c '%a %U' -- {shell_path(c.path)}")
    if not st.succeeded:
        if not c.exists:
            return Verdict(True, tr(lang, f"{c.path} no existe {at}", f"{c.path} is absent {at}"))
        return failed(lang, f"{c.path} no existe {at}", f"{c.path} does not exist {at}")
    if not c.exists:
        return failed(lang, f"{c.path} todavía existe {at}", f"{c.path} still exists {at}")
    mode, _, owner = st.stdout.strip().partition(" ")
    problems = []
    if c.mode is not None and int(mode or "0", 8) != int(c.mode, 8):
        problems.append(
            tr(
                lang,
                f"{c.path} tiene permisos {mode} y deberían ser {c.mode}",
                f"{c.path} has mode {mode}, expected {c.mode}",
            )
        )
    if c.mode_at_most is not None and int(mode or "0", 8) & ~int(c.mode_at_most, 8):
        problems.append(
            tr(
                lang,
                f"{c.path} tiene permisos {mode}, más de los que permite {c.mode_at_most}",
                f"{c.path} has mode {mode}, more than {c.mode_at_most} allows",
            )
        )
    owners = [c.owner] if isinstance(c.owner, str) else c.owner
    if owners is not None and owner not in owners:
        expected = " o ".join(owners), " or ".join(owners)
        problems.append(
            tr(
                lang,
                f"{c.path} pertenece a {owner} y debería pertenecer a {expected[0]}",
                f"{c.path} belongs to {owner}, expected {expected[1]}",
            )
        )
    if c.contains is not None:
        try:
            content = conn.read_file(c.path)
            why = "" if content is not None else tr(lang, "ya no existe", "it is gone")
        except ReadError as exc:
            content, why = None, exc.reason
        if content is None:
            problems.append(
                tr(
                    lang,
                    f"no se puede leer {c.path}: {why}",
                    f"{c.path} cannot be read: {why}",
                )
            )
        elif not re.search(c.contains, content.decode(errors="replace"), re.MULTILINE):
            problems.append(f"{c.path} {_lacks(c.contains, lang)}")
    if problems:
        return Verdict(False, "; ".join(problems))
    return Verdict(True, tr(lang, f"{c.path} está bien {at}", f"{c.path} is right {at}"))


# ---- service -------------------------------------------------------------------------------


def unit_properties(conn: Connection, name: str, target: str) -> dict[str, str]:
    """LoadState, ActiveState and UnitFileState of a unit, in one ``systemctl show``."""
    props = "-p LoadState -p ActiveState -p UnitFileState"
    r = conn.run(f"systemctl show {props} -- {shlex.quote(name)}")
    if r.rc == 127 or not r.succeeded and "systemctl" in r.stderr:
        raise CheckError(f"{target} has no usable systemctl: {last_line(r)}")
    return dict(line.partition("=")[::2] for line in r.stdout.splitlines() if "=" in line)


def check_service(c: ServiceCheck, connect: Connect, lang: Lang) -> Verdict:
    """A systemd unit: active and/or enabled."""
    props = unit_properties(connect(c.target), c.name, c.target)
    at = where(c.target, lang)
    if props.get("LoadState") == "not-found":
        return failed(
            lang, f"no hay ninguna unidad {c.name} {at}", f"there is no unit {c.name} {at}"
        )
    problems = []
    active = props.get("ActiveState", "?")
    if c.running is not None and (active == "active") != c.running:
        want = tr(lang, "en marcha", "running") if c.running else tr(lang, "parado", "stopped")
        problems.append(
            tr(lang, f"«{active}» (debería estar {want})", f"“{active}” (should be {want})")
        )
    enabled = props.get("UnitFileState") or "?"
    if c.enabled is not None and (enabled == "enabled") != c.enabled:
        want = (
            tr(lang, "habilitado, que arranque solo", "enabled, to start at boot")
            if c.enabled
            else tr(lang, "deshabilitado", "disabled")
        )
        problems.append(
            tr(lang, f"«{enabled}» (debería estar {want})", f"“{enabled}” (should be {want})")
        )
    if problems:
        joined = tr(lang, " y ", " and ").join(problems)
        return failed(lang, f"el servicio {c.name} está {joined}", f"service {c.name} is {joined}")
    return Verdict(
        True, tr(lang, f"{c.name}: {active}, {enabled}", f"{c.name}: {active}, {enabled}")
    )


# ---- port ----------------------------------------------------------------------------------

LISTEN = "0A"


def listening_ports(proc_net_tcp: str) -> dict[int, list[str]]:
    """Listening TCP ports in /proc/net/tcp{,6} text, with the addresses they listen on."""
    ports: dict[int, list[str]] = {}
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != LISTEN or ":" not in fields[1]:
            continue
        addr_hex, _, port_hex = fields[1].rpartition(":")
        try:
            port = int(port_hex, 16)
        except ValueError:
            continue
        ports.setdefault(port, []).append(_addr(addr_hex))
    return ports


def _addr(hex_addr: str) -> str:
    if len(hex_addr) == 8:  # IPv4, little-endian
        return ".".join(str(int(hex_addr[i : i + 2], 16)) for i in (6, 4, 2, 0))
    return "::" if set(hex_addr) == {"0"} else "IPv6"


def check_port(c: PortCheck, connect: Connect, lang: Lang) -> Verdict:
    """Whether a TCP port listens (read from /proc/net, so no tool is needed in the guest)."""
    try:
        port = int(c.port)
    except ValueError:
        raise CheckError(f"port {c.port!r} is not a number") from None
    r = connect(c.target).run("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null")
    found = listening_ports(r.stdout)
    at = where(c.target, lang)
    if port in found:
        addrs = ", ".join(sorted(set(found[port])))
        if c.listening:
            return Verdict(True, tr(lang, f"{port} escucha ({addrs})", f"{port} listens ({addrs})"))
        return failed(
            lang, f"algo escucha en {port} {at} ({addrs})", f"{port} listens {at} ({addrs})"
        )
    if c.listening:
        return failed(
            lang, f"nada escucha en el puerto {port} {at}", f"nothing listens on {port} {at}"
        )
    return Verdict(True, tr(lang, f"nada escucha en {port}", f"nothing listens on {port}"))


# ---- http ----------------------------------------------------------------------------------


def check_http(c: HttpCheck, connect: Connect, lang: Lang) -> Verdict:
    """An HTTP GET from where the student would send it (the host): status and body."""
    try:
        answer = connect(c.target).fetch(c.url, timeout=10)
    except FetchError as exc:
        if exc.kind == "unreachable":
            reason = tr(lang, "conexión rechazada o sin ruta", "connection refused or no route")
        elif exc.kind == "timeout":
            reason = tr(lang, "no contesta a tiempo", "no answer in time")
        else:
            reason = exc.message
        return failed(
            lang, f"nadie responde en {c.url} ({reason})", f"nothing answers at {c.url} ({reason})"
        )
    if answer.status != c.status:
        return failed(
            lang,
            f"{c.url} responde {answer.status} (se esperaba {c.status})",
            f"{c.url} answers {answer.status} (expected {c.status})",
        )
    if c.body is not None and (start := _unmatched(c.body, answer.body)) is not None:
        return failed(
            lang,
            f"la página de {c.url} {_lacks(c.body, lang)} (empieza por «{start}»)",
            f"the page at {c.url} {_lacks(c.body, lang)} (it starts with “{start}”)",
        )
    return Verdict(True, tr(lang, f"{c.url} responde bien", f"{c.url} answers as expected"))


# ---- dispatch ------------------------------------------------------------------------------


def evaluate(check: Check, connect: Connect, lang: Lang, answer: str | None = None) -> CheckResult:
    """Run one (already rendered) check; any failure to run becomes an ``error`` result."""
    what = check.what.get(lang)
    note = check.note.get(lang) if check.note else None
    try:
        if isinstance(check, AnswerCheck):
            verdict = check_answer(check, connect, lang, answer)
        elif isinstance(check, CommandCheck):
            verdict = check_command(check, connect, lang)
        elif isinstance(check, FileCheck):
            verdict = check_file(check, connect, lang)
        elif isinstance(check, ServiceCheck):
            verdict = check_service(check, connect, lang)
        elif isinstance(check, PortCheck):
            verdict = check_port(check, connect, lang)
        else:
            verdict = check_http(check, connect, lang)
    except LabctlError as exc:  # the SSH transport's errors too (labctl.ssh.SshError)
        return CheckResult(what, "error", exc.message, exc.hint)
    except OSError as exc:  # a host-side socket or file the check itself opened
        return CheckResult(what, "error", f"{type(exc).__name__}: {exc}")
    status: Status = "passed" if verdict.passed else "failed"
    return CheckResult(what, status, verdict.detail, None if verdict.passed else note)
