"""How a student's answer compares as text: one normal form for answers, options and synonyms."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence


def normalise(text: str) -> str:
    """Lower case, no accents, no surrounding quotes, single spaces: how answers compare."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.strip().strip("\"'«»“”`").lower().split())


def options_problem(
    options: Sequence[str], synonyms: Mapping[str, Sequence[str]], values: Sequence[str] = ()
) -> str | None:
    """What is wrong with a question's declared options, or None.

    Options differ in normal form; every synonyms key is an option, and no spelling counts as
    two options; ``values`` (all a fact can measure) are options.
    """
    seen: dict[str, str] = {}
    for option in options:
        other = seen.setdefault(normalise(option), option)
        if other != option or not normalise(option):
            return f"option {option!r} is empty or the same as {other!r}"
    owner = dict(seen)
    for key, spellings in synonyms.items():
        if normalise(key) not in seen:
            return f"synonyms key {key!r} is not one of the options ({', '.join(options)})"
        option = seen[normalise(key)]
        for spelling in (key, *spellings):
            taken = owner.setdefault(normalise(spelling), option)
            if taken != option:
                return f"{spelling!r} would count as {taken!r} and as {option!r}"
    missing = [v for v in values if normalise(v) not in seen]
    if missing:
        return f"it can measure {', '.join(missing)}: not among the options"
    return None
