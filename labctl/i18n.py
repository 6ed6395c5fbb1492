"""The two languages of exercises: Spanish and English, chosen by flag or locale."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Literal

from labctl.errors import SpecError

Lang = Literal["es", "en"]
LANGS: tuple[Lang, ...] = ("es", "en")


#: the language when the locale names none (C, POSIX or unset): a class's student gets the
#: class's this way (``cli.student``), whatever the server's default locale
FALLBACK_VAR = "LABCTL_LANG"


def detect(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Lang:
    """``--lang`` if given, else the locale (LC_ALL, LC_MESSAGES, LANG, as POSIX orders them).

    A Spanish locale (``es``, ``es_ES.UTF-8``...) gives Spanish; another language's English;
    the C or POSIX locale, or none, names no language: then ``$LABCTL_LANG``, else English.
    """
    if explicit:
        given = explicit.strip().lower()
        lang = given[:2]  # es, en, or a locale of them (es_ES.UTF-8, en-GB): not "esperanto"
        if lang not in LANGS or given[2:3] not in ("", "_", "-", "."):
            raise SpecError(f"unknown language {explicit!r}", "use --lang es or --lang en")
        return "es" if lang == "es" else "en"
    env = os.environ if environ is None else environ
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        if value:
            if value.split(".")[0] in ("C", "POSIX"):
                break
            return "es" if value.lower().startswith("es") else "en"
    return "es" if env.get(FALLBACK_VAR, "").lower().startswith("es") else "en"


def of_args(args: Sequence[str], environ: Mapping[str, str] | None = None) -> Lang:
    """The language a command line speaks: its ``--lang`` (before ``--``), else the locale;
    an unknown ``--lang`` counts as none (the command itself refuses it)."""
    options = list(args[: list(args).index("--")] if "--" in args else args)
    given = None
    for i, word in enumerate(options):
        if word == "--lang" and i + 1 < len(options):
            given = options[i + 1]
        elif word.startswith("--lang="):
            given = word.partition("=")[2]
    try:
        return detect(given, environ)
    except SpecError:  # an unknown --lang: the command itself refuses it
        return detect(None, environ)


def tr(lang: Lang, es: str, en: str) -> str:
    """The Spanish or the English text."""
    return es if lang == "es" else en
