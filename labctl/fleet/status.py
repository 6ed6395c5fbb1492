"""``class status`` of a class over several lab hosts, and its progress brought here.

Progress (every attempt) stays in each host's own store, where the students' checks write
it; ``collect`` copies it into this controller's store, replacing each instance's attempts
as a whole, so the dashboard and ``class report`` here see the whole class. Lab hosts need
no way back to the controller and no database server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labctl.classroom.state import ClassDir
from labctl.fleet.remote import REMOTE_LABCTL, Refused, Runner, answered
from labctl.fleet.state import FleetState

#: what separates a host's status from its attempts in one answer
CUT = "---8<--- labctl attempts ---8<---"
#: a host whose labctl hangs (an engine that stops answering) is reported as not answering
#: after this long, instead of holding ``class status`` and the dashboard's grid for good;
#: SSH's own keepalives already end a connection the host stopped answering on
STATUS_SECONDS = 300


@dataclass(frozen=True)
class FleetRow:
    """One student's row of ``class status`` over several hosts."""

    student: str
    name: str
    host: str | None
    guests_ready: int
    guests: int
    exercises_done: int
    exercises: int
    last_activity: str | None
    outcome: str
    error: str | None
    answered: bool = True  # False: the host did not answer (the row is the last known)
    outdated: tuple[str, ...] = ()  # "guest: what differs", as the host's class status says


def _status_script(name: str) -> str:
    return (
        f"{REMOTE_LABCTL} class status --class {name} --json; echo '{CUT}'; "
        f"{REMOTE_LABCTL} class report --class {name} --attempts --format json"
    )


def status(
    folder: ClassDir,
    fleet: FleetState,
    run: Runner,
    record: Callable[[list[tuple[str, str]], list[dict[str, Any]]], None] | None = None,
) -> list[FleetRow]:
    """Every student of the class, asked of their host.

    ``record(instances, attempts)`` gets each host's attempts of its students' instances
    (``collect`` puts them in this controller's store).
    """
    cls = folder.require()
    hosts = sorted({s.host for s in cls.seats.values() if s.host})
    result = run(hosts, module="shell", args=_status_script(cls.name), timeout=STATUS_SECONDS)
    rows: dict[str, dict[str, Any]] = {}
    trouble: dict[str, str] = {}
    for host, o in result.hosts.items():
        if not o.ok:
            trouble[host] = o.failure
            continue
        head, _, tail = o.stdout.partition(CUT)
        try:
            for r in answered(head, "class status")["students"]:
                rows[r["student"]] = r
            attempts = json.loads(tail) if tail.strip() else []
        except Refused as exc:
            trouble[host] = str(exc)
            continue
        except (ValueError, KeyError, TypeError):
            trouble[host] = f"answered {o.stdout.strip()[:200]!r}"
            continue
        if record is not None:
            mine = [(cls.lab, s.instance) for s in cls.seats.values() if s.host == host]
            record(mine, attempts)
    out = []
    for seat in cls.seats.values():
        r = rows.get(seat.student)
        if r is None:
            why = seat.error
            if seat.host in trouble:
                why = f"host {seat.host}: {trouble[seat.host]}"
            out.append(
                FleetRow(
                    seat.student,
                    seat.name,
                    seat.host,
                    0,
                    0,
                    0,
                    0,
                    None,
                    seat.outcome,
                    why,
                    answered=seat.host not in trouble,
                )
            )
            continue
        out.append(
            FleetRow(
                seat.student,
                seat.name,
                seat.host,
                int(r["guests_ready"]),
                int(r["guests"]),
                int(r["exercises_done"]),
                int(r["exercises"]),
                r.get("last_activity"),
                str(r["outcome"]),
                r.get("error"),
                outdated=tuple(str(x) for x in r.get("outdated") or ()),
            )
        )
    return out


def collect(pairs: list[tuple[str, str]], attempts: list[dict[str, Any]]) -> None:
    """A host's attempts of its instances, as the controller's store's copy of them."""
    from labctl.exercises.progress import shared
    from labctl.store.transfer import from_json, replace_instances

    replace_instances(shared(), pairs, [from_json(a) for a in attempts])
