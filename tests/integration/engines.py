"""What the engines hold right now, to prove that `down` leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

import libvirt

from labctl.docker_client import connect as docker_connect
from labctl.lxd_client import connect as lxd_connect


@dataclass(frozen=True)
class Inventory:
    domains: frozenset[str]
    libvirt_networks: frozenset[str]
    containers: frozenset[str]
    docker_networks: frozenset[str]
    lxd_instances: frozenset[str]
    bridges: frozenset[str]


def inventory() -> Inventory:
    """Names of every guest, container, network and bridge the engines hold."""
    conn = libvirt.open("qemu:///system")
    try:
        domains = frozenset(d.name() for d in conn.listAllDomains())
        nets = frozenset(n.name() for n in conn.listAllNetworks())
    finally:
        conn.close()
    docker = docker_connect()
    links = json.loads(
        subprocess.run(
            ["ip", "-j", "link", "show", "type", "bridge"], capture_output=True, check=True
        ).stdout
    )
    return Inventory(
        domains=domains,
        libvirt_networks=nets,
        containers=frozenset(c.name for c in docker.containers.list(all=True)),
        docker_networks=frozenset(n.name for n in docker.networks.list()),
        lxd_instances=frozenset(i.name for i in lxd_connect().instances.all()),
        bridges=frozenset(link["ifname"] for link in links),
    )
