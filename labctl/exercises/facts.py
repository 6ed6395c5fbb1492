"""Facts about a guest's surroundings that the lab and a careful student decide the same way.

Some answers depend on the machine the lab runs on (its network, above all), and the
obvious shell one-liner gets them wrong: ``apt-get update`` exits 0 when it could not fetch a
single list (it prints ``Err:`` lines and keeps the old ones). Each fact here is one command
and one decision over its output; exercise files name the fact (``truth: {fact: ...}``) and
the test suite's scripted student feeds what it saw to the same decision, so the two cannot
drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from labctl.command import CommandResult
from labctl.connection import Connection

FactName = Literal["apt-mirror"]

# apt's own words for "this source was not fetched", in the C locale the command forces.
_APT_FAILED = re.compile(
    r"^(Err:\S*\s|W: Failed to fetch |E: Failed to fetch |W: Some index files failed to download"
    r"|E: Some index files failed to download|W: Temporary failure resolving"
    r"|W: Could not resolve|E: The repository .* does not have a Release file)",
    re.MULTILINE,
)
# A source apt fetched (Get:) or found unchanged on the mirror (Hit:).
_APT_REACHED = re.compile(r"^(Get|Hit):\S*\s", re.MULTILINE)

APT_UPDATE = "LC_ALL=C timeout 60 apt-get update 2>&1"


def apt_reached_mirror(output: str) -> bool:
    """True when ``apt-get update`` (its combined output) really reached its mirror.

    Reached means: at least one source answered (``Get:`` or ``Hit:``) and none failed
    (``Err:``, "Failed to fetch", "Some index files failed to download"). apt's exit code is
    not used: it is 0 when the mirror could not be reached at all.
    """
    return bool(_APT_REACHED.search(output)) and not _APT_FAILED.search(output)


@dataclass(frozen=True)
class Fact:
    """A command run in a guest and the decision over what it printed."""

    command: str
    decide: Callable[[CommandResult], str]


def _apt_mirror(result: CommandResult) -> str:
    reached = result.rc == 0 and apt_reached_mirror(result.stdout + "\n" + result.stderr)
    return "si" if reached else "no"


FACTS: dict[FactName, Fact] = {
    "apt-mirror": Fact(APT_UPDATE, _apt_mirror),
}
#: every value each fact can take (an answer's options must hold them all)
FACT_VALUES: dict[FactName, tuple[str, ...]] = {"apt-mirror": ("si", "no")}


def measure(name: FactName, conn: Connection) -> str:
    """The value of fact ``name`` on ``conn`` (a guest, or the host)."""
    fact = FACTS[name]
    return fact.decide(conn.run(fact.command))
