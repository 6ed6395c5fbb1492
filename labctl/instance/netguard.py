"""labctl sends packets only to guests on bridges it created, and only while they are up.

A guest's address is only ours while the bridge that holds its subnet exists and is up: with
the bridge gone (a lab taken down behind labctl's back, a lost state file, a subnet chosen
twice), the kernel routes the same address out of the default route, to whatever network
the host sits on. Before labctl opens a connection to a guest, it asks the kernel which
interface the packet would leave by, and refuses unless that is one of the lab's bridges.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Collection

from labctl.errors import LabctlError
from labctl.procs import run

#: argv -> stdout of a command that must succeed (``ip -j ...``); replaced in unit tests.
IpRunner = Callable[[list[str]], str]


class NotOurNetwork(LabctlError):
    """An address labctl was about to contact is not on a bridge of the lab that is up."""

    code = 4  # ExitCode.ENGINE: the lab's network is not what labctl created


def _ip(argv: list[str]) -> str:
    return run(["ip", "-j", *argv]).stdout.decode()


def egress(address: str, ip: IpRunner = _ip) -> str | None:
    """The interface the kernel would send a packet to ``address`` by, or None."""
    try:
        routes = json.loads(ip(["route", "get", address]) or "[]")
    except LabctlError:  # "Network is unreachable": no route at all
        return None
    return str(routes[0]["dev"]) if routes and routes[0].get("dev") else None


def _is_up(device: str, ip: IpRunner) -> bool:
    try:
        links = json.loads(ip(["link", "show", "dev", device]) or "[]")
    except LabctlError:
        return False
    return bool(links) and "UP" in links[0].get("flags", [])


def require_lab_bridge(
    address: str, bridges: Collection[str], guest: str, ip: IpRunner = _ip
) -> None:
    """Raise NotOurNetwork unless packets to ``address`` leave by one of ``bridges``, up.

    Loopback is always fine (published ports live there).
    """
    if ipaddress.ip_address(address).is_loopback:
        return
    device = egress(address, ip)
    if device is not None and device in bridges and _is_up(device, ip):
        return
    expected = ", ".join(sorted(bridges)) or "none recorded"
    found = f"by {device}" if device else "by no route at all"
    raise NotOurNetwork(
        f"{guest}: labctl will not contact {address}: packets to it would leave {found}, "
        f"not by the lab's bridge ({expected}) or that bridge is down",
        "the lab's network is gone or not what labctl created; run `labctl up` to repair it, "
        "or `labctl down` and `labctl up`",
    )
