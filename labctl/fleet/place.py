"""Which lab host each student's lab goes to: by the hosts' measured capacity.

A pure function of what the hosts said (how many students each fits, from its own ``class
plan``), where students already are (a rerun never moves a working lab) and which hosts
failed. New students go, one at a time, to the host that would then be the least full as a
share of its room, so a class is spread in proportion to what the hosts can carry, and hosts
of about the same room take turns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labctl.console import plural
from labctl.errors import ExitCode, LabctlError


class OverCommit(LabctlError):
    """The hosts that answered cannot carry the class. Exit 1: nothing was brought up."""

    code = ExitCode.FAILED


@dataclass(frozen=True)
class Placement:
    """Student id -> host name, and who was moved off a failed host."""

    hosts: dict[str, str]
    moved: tuple[str, ...] = ()

    def students_on(self, host: str) -> list[str]:
        """The students placed on ``host``, in placement order."""
        return [s for s, h in self.hosts.items() if h == host]


def place(
    students: Sequence[str],
    fits: Mapping[str, int],
    current: Mapping[str, str],
    failed: frozenset[str] = frozenset(),
    replace_failed: bool = False,
) -> Placement:
    """Place ``students`` on the hosts of ``fits`` (host -> how many students it fits).

    ``current`` is the last placement: a student stays where they are unless their host
    failed and ``replace_failed`` says to move them; without it they stay there, reported
    with their host's fault. ``fits`` counts students a host can take *besides* those it
    already runs.
    """
    room = {h: n for h, n in fits.items() if h not in failed}
    placed: dict[str, str] = {}
    moved: list[str] = []
    waiting: list[str] = []
    for s in students:
        host = current.get(s)
        if host is not None and (host not in failed or not replace_failed):
            placed[s] = host
        else:
            waiting.append(s)
            if host is not None:
                moved.append(s)
    taken = dict.fromkeys(room, 0)
    for s in waiting:
        # the host that would be the least full, as a share of its room, after taking s
        open_ = [h for h in sorted(room) if taken[h] < room[h]]
        best = min(open_, key=lambda h: (taken[h] + 1) / room[h], default=None)
        if best is None:
            total = sum(max(0, n) for n in room.values())
            raise OverCommit(
                f"{plural(len(waiting), 'student')} {'needs' if len(waiting) == 1 else 'need'} "
                f"a lab and the hosts that answered fit {total} "
                f"more ({', '.join(f'{h}: {n}' for h, n in sorted(room.items())) or 'none'})",
                "add lab hosts to the inventory, or bring up part of the class",
            )
        placed[s] = best
        taken[best] += 1
    return Placement(placed, tuple(moved))
