"""Seat slots: a small number per student of a class, from which their ports come.

``class up`` gives each student of the roster, in roster order, the lowest slot that no seat
of the class holds; a seat keeps its slot on every rerun (a roster in another order too) and
as long as it exists (a student left out of a later roster keeps theirs); only ``class down``
of the student frees it. A class's ports come from the slots (``exercises.params``), so no two
of its students share one. Before the class state is written, :func:`check` makes sure every
port the slots give lies within its parameter's range, outside the kernel's ephemeral range
(where every outgoing connection's local port and labctl's own forwarded ports come from) and
off the ports the host's reservations hold for other labs.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from labctl.classroom.state import ClassState
from labctl.errors import SpecError
from labctl.exercises import params
from labctl.exercises.model import Exercise
from labctl.instance.reservations import Reservations

#: the kernel's ephemeral ports: ``low high``
EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


@dataclass(frozen=True)
class HostPorts:
    """What a class's ports keep clear of on this server."""

    ephemeral: tuple[int, int]
    reserved: frozenset[int]


def host_ports(root: Path | None = None) -> HostPorts:
    """This server's ephemeral range and the host ports labctl's reservations hold."""
    low, high = (int(n) for n in EPHEMERAL.read_text().split())
    reserved = frozenset(int(p) for p in Reservations(root).entries()["ports"])
    return HostPorts((low, high), reserved)


def assign(state: ClassState | None, order: Sequence[str]) -> dict[str, int]:
    """Every seat's slot: a seat's own kept; the lowest free ones to the others, in ``order``.

    The seats of ``state`` without a slot (made by an older labctl) and not in ``order`` get
    theirs after ``order``'s students.
    """
    seats = state.seats if state is not None else {}
    slots = {k: s.slot for k, s in seats.items() if s.slot is not None}
    taken = set(slots.values())
    free = (n for n in itertools.count() if n not in taken)
    for student in [*order, *seats]:
        if student not in slots:
            slots[student] = next(free)
    return slots


def check(exercises: Sequence[Exercise], slots: Mapping[str, int], host: HostPorts | None) -> None:
    """Refuse (exit 2) unless every port the slots give is in range and clear of the host's.

    ``host`` None: this server's (read only when the lab has port parameters).
    """
    keys = params.port_keys(exercises)
    if not keys or not slots:
        return
    seats = max(slots.values()) + 1
    found = host or host_ports()
    low, high = found.ephemeral
    specs = {e.id: e.params for e in exercises}
    problems = []
    for exercise, name in keys:
        spec = specs[exercise][name]
        what = f"exercise {exercise}: {{param.{name}}} ({spec.min}-{spec.max})"
        held = params.slots_in(spec, keys, (exercise, name))
        if held < seats:
            problems.append(f"{what} holds {held} seat slots, the class needs {seats}")
            continue
        first = params.first_port(spec, keys, (exercise, name))
        ports = range(first, first + seats * len(keys), len(keys))
        inside = [p for p in ports if low <= p <= high]
        if inside:
            problems.append(
                f"{what} gives port {inside[0]}, inside the kernel's ephemeral range {low}-{high}"
            )
        taken = sorted(found.reserved.intersection(ports))
        if taken:
            problems.append(f"{what} gives port {taken[0]}, reserved by a lab on this server")
    if problems:
        raise SpecError(
            "the lab's port parameters do not give this class its own ports:\n  "
            + "\n  ".join(problems),
            f"give each port parameter a range below {low} holding one port in "
            f"{len(keys)} for each of the {seats} seats (min and max in the exercise file)",
        )
