"""Per-student parameters: values derived from the student id, so two students' work differs.

The same student always gets the same values (they are a hash of lab, exercise, parameter
and student), and every value is made of ``[a-z0-9-]`` only, so it is safe inside a shell
command, a path, a regular expression or a Docker tag without quoting.

Ports are the exception in class mode. A hash gives two of a class's students the same port
now and then (a few percent per parameter in a class of 30), and a port published on the
server's loopback is one student's only. So a student of a class takes their ports from
their :class:`Seat`: the seat slot ``class up`` gave them (0, 1, 2, ... unique in the class
on the server) and the lab's port parameters, all of them, in lab order. With ``P`` port
parameters, the one at index ``i`` gives ports ``≡ i (mod P)`` only, one every ``P`` from its
``min`` on, and slot ``s`` takes the ``s``-th of them::

    first = min + (i - min) mod P        port = first + slot * P    (refused above max)

so no two (slot, parameter) pairs of a class share a port, whatever the parameters' ranges.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from labctl.errors import LabctlError, SpecError
from labctl.exercises.model import Exercise, ParamSpec

LETTERS = "abcdefghijkmnpqrstuvwxyz"  # no 'l' or 'o': nothing to mistake for 1 or 0

#: (exercise id, parameter name) of a port parameter
PortKey = tuple[str, str]


def port_keys(exercises: Iterable[Exercise]) -> tuple[PortKey, ...]:
    """Every port parameter of a lab, in the lab's order (exercise files, then parameters)."""
    return tuple(
        (e.id, name) for e in exercises for name, spec in e.params.items() if spec.kind == "port"
    )


@dataclass(frozen=True)
class Seat:
    """Where a class's student takes their ports from: their seat slot and the lab's ports.

    ``slot`` is None for an instance that an older ``class up`` gave no slot.
    """

    class_name: str
    student: str
    slot: int | None
    ports: tuple[PortKey, ...]

    def port(self, spec: ParamSpec, exercise: str, name: str) -> int:
        """The port of parameter ``name`` of ``exercise`` for this seat."""
        if self.slot is None:
            raise LabctlError(
                f"{self.student} has no seat slot in class {self.class_name}, so no ports",
                f"run `labctl class up` again for class {self.class_name}: it gives every "
                "student a slot, kept from then on",
            )
        port = first_port(spec, self.ports, (exercise, name)) + self.slot * len(self.ports)
        if port > spec.max:
            raise SpecError(
                f"exercise {exercise}: {{param.{name}}} ({spec.min}-{spec.max}) has no port left "
                f"for seat slot {self.slot} ({len(self.ports)} port parameters share the lab)",
                f"widen its range: every seat takes one port in {len(self.ports)} of it",
            )
        return port


def first_port(spec: ParamSpec, ports: tuple[PortKey, ...], key: PortKey) -> int:
    """Slot 0's port of parameter ``key``: its own residue modulo the lab's port count."""
    index = ports.index(key)
    return spec.min + (index - spec.min) % len(ports)


def slots_in(spec: ParamSpec, ports: tuple[PortKey, ...], key: PortKey) -> int:
    """How many seat slots parameter ``key``'s range holds."""
    first = first_port(spec, ports, key)
    return 0 if first > spec.max else (spec.max - first) // len(ports) + 1


def _digest(lab: str, exercise: str, name: str, student: str) -> bytes:
    return hashlib.sha256(f"labctl/{lab}/{exercise}/{name}/{student}".encode()).digest()


def value(
    spec: ParamSpec, lab: str, exercise: str, name: str, student: str, seat: Seat | None = None
) -> str:
    """One parameter's value for ``student``; a port from ``seat`` in class mode."""
    if spec.kind == "port" and seat is not None:
        return str(seat.port(spec, exercise, name))
    digest = _digest(lab, exercise, name, student)
    if spec.kind == "port":
        span = spec.max - spec.min + 1
        return str(spec.min + int.from_bytes(digest[:4], "big") % span)
    if spec.kind == "token":
        return digest.hex()[: spec.length]
    letters = "".join(LETTERS[b % len(LETTERS)] for b in digest[: spec.length])
    return f"{spec.prefix}{letters}"


def derive(
    specs: Mapping[str, ParamSpec],
    lab: str,
    exercise: str,
    student: str,
    seat: Seat | None = None,
) -> dict[str, str]:
    """Every parameter of an exercise for ``student`` (ports from ``seat`` in class mode)."""
    return {name: value(spec, lab, exercise, name, student, seat) for name, spec in specs.items()}
