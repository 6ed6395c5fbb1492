"""``class verify``: prove on the live class that students cannot reach each other or the host.

From every guest of every student, through that guest's own connection
(``backends.connect``): a TCP connection to each of the student's other guests must open
(their lab works as before); a ping and a TCP connection to every guest of the next student
in the roster (a ring, so each student is probed and probes once, both directions with two)
must fail; and a TCP connection to the host's management ports on the guest's own gateway
(SSH, libvirtd, dockerd, LXD) and to the DNS of the next student's networks (their dnsmasq
on the host's address on their bridges) must fail. Then, on the server, as each student's account
(its uid, which labctl's firewall matches): TCP to each of their own guests and to the port
each publishes on loopback must open, and to the next student's must fail. Packets go only
to the class's own guests, to the host's address on the class's own bridges and to
loopback. What leaks is listed; one leak fails. So does what could not be probed (a lab
that is not up, a guest that does not answer, a student without the account ``class up``
makes): it is a row with its reason, never left out.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from labctl import backends
from labctl.classroom import accounts as student_accounts
from labctl.classroom.state import ClassState
from labctl.command import CommandResult
from labctl.connection import Connection, LocalConnection
from labctl.errors import LabctlError
from labctl.instance.state import GuestRecord, InstanceDir, LabState
from labctl.keys import KeyPair
from labctl.spec.model import DockerGuest, load_lab

#: Host services a student's guest must never reach (port -> what listens there).
HOST_PORTS = {
    22: "the host's SSH",
    16509: "libvirtd (TCP)",
    16514: "libvirtd (TLS)",
    2375: "dockerd (TCP)",
    2376: "dockerd (TLS)",
    8443: "LXD's API",
}
#: DNS: a guest asks its own network's dnsmasq, never another student's (on the host's
#: address on that student's bridge).
DNS_PORT = 53
#: Own-lab paths that the engines block and labctl cannot open (tests/integration/
#: test_isolation.py keeps a strict xfail on the first): (source engine, target engine).
KNOWN_BLOCKED = {
    ("lxd", "libvirt"): "libvirt's NAT rejects connections into its VMs from other bridges",
}

# Connect and exit 0, or exit 1; at most 3 s. Whatever the guest has: python3, OpenBSD's nc
# (the busybox VMs) or busybox's (the app container: its -w bounds the connect only, so
# ``-e true`` ends it once connected, whatever the server does then).
_PY = "import socket,sys\nsocket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()"
PRELUDE = f"""PY={shlex.quote(_PY)}
tcp() {{
  if command -v python3 >/dev/null 2>&1; then python3 -c "$PY" "$1" "$2" >/dev/null 2>&1
  elif command -v nc.openbsd >/dev/null 2>&1; then nc.openbsd -z -w 3 "$1" "$2" >/dev/null 2>&1
  else busybox nc -w 3 "$1" "$2" -e true >/dev/null 2>&1; fi
  echo "tcp $1 $2 $?"
}}
png() {{
  if command -v ping >/dev/null 2>&1; then ping -c1 -W2 "$1" >/dev/null 2>&1
  else busybox ping -c1 -W2 "$1" >/dev/null 2>&1; fi
  echo "ping $1 0 $?"
}}
"""


@dataclass(frozen=True)
class Target:
    """A guest as another guest reaches it."""

    student: str
    guest: str
    engine: str
    address: str
    port: int


@dataclass(frozen=True)
class Probe:
    """One packet test: from a student's guest to an address; what was expected, what happened."""

    student: str
    source: str  # the guest probing
    kind: str  # ping / tcp
    target: str  # "ana/lxc-system", "host"
    address: str
    port: int | None
    expect_open: bool
    reached: bool
    known: str | None = None  # why an own path is blocked by the engines, when it is

    @property
    def leak(self) -> bool:
        """Reached what must stay out of reach."""
        return self.reached and not self.expect_open

    @property
    def broken(self) -> bool:
        """Did not reach the student's own guest, and the engines are not known to block it."""
        return self.expect_open and not self.reached and self.known is None

    @property
    def what(self) -> str:
        """``tcp 10.0.0.2:22`` / ``ping 10.0.0.2``."""
        return f"{self.kind} {self.address}" + (f":{self.port}" if self.port else "")


#: The source of probes sent by a student's Linux account on the server (class up made it).
ACCOUNT = "account"
#: The source named when a student's lab as a whole could not be read.
LAB = "lab"


@dataclass(frozen=True)
class Unverified:
    """What could not be probed, and why: a student's lab, one guest, or their account."""

    student: str
    source: str  # a guest's name, ACCOUNT or LAB
    reason: str
    hint: str | None = None  # what would make it probe-able

    @classmethod
    def of(cls, student: str, source: str, exc: LabctlError) -> Unverified:
        """The row for ``exc``, raised while reading or probing ``student``'s ``source``."""
        return cls(student, source, exc.message, exc.hint)

    def __str__(self) -> str:
        return f"{self.student}/{self.source}: {self.reason}"


@dataclass(frozen=True)
class Report:
    """Every probe of a class; isolated when nothing leaked, own labs work and all was probed."""

    probes: tuple[Probe, ...]
    errors: tuple[Unverified, ...]  # what could not be probed, with why

    @property
    def leaks(self) -> list[Probe]:
        """Probes that reached what they must not."""
        return [p for p in self.probes if p.leak]

    @property
    def broken(self) -> list[Probe]:
        """Own guests that did not answer."""
        return [p for p in self.probes if p.broken]

    @property
    def isolated(self) -> bool:
        """No leak, no broken own path, every guest and every account probed."""
        return not self.leaks and not self.broken and not self.errors

    @property
    def unverified(self) -> list[str]:
        """The students of whom something could not be probed, in order."""
        return list(dict.fromkeys(e.student for e in self.errors))


@dataclass(frozen=True)
class Student:
    """One student's lab as verify sees it."""

    student: str
    state: LabState
    key: KeyPair
    targets: tuple[Target, ...]


def _subnet(state: LabState, engine: str) -> str | None:
    """The instance's network of ``engine`` (each engine has its own)."""
    return {
        "libvirt": state.subnet,
        "lxd": state.lxd_subnet,
        "docker": state.docker_subnet,
        "podman": state.podman_subnet,
    }.get(engine)


def gateway(state: LabState, engine: str) -> str | None:
    """The host's address on the engine's network of the instance (the subnet's first)."""
    net = _subnet(state, engine)
    return str(ipaddress.ip_network(net).network_address + 1) if net else None


def _own_address(rec: GuestRecord, state: LabState, conn: Connection) -> str | None:
    """The guest's address on its instance's network (an app container says it itself)."""
    if rec.address and not ipaddress.ip_address(rec.address).is_loopback:
        return rec.address
    subnet = _subnet(state, rec.engine) if rec.engine in ("docker", "podman") else None
    if subnet is None:
        return None
    net = ipaddress.ip_network(subnet)
    said = conn.run("hostname -i 2>/dev/null || ip -4 -o addr show scope global", timeout=20)
    for word in said.stdout.replace("/", " ").split():
        try:
            if ipaddress.ip_address(word) in net:
                return word
        except ValueError:
            continue
    return None


def student_lab(lab: str, student: str, instance: str, connect: ConnectFn) -> Student:
    """The targets of one student: each guest's address on the instance's networks."""
    inst = InstanceDir(lab, instance)
    state = inst.load()
    if state is None:
        raise LabctlError(f"their lab ({instance}) is not up", "labctl class up")
    key = KeyPair(inst.key)
    spec = load_lab(Path(state.spec_path))
    targets = []
    for name, rec in state.guests.items():
        address = _own_address(rec, state, connect(rec, key))
        if address is None:
            raise LabctlError(f"{name} has no address on its lab's network")
        guest = spec.guests.get(name)
        port = guest.port if isinstance(guest, DockerGuest) else (rec.port or 22)
        targets.append(Target(student, name, rec.engine, address, port))
    return Student(student, state, key, tuple(targets))


ConnectFn = Callable[[GuestRecord, KeyPair], Connection]


def _script(me: Student, src: Target, other: Student | None) -> tuple[str, list[Probe]]:
    """The shell script run in ``src`` and the probes it makes (reached filled in later)."""
    lines = [PRELUDE]
    planned: list[Probe] = []
    for t in me.targets:
        if t.guest == src.guest:
            continue
        known = KNOWN_BLOCKED.get((src.engine, t.engine))
        lines.append(f"tcp {t.address} {t.port}")
        planned.append(
            Probe(
                me.student,
                src.guest,
                "tcp",
                f"{me.student}/{t.guest}",
                t.address,
                t.port,
                True,
                False,
                known,
            )
        )
    for t in other.targets if other else ():
        lines += [f"png {t.address}", f"tcp {t.address} {t.port}"]
        for kind, port in (("ping", None), ("tcp", t.port)):
            planned.append(
                Probe(
                    me.student,
                    src.guest,
                    kind,
                    f"{t.student}/{t.guest}",
                    t.address,
                    port,
                    False,
                    False,
                )
            )
    host = gateway(me.state, src.engine)
    for port in HOST_PORTS if host else ():
        lines.append(f"tcp {host} {port}")
        planned.append(Probe(me.student, src.guest, "tcp", "host", str(host), port, False, False))
    # the DNS of the next student's networks (their dnsmasq, on the host's address there)
    for address in _gateways(other) if other else ():
        lines.append(f"tcp {address} {DNS_PORT}")
        planned.append(Probe(me.student, src.guest, "tcp", "host", address, DNS_PORT, False, False))
    return "\n".join(lines) + "\n", planned


def _gateways(lab: Student) -> list[str]:
    """The host's address on each network of the student's lab that has a guest."""
    return sorted({g for t in lab.targets if (g := gateway(lab.state, t.engine))})


def _results(stdout: str) -> dict[tuple[str, str, int | None], bool]:
    found: dict[tuple[str, str, int | None], bool] = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in ("tcp", "ping") and parts[3].isdigit():
            port = int(parts[2]) if parts[0] == "tcp" else None
            found[(parts[0], parts[1], port)] = parts[3] == "0"
    return found


def _answered(planned: list[Probe], result: CommandResult) -> list[Probe]:
    """``planned`` with what the script's output says of each; every probe must answer."""
    answers = _results(result.stdout)
    missing = [p for p in planned if (p.kind, p.address, p.port) not in answers]
    if missing:
        raise LabctlError(f"{len(missing)} probes gave no answer ({result.detail})")
    return [replace(p, reached=answers[(p.kind, p.address, p.port)]) for p in planned]


def probe_from(me: Student, src: Target, other: Student | None, connect: ConnectFn) -> list[Probe]:
    """Run one guest's probes through its connection; every planned probe gets its answer."""
    script, planned = _script(me, src, other)
    rec = me.state.guests[src.guest]
    result = connect(rec, me.key).run(f"sh -c {shlex.quote(script)}", timeout=120)
    return _answered(planned, result)


#: (student, class) -> (uid, gid) of the student's account; raises LabctlError saying why
#: there is none to probe as.
AccountOf = Callable[[str, str], "tuple[int, int]"]


def account_of(
    student: str, class_name: str, system: student_accounts.System | None = None
) -> tuple[int, int]:
    """The uid and gid of the account ``class up`` made for ``student`` in ``class_name``.

    Raises :class:`LabctlError` with the reason when labctl has no such account: no record,
    a record of another class or cut before ``useradd``, or a passwd entry that is gone or
    is no longer the recorded uid.
    """
    again = f"run labctl class up ROSTER --class {class_name} again: it makes what is missing"
    found = student_accounts.record(student)
    if found is None:
        raise LabctlError("no account record: labctl made no account for this student", again)
    if found.class_name != class_name:
        raise LabctlError(
            f"the account record {found.user} belongs to class {found.class_name}",
            "a student id is one account on this server: give this student another id",
        )
    if found.uid is None:
        raise LabctlError(f"account {found.user} was recorded but never created", again)
    entry = (system or student_accounts.System()).lookup(found.user)
    if entry is None:
        raise LabctlError(f"account {found.user} is recorded but gone from this host", again)
    if entry.uid != found.uid:
        raise LabctlError(
            f"account {found.user} has uid {entry.uid}, labctl recorded uid {found.uid}",
            "someone re-created the account: labctl's firewall knows the recorded uid only",
        )
    return found.uid, entry.gid


def _account_script(me: Student, other: Student | None) -> tuple[str, list[Probe]]:
    """What a student's account tries from the server: each guest of their own lab and of
    the next student's, on the guest's own address and on the port it publishes on loopback."""
    lines = [PRELUDE]
    planned: list[Probe] = []
    for lab, expect in ((me, True), *(((other, False),) if other else ())):
        for t in lab.targets:
            published = lab.state.guests[t.guest].host_port
            for address, port in (
                (t.address, t.port),
                *((("127.0.0.1", published),) if published else ()),
            ):
                lines.append(f"tcp {address} {port}")
                target = f"{t.student}/{t.guest}"
                planned.append(
                    Probe(me.student, ACCOUNT, "tcp", target, address, port, expect, False)
                )
    return "\n".join(lines) + "\n", planned


def probe_account(
    me: Student, other: Student | None, ids: tuple[int, int], host: Connection
) -> list[Probe]:
    """Run the account's probes on the server as its uid (the firewall matches the uid)."""
    script, planned = _account_script(me, other)
    uid, gid = ids
    command = (
        f"env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin setpriv --reuid={uid} --regid={gid} "
        f"--clear-groups sh -c {shlex.quote(script)}"
    )
    return _answered(planned, host.run(command, timeout=120))


#: One probing job: the student, the guest probing (None: their account, as these ids), and
#: the next student in the ring.
_Job = tuple[Student, Target | None, Student | None, tuple[int, int] | None]


def verify(
    state: ClassState,
    connect: ConnectFn = backends.connect,
    parallel: int = 4,
    host: Connection | None = None,
    accounts: AccountOf = account_of,
) -> Report:
    """Probe the live class ``state``: from every student's guests and from their account on
    the server (as its uid, through ``host``), their own lab and ring-wise the next one's.

    What cannot be probed is a row of ``errors`` with its reason, never skipped: a student
    whose lab is not up, a guest that does not answer, a student without their account.
    """
    errors: list[Unverified] = []
    labs: list[Student] = []
    for seat in state.seats.values():
        try:
            labs.append(student_lab(state.lab, seat.student, seat.instance, connect))
        except LabctlError as exc:
            errors.append(Unverified.of(seat.student, LAB, exc))

    def next_of(i: int) -> Student | None:
        return labs[(i + 1) % len(labs)] if len(labs) > 1 else None

    jobs: list[_Job] = [
        (me, src, next_of(i), None) for i, me in enumerate(labs) for src in me.targets
    ]
    for i, me in enumerate(labs):
        try:
            jobs.append((me, None, next_of(i), accounts(me.student, state.name)))
        except LabctlError as exc:
            errors.append(Unverified.of(me.student, ACCOUNT, exc))

    server = host or LocalConnection()

    def run(job: _Job) -> list[Probe] | Unverified:
        me, src, other, ids = job
        try:
            if src is None:
                assert ids is not None
                return probe_account(me, other, ids, server)
            return probe_from(me, src, other, connect)
        except LabctlError as exc:
            return Unverified.of(me.student, src.guest if src else ACCOUNT, exc)

    probes: list[Probe] = []
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for outcome in pool.map(run, jobs):
            if isinstance(outcome, Unverified):
                errors.append(outcome)
            else:
                probes.extend(outcome)
    return Report(tuple(probes), tuple(errors))


def verdict(report: Report) -> str:
    """The last line's word: NOT isolated only for a leak; not verified when something
    could not be probed (and nothing leaked); isolated, own paths broken when the probes
    found no leak but a student's own guest did not answer."""
    if report.leaks:
        return "NOT isolated"
    if report.errors:
        return "not verified"
    if report.broken:
        return "isolated, own paths broken"
    return "isolated"


def summary(report: Report) -> Iterable[str]:
    """Counts for the last line: probes made, leaks, broken own paths, known blocks."""
    known = sum(1 for p in report.probes if p.expect_open and not p.reached and p.known)
    yield f"{len(report.probes)} probes"
    yield f"{len(report.leaks)} leaks"
    yield f"{len(report.broken)} own paths broken"
    if known:
        yield f"{known} own paths blocked by the engines (known)"
    if report.errors:
        n = len(report.unverified)
        yield f"{n} student{'s' if n > 1 else ''} not verified ({len(report.errors)} unprobed)"
