"""Check kinds, on the pytest-testinfra model: every check is built on one ``run(command)``.

A check gets ``run_for(target)``, which returns the ``run`` of a guest or of the host, and
gives back a :class:`CheckResult` whose ``detail`` reads like a teacher's note. A check that
could not run at all (guest down, engine error) is ``error``, never a stack trace.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import requests

from labctl.command import CommandResult
from labctl.errors import LabctlError
from labctl.exercises.i18n import Lang, tr
from labctl.exercises.model import (
    HOST,
    AnswerCheck,
    Check,
    CommandCheck,
    FileCheck,
    HttpCheck,
    Measure,
    PortCheck,
    ServiceCheck,
)

Run = Callable[[str], CommandResult]
RunFor = Callable[[str], Run]
Status = Literal["passed", "failed", "error"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: passed, failed (with why) or error (could not run)."""

    what: str
    status: Status
    detail: str
    note: str | None = None

    @property
    def passed(self) -> bool:
        """True when the check passed."""
        return self.status == "passed"


class CheckError(LabctlError):
    """A check could not run (the guest lacks a tool, a measurement made no sense)."""


@dataclass(frozen=True)
class Verdict:
    """What a check kind decided: passed or not, and why."""

    passed: bool
    detail: str


def where(target: str, lang: Lang) -> str:
    """``en kvm-full`` / ``on the host``."""
    if target == HOST:
        return tr(lang, "en el anfitrión", "on the host")
    return tr(lang, f"en {target}", f"in {target}")


def _last_line(result: CommandResult) -> str:
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return lines[-1][:160] if lines else ""


def _shell_path(path: str) -> str:
    """Quote a path for the shell; ``~/x`` stays relative to $HOME."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


# ---- command -------------------------------------------------------------------------------


def _short(command: str, width: int = 60) -> str:
    line = " ".join(command.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def check_command(c: CommandCheck, run_for: RunFor, lang: Lang) -> Verdict:
    """Exit code and/or output of a command."""
    r = run_for(c.target)(c.run)
    cmd, at = _short(c.run), where(c.target, lang)
    if c.rc is not None and r.rc != c.rc:
        last = _last_line(r)
        said = tr(lang, f": «{last}»", f": “{last}”") if last else ""
        return Verdict(
            False,
            tr(
                lang,
                f"`{cmd}` {at} terminó con código {r.rc} (se esperaba {c.rc}){said}",
                f"`{cmd}` {at} exited with {r.rc} (expected {c.rc}){said}",
            ),
        )
    if c.stdout is not None and not re.search(c.stdout, r.stdout, re.MULTILINE):
        out = " ".join(r.stdout.split())[:80]
        if not out:
            return Verdict(
                False,
                tr(
                    lang,
                    f"`{cmd}` {at} no escribió nada (se esperaba algo como /{c.stdout}/)",
                    f"`{cmd}` {at} printed nothing (expected something like /{c.stdout}/)",
                ),
            )
        return Verdict(
            False,
            tr(
                lang,
                f"`{cmd}` {at} escribió «{out}» (se esperaba algo como /{c.stdout}/)",
                f"`{cmd}` {at} printed “{out}” (expected something like /{c.stdout}/)",
            ),
        )
    return Verdict(True, tr(lang, "correcto", "correct"))


# ---- file ----------------------------------------------------------------------------------


def check_file(c: FileCheck, run_for: RunFor, lang: Lang) -> Verdict:
    """Existence, mode, owner and content of a file."""
    run = run_for(c.target)
    path = _shell_path(c.path)
    at = where(c.target, lang)
    st = run(f"stat -c '%a %U' -- {path}")
    if not st.succeeded:
        if not c.exists:
            return Verdict(True, tr(lang, f"{c.path} no existe {at}", f"{c.path} is absent {at}"))
        return Verdict(False, tr(lang, f"{c.path} no existe {at}", f"{c.path} does not exist {at}"))
    if not c.exists:
        return Verdict(
            False, tr(lang, f"{c.path} todavía existe {at}", f"{c.path} still exists {at}")
        )
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
    if c.owner is not None and owner != c.owner:
        problems.append(
            tr(
                lang,
                f"{c.path} pertenece a {owner} y debería pertenecer a {c.owner}",
                f"{c.path} belongs to {owner}, expected {c.owner}",
            )
        )
    if c.contains is not None:
        content = run(f"cat -- {path}")
        if not content.succeeded:
            problems.append(
                tr(
                    lang,
                    f"no se puede leer {c.path}: {_last_line(content)}",
                    f"{c.path} cannot be read: {_last_line(content)}",
                )
            )
        elif not re.search(c.contains, content.stdout, re.MULTILINE):
            problems.append(
                tr(
                    lang,
                    f"{c.path} no contiene /{c.contains}/",
                    f"{c.path} does not contain /{c.contains}/",
                )
            )
    if problems:
        return Verdict(False, "; ".join(problems))
    return Verdict(True, tr(lang, f"{c.path} está bien {at}", f"{c.path} is right {at}"))


# ---- service -------------------------------------------------------------------------------


def _systemctl(run: Run, verb: str, name: str, target: str) -> str:
    r = run(f"systemctl {verb} -- {shlex.quote(name)}")
    if r.rc == 127 or "not found" in r.stderr and "systemctl" in r.stderr:
        raise CheckError(f"{target} has no systemctl: service checks need a systemd guest")
    return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "unknown"


def check_service(c: ServiceCheck, run_for: RunFor, lang: Lang) -> Verdict:
    """A systemd unit: active and/or enabled."""
    run = run_for(c.target)
    problems = []
    if c.running is not None:
        active = _systemctl(run, "is-active", c.name, c.target)
        if (active == "active") != c.running:
            want = tr(lang, "en marcha", "running") if c.running else tr(lang, "parado", "stopped")
            problems.append(
                tr(
                    lang,
                    f"el servicio {c.name} {where(c.target, lang)} está «{active}» "
                    f"y debería estar {want}",
                    f"service {c.name} {where(c.target, lang)} is “{active}”, expected {want}",
                )
            )
    if c.enabled is not None:
        enabled = _systemctl(run, "is-enabled", c.name, c.target)
        if (enabled == "enabled") != c.enabled:
            want = (
                tr(lang, "habilitado (arranca solo)", "enabled (starts at boot)")
                if c.enabled
                else tr(lang, "deshabilitado", "disabled")
            )
            problems.append(
                tr(
                    lang,
                    f"el servicio {c.name} está «{enabled}» y debería estar {want}",
                    f"service {c.name} is “{enabled}”, expected {want}",
                )
            )
    if problems:
        return Verdict(False, "; ".join(problems))
    return Verdict(True, tr(lang, "correcto", "correct"))


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


def check_port(c: PortCheck, run_for: RunFor, lang: Lang) -> Verdict:
    """Whether a TCP port listens (read from /proc/net, so no tool is needed in the guest)."""
    try:
        port = int(c.port)
    except ValueError:
        raise CheckError(f"port {c.port!r} is not a number") from None
    r = run_for(c.target)("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null")
    found = listening_ports(r.stdout)
    at = where(c.target, lang)
    if port in found:
        addrs = ", ".join(sorted(set(found[port])))
        if c.listening:
            return Verdict(True, tr(lang, f"{port} escucha ({addrs})", f"{port} listens ({addrs})"))
        return Verdict(
            False,
            tr(lang, f"algo escucha en {port} {at} ({addrs})", f"{port} listens {at} ({addrs})"),
        )
    if c.listening:
        return Verdict(
            False,
            tr(lang, f"nada escucha en el puerto {port} {at}", f"nothing listens on {port} {at}"),
        )
    return Verdict(True, tr(lang, f"nada escucha en {port}", f"nothing listens on {port}"))


# ---- http ----------------------------------------------------------------------------------


def check_http(c: HttpCheck, run_for: RunFor, lang: Lang) -> Verdict:
    """An HTTP GET from the host: status and body."""
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment must not answer for a guest
    try:
        answer = session.get(c.url, timeout=10)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.ConnectionError):
            reason = tr(lang, "conexión rechazada o sin ruta", "connection refused or no route")
        elif isinstance(exc, requests.Timeout):
            reason = tr(lang, "no contesta a tiempo", "no answer in time")
        return Verdict(
            False,
            tr(
                lang,
                f"nadie responde en {c.url} ({reason})",
                f"nothing answers at {c.url} ({reason})",
            ),
        )
    finally:
        session.close()
    if answer.status_code != c.status:
        return Verdict(
            False,
            tr(
                lang,
                f"{c.url} responde {answer.status_code} (se esperaba {c.status})",
                f"{c.url} answers {answer.status_code} (expected {c.status})",
            ),
        )
    if c.body is not None and not re.search(c.body, answer.text, re.MULTILINE):
        start = " ".join(answer.text.split())[:80]
        return Verdict(
            False,
            tr(
                lang,
                f"la página de {c.url} no contiene /{c.body}/ (empieza por «{start}»)",
                f"the page at {c.url} does not match /{c.body}/ (it starts with “{start}”)",
            ),
        )
    return Verdict(True, tr(lang, f"{c.url} responde bien", f"{c.url} answers as expected"))


# ---- answer --------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Lower case, no accents, no surrounding quotes, single spaces: how answers compare."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.strip().strip("\"'«»“”`").lower().split())


NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")


def parse_number(text: str) -> float | None:
    """The first number in ``text`` (a decimal comma is fine), or None."""
    match = NUMBER.search(text)
    return float(match.group().replace(",", ".")) if match else None


def _measure(m: Measure, run_for: RunFor, lang: Lang) -> tuple[str | None, str]:
    """(value, "") or (None, why the lab could not measure it)."""
    r = run_for(m.target)(m.run)
    lines = [line.strip() for line in r.stdout.splitlines() if line.strip()]
    if not r.succeeded or not lines:
        why = _last_line(r) or f"exit {r.rc}"
        return None, tr(
            lang,
            f"el laboratorio no pudo medir la respuesta {where(m.target, lang)}: {why}",
            f"the lab could not measure the answer {where(m.target, lang)}: {why}",
        )
    return lines[-1], ""


def _truth_number(c: AnswerCheck, value: str, run_for: RunFor, lang: Lang) -> float:
    truth = parse_number(value)
    if truth is None:
        raise CheckError(f"the lab measured {value!r}, which is not a number")
    if c.truth.divided_by is not None:
        other, why = _measure(c.truth.divided_by, run_for, lang)
        if other is None:
            raise CheckError(why)
        divisor = parse_number(other)
        if not divisor:
            raise CheckError(f"the lab measured {other!r} to divide by")
        truth /= divisor
    return truth


def _close(c: AnswerCheck, answer: float, truth: float) -> bool:
    if c.factor is not None and truth > 0 and answer > 0:
        return truth / c.factor <= answer <= truth * c.factor
    allowed = max((c.tolerance or 0) * abs(truth), c.margin or 0)
    return abs(answer - truth) <= allowed + 1e-9


def _accepted_range(c: AnswerCheck, lang: Lang) -> str:
    if c.factor is not None:
        return tr(
            lang,
            f"se acepta hasta {c.factor:g} veces por encima o por debajo",
            f"up to {c.factor:g} times above or below is accepted",
        )
    parts = []
    if c.tolerance:
        parts.append(f"±{c.tolerance * 100:g} %")
    if c.margin:
        parts.append(f"±{c.margin:g}")
    if not parts:
        return tr(lang, "tiene que ser exacta", "it must be exact")
    return tr(lang, "se acepta ", "accepted: ") + tr(lang, " o ", " or ").join(parts)


def check_answer(c: AnswerCheck, run_for: RunFor, lang: Lang, answer: str | None) -> Verdict:
    """The student's answer against what the lab measures now, in the guest itself."""
    if answer is None:
        return Verdict(
            False,
            tr(
                lang,
                "todavía no has respondido (labctl exercise answer EJERCICIO PASO VALOR)",
                "no answer recorded yet (labctl exercise answer EXERCISE STEP VALUE)",
            ),
        )
    value, why = _measure(c.truth, run_for, lang)
    if value is None:
        return Verdict(False, why)
    if c.match == "number":
        given = parse_number(answer)
        if given is None:
            return Verdict(
                False, tr(lang, f"«{answer}» no es un número", f"“{answer}” is not a number")
            )
        truth = _truth_number(c, value, run_for, lang)
        if _close(c, given, truth):
            return Verdict(
                True,
                tr(
                    lang,
                    f"correcto: el laboratorio mide {truth:.3g} y tú dijiste {given:g}",
                    f"correct: the lab measures {truth:.3g} and you said {given:g}",
                ),
            )
        return Verdict(
            False,
            tr(
                lang,
                f"tu respuesta {given:g} está lejos de lo que mide el laboratorio "
                f"({_accepted_range(c, lang)}); vuelve a medir",
                f"your answer {given:g} is far from what the lab measures "
                f"({_accepted_range(c, lang)}); measure again",
            ),
        )
    synonyms = {normalise(k): v for k, v in c.synonyms.items()}
    accepted = {normalise(value), *(normalise(s) for s in synonyms.get(normalise(value), []))}
    if normalise(answer) in accepted:
        return Verdict(True, tr(lang, f"correcto: {value}", f"correct: {value}"))
    return Verdict(
        False,
        tr(
            lang,
            f"tu respuesta «{answer}» no coincide con lo que el laboratorio mide "
            f"{where(c.truth.target, lang)}",
            f"your answer “{answer}” is not what the lab measures {where(c.truth.target, lang)}",
        ),
    )


# ---- dispatch ------------------------------------------------------------------------------


def evaluate(check: Check, run_for: RunFor, lang: Lang, answer: str | None = None) -> CheckResult:
    """Run one (already rendered) check; any failure to run becomes an ``error`` result."""
    what = check.what.get(lang)
    note = check.note.get(lang) if check.note else None
    try:
        if isinstance(check, AnswerCheck):
            verdict = check_answer(check, run_for, lang, answer)
        elif isinstance(check, CommandCheck):
            verdict = check_command(check, run_for, lang)
        elif isinstance(check, FileCheck):
            verdict = check_file(check, run_for, lang)
        elif isinstance(check, ServiceCheck):
            verdict = check_service(check, run_for, lang)
        elif isinstance(check, PortCheck):
            verdict = check_port(check, run_for, lang)
        else:
            verdict = check_http(check, run_for, lang)
    except LabctlError as exc:
        return CheckResult(what, "error", exc.message, exc.hint)
    except (OSError, EOFError) as exc:  # SSH transport errors are OSErrors
        return CheckResult(what, "error", f"{type(exc).__name__}: {exc}")
    status: Status = "passed" if verdict.passed else "failed"
    return CheckResult(what, status, verdict.detail, None if verdict.passed else note)
