"""What the engines hold for one lab instance, to prove that `down` leaves nothing behind.

Only the instance's own objects are listed (by name, by the instance's labels for what a
student made with ``labctl app``, and the bridges of its networks), so
other labs on the same host, coming and going meanwhile, do not disturb the check.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from labctl import libvirt_client
from labctl.docker_client import PODMAN
from labctl.docker_client import connect as docker_connect
from labctl.errors import EngineError
from labctl.instance import isolation, naming
from labctl.lxd_client import DEFAULT_SOCKETS, ENGINE_SOCKETS
from labctl.lxd_client import connect as lxd_connect
from labctl.paths import podman_set_up, second_system_containers


@dataclass(frozen=True)
class Inventory:
    domains: frozenset[str]
    libvirt_networks: frozenset[str]
    containers: frozenset[str]
    docker_networks: frozenset[str]
    labelled: frozenset[str]  # docker containers and images labelled the instance's (labctl app)
    podman_containers: frozenset[str]
    podman_networks: frozenset[str]
    lxd_instances: frozenset[str]  # in LXD and in Incus, wherever either answers
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


def _system_containers(lab: str, instance: str) -> tuple[set[str], set[str]]:
    """Every instance, and the lab instance's network, in LXD and in Incus where they answer.

    The engines host setup started must answer (the chosen one, and the second one of a test
    host); any other counts too where it runs, so a lab brought up on one and taken down on
    the other still shows what it left.
    """
    clients = [lxd_connect()]
    second = second_system_containers()
    if second is not None:
        clients.append(lxd_connect(list(ENGINE_SOCKETS[second])))
    for path in DEFAULT_SOCKETS:
        if path.exists():
            try:
                clients.append(lxd_connect([path]))
            except EngineError:  # a socket nobody listens on: nothing held there
                pass
    lxd_net = naming.lxd_bridge(lab, instance)
    instances: set[str] = set()
    nets: set[str] = set()
    for client in clients:
        instances |= {i.name for i in client.instances.all()}
        if client.networks.exists(lxd_net):  # by name: Incus cannot list some host interfaces
            nets.add(lxd_net)
    return instances, nets


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
    lxd_instances, lxd_nets = _system_containers(lab, instance)
    our_bridges = {
        naming.bridge(lab, instance),
        naming.lxd_bridge(lab, instance),
        naming.podman_bridge(lab, instance),
    }
    podman_containers: set[str] = set()
    podman_nets: set[str] = set()
    if podman_set_up():  # an optional engine: CI sets it up, test_podman insists there
        podman = docker_connect(engine=PODMAN)
        podman_containers = {c.name for c in podman.containers.list(all=True)}
        podman_nets = {n.name for n in podman.networks.list()}
    labels = {"label": [f"labctl.lab={lab}", f"labctl.instance={instance}"]}
    labelled = {f"container {c.name}" for c in docker.containers.list(all=True, filters=labels)}
    labelled |= {f"image {i.id}" for i in docker.images.list(filters=labels)}
    if prefix in docker_nets:  # docker names a network's bridge after its id
        our_bridges.add(f"br-{docker_nets[prefix][:12]}")
    return Inventory(
        domains=ours(domains),
        libvirt_networks=ours(nets),
        containers=ours({c.name for c in docker.containers.list(all=True)}),
        docker_networks=ours(set(docker_nets)),
        labelled=frozenset(labelled),
        podman_containers=ours(podman_containers),
        podman_networks=ours(podman_nets),
        lxd_instances=ours(lxd_instances),
        lxd_networks=frozenset(lxd_nets),
        bridges=frozenset(_bridges() & our_bridges),
        nft_elements=frozenset([*nft.bridges, *(f"{a} . {b}" for a, b in nft.pairs)]),
    )
