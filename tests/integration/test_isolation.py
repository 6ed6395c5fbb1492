"""Two instances up at once: each one's guests reach each other, never the other's.

Real packets between real guests: from one instance's system container, a ping and a TCP
connect to the other instance's system container (SSH) and app container (its port, on its
Docker bridge address) fail, while its own app container answers HTTP; both directions.
The app container checks the same towards the system containers. Only the lab's own guests
are ever contacted, each after the kernel said the packet leaves by one of their bridges.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from labctl import backends
from labctl.classroom.verify import gateway
from labctl.command import CommandResult
from labctl.docker_client import connect as docker_connect
from labctl.instance import isolation, naming, netguard
from labctl.instance.state import InstanceDir, LabState
from labctl.keys import KeyPair
from labctl.spec.model import Lab
from tests.integration.labs import two_instances
from tests.labs import VM

# lxc-system and docker-app as in labs/virtualization/lab.yaml; no VM, to stay cheap.
LAB = """\
name: iso
guests:
  lxc-system:
    engine: lxd
    technique: system-container
    description: a system container with its own init, shared host kernel, reached over SSH
    image: lxd-system
  docker-app:
    engine: docker
    technique: app-container
    description: a web app in an application container, port published on 127.0.0.1
    image: docker-app
    port: 8080
"""

APP_PORT = 8080

# Connect and say so (exit 0), or print why not (exit 1); 3 s at most.
CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()\n"
    "except OSError as exc:\n"
    "    sys.exit(f'no connection: {exc}')\n"
    "print('connected')\n"
)
HTTP = "import sys, urllib.request\nprint(urllib.request.urlopen(sys.argv[1], timeout=5).status)\n"


@dataclass(frozen=True)
class Side:
    """One instance as the other sees it: its state and its guests' bridge addresses."""

    state: LabState
    lxc: str  # lxc-system's address on the instance's LXD network
    app: str  # docker-app's address on the instance's Docker network
    bridges: frozenset[str]
    vm: str = ""  # the VM's address on the instance's libvirt network (LAB_VM only)


def _app_address(state: LabState) -> str:
    attrs = docker_connect().containers.get(state.guests["docker-app"].resource).attrs
    return str(attrs["NetworkSettings"]["Networks"][state.docker_network]["IPAddress"])


def _side(state: LabState) -> Side:
    bridges = {naming.lxd_bridge(state.lab, state.instance)}
    bridges |= {b for b in backends.get("docker").bridges(state)}
    lxc, app = state.guests["lxc-system"].address, _app_address(state)
    assert lxc and ipaddress.ip_address(lxc) in ipaddress.ip_network(state.lxd_subnet or "")
    assert ipaddress.ip_address(app) in ipaddress.ip_network(state.docker_subnet or "")
    vm = ""
    if "vm" in state.guests:  # LAB_VM
        vm = state.guests["vm"].address or ""
        assert vm and ipaddress.ip_address(vm) in ipaddress.ip_network(state.subnet or "")
        bridges.add(naming.bridge(state.lab, state.instance))
    return Side(state, lxc, app, frozenset(bridges), vm)


Pair = tuple[Lab, Side, Side]


def _pair(factory: pytest.TempPathFactory, folder: str, text: str) -> Iterator[Pair]:
    """Two instances of the lab ``text`` up, as each is seen from the other."""
    with two_instances(factory, folder, text) as up:
        yield up.lab, _side(up.a), _side(up.b)


#: a test run each way: from instance a to b, then from b to a
BOTH_WAYS = pytest.mark.parametrize("direction", ["a->b", "b->a"])


def _ways(pair: Pair, direction: str) -> Pair:
    """The lab, the side a test runs from and the other, for ``direction``."""
    lab, a, b = pair
    return (lab, a, b) if direction == "a->b" else (lab, b, a)


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, built_images: list[str], state_root: Path
) -> Iterator[Pair]:
    yield from _pair(tmp_path_factory, "iso", LAB)


def _exec(lab: Lab, side: Side, guest: str, command: str) -> CommandResult:
    rec = side.state.guests[guest]
    key = KeyPair(InstanceDir(lab.name, side.state.instance).key)
    return backends.connect(rec, key).run(command)


def _ours(address: str, *sides: Side) -> None:
    """Send nothing unless the host routes ``address`` by one of the lab's own bridges."""
    device = netguard.egress(address)
    if not any(device in s.bridges for s in sides):  # a failure, never an expected one (xfail)
        pytest.fail(f"{address} leaves by {device}, not by the lab's bridges")


def _rule_counter(chain: str = "forward", comment: str = "no traffic between") -> int:
    """Packets the `inet labctl` rule of ``chain`` whose comment starts with ``comment``
    rejected so far (all instances together)."""
    out = subprocess.run(
        ["nft", "-j", "list", "chain", "inet", "labctl", chain],
        capture_output=True,
        check=True,
    ).stdout
    for obj in json.loads(out)["nftables"]:
        rule = obj.get("rule", {})
        if not rule.get("comment", "").startswith(comment):
            continue
        for expr in rule.get("expr", []):
            if "counter" in expr:
                return int(expr["counter"]["packets"])
    raise AssertionError(f"no counter in the labctl {chain} rule {comment!r}")


def test_each_instance_has_its_own_lxd_network_and_elements(
    pair: Pair,
) -> None:
    lab, a, b = pair
    for side in (a, b):
        st = side.state
        assert st.lxd_network == naming.lxd_bridge(lab.name, st.instance)
        assert len(st.lxd_network) <= 15
        own = isolation.owned(lab.name, st.instance)
        assert set(own.bridges) == side.bridges and len(own.pairs) == 4
    assert a.state.lxd_subnet != b.state.lxd_subnet
    assert not a.bridges & b.bridges


@BOTH_WAYS
def test_system_container_reaches_its_own_app_not_the_other_instance(
    pair: Pair, direction: str
) -> None:
    lab, me, other = _ways(pair, direction)
    for address in (me.app, other.lxc, other.app):
        _ours(address, me, other)
    before = _rule_counter()

    own = _exec(
        lab, me, "lxc-system", f"python3 -c {shlex.quote(HTTP)} http://{me.app}:{APP_PORT}/"
    )
    assert own.succeeded and own.stdout.strip() == "200", own.detail
    print(f"\n{direction}: own app http://{me.app}:{APP_PORT}/ -> HTTP {own.stdout.strip()}")

    for address, port in ((other.lxc, 22), (other.app, APP_PORT)):
        ping = _exec(lab, me, "lxc-system", f"ping -c1 -W2 {address}")
        assert not ping.succeeded, ping.detail
        tcp = _exec(lab, me, "lxc-system", f"python3 -c {shlex.quote(CONNECT)} {address} {port}")
        assert not tcp.succeeded, tcp.detail
        print(
            f"{direction}: ping {address} -> rc {ping.rc}; "
            f"tcp {address}:{port} -> {tcp.stderr.strip() or tcp.stdout.strip()}"
        )
    # Docker accepts any routed packet to a published port: only labctl's rule stops these.
    assert _rule_counter() >= before + 4


@BOTH_WAYS
def test_app_container_reaches_its_own_system_container_not_the_other(
    pair: Pair, direction: str
) -> None:
    lab, me, other = _ways(pair, direction)
    for address in (me.lxc, other.lxc):
        _ours(address, me, other)

    def banner(address: str) -> CommandResult:
        # busybox nc: the SSH banner proves a real sshd answered, not just any TCP port 22.
        return _exec(lab, me, "docker-app", f"echo | busybox nc -w 3 {address} 22")

    own = banner(me.lxc)
    assert own.succeeded and own.stdout.startswith("SSH-2.0-"), own.detail
    theirs = banner(other.lxc)
    assert "SSH-" not in theirs.stdout, theirs.detail
    print(
        f"\n{direction}: app -> own lxc {me.lxc}:22 -> {own.stdout.strip()}; "
        f"-> other lxc {other.lxc}:22 -> rc {theirs.rc} {theirs.stderr.strip()}"
    )


def test_the_host_reaches_every_guest(pair: Pair) -> None:
    lab, a, b = pair
    for side in (a, b):
        _ours(side.lxc, a, b)
        _ours(side.app, a, b)
        with socket.create_connection((side.lxc, 22), 3) as conn:
            assert conn.recv(64).startswith(b"SSH-2.0-")
        port = side.state.guests["docker-app"].host_port
        for url in (f"http://127.0.0.1:{port}/", f"http://{side.app}:{APP_PORT}/"):
            assert requests.get(url, timeout=5).status_code == 200, url


APT_CACHE = ("10.203.0.1", 3142)  # playbooks/vars/host.yml: labctl_lxd_ipv4, the cache's port


def test_system_containers_still_reach_the_hosts_apt_cache(pair: Pair) -> None:
    """The cache listens on LXD's bridge address; the host delivers it to every instance."""
    lab, a, b = pair
    address, port = APT_CACHE
    links = json.loads(netguard._ip(["addr", "show", "dev", "lxdbr0"]))
    assert any(i["local"] == address for link in links for i in link["addr_info"]), links
    for side in (a, b):
        tcp = _exec(lab, side, "lxc-system", f"python3 -c {shlex.quote(CONNECT)} {address} {port}")
        assert tcp.succeeded, tcp.detail


def test_guests_never_reach_the_hosts_own_services(pair: Pair) -> None:
    """A service of the host on the instance's own gateway address (as an SSH server or
    libvirtd listening on every address would be) answers the host, never the guests: the
    table's input chain lets guests ask their own bridge's address for DNS and DHCP only."""
    lab, a, _ = pair
    host = gateway(a.state, "lxd")
    assert host is not None
    with socket.create_server((host, 0)) as service:  # on the lab's own bridge, nowhere else
        port = service.getsockname()[1]
        with socket.create_connection((host, port), 3):
            pass  # the host reaches it: the service is there
        tcp = _exec(lab, a, "lxc-system", f"python3 -c {shlex.quote(CONNECT)} {host} {port}")
        assert not tcp.succeeded and "no connection" in tcp.stderr, tcp.detail


# A DNS query (A record of lxc-system) over UDP; the answer's id and rcode, or why none came.
# Connected, so that a reject's ICMP error ends the wait at once.
DNS = (
    "import socket, struct, sys\n"
    "query = struct.pack('>6H', 0x1abc, 0x0100, 1, 0, 0, 0) + b'\\x0alxc-system\\x00'\n"
    "query += struct.pack('>2H', 1, 1)\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.settimeout(3)\n"
    "s.connect((sys.argv[1], 53))\n"
    "try:\n"
    "    s.send(query)\n"
    "    answer = s.recv(512)\n"
    "except OSError as exc:\n"
    "    sys.exit(f'no answer: {exc}')\n"
    "print(f'answer id {answer[0] << 8 | answer[1]:#x} rcode {answer[3] & 15}')\n"
)


@BOTH_WAYS
def test_a_guest_asks_its_own_bridge_for_dns_never_the_other_instances(
    pair: Pair, direction: str
) -> None:
    """Each instance's LXD network has its dnsmasq on the bridge's host address. A guest's
    query reaches its own; the other instance's, on the same host, is refused by the input
    chain (the host's address on another bridge is not its own bridge's)."""
    lab, me, other = _ways(pair, direction)
    own, theirs = gateway(me.state, "lxd"), gateway(other.state, "lxd")
    assert own and theirs and own != theirs
    before = _rule_counter("input", "a guest reaches the host on its own bridge")

    def ask(server: str) -> CommandResult:
        return _exec(lab, me, "lxc-system", f"python3 -c {shlex.quote(DNS)} {server}")

    mine = ask(own)
    assert mine.succeeded and mine.stdout.startswith("answer id 0x1abc"), mine.detail
    refused = ask(theirs)
    assert not refused.succeeded and "no answer" in refused.stderr, refused.detail
    assert _rule_counter("input", "a guest reaches the host on its own bridge") > before
    print(
        f"\n{direction}: DNS to own {own}: {mine.stdout.strip()}; "
        f"to the other instance's {theirs}: {refused.stderr.strip()}"
    )


# -- the same with a VM in each instance (the busybox VM image, cheap under TCG) -------------

LAB_VM = LAB.replace("name: iso", "name: isovm") + VM


@pytest.fixture(scope="module")
def vm_pair(
    tmp_path_factory: pytest.TempPathFactory, built_images: list[str], state_root: Path
) -> Iterator[Pair]:
    yield from _pair(tmp_path_factory, "isovm", LAB_VM)


@BOTH_WAYS
def test_vm_reaches_its_own_containers_not_the_other_instance(
    vm_pair: Pair, direction: str
) -> None:
    lab, me, other = _ways(vm_pair, direction)
    for address in (me.lxc, me.app, other.vm, other.lxc, other.app):
        _ours(address, me, other)

    def vm(command: str) -> CommandResult:
        return _exec(lab, me, "vm", command)

    banner = vm(f"echo | nc -w 3 {me.lxc} 22")
    assert banner.succeeded and banner.stdout.startswith("SSH-2.0-"), banner.detail
    app = vm(f"nc -z -w 3 {me.app} {APP_PORT}")
    assert app.succeeded, app.detail
    print(f"\n{direction}: vm -> own lxc 22: {banner.stdout.splitlines()[0]}; own app: rc {app.rc}")
    for address, port in ((other.vm, 22), (other.lxc, 22), (other.app, APP_PORT)):
        ping = vm(f"ping -c1 -W2 {address}")
        tcp = vm(f"nc -z -w 3 {address} {port}")
        assert not ping.succeeded and not tcp.succeeded, (ping.detail, tcp.detail)
        print(f"{direction}: vm -> {address}: ping rc {ping.rc}; tcp {port} rc {tcp.rc}")


def _to_vm(lab: Lab, side: Side, guest: str, address: str) -> CommandResult:
    """From a container of ``side``, open a TCP connection to ``address``:22."""
    if guest == "docker-app":
        return _exec(lab, side, guest, f"echo | busybox nc -w 3 {address} 22")
    return _exec(lab, side, guest, f"python3 -c {shlex.quote(CONNECT)} {address} 22")


@pytest.mark.parametrize("guest", ["lxc-system", "docker-app"])
@BOTH_WAYS
def test_containers_never_reach_the_other_instances_vm(
    vm_pair: Pair, direction: str, guest: str
) -> None:
    lab, me, other = _ways(vm_pair, direction)
    _ours(other.vm, me, other)
    theirs = _to_vm(lab, me, guest, other.vm)
    assert not theirs.succeeded, theirs.detail
    print(f"\n{direction}: {guest} -> other vm {other.vm}:22: {theirs.detail}")


LIBVIRT_NAT = pytest.mark.xfail(
    strict=True,
    # only the connection's own assert may fail as expected: a missing engine, a fixture's
    # error or _ours' refusal (pytest.fail, not an AssertionError) still fails the test
    raises=AssertionError,
    reason="libvirt's NAT network rejects new connections into its VMs from any other bridge "
    "(iptables LIBVIRT_FWI), the instance's own system container's too; labctl's table cannot "
    "override another table's reject. The app container gets through: Docker's own accept "
    "rules come first in iptables' FORWARD chain",
)


@pytest.mark.parametrize("guest", [pytest.param("lxc-system", marks=LIBVIRT_NAT), "docker-app"])
def test_containers_reach_their_own_vm(vm_pair: Pair, guest: str) -> None:
    lab, a, b = vm_pair
    _ours(a.vm, a, b)
    own = _to_vm(lab, a, guest, a.vm)
    print(f"\n{guest} -> own vm {a.vm}:22: {own.detail} {own.stderr.strip()}")
    assert own.succeeded, own.detail
