"""``class window`` of a class over several lab hosts: each host's window set, then this one's.

The hosts judge their students' attempts (an attempt after the end does not score), so the
window that counts is each host's; this controller keeps the same window for its dashboard
and grades. Every host is given the whole window in one command (both ends, ``-`` for an
open one): a host that missed an earlier change is put right by the next one, and a host
never goes without a window in between.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from labctl.classroom import window as exam
from labctl.classroom.state import ClassDir
from labctl.fleet.remote import REMOTE_LABCTL, REMOTE_STATE, Refused, Runner, answered

#: what a host that holds no such class answers
ABSENT = '{"absent": true}'


@dataclass(frozen=True)
class FleetWindow:
    """What ``class window`` did over the class's hosts."""

    name: str
    window: exam.Window
    set_on: tuple[str, ...]
    left: dict[str, str]  # host -> why its window was not set


def script(name: str, window: exam.Window) -> str:
    """The shell line that gives a host's class exactly ``window`` in one command (both ends,
    ``-`` for an open one), printing the result; a host that holds no such class (its labs
    failed before it had one) says so instead."""
    ends = " ".join(
        f"{option} {shlex.quote(exam.stamp(at))}"
        for option, at in (("--start", window.start), ("--end", window.end))
    )
    there = f"{REMOTE_STATE}/classes/{name}/class.json"
    command = f"{REMOTE_LABCTL} class window --class {shlex.quote(name)} {ends} --json"
    return f"if test -e {there}; then {command}; else echo '{ABSENT}'; fi"


def _ends(said: dict[str, object]) -> dict[str, object]:
    """A host's ``class window --json`` ends, an open one None (a labctl of before said "-")."""
    return {k: None if said.get(k) in (None, exam.OPEN) else said.get(k) for k in ("start", "end")}


def set_window(folder: ClassDir, run: Runner, start: str | None, end: str | None) -> FleetWindow:
    """The class's window changed by ``start``/``end`` (as ``class window`` takes them), given
    to every host, kept here; the hosts that did not take it, and why (the same command again
    retries them).

    The hosts asked are those the class's students are on; one that holds no class (its labs
    failed before it had one) has nothing to set.
    """
    with folder.held("labctl class window") as cls:
        window = exam.changed(cls, start, end, ("--start", "--end"))
        hosts = sorted({s.host for s in cls.seats.values() if s.host})
        result = run(hosts, module="shell", args=script(folder.name, window))
        want = {"start": exam.iso(window.start), "end": exam.iso(window.end)}
        left: dict[str, str] = {}
        absent: set[str] = set()
        for host, o in result.hosts.items():
            try:
                said = answered(o.stdout, "class window") if o.stdout.strip() else None
            except Refused as exc:
                left[host] = str(exc)
                continue
            except ValueError:
                said = None
            if not o.ok:
                left[host] = o.failure
            elif not isinstance(said, dict):
                left[host] = f"its labctl answered {o.stdout.strip()[:200]!r}"
            elif said == json.loads(ABSENT):
                absent.add(host)
            elif _ends(said) != want:
                left[host] = f"its window is {said.get('start')} .. {said.get('end')}"
        folder.save(exam.with_window(cls, window.start, window.end))
    set_on = tuple(h for h in hosts if h not in left and h not in absent)
    return FleetWindow(folder.name, window, set_on, left)
