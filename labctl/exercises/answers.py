"""Answer checks: the student's recorded value against what the lab measures itself.

The truth is measured at check time, in the guest (or on the host), so an answer copied from
another student's lab is wrong whenever the value differs between labs (PIDs, timings...).
A failure never reveals the measured value; a pass shows it. A timing varies from one run to
the next on a busy host, so a check may measure again (``remeasure``) before it says no.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from labctl.exercises import facts
from labctl.exercises.model import AnswerCheck, Measure
from labctl.exercises.outcome import CheckError, Connect, Verdict, failed, last_line, where
from labctl.exercises.words import normalise
from labctl.i18n import Lang, tr

NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")


def parse_number(text: str) -> float | None:
    """The first number in ``text`` (a decimal comma is fine), or None."""
    match = NUMBER.search(text)
    return float(match.group().replace(",", ".")) if match else None


#: separators a MAC address is written with: 52:54:00:..., 52-54-00-..., 5254.00..
MAC_SEPARATORS = re.compile(r"[\s:.\-]")
MAC = re.compile(r"^[0-9a-f]{12}$")


def parse_mac(text: str) -> str | None:
    """A MAC address in any usual notation, as 12 lowercase hex digits; None if none."""
    digits = MAC_SEPARATORS.sub("", normalise(text))
    return digits if MAC.match(digits) else None


def _measure(m: Measure, connect: Connect, lang: Lang) -> tuple[str | None, str]:
    """(value, "") or (None, why the lab could not measure it)."""
    if m.fact is not None:
        return facts.measure(m.fact, connect(m.target)), ""
    assert m.run is not None  # the model requires run or fact
    r = connect(m.target).run(m.run)
    lines = [line.strip() for line in r.stdout.splitlines() if line.strip()]
    if not r.succeeded or not lines:
        why = last_line(r) or f"exit {r.rc}"
        return None, tr(
            lang,
            f"el laboratorio no pudo medir la respuesta {where(m.target, lang)}: {why}",
            f"the lab could not measure the answer {where(m.target, lang)}: {why}",
        )
    return lines[-1], ""


def _truth_number(c: AnswerCheck, value: str, connect: Connect, lang: Lang) -> float:
    truth = parse_number(value)
    if truth is None:
        raise CheckError(f"the lab measured {value!r}, which is not a number")
    if c.truth.divided_by is not None:
        other, why = _measure(c.truth.divided_by, connect, lang)
        if other is None:
            raise CheckError(why)
        divisor = parse_number(other)
        if not divisor:
            raise CheckError(f"the lab measured {other!r} to divide by")
        truth /= divisor
    return truth


def _truths(c: AnswerCheck, first: str, connect: Connect, lang: Lang) -> Iterator[float]:
    """The measured truth as a number, then up to ``c.remeasure`` fresh measurements of it.

    Lazy: a measurement is taken again only while the answer has not yet agreed with one. A
    fresh measurement that fails ends the series: the answer was already judged by one that
    worked, so it stays wrong (failed, never an error of the exercise).
    """
    yield _truth_number(c, first, connect, lang)
    for _ in range(c.remeasure):
        value, _why = _measure(c.truth, connect, lang)
        if value is None:
            return
        try:
            truth = _truth_number(c, value, connect, lang)
        except CheckError:
            return
        yield truth


def fmt(x: float) -> str:
    """A number for people: no exponent, at most two decimals, no trailing zeros."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}".rstrip("0").rstrip(".")


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


def check_answer(c: AnswerCheck, connect: Connect, lang: Lang, answer: str | None) -> Verdict:
    """The student's answer against what the lab measures now, in the guest itself."""
    if answer is None:
        return failed(
            lang,
            "todavía no has respondido (labctl exercise answer EJERCICIO PASO VALOR)",
            "no answer recorded yet (labctl exercise answer EXERCISE STEP VALUE)",
        )
    value, why = _measure(c.truth, connect, lang)
    if value is None:
        return Verdict(False, why)
    if c.match == "number":
        given = parse_number(answer)
        if given is None:
            return failed(lang, f"«{answer}» no es un número", f"“{answer}” is not a number")
        truth = next((t for t in _truths(c, value, connect, lang) if _close(c, given, t)), None)
        if truth is not None:
            return Verdict(
                True,
                tr(
                    lang,
                    f"correcto: el laboratorio mide {fmt(truth)} y tú dijiste {fmt(given)}",
                    f"correct: the lab measures {fmt(truth)} and you said {fmt(given)}",
                ),
            )
        exact = c.factor is None and not c.tolerance and not c.margin  # a wrong digit: not "far"
        return failed(
            lang,
            f"tu respuesta {fmt(given)} "
            + ("no es lo que mide" if exact else "está lejos de lo que mide")
            + f" el laboratorio ({_accepted_range(c, lang)}); vuelve a medir",
            f"your answer {fmt(given)} "
            + ("is not what" if exact else "is far from what")
            + f" the lab measures ({_accepted_range(c, lang)}); measure again",
        )
    if c.match == "mac":
        if parse_mac(answer) is not None and parse_mac(answer) == parse_mac(value):
            return Verdict(True, tr(lang, f"correcto: {value}", f"correct: {value}"))
        return _not_measured(c, answer, lang)
    synonyms = {normalise(k): v for k, v in c.synonyms.items()}
    accepted = {normalise(value), *(normalise(s) for s in synonyms.get(normalise(value), []))}
    if normalise(answer) in accepted:
        if normalise(answer) == normalise(value):
            return Verdict(True, tr(lang, f"correcto: {value}", f"correct: {value}"))
        said = answer.strip()  # another name of it: say both (Cortex-A57 is part 0xd07)
        return Verdict(
            True,
            tr(
                lang,
                f"correcto: {said} (el laboratorio mide {value})",
                f"correct: {said} (the lab measures {value})",
            ),
        )
    return _not_measured(c, answer, lang)


def _not_measured(c: AnswerCheck, answer: str, lang: Lang) -> Verdict:
    """A text answer that is not what the lab measures (the truth is not said)."""
    return failed(
        lang,
        f"tu respuesta «{answer}» no coincide con lo que el laboratorio mide "
        f"{where(c.truth.target, lang)}",
        f"your answer “{answer}” is not what the lab measures {where(c.truth.target, lang)}",
    )
