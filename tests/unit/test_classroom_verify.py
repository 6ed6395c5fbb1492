"""class verify's logic on fake guests, and its probe script run for real on loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from labctl.classroom import accounts, verify
from labctl.classroom.state import ClassDir, ClassState, Seat
from labctl.classroom.verify import ACCOUNT
from labctl.cli import app
from labctl.command import CommandResult
from labctl.connection import Connection
from labctl.errors import ExitCode, LabctlError
from labctl.instance.state import GuestRecord, InstanceDir, LabState
from labctl.keys import KeyPair
from tests.ci import needs
from tests.labs import APP, BOX, VM, lab_yaml
from tests.unit.fake_accounts import FakeSystem
from tests.unit.fake_connection import FakeConnection

# Two students; each: a VM, a system container and an app container on three /24s.
NETS = {
    "ana": ("10.210.1", "10.211.1", "10.212.1"),
    "bo": ("10.210.2", "10.211.2", "10.212.2"),
}
Reach = Callable[[str, str, str, int | None], bool]  # (student, guest, address, port)


def lab_state(student: str, spec: Path) -> LabState:
    vm, lxd, docker = NETS[student]
    instance = f"so-{student}"
    return LabState(
        "cls",
        instance,
        str(spec),
        subnet=f"{vm}.0/24",
        network=f"labctl-cls-{instance}",
        lxd_subnet=f"{lxd}.0/24",
        docker_subnet=f"{docker}.0/24",
        docker_network=f"labctl-cls-{instance}",
        guests={
            "vm": GuestRecord(
                "vm", "libvirt", f"labctl-cls-{instance}-vm", "ready", address=f"{vm}.10", port=22
            ),
            "box": GuestRecord(
                "box", "lxd", f"labctl-cls-{instance}-box", "ready", address=f"{lxd}.20", port=22
            ),
            "app": GuestRecord(
                "app",
                "docker",
                f"labctl-cls-{instance}-app",
                "ready",
                address="127.0.0.1",
                port=40001,
            ),
        },
    )


@pytest.fixture
def cls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ClassState:
    monkeypatch.setenv("LABCTL_STATE", str(tmp_path / "state"))
    spec = tmp_path / "lab.yaml"
    spec.write_text(lab_yaml("cls", VM, BOX, APP))
    seats = {}
    for student in NETS:
        InstanceDir("cls", f"so-{student}").save(lab_state(student, spec))
        seats[student] = Seat(student, student.title(), f"so-{student}", outcome="up")
    return ClassState("so", "cls", str(spec), "r.csv", seats)


def student_of(address: str) -> str:
    return next(s for s, nets in NETS.items() if any(address.startswith(n + ".") for n in nets))


def network(reach: Reach) -> Callable[[GuestRecord, KeyPair], Connection]:
    """Guests whose probes answer by ``reach``; the app container says its own address."""

    def connect(rec: GuestRecord, key: KeyPair) -> Connection:
        student = rec.resource.split("-")[3]

        def respond(command: str) -> CommandResult:
            if command.startswith("hostname -i"):
                return CommandResult(command, 0, f"{NETS[student][2]}.2\n", "")
            out = []
            for kind, address, port in re.findall(r"^(tcp|png) (\S+) ?(\d+)?$", command, re.M):
                p = int(port) if port else None
                ok = reach(student, rec.name, address, p)
                name = "ping" if kind == "png" else "tcp"
                out.append(f"{name} {address} {port or 0} {0 if ok else 1}")
            return CommandResult(command, 0, "\n".join(out) + "\n", "")

        return FakeConnection(name=rec.name, respond=respond)

    return connect


def isolated(student: str, guest: str, address: str, port: int | None) -> bool:
    """Labctl's rule: own guests only (the host's gateway never), libvirt's NAT as it is."""
    if address.endswith(".1"):
        return False
    if student_of(address) != student:
        return False
    return not (guest == "box" and address.startswith("10.210."))  # lxd -> own VM: NAT


def probe(cls: ClassState, reach: Reach, **kw: Any) -> verify.Report:
    """verify on fake guests answering by ``reach``; every student's account there and
    confined (unless ``accounts`` says otherwise)."""
    kw.setdefault("host", server(confined))
    kw.setdefault("accounts", ids)
    return verify.verify(cls, network(reach), **kw)


def from_guests(report: verify.Report) -> list[verify.Probe]:
    return [p for p in report.probes if p.source != ACCOUNT]


def test_an_isolated_class_passes_with_the_known_nat_block(cls: ClassState) -> None:
    report = probe(cls, isolated)
    assert report.isolated, (report.leaks, report.broken, report.errors)
    # per source guest: 2 own targets, 3 guests x (ping + tcp) of the other, 6 host ports,
    # the DNS of the other's 3 networks
    assert len(from_guests(report)) == 2 * 3 * (2 + 6 + 6 + 3)
    dns = {(p.student, p.address) for p in report.probes if p.port == 53 and p.source == "box"}
    assert dns == {("ana", f"{n}.1") for n in NETS["bo"]} | {("bo", f"{n}.1") for n in NETS["ana"]}
    known = [p for p in report.probes if p.known]
    assert {(p.student, p.source, p.target) for p in known} == {
        ("ana", "box", "ana/vm"),
        ("bo", "box", "bo/vm"),
    }
    app = [p for p in report.probes if p.target == "bo/app" and p.kind == "tcp"]
    assert {p.address for p in app} == {"10.212.2.2"} and {p.port for p in app} == {8080}
    host = {(p.address, p.port) for p in report.probes if p.target == "host" and p.source == "vm"}
    assert ("10.210.1.1", 22) in host and ("10.210.1.1", 16509) in host
    assert "0 leaks" in list(verify.summary(report))
    assert verify.verdict(report) == "isolated"


def test_a_leak_between_students_and_to_the_host_is_reported(cls: ClassState) -> None:
    def leaky(student: str, guest: str, address: str, port: int | None) -> bool:
        if student == "ana" and guest == "app" and address == "10.211.2.20":
            return True  # ana's app reaches bo's system container
        if address == "10.211.2.1" and port == 22:
            return True  # bo's system container reaches the host's SSH
        if student == "ana" and guest == "vm" and address == "10.210.2.1" and port == 53:
            return True  # ana's VM asks bo's VM network's dnsmasq
        return isolated(student, guest, address, port)

    report = probe(cls, leaky)
    assert not report.isolated and not report.errors
    leaks = {(p.student, p.source, p.target, p.what) for p in report.leaks}
    assert leaks == {
        ("ana", "app", "bo/box", "ping 10.211.2.20"),
        ("ana", "app", "bo/box", "tcp 10.211.2.20:22"),
        ("bo", "box", "host", "tcp 10.211.2.1:22"),
        ("ana", "vm", "host", "tcp 10.210.2.1:53"),
    }
    assert verify.verdict(report) == "NOT isolated"


def test_an_own_guest_out_of_reach_is_broken_and_a_silent_guest_an_error(
    cls: ClassState,
) -> None:
    def broken(student: str, guest: str, address: str, port: int | None) -> bool:
        if student == "bo" and guest == "vm" and address == "10.212.2.2":
            return False  # bo's VM cannot reach bo's app
        return isolated(student, guest, address, port)

    report = probe(cls, broken)
    assert [(p.student, p.source, p.target) for p in report.broken] == [("bo", "vm", "bo/app")]
    assert not report.leaks and not report.isolated
    assert verify.verdict(report) == "isolated, own paths broken"  # no leak: not NOT isolated

    def mute(rec: GuestRecord, key: KeyPair) -> Connection:
        if rec.name == "box":
            return FakeConnection(name="box", rules={".": (0, "")})
        return network(isolated)(rec, key)

    report = verify.verify(cls, mute, host=server(confined), accounts=ids)
    assert [(e.student, e.source) for e in report.errors] == [("ana", "box"), ("bo", "box")]
    assert "probes gave no answer" in report.errors[0].reason
    assert not report.isolated and report.unverified == ["ana", "bo"]
    assert verify.verdict(report) == "not verified"


# -- the probe script itself, in a real shell, against loopback ------------------------------


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_probe(lines: str, path: str | None = None) -> dict[tuple[str, str, int | None], bool]:
    env = {**os.environ, **({"PATH": path} if path else {})}
    out = subprocess.run(
        ["/bin/sh", "-c", verify.PRELUDE + lines], capture_output=True, text=True, env=env
    )
    return verify._results(out.stdout)


def test_the_tcp_probe_tells_open_from_closed(listening: int) -> None:
    closed = closed_port()
    found = run_probe(f"tcp 127.0.0.1 {listening}\ntcp 127.0.0.1 {closed}\n")
    assert found == {("tcp", "127.0.0.1", listening): True, ("tcp", "127.0.0.1", closed): False}


@needs(shutil.which("busybox") is not None, "needs busybox on the host")
def test_the_busybox_fallback_tells_open_from_closed(listening: int, tmp_path: Path) -> None:
    """Without python3 or OpenBSD's nc (the app container), busybox's nc decides."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("busybox", "sh"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or "")
    closed = closed_port()
    found = run_probe(f"tcp 127.0.0.1 {listening}\ntcp 127.0.0.1 {closed}\n", str(bin_dir))
    assert found == {("tcp", "127.0.0.1", listening): True, ("tcp", "127.0.0.1", closed): False}


def server(reach: Reach, uids: dict[int, str] | None = None) -> FakeConnection:
    """The server's shell: probes sent as a student's uid (``uids``, else 10000 + n) answer
    by ``reach``."""

    def respond(command: str) -> CommandResult:
        uid = int(re.search(r"--reuid=(\d+) ", command).group(1))  # type: ignore[union-attr]
        student = (uids or {10000 + n: s for n, s in enumerate(NETS)})[uid]
        out = []
        for address, port in re.findall(r"^tcp (\S+) (\d+)$", command, re.M):
            ok = reach(student, ACCOUNT, address, int(port))
            out.append(f"tcp {address} {port} {0 if ok else 1}")
        return CommandResult(command, 0, "\n".join(out) + "\n", "")

    return FakeConnection(name="host", respond=respond)


def ids(student: str, class_name: str) -> tuple[int, int]:
    assert class_name == "so"
    return 10000 + list(NETS).index(student), 10000


def confined(student: str, guest: str, address: str, port: int | None) -> bool:
    """labctl's firewall for a student's uid: their own guests and published port only."""
    if guest != ACCOUNT:
        return isolated(student, guest, address, port)
    if address == "127.0.0.1":
        return port == {"ana": 40001, "bo": 40002}[student]
    return student_of(address) == student


def test_each_account_reaches_its_own_lab_from_the_server_and_not_the_next_one(
    cls: ClassState,
) -> None:
    for student, port in (("ana", 40001), ("bo", 40002)):
        inst = InstanceDir("cls", f"so-{student}")
        st = inst.load()
        assert st is not None
        app = st.guests["app"]
        inst.save(st.with_guest(replace(app, host_port=port)))
    host = server(confined)
    report = probe(cls, isolated, host=host)
    mine = [p for p in report.probes if p.source == ACCOUNT]
    # each account: 3 own guests + the app's published port, the same of the next student
    assert len(mine) == 2 * (4 + 4)
    assert report.isolated, (report.leaks, report.broken, report.errors)
    assert {(p.student, p.target, p.address, p.port) for p in mine if p.expect_open} >= {
        ("ana", "ana/app", "127.0.0.1", 40001),
        ("ana", "ana/box", "10.211.1.20", 22),
    }
    assert "setpriv --reuid=10001 --regid=10000 --clear-groups" in "\n".join(host.commands)
    # an account that reaches the other student's published port is a leak
    leaky = probe(cls, isolated, host=server(lambda s, g, a, p: confined(s, g, a, p) or p == 40002))
    assert [(p.student, p.target, p.what) for p in leaky.leaks] == [
        ("ana", "bo/app", "tcp 127.0.0.1:40002")
    ]


def test_a_podman_app_container_says_its_address_on_podmans_own_network() -> None:
    state = LabState("full", "so-ana", "/l.yaml", podman_subnet="10.213.1.0/24")
    rec = GuestRecord("podman-app", "podman", "labctl-full-so-ana-podman-app", "ready")
    conn = FakeConnection(
        name="podman-app",
        respond=lambda c: CommandResult(c, 0, "10.213.1.2 fe80::1\n", ""),
    )
    assert verify._own_address(rec, state, conn) == "10.213.1.2"
    assert verify.gateway(state, "podman") == "10.213.1.1"


# -- a student without the account class up makes is not verified, never skipped -------------


@pytest.fixture
def passwd(tmp_path: Path) -> FakeSystem:
    return FakeSystem(tmp_path / "home")


def make_account(passwd: FakeSystem, student: str, class_name: str = "so") -> tuple[int, int]:
    made = accounts.ensure_account(
        student, student.title(), None, class_name, lab="cls", server="lab", system=passwd
    )
    entry = passwd.lookup(made.user)
    assert made.uid is not None and entry is not None
    return made.uid, entry.gid


def test_a_student_without_an_account_record_is_a_failing_row_with_its_reason(
    cls: ClassState, passwd: FakeSystem
) -> None:
    uid, gid = make_account(passwd, "ana")  # bo's account was never made (or its record lost)
    host = server(confined, {uid: "ana"})
    report = verify.verify(
        cls,
        network(isolated),
        host=host,
        accounts=partial(verify.account_of, system=passwd),
    )
    assert not report.isolated and not report.leaks and not report.broken
    assert report.unverified == ["bo"]
    (row,) = report.errors
    assert (row.student, row.source) == ("bo", ACCOUNT)
    assert row.reason == "no account record: labctl made no account for this student"
    assert row.hint is not None and "labctl class up ROSTER --class so again" in row.hint
    # ana's account was probed as its uid; bo's guests were probed all the same
    assert f"setpriv --reuid={uid} --regid={gid}" in "\n".join(host.commands)
    assert {p.student for p in report.probes if p.source == ACCOUNT} == {"ana"}
    assert {p.student for p in from_guests(report)} == {"ana", "bo"}
    assert "1 student not verified (1 unprobed)" in list(verify.summary(report))


def test_an_account_that_is_not_the_recorded_one_is_not_verified(
    cls: ClassState, passwd: FakeSystem
) -> None:
    make_account(passwd, "ana")
    with pytest.raises(LabctlError, match="belongs to class so"):
        verify.account_of("ana", "other", passwd)  # a record of another class
    entry = passwd.users.pop("ana")  # userdel behind labctl's back
    with pytest.raises(LabctlError, match="recorded but gone from this host"):
        verify.account_of("ana", "so", passwd)
    passwd.users["ana"] = replace(entry, uid=entry.uid + 7)  # ... and useradd again
    with pytest.raises(LabctlError, match=rf"has uid {entry.uid + 7}, labctl recorded uid"):
        verify.account_of("ana", "so", passwd)
    passwd.users["ana"] = entry
    assert verify.account_of("ana", "so", passwd) == (entry.uid, entry.gid)


def test_class_verify_prints_the_unverified_student_and_fails(
    cls: ClassState, passwd: FakeSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid, _ = make_account(passwd, "ana")
    ClassDir("so").save(cls)
    real = verify.verify

    def on_fakes(state: ClassState) -> verify.Report:
        return real(
            state,
            network(isolated),
            host=server(confined, {uid: "ana"}),
            accounts=partial(verify.account_of, system=passwd),
        )

    monkeypatch.setattr(verify, "verify", on_fakes)
    result = CliRunner().invoke(app, ["class", "verify", "--class", "so"], env={"COLUMNS": "80"})
    assert result.exit_code == ExitCode.FAILED, result.output
    out = " ".join(result.stdout.split())
    # nothing leaked: the class could not be verified, which is not a leak
    assert "bo account no account record" in out and "NOT isolated" not in out
    assert "Class so: not verified (" in out and "0 leaks" in out
    assert "1 student not verified" in out
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    as_json = CliRunner().invoke(app, ["class", "verify", "--class", "so", "--json"])
    assert json.loads(as_json.stdout)["verdict"] == "not verified"
    errors = json.loads(as_json.stdout)["errors"]
    assert [(e["student"], e["source"]) for e in errors] == [("bo", ACCOUNT)]
