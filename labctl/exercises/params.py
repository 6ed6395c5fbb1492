"""Per-student parameters: values derived from the student id, so two students' work differs.

The same student always gets the same values (they are a hash of lab, exercise, parameter
and student), and every value is made of ``[a-z0-9-]`` only, so it is safe inside a shell
command, a path, a regular expression or a Docker tag without quoting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from labctl.exercises.model import ParamSpec

LETTERS = "abcdefghijkmnpqrstuvwxyz"  # no 'l' or 'o': nothing to mistake for 1 or 0


def _digest(lab: str, exercise: str, name: str, student: str) -> bytes:
    return hashlib.sha256(f"labctl/{lab}/{exercise}/{name}/{student}".encode()).digest()


def value(spec: ParamSpec, lab: str, exercise: str, name: str, student: str) -> str:
    """One parameter's value for ``student``."""
    digest = _digest(lab, exercise, name, student)
    if spec.kind == "port":
        span = spec.max - spec.min + 1
        return str(spec.min + int.from_bytes(digest[:4], "big") % span)
    if spec.kind == "token":
        return digest.hex()[: spec.length]
    letters = "".join(LETTERS[b % len(LETTERS)] for b in digest[: spec.length])
    return f"{spec.prefix}{letters}"


def derive(specs: Mapping[str, ParamSpec], lab: str, exercise: str, student: str) -> dict[str, str]:
    """Every parameter of an exercise for ``student``."""
    return {name: value(spec, lab, exercise, name, student) for name, spec in specs.items()}
