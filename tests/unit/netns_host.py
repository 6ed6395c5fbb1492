"""A throwaway host for labctl's nftables table: bridges, one guest, the host's listeners.

Run as root inside new network and mount namespaces (``unshare -m -n python3 netns_host.py
TABLE.nft``); nothing of the real host is touched. It makes two instances' bridges (A
10.9.1.1/24 and B 10.9.2.1/24) and a third bridge with the apt cache's address (10.9.0.1, as
LXD's bridge holds it on a real host), one guest on A (10.9.1.10, its own network
namespace), and listeners on every host address: TCP 22, 53 and 3142, UDP 53 and 67 (each
UDP one answers what it got). Then, from the guest, it asks each address for each service
once before and once after ``nft -f TABLE.nft``, and prints the answers as JSON:
``{"before": {"tcp 10.9.2.1 53": true, ...}, "after": {...}}``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

BRIDGES = {"lcbr1111aaaa": "10.9.1.1/24", "lcbr2222bbbb": "10.9.2.1/24", "cachebr0": "10.9.0.1/24"}
GUEST = "10.9.1.10/24"
TCP_PORTS = (22, 53, 3142)
UDP_PORTS = (53, 67)

# Run in the guest's namespace: one line per probe, "tcp ADDR PORT" or "udp ADDR PORT"; the
# answer True when a TCP connection opened or a UDP datagram came back within 2 s.
GUEST_SIDE = """
import json, socket, sys
found = {}
for line in sys.stdin.read().splitlines():
    kind, address, port = line.split()
    try:
        if kind == "tcp":
            socket.create_connection((address, int(port)), 2).close()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.settimeout(2)
            if not address.endswith(".255"):  # connected: a reject's ICMP error ends the wait
                s.connect((address, int(port)))  # (a broadcast's answer comes from elsewhere)
            s.sendto(b"probe", (address, int(port)))
            s.recvfrom(64)
            s.close()
        found[line] = True
    except OSError:
        found[line] = False
print(json.dumps(found))
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True)


def topology() -> None:
    # /run of this mount namespace only: `ip netns add` writes there
    sh("mount", "-t", "tmpfs", "tmpfs", "/run")
    sh("ip", "link", "set", "lo", "up")
    # every reject answers at once (the kernel spaces ICMP errors to one peer by default)
    sh("sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0")
    for name, address in BRIDGES.items():
        sh("ip", "link", "add", name, "type", "bridge")
        sh("ip", "addr", "add", address, "dev", name)
        sh("ip", "link", "set", name, "up")
    sh("ip", "netns", "add", "guest")
    sh("ip", "link", "add", "vguest", "type", "veth", "peer", "name", "eth0", "netns", "guest")
    sh("ip", "link", "set", "vguest", "master", "lcbr1111aaaa", "up")
    for argv in (
        ("link", "set", "lo", "up"),
        ("link", "set", "eth0", "up"),
        ("addr", "add", GUEST, "dev", "eth0"),
        ("route", "add", "default", "via", "10.9.1.1"),
    ):
        sh("ip", "-n", "guest", *argv)


def listen() -> None:
    def serve_tcp(server: socket.socket) -> None:
        while True:
            conn, _ = server.accept()
            conn.close()

    def serve_udp(server: socket.socket) -> None:
        while True:
            data, peer = server.recvfrom(64)
            server.sendto(data, peer)

    for port in TCP_PORTS:
        tcp = socket.create_server(("0.0.0.0", port))
        threading.Thread(target=serve_tcp, args=(tcp,), daemon=True).start()
    # one socket per address, so that each answers from the address asked; the wildcard one
    # gets the broadcasts
    for address in ("0.0.0.0", *(a.split("/")[0] for a in BRIDGES.values())):
        for port in UDP_PORTS:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            udp.bind((address, port))
            threading.Thread(target=serve_udp, args=(udp,), daemon=True).start()


def probes() -> list[str]:
    addresses = [a.split("/")[0] for a in BRIDGES.values()]
    lines = [f"tcp {a} {p}" for a in addresses for p in TCP_PORTS]
    lines += [f"udp {a} {p}" for a in addresses for p in UDP_PORTS]
    return [*lines, "udp 255.255.255.255 67", "udp 10.9.1.255 67"]  # DHCP's broadcasts


def from_guest() -> dict[str, bool]:
    done = subprocess.run(
        ["ip", "netns", "exec", "guest", sys.executable, "-c", GUEST_SIDE],
        input="\n".join(probes()),
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout))


def main(table: str) -> None:
    if os.geteuid() != 0:
        raise SystemExit("run as root, in new namespaces: unshare -m -n")
    topology()
    listen()
    before = from_guest()
    sh("nft", "-f", table)
    print(json.dumps({"before": before, "after": from_guest()}))


if __name__ == "__main__":
    main(sys.argv[1])
