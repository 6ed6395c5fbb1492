"""Host-wide reservations of subnets and host ports, so that two instances never pick the same.

``<state>/reservations.json`` is read, changed and written only under
``<state>/reservations.lock``. A subnet or port is chosen and written there while the lock
is held, before any engine object exists; ``labctl down`` releases the instance's entries.
Without it, two ``up`` started at the same moment both saw the same first free /24 (Docker:
"Pool overlaps with other one"; libvirt: two bridges on one subnet).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labctl.errors import LabctlError
from labctl.instance import subnets
from labctl.instance.state import LabState
from labctl.paths import state_dir
from labctl.private import locked, private_dir, read_saved, write_private

#: Entries are ``{"lab": ..., "instance": ..., "use": ...}`` keyed by subnet or port.
Book = dict[str, dict[str, dict[str, str]]]


def _free_port() -> int:
    """A port nobody listens on at 127.0.0.1, as the kernel hands out for port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Reservations:
    """The reservation file of one state root (one per host in normal use)."""

    def __init__(self, root: Path | None = None, wait: float = 60.0) -> None:
        self.root = root or state_dir()
        self.path = self.root / "reservations.json"
        self.wait = wait

    @contextmanager
    def _book(self, write: bool = True) -> Iterator[Book]:
        """The reservations under the lock; written back at the end unless only read."""
        private_dir(self.root)

        def refuse() -> LabctlError:
            return LabctlError(
                f"another labctl has held {self.path} for {self.wait:.0f} s",
                "a labctl process may hang: look for it with `ps` and stop it",
            )

        with locked(self.root / "reservations.lock", self.wait, refuse):
            saved: Book | None = read_saved(
                self.path,
                json.loads,
                f"reservation file {self.path}",
                "remove it, then run `labctl up` for every lab instance that runs: each "
                "reserves its own subnets and ports again",
            )
            book = saved if saved is not None else {}
            book.setdefault("subnets", {})
            book.setdefault("ports", {})
            yield book
            if write:
                write_private(self.path, json.dumps(book, indent=2, sort_keys=True))

    def entries(self) -> Book:
        """Everything reserved now (a copy); nothing is written."""
        with self._book(write=False) as book:
            copy: Book = json.loads(json.dumps(book))
            return copy

    def subnet(
        self,
        lab: str,
        instance: str,
        use: str,
        pool: str,
        used: Callable[[], Iterable[subnets.Net]],
        preferred: str | None = None,
        existing: str | None = None,
    ) -> str:
        """A /24 of ``pool`` for ``use`` of this instance, reserved before anything exists.

        ``existing`` is the subnet the instance's network really has, when the network
        exists: it wins over any record and is claimed as it is. Otherwise the instance's
        own reservation, else ``preferred`` (the state's), is kept while
        nothing else took it; otherwise the first /24 that overlaps neither ``used()`` (the
        host's and the engines' networks, asked while the lock is held) nor another
        reservation.
        """
        tag = _tag(lab, instance, use)
        if existing is not None:
            self.claim_subnet(lab, instance, use, existing)
            return existing
        with self._book() as book:
            table = book["subnets"]
            taken = list(used())
            others = [ipaddress.ip_network(s) for s, t in table.items() if t != tag]
            mine = [s for s, t in table.items() if t == tag]
            for candidate in [*mine, *([preferred] if preferred else [])]:
                net = ipaddress.ip_network(candidate)
                if not any(net.overlaps(o) for o in [*taken, *others]):
                    chosen = candidate
                    break
            else:
                chosen = subnets.pick(pool, [*taken, *others])
            _put(table, chosen, tag)
            return chosen

    def network_subnet(
        self,
        state: LabState,
        engine: str,
        pool: str,
        engine_subnets: Callable[[], Iterable[str | None]],
        preferred: str | None,
        existing: str | None,
    ) -> str:
        """The subnet of the instance's ``engine`` network (see :meth:`subnet`), clear of the
        host's subnets and of ``engine_subnets()``, those of the engine's networks (None for a
        network without one)."""

        def used() -> list[subnets.Net]:
            found = engine_subnets()
            return [*subnets.host_subnets(), *(ipaddress.ip_network(s) for s in found if s)]

        return self.subnet(
            state.lab, state.instance, engine, pool, used, preferred=preferred, existing=existing
        )

    def claim_subnet(self, lab: str, instance: str, use: str, subnet: str) -> None:
        """Record a subnet an existing network of this instance really has."""
        with self._book() as book:
            _put(book["subnets"], subnet, _tag(lab, instance, use))

    def port(
        self,
        lab: str,
        instance: str,
        use: str,
        preferred: int | None = None,
        is_free: Callable[[int], bool] | None = None,
    ) -> int:
        """A host port for ``use``: ``preferred`` (the recorded one) while it is free, else new."""
        tag = _tag(lab, instance, use)
        free = is_free or port_free
        with self._book() as book:
            table = book["ports"]
            others = {int(p) for p, t in table.items() if t != tag}
            mine = [int(p) for p, t in table.items() if t == tag]
            for candidate in [*([preferred] if preferred else []), *mine]:
                if candidate not in others and free(candidate):
                    chosen = candidate
                    break
            else:
                chosen = _free_port()
                while chosen in others:
                    chosen = _free_port()
            _put(table, str(chosen), tag)
            return chosen

    def claim_port(self, lab: str, instance: str, use: str, port: int) -> None:
        """Record the port an existing container of this instance really publishes."""
        with self._book() as book:
            _put(book["ports"], str(port), _tag(lab, instance, use))

    def holds(self, lab: str, instance: str) -> bool:
        """True when the instance has any subnet or port reserved."""
        book = self.entries()
        return any(_ours(t, lab, instance) for table in book.values() for t in table.values())

    def release(self, lab: str, instance: str) -> int:
        """Drop every reservation of the instance; how many there were."""
        with self._book() as book:
            gone = 0
            for table in book.values():
                for key in [k for k, t in table.items() if _ours(t, lab, instance)]:
                    del table[key]
                    gone += 1
            return gone


def _tag(lab: str, instance: str, use: str) -> dict[str, str]:
    return {"lab": lab, "instance": instance, "use": use}


def _ours(tag: dict[str, Any], lab: str, instance: str) -> bool:
    return tag.get("lab") == lab and tag.get("instance") == instance


def _put(table: dict[str, dict[str, str]], key: str, tag: dict[str, str]) -> None:
    """Reserve ``key`` for ``tag``; a use holds one key, so an older choice of it goes."""
    for old in [k for k, t in table.items() if t == tag and k != key]:
        del table[old]
    table[key] = tag


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
