"""What students' laptops call this server: the name their access sheets give it.

``LABCTL_SERVER`` when set (by the instructor, or by a controller that placed the class over
several hosts: the inventory's address): a host name or an IPv4 or IPv6 address, refused
otherwise (it is written into every sheet's ssh_config). Otherwise labctl guesses, and
``class up`` says what it chose (:meth:`Server.note`): the host's FQDN, unless that is a
loopback name (Debian's ``/etc/hosts`` maps the host's name to 127.0.1.1, containers map it
to 127.0.0.1, and ``getfqdn()`` then answers ``localhost``) or resolves to nothing; then the
host's own address on its default route; and only when there is none, the FQDN, with a
warning.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from labctl.errors import SpecError

ENV = "LABCTL_SERVER"
#: one label of a host name (RFC 1123): letters, digits and inner dashes, at most 63
LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
#: names of the loopback whatever the resolver says (Debian's /etc/hosts spells the last two)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
#: documentation addresses (TEST-NET-1, RFC 5737; RFC 3849): a UDP ``connect`` to them only
#: asks the kernel for a route and a source address; no packet is sent
PROBES = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))

Resolver = Callable[[str], list[str]]
Router = Callable[[], str | None]


@dataclass(frozen=True)
class Server:
    """The name the sheets use and whence it came.

    ``source``: ``env`` (``LABCTL_SERVER``), ``fqdn`` (the host's FQDN, not a loopback name),
    ``route`` (the address on the default route; the FQDN was loopback or resolved to nothing)
    or ``unreachable`` (that FQDN all the same, for want of a default route).
    """

    name: str
    source: Literal["env", "fqdn", "route", "unreachable"]
    fqdn: str = ""

    def note(self) -> str | None:
        """The line ``class up`` prints when labctl guessed the name; None when it was given."""
        change = f"{ENV}=NAME (what students' laptops reach) and run the same class up again"
        if self.source == "env":
            return None
        if self.source == "unreachable":
            return (
                f"Warning: the access sheets name this server {self.name}, which students' "
                "laptops cannot reach (a loopback name, or one that resolves to no address, "
                f"and the host has no default route): set {change}."
            )
        why = (
            "its FQDN"
            if self.source == "fqdn"
            else f"its address on the default route: its FQDN {self.fqdn} is a loopback name "
            "or resolves to no address"
        )
        return (
            f"The access sheets name this server {self.name} ({why}); to change it, set {change}."
        )


def addresses(name: str) -> list[str]:
    """The addresses ``name`` resolves to on this host (empty when it resolves to none)."""
    try:
        found = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in found})


def route_address() -> str | None:
    """This host's own address on its default route (IPv4 first), or None when it has none."""
    for family, probe in PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))  # UDP: picks the route and the source address, sends nothing
                address = ipaddress.ip_address(s.getsockname()[0])
        except (OSError, ValueError):
            continue
        if not (address.is_loopback or address.is_unspecified or address.is_link_local):
            return str(address)
    return None


def is_loopback(name: str, found: list[str]) -> bool:
    """True when ``name`` is a loopback name or address, or every address it resolves to
    (``found``) is."""
    if name.lower().rstrip(".") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    return bool(found) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in found)


def host_problem(name: str) -> str | None:
    """Why ``name`` is neither a host name nor an IP address, or None."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:  # fe80::1%eth0: a zone means nothing on a laptop (nor to ssh_config)
        return "an address with a zone (%...) means nothing on a laptop" if "%" in name else None
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if len(name) > 253 or not all(LABEL_RE.fullmatch(label) for label in labels):
        return (
            "a host name is labels of letters, digits and inner dashes (at most 63 each) "
            "joined by dots"
        )
    if labels[-1].isdigit():  # 10.0.0.256: no top-level domain is a number
        return "it is not an IP address, and a host name does not end in a number"
    return None


def find(
    env: Mapping[str, str] | None = None,
    fqdn: Callable[[], str] = socket.getfqdn,
    resolve: Resolver = addresses,
    route: Router = route_address,
) -> Server:
    """The name students' laptops call this server; see the module's docstring."""
    given = (os.environ if env is None else env).get(ENV, "").strip()
    if given:
        bad = host_problem(given)
        if bad is not None:
            raise SpecError(
                f"{ENV}={given!r} is not a host name or an IP address: {bad}",
                f"set {ENV} to what students' laptops reach this server by (e.g. "
                "lab1.example.org, 192.0.2.10 or 2001:db8::10), or unset it and labctl chooses",
            )
        return Server(given, "env", given)
    name = fqdn()
    found = resolve(name)
    if found and not is_loopback(name, found):
        return Server(name, "fqdn", name)
    address = route()
    if address is not None:
        return Server(address, "route", name)
    return Server(name, "unreachable", name)
