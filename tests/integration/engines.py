"""What the engines hold for one lab instance, to prove that `down` leaves nothing behind.

Only the instance's own objects are listed (by name, and the bridges of its networks), so
other labs on the same host, coming and going meanwhile, do not disturb the check.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from labctl import libvirt_client
from labctl.docker_client import PODMAN
from labctl.docker_client import connect as docker_connect
from labctl.instance import isolation, naming
from labctl.lxd_client import connect as lxd_connect
from labctl.paths import podman_set_up


@dataclass(frozen=True)
class Inventory:
    domains: frozenset[str]
    libvirt_networks: frozenset[str]
    containers: frozenset[str]
    docker_networks: frozenset[str]
    podman_containers: frozenset[str]
    podman_networks: frozenset[str]
    lxd_instances: frozenset[str]
    lxd_networks: frozenset[str]
    bridges: frozenset[str]
    nft_elements: frozenset[str]  # the instance's elements in the `inet labctl` table

    @property
    def empty(self) -> bool:
        return not any(vars(self).values())


def _bridges() -> set[str]:
    out = subprocess.run(
        ["ip", "-j", "link", "show", "type", "bridge"], capture_output=True, check=True
    ).stdout
    return {link["ifname"] for link in json.loads(out)}


def inventory(lab: str, instance: str) -> Inventory:
    """Every guest, container, network and bridge the engines hold for this lab instance."""
    prefix = naming.network(lab, instance)  # also the start of every guest's name

    def ours(names: set[str]) -> frozenset[str]:
        return frozenset(n for n in names if n == prefix or n.startswith(prefix + "-"))

    with libvirt_client.connection() as conn:
        domains = {d.name() for d in conn.listAllDomains()}
        nets = {n.name() for n in conn.listAllNetworks()}
    docker = docker_connect()
    nft = isolation.owned(lab, instance)
    docker_nets = {n.name: n.id for n in docker.networks.list()}
    lxd = lxd_connect()
    lxd_net = naming.lxd_bridge(lab, instance)
    our_bridges = {naming.bridge(lab, instance), lxd_net, naming.podman_bridge(lab, instance)}
    podman_containers: set[str] = set()
    podman_nets: set[str] = set()
    if podman_set_up():  # an optional engine: CI sets it up, test_podman insists there
        podman = docker_connect(engine=PODMAN)
        podman_containers = {c.name for c in podman.containers.list(all=True)}
        podman_nets = {n.name for n in podman.networks.list()}
    if prefix in docker_nets:  # docker names a network's bridge after its id
        our_bridges.add(f"br-{docker_nets[prefix][:12]}")
    return Inventory(
        domains=ours(domains),
        libvirt_networks=ours(nets),
        containers=ours({c.name for c in docker.containers.list(all=True)}),
        docker_networks=ours(set(docker_nets)),
        podman_containers=ours(podman_containers),
        podman_networks=ours(podman_nets),
        lxd_instances=ours({i.name for i in lxd.instances.all()}),
        lxd_networks=frozenset({n.name for n in lxd.networks.all()} & {lxd_net}),
        bridges=frozenset(_bridges() & our_bridges),
        nft_elements=frozenset([*nft.bridges, *(f"{a} . {b}" for a, b in nft.pairs)]),
    )
