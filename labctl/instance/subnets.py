"""Choosing free subnets for a lab's networks, and recording them."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable

from labctl.errors import EngineError
from labctl.procs import run

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def host_subnets() -> list[Net]:
    """Subnets of this host's interfaces and routes."""
    used: list[Net] = []
    for link in json.loads(run(["ip", "-j", "-4", "addr"]).stdout or b"[]"):
        for addr in link.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    for route in json.loads(run(["ip", "-j", "-4", "route"]).stdout or b"[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            used.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    return used


def pick(pool: str, used: Iterable[Net]) -> str:
    """First /24 of ``pool`` that overlaps nothing in ``used``."""
    taken = list(used)
    for candidate in ipaddress.ip_network(pool).subnets(new_prefix=24):
        if not any(candidate.overlaps(u) for u in taken):
            return str(candidate)
    raise EngineError(
        f"no free /24 left in {pool} for the lab's networks",
        "set network.pool in the lab file to an unused range, or bring other labs down",
    )
