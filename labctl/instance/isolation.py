"""No traffic between two lab instances' guests, whatever their engines: labctl's own rule.

Each instance has up to three bridges (libvirt ``lcbr…``, Docker ``br-…``, LXD ``lclx…``).
The engines' own firewalls do not keep two instances apart: Docker accepts any routed
packet to a published port, libvirt lets its VMs out to any address, and LXD accepts
everything on its bridges. One nftables table, ``inet labctl``, does: a set of every
labctl bridge, a set of the (in, out) bridge pairs of one instance, and one forward rule
that rejects a packet going from a labctl bridge to a labctl bridge of another instance.
The host (input/output, not forward) and the world outside stay as the engines make them.

Every element carries its instance in its comment, so ``down`` removes exactly its own;
the table itself stays until ``labctl host teardown``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from labctl.errors import HostError
from labctl.procs import run

TABLE = "labctl"
FAMILY = "inet"
#: Before the engines' own forward chains (iptables-nft and LXD use priority filter = 0).
PRIORITY = "filter - 10"
HINT = "install nftables (labctl host setup does) and run labctl as root"

#: (argv after ``nft``, script on stdin or None) -> stdout; unit tests pass a fake (or
#: replace ``_nft``: the default is looked up at each call).
NftRunner = Callable[[list[str], str | None], str]


def _nft(args: list[str], script: str | None) -> str:
    data = script.encode() if script is not None else None
    return run(["nft", *args], input=data, error=HostError, hint=HINT).stdout.decode()


def owner(lab: str, instance: str) -> str:
    """The comment every element of one instance carries."""
    return f"labctl {lab}/{instance}"


def _quote(name: str) -> str:
    # Interface names are at most 15 characters of [a-z0-9-] here; refuse anything else
    # rather than escape it into an nft script.
    if not name or len(name) > 15 or not all(c.isalnum() or c in "-_." for c in name):
        raise HostError(f"{name!r} is not a bridge name labctl would create", HINT)
    return f'"{name}"'


@dataclass(frozen=True)
class Elements:
    """The set elements of one instance: its bridges and its allowed (in, out) pairs."""

    bridges: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]

    @property
    def empty(self) -> bool:
        """True when the instance has nothing in the table."""
        return not self.bridges and not self.pairs


def elements(bridges: Iterable[str]) -> Elements:
    """Every bridge of one instance, and every pair among them (a bridge with itself too:
    with br_netfilter, traffic inside one bridge passes the forward hook as well)."""
    own = tuple(sorted(set(bridges)))
    return Elements(own, tuple((a, b) for a in own for b in own))


def apply_script(lab: str, instance: str, bridges: Iterable[str]) -> str:
    """The nft script that creates the table if needed and adds the instance's elements.

    One transaction, safe to run again and beside other instances: the table and sets are
    only added, and the one rule is rewritten (flush, add) in the same transaction.
    """
    t = f"{FAMILY} {TABLE}"
    mine = elements(bridges)
    note = json.dumps(owner(lab, instance))
    lines = [
        f"add table {t}",
        f'add set {t} bridges {{ type ifname; comment "bridges of labctl lab instances"; }}',
        f'add set {t} allowed {{ type ifname . ifname; comment "pairs within one instance"; }}',
        f"add chain {t} forward {{ type filter hook forward priority {PRIORITY}; policy accept; }}",
        f"flush chain {t} forward",
        f"add rule {t} forward iifname @bridges oifname @bridges "
        f"iifname . oifname != @allowed counter reject with icmpx admin-prohibited "
        f'comment "no traffic between two labctl instances"',
    ]
    if mine.bridges:
        items = ", ".join(f"{_quote(b)} comment {note}" for b in mine.bridges)
        lines.append(f"add element {t} bridges {{ {items} }}")
        pairs = ", ".join(f"{_quote(a)} . {_quote(b)} comment {note}" for a, b in mine.pairs)
        lines.append(f"add element {t} allowed {{ {pairs} }}")
    return "\n".join(lines) + "\n"


def apply(lab: str, instance: str, bridges: Iterable[str], nft: NftRunner | None = None) -> None:
    """Isolate the instance whose bridges are ``bridges`` from every other instance."""
    (nft or _nft)(["-f", "-"], apply_script(lab, instance, bridges))


def _value(elem: Any) -> tuple[str, Any]:
    """(comment, value) of one element of ``nft -j`` output."""
    if isinstance(elem, dict) and "elem" in elem:
        inner = elem["elem"]
        return str(inner.get("comment", "")), inner.get("val")
    return "", elem


def owned(lab: str, instance: str, nft: NftRunner | None = None) -> Elements:
    """The instance's elements in the table now (none when there is no table)."""
    try:
        listing = json.loads((nft or _nft)(["-j", "list", "table", FAMILY, TABLE], None) or "{}")
    except HostError as exc:
        # no table (or no nft at all, so no table either): nothing is ours
        if "No such file or directory" in exc.message or "is not installed" in exc.message:
            return Elements((), ())
        raise
    note = owner(lab, instance)
    bridges: list[str] = []
    pairs: list[tuple[str, str]] = []
    for obj in listing.get("nftables", []):
        nset = obj.get("set")
        if not nset or nset.get("table") != TABLE:
            continue
        for elem in nset.get("elem", []):
            comment, val = _value(elem)
            if comment != note:
                continue
            if nset["name"] == "bridges":
                bridges.append(str(val))
            elif nset["name"] == "allowed" and isinstance(val, dict):
                a, b = val["concat"]
                pairs.append((str(a), str(b)))
    return Elements(tuple(sorted(bridges)), tuple(sorted(pairs)))


def remove_script(found: Elements) -> str:
    """The nft script that deletes exactly ``found`` (one transaction)."""
    t = f"{FAMILY} {TABLE}"
    lines = []
    if found.bridges:
        lines.append(f"delete element {t} bridges {{ {', '.join(map(_quote, found.bridges))} }}")
    if found.pairs:
        pairs = ", ".join(f"{_quote(a)} . {_quote(b)}" for a, b in found.pairs)
        lines.append(f"delete element {t} allowed {{ {pairs} }}")
    return "\n".join(lines) + "\n"


def forget(lab: str, instance: str, nft: NftRunner | None = None) -> Elements:
    """Remove the instance's elements (and only them); return what was removed."""
    found = owned(lab, instance, nft)
    if not found.empty:
        (nft or _nft)(["-f", "-"], remove_script(found))
    return found
