"""Talking to the system libvirtd through libvirt-python: one URI, one way to connect.

The libvirt backend and doctor both connect here, so doctor looks at the daemon labctl uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal, TypeVar

import libvirt

from labctl.errors import DaemonDown, EngineError, NotFoundError

URI = "qemu:///system"
START_HINT = "start libvirtd: labctl host setup (labctl doctor shows what is missing)"

# libvirt prints every error on stderr by default; labctl reports them itself.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def error(action: str, exc: libvirt.libvirtError, hint: str = START_HINT) -> EngineError:
    """An EngineError that keeps libvirt's own message; NotFoundError when the object is gone."""
    message = f"libvirt could not {action}: {exc.get_error_message()}"
    if gone(exc):  # libvirtd answered: starting it is no remedy
        return NotFoundError(message, None if hint == START_HINT else hint)
    return EngineError(message, hint)


@contextmanager
def connection(uri: str = URI) -> Iterator[libvirt.virConnect]:
    """An open connection to libvirtd (the system one by default), closed afterwards."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        said = error(f"connect to {uri}", exc)
        raise DaemonDown(said.message, said.hint) from exc
    try:
        yield conn
    finally:
        conn.close()


def version(n: int) -> str:
    """A version number as libvirt encodes it (major * 1,000,000 + minor * 1000 + micro)."""
    return f"{n // 1_000_000}.{n // 1000 % 1000}.{n % 1000}"


_Found = TypeVar("_Found")


def _find(look_up: Callable[[str], _Found], name: str, absent: int, what: str) -> _Found | None:
    """``look_up(name)``, or None where libvirt answers with the error code ``absent``."""
    try:
        return look_up(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == absent:
            return None
        raise error(f"look up {what} {name}", exc) from exc


def domain(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    """The domain called ``name``, or None."""
    return _find(conn.lookupByName, name, libvirt.VIR_ERR_NO_DOMAIN, "domain")


def network(conn: libvirt.virConnect, name: str) -> libvirt.virNetwork | None:
    """The network called ``name``, or None."""
    return _find(conn.networkLookupByName, name, libvirt.VIR_ERR_NO_NETWORK, "network")


def gone(exc: libvirt.libvirtError) -> bool:
    """The object went away between listing and reading it (another labctl's ``down``)."""
    return exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_NETWORK)


#: what a domain is doing; ``paused`` is up but answers nothing, ``absent`` not defined
DomainState = Literal["running", "paused", "stopped", "absent"]


def domain_state(dom: libvirt.virDomain | None, name: str) -> DomainState:
    """What a looked-up domain (None: none) is doing now; one removed since is ``absent``."""
    if dom is None:
        return "absent"
    try:
        if not dom.isActive():
            return "stopped"
        paused = dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    except libvirt.libvirtError as exc:
        if gone(exc):  # removed between the look-up and now (another labctl's ``down``)
            return "absent"
        raise error(f"read the state of {name}", exc) from exc
    return "paused" if paused else "running"


def xml(obj: libvirt.virDomain | libvirt.virNetwork, name: str) -> str:
    """The XML libvirt keeps of a domain or network."""
    try:
        return str(obj.XMLDesc())
    except libvirt.libvirtError as exc:
        raise error(f"read the XML of {name}", exc) from exc


def descriptions(objects: list[libvirt.virDomain] | list[libvirt.virNetwork]) -> list[str]:
    """The XML of each listed object that still exists."""
    found = []
    for obj in objects:
        try:
            found.append(str(obj.XMLDesc()))
        except libvirt.libvirtError as exc:
            if not gone(exc):
                raise error(f"read {obj.name()}", exc) from exc
    return found


#: where the system libvirtd keeps a network's runtime files and a VM's QEMU log
RUN_NETWORKS = Path("/run/libvirt/network")
QEMU_LOGS = Path("/var/log/libvirt/qemu")


def remove_leftovers(*, network: str | None = None, domain: str | None = None) -> None:
    """What libvirtd leaves behind of an undefined network (its dnsmasq PID file, an empty
    ``ports`` folder) or domain (QEMU's log, rotated ones too), removed by exact name; best
    effort: what cannot be removed stays, and the down goes on."""
    found: list[Path] = []
    if network is not None:
        found.append(RUN_NETWORKS / f"{network}.pid")
        for empty in (RUN_NETWORKS / network / "ports", RUN_NETWORKS / network):
            with suppress(OSError):  # absent, or not empty: then libvirt's, left as it is
                empty.rmdir()
    if domain is not None:
        found += [QEMU_LOGS / f"{domain}.log", *QEMU_LOGS.glob(f"{domain}.log.*")]
    for path in found:
        with suppress(OSError):
            path.unlink(missing_ok=True)
