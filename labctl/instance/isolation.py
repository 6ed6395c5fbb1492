"""No traffic between two lab instances, whatever their engines: labctl's own rules.

Each instance has up to three bridges (libvirt ``lcbr…``, Docker ``br-…``, LXD ``lclx…``).
The engines' own firewalls do not keep two instances apart: Docker accepts any routed
packet to a published port, libvirt lets its VMs out to any address, and LXD accepts
everything on its bridges. One nftables table, ``inet labctl``, does, with three chains:

- ``forward``: a packet from a labctl bridge to a labctl bridge of another instance is
  rejected (the sets ``bridges`` and ``allowed``, the (in, out) pairs of one instance);
- ``input``: a guest reaches the host only on its own bridge's address (or a broadcast or
  multicast one: DHCP), and there only for DNS and DHCP; besides, the guests' apt cache on
  its one address and port. Never the host's SSH, libvirtd, dockerd or LXD, nor the
  dnsmasq of another instance's bridge (connections the host opened are answered as usual);
- ``output``: a student's account (class mode, set ``students``, kept while the account
  exists) reaches only its own instance's bridges (``student_bridges``) and published ports
  (``student_ports``) of all labctl bridges and of the ports labctl publishes on loopback
  (``ports``, matched before any DNAT), and serves on no one else's: another student's
  guests are out of reach from the server's shell and through SSH's ProxyJump. The guests'
  apt cache, which fetches what a guest names, fetches nothing from a lab's bridges.

The world outside stays as the engines make it. Every element carries its instance in its
comment, so ``down`` removes exactly its own; the table stays until ``labctl host teardown``.
"""

from __future__ import annotations

import ipaddress
import json
import pwd
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any, cast
from urllib.parse import urlsplit

from labctl.errors import HostError
from labctl.paths import guest_apt_proxy
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


def account(uid: int) -> str:
    """The comment of a student account's entry in ``students``: it stays while the account
    does, whatever happens to the instance (a ``down`` and ``up``, a reset)."""
    return f"labctl account uid {uid}"


def _quote(name: str) -> str:
    # Interface names are at most 15 characters of [a-z0-9-] here; refuse anything else
    # rather than escape it into an nft script.
    if not name or len(name) > 15 or not all(c.isalnum() or c in "-_." for c in name):
        raise HostError(f"{name!r} is not a bridge name labctl would create", HINT)
    return f'"{name}"'


#: The table's sets: name -> (type, what it holds). ``typeof`` lets nft pick the key's type.
SETS = {
    "bridges": ("type ifname", "bridges of labctl lab instances"),
    "allowed": ("type ifname . ifname", "pairs within one instance"),
    "ports": ("type inet_service", "ports labctl publishes on the host's loopback"),
    "students": ("typeof meta skuid", "students' accounts (class mode)"),
    "student_bridges": ("typeof meta skuid . oifname", "a student's own bridges"),
    "student_ports": ("typeof meta skuid . tcp dport", "a student's own published ports"),
}
#: What guests may ask of the host on their own bridge's address: DNS and DHCP (the
#: engines' dnsmasq, Podman's aardvark-dns).
GUEST_HOST_PORTS = (53, 67)
APT_CACHE_USER = "apt-cacher-ng"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Value = str | int | tuple[str, str] | tuple[int, str] | tuple[int, int]


@dataclass(frozen=True)
class Elements:
    """One instance's set elements: a field per set of :data:`SETS`, each sorted."""

    bridges: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    ports: tuple[int, ...] = ()
    students: tuple[int, ...] = ()
    student_bridges: tuple[tuple[int, str], ...] = ()
    student_ports: tuple[tuple[int, int], ...] = ()

    @property
    def empty(self) -> bool:
        """True when the instance has nothing in the table."""
        return not any(self.by_set().values())

    def by_set(self) -> dict[str, tuple[Value, ...]]:
        """The elements under their set's name (``pairs`` are the set ``allowed``)."""
        return {_set_of(f.name): getattr(self, f.name) for f in fields(self)}


def _set_of(field: str) -> str:
    return "allowed" if field == "pairs" else field


def elements(bridges: Iterable[str]) -> Elements:
    """Every bridge of one instance, and every pair among them (a bridge with itself too:
    with br_netfilter, traffic inside one bridge passes the forward hook as well)."""
    own = tuple(sorted(set(bridges)))
    return Elements(own, tuple((a, b) for a in own for b in own))


def _item(value: Value) -> str:
    """One element as nft reads it: a quoted bridge name, a number, or a concatenation."""
    if isinstance(value, tuple):
        return " . ".join(_item(v) for v in value)
    if isinstance(value, int):
        if not 0 <= value < 2**32:
            raise HostError(f"{value} is not a port or user id", HINT)
        return str(value)
    return _quote(value)


def _add(found: Elements, note: str) -> list[str]:
    t = f"{FAMILY} {TABLE}"
    comment = json.dumps(note)
    return [
        f"add element {t} {name} {{ {', '.join(f'{_item(v)} comment {comment}' for v in values)} }}"
        for name, values in found.by_set().items()
        if values
    ]


def apt_cache() -> tuple[IPAddress, int] | None:
    """The guests' apt cache on the host, (address, port) from host setup's URL; None when
    the guests have none (they then ask the host for DNS and DHCP only)."""
    url = guest_apt_proxy()
    if not url:
        return None
    try:
        parts = urlsplit(url)
        return ipaddress.ip_address(parts.hostname or ""), parts.port or (
            443 if parts.scheme == "https" else 80
        )
    except ValueError as exc:
        raise HostError(
            f"the guests' apt cache {url!r} is not an address and port labctl can let guests "
            f"reach ({exc})",
            "write it as http://ADDRESS:PORT in LABCTL_GUEST_APT_PROXY or "
            "/etc/labctl/guest-apt-proxy (labctl host setup does)",
        ) from exc


def table_script() -> str:
    """The table, its sets and its three chains' rules: made if missing, rules rewritten.

    Only added, never deleted: safe to run again and beside every instance's elements.
    """
    t = f"{FAMILY} {TABLE}"
    lines = [f"add table {t}"]
    lines += [
        f'add set {t} {name} {{ {kind}; comment "{what}"; }}' for name, (kind, what) in SETS.items()
    ]
    for chain in ("forward", "input", "output"):
        lines += [
            f"add chain {t} {chain} {{ type filter hook {chain} priority {PRIORITY}; "
            "policy accept; }",
            f"flush chain {t} {chain}",
        ]
    lines += [
        f"add rule {t} forward iifname @bridges oifname @bridges "
        f"iifname . oifname != @allowed counter reject with icmpx admin-prohibited "
        f'comment "no traffic between two labctl instances"',
        *_input_rules(t),
        f"add rule {t} output meta skuid @students oifname @bridges "
        f"meta skuid . oifname != @student_bridges counter reject with icmpx admin-prohibited "
        f'comment "a student reaches the guests of their own lab only"',
        # the address and port asked for, before any DNAT of the nat hook (priority -100)
        f"add rule {t} output meta skuid @students meta l4proto tcp "
        f"ct original ip daddr 127.0.0.0/8 ct original proto-dst @ports "
        f"meta skuid . ct original proto-dst != @student_ports counter reject with tcp reset "
        f'comment "a student reaches the published ports of their own lab only"',
        f'add rule {t} output meta skuid @students oifname "lo" tcp sport @ports '
        f"meta skuid . tcp sport != @student_ports counter reject with tcp reset "
        f'comment "a student serves on no other lab\'s published port"',
    ]
    relay = _uid_of(APT_CACHE_USER)
    if relay is not None:  # it fetches what guests ask for: never from a lab's guests
        lines.append(
            f"add rule {t} output meta skuid {relay} oifname @bridges counter reject "
            f'comment "the apt cache fetches from the mirror, never from a guest"'
        )
    return "\n".join(lines) + "\n"


def _input_rules(t: str) -> list[str]:
    """What a guest may ask of the host: answers to what the host opened; the apt cache on its
    address and port; else only its own bridge's address (broadcast, multicast: DHCP), and on
    it DNS and DHCP only."""
    rules = [f"add rule {t} input iifname @bridges ct state established,related accept"]
    cache = apt_cache()
    if cache is not None:
        address, port = cache
        family = "ip6" if address.version == 6 else "ip"
        rules.append(
            f"add rule {t} input iifname @bridges {family} daddr {address} tcp dport {port} "
            f'accept comment "the guests\' apt cache"'
        )
    open_ports = ", ".join(str(p) for p in GUEST_HOST_PORTS)
    return [
        *rules,
        # the host's address on another bridge (another instance's dnsmasq) is not local
        # but unicast for a packet that came in by this one
        f"add rule {t} input iifname @bridges fib daddr . iif type != "
        "{ local, broadcast, multicast } counter reject with icmpx admin-prohibited "
        f'comment "a guest reaches the host on its own bridge\'s address only"',
        f"add rule {t} input iifname @bridges meta l4proto {{ tcp, udp }} "
        f"th dport != {{ {open_ports} }} counter reject with icmpx admin-prohibited "
        f'comment "guests ask the host for DNS and DHCP only"',
    ]


def _uid_of(user: str) -> int | None:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def apply_script(lab: str, instance: str, bridges: Iterable[str]) -> str:
    """The nft script that makes the table (:func:`table_script`) and adds the instance's
    bridges and pairs, in one transaction."""
    return table_script() + "".join(
        f"{line}\n" for line in _add(elements(bridges), owner(lab, instance))
    )


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
    return _carrying(owner(lab, instance), nft)


def _listed(nft: NftRunner | None) -> Iterator[tuple[str, str, Value]]:
    """(set, comment, value) of every element of labctl's table (none when there is none)."""
    try:
        listing = json.loads((nft or _nft)(["-j", "list", "table", FAMILY, TABLE], None) or "{}")
    except HostError as exc:
        # no nft at all (so no table either), or nft's own answer for a missing table:
        # nothing is ours
        if (
            isinstance(exc.__cause__, FileNotFoundError)
            or "No such file or directory" in exc.message
        ):
            return
        raise
    for obj in listing.get("nftables", []):
        nset = obj.get("set")
        if not nset or nset.get("table") != TABLE or nset.get("name") not in SETS:
            continue
        for elem in nset.get("elem", []):
            comment, val = _value(elem)
            yield nset["name"], comment, tuple(val["concat"]) if isinstance(val, dict) else val


def port_owners(port: int, nft: NftRunner | None = None) -> list[str]:
    """The instances (``lab/instance``) that publish ``port`` on loopback now."""
    return sorted(
        comment.removeprefix("labctl ")
        for name, comment, val in _listed(nft)
        if name == _set_of("ports") and val == port
    )


def _carrying(note: str, nft: NftRunner | None) -> Elements:
    """The elements whose comment is ``note`` (none when there is no table)."""
    found: dict[str, list[Value]] = {name: [] for name in SETS}
    for name, comment, val in _listed(nft):
        if comment == note:
            found[name].append(val)
    # one kind of value per set, so each sorts; the dataclass's fields say which kind
    by_field = {
        f.name: tuple(sorted(cast(list[Any], found[_set_of(f.name)]))) for f in fields(Elements)
    }
    return Elements(**cast(dict[str, Any], by_field))


def remove_script(found: Elements) -> str:
    """The nft script that deletes exactly ``found`` (one transaction)."""
    t = f"{FAMILY} {TABLE}"
    return "".join(
        f"delete element {t} {name} {{ {', '.join(map(_item, values))} }}\n"
        for name, values in found.by_set().items()
        if values
    )


def publish(lab: str, instance: str, ports: Iterable[int], nft: NftRunner | None = None) -> None:
    """Record the ports the instance publishes on loopback (students reach only their own)."""
    mine = Elements((), (), ports=tuple(sorted(set(ports))))
    if not mine.empty:
        (nft or _nft)(
            ["-f", "-"],
            table_script() + "".join(f"{x}\n" for x in _add(mine, owner(lab, instance))),
        )


def admit(lab: str, instance: str, uid: int, nft: NftRunner | None = None) -> Elements:
    """Make ``uid`` a student whose account reaches this instance's bridges and ports only.

    ``uid`` stays a student until :func:`release` (its account is removed); what it may reach
    goes with the instance (``forget``) and is read from the table here, so call this again
    whenever the instance's networks are made (``lab.lifecycle`` does, from the instance's
    owner): before that, the account reaches no lab at all. Returns what was added.
    """
    have = owned(lab, instance, nft)
    reach = Elements(
        (),
        (),
        student_bridges=tuple((uid, b) for b in have.bridges),
        student_ports=tuple((uid, p) for p in have.ports),
    )
    script = table_script() + "".join(
        f"{line}\n"
        for line in _add(Elements((), (), students=(uid,)), account(uid))
        + _add(reach, owner(lab, instance))
    )
    (nft or _nft)(["-f", "-"], script)
    return replace(reach, students=(uid,))


def release(uid: int, nft: NftRunner | None = None) -> Elements:
    """``uid`` is no student any more (its account is gone): remove its entry."""
    found = _carrying(account(uid), nft)
    if not found.empty:
        (nft or _nft)(["-f", "-"], remove_script(found))
    return found


def forget(lab: str, instance: str, nft: NftRunner | None = None) -> Elements:
    """Remove the instance's elements (and only them); return what was removed."""
    found = owned(lab, instance, nft)
    if not found.empty:
        (nft or _nft)(["-f", "-"], remove_script(found))
    return found
