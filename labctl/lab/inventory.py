"""A running lab instance as an Ansible inventory, so instructors can provision with Ansible.

:func:`build` is pure: from the state file, what the engines say now and the lab file's
techniques it makes an :class:`Inventory` (hosts, their variables, groups, and notes on what
was left out and why); ``labctl inventory`` renders it as INI or YAML. :func:`survey` asks the
engines, the way ``labctl status`` and ``labctl ssh`` do.

Hosts are the guests reached over SSH (the VMs and the system container), as root with the
lab's key: the same login ``labctl ssh`` opens. The application container has no SSH; it is a
host only through ``community.docker.docker_api`` (Docker's exec API), when that collection
is installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labctl import backends
from labctl.instance import netguard
from labctl.instance.state import LabState
from labctl.paths import podman_socket

#: engines whose guests labctl reaches over SSH as root with the lab key (``Backend.connect``)
SSH_ENGINES = ("libvirt", "lxd")
#: engines of virtual machines and of containers, for the ``vms`` and ``containers`` groups
VM_ENGINES = ("libvirt",)
CONTAINER_ENGINES = ("lxd", "docker", "podman")
#: engines whose containers Ansible reaches through Docker's exec API
DOCKER_API_ENGINES = ("docker", "podman")
#: the connection plugin that reaches a Docker container through Docker's exec API
DOCKER_CONNECTION = "community.docker.docker_api"
#: as ``labctl ssh``: guests are recreated often, their host keys are not worth pinning (nor
#: worth a "Permanently added" line in every module's output); only the lab key is offered
#: (an agent full of keys would make sshd refuse before it)
SSH_ARGS = (
    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes "
    "-o LogLevel=ERROR"
)
#: the group of every SSH guest; it carries the connection variables
SSH_GROUP = "ssh"

Vars = dict[str, str | int]


@dataclass(frozen=True)
class Inventory:
    """Hosts with their variables, groups of hosts with theirs, and notes for the reader."""

    lab: str
    instance: str
    hosts: dict[str, Vars]  # host -> its own variables, in the lab's order
    groups: dict[str, tuple[str, ...]]  # group -> its hosts; no empty group
    group_vars: dict[str, Vars] = field(default_factory=dict)
    all_vars: Vars = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what was left out and why, one line each

    def groups_of(self, host: str) -> list[str]:
        """The groups ``host`` belongs to, in the inventory's order."""
        return [g for g, members in self.groups.items() if host in members]


def group_name(word: str) -> str:
    """An Ansible group name for a technique or engine: ``full-virtualization`` → ``..._...``.

    Ansible warns about (and may refuse) dashes in group names.
    """
    return word.replace("-", "_")


def build(
    state: LabState,
    live: Mapping[str, str],
    key: Path,
    techniques: Mapping[str, str],
    *,
    docker_api: bool,
    refused: Mapping[str, str] | None = None,
) -> Inventory:
    """The inventory of ``state``'s guests that run now.

    ``live``: each guest's state as its engine says now (``running``...); ``key``: the lab's
    private key; ``techniques``: each guest's technique from the lab file; ``docker_api``:
    whether Ansible can load :data:`DOCKER_CONNECTION`; ``refused``: guests whose address
    labctl will not hand out (not behind the lab's bridge), with the reason.
    """
    refused = refused or {}
    hosts: dict[str, Vars] = {}
    engines: dict[str, str] = {}
    notes: list[str] = []
    for rec in state.guests.values():
        now = live.get(rec.name, "absent")
        if now != "running":
            notes.append(f"{rec.name} is {now}: left out (labctl up starts it)")
            continue
        if rec.engine in SSH_ENGINES:
            if not rec.address:
                notes.append(f"{rec.name} has no address yet: left out (it never became ready)")
                continue
            if rec.name in refused:
                notes.append(f"{refused[rec.name]}; left out")
                continue
            hosts[rec.name] = {"ansible_host": rec.address}
            if rec.port and rec.port != 22:
                hosts[rec.name]["ansible_port"] = rec.port
        elif rec.engine in DOCKER_API_ENGINES:
            if not docker_api:
                notes.append(
                    f"{rec.name} (an application container, no SSH) left out: Ansible reaches it "
                    f"only through {DOCKER_CONNECTION}, and that collection is not installed"
                )
                continue
            # docker_api execs in the container named by ansible_host, through the local daemon
            hosts[rec.name] = {
                "ansible_connection": DOCKER_CONNECTION,
                "ansible_host": rec.resource,
            }
            if rec.engine == "podman":  # the same API on Podman's socket
                hosts[rec.name]["ansible_docker_host"] = f"unix://{podman_socket()}"
        else:
            notes.append(f"{rec.name}: labctl knows no Ansible connection for {rec.engine}")
            continue
        engines[rec.name] = rec.engine

    groups = _groups(list(hosts), engines, techniques)
    group_vars: dict[str, Vars] = {}
    if SSH_GROUP in groups:
        group_vars[SSH_GROUP] = {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": SSH_ARGS,
            "ansible_python_interpreter": "/usr/bin/python3",
        }
    return Inventory(
        lab=state.lab,
        instance=state.instance,
        hosts=hosts,
        groups=groups,
        group_vars=group_vars,
        all_vars={"labctl_lab": state.lab, "labctl_instance": state.instance},
        notes=tuple(notes),
    )


def _groups(
    hosts: list[str], engines: Mapping[str, str], techniques: Mapping[str, str]
) -> dict[str, tuple[str, ...]]:
    """Groups of ``hosts``: by kind (ssh, vms, containers), by technique, by engine; no empty one.

    Groups come in that order, each group's hosts in the lab's order.
    """
    kinds = {SSH_GROUP: SSH_ENGINES, "vms": VM_ENGINES, "containers": CONTAINER_ENGINES}
    groups: dict[str, list[str]] = {group: [] for group in kinds}
    for host in hosts:
        for group, kind in kinds.items():
            if engines[host] in kind:
                groups[group].append(host)
    for host in hosts:
        if host in techniques:
            groups.setdefault(group_name(techniques[host]), []).append(host)
    for host in hosts:
        members = groups.setdefault(group_name(engines[host]), [])
        if host not in members:
            members.append(host)
    return {group: tuple(members) for group, members in groups.items() if members}


@dataclass(frozen=True)
class Survey:
    """What the engines say now: each guest's state, and addresses labctl will not hand out."""

    live: dict[str, str]
    refused: dict[str, str]


def survey(state: LabState) -> Survey:
    """Ask each guest's engine whether it runs and each SSH guest's address where it leads.

    An address is handed to Ansible only while packets to it leave by one of the lab's own
    bridges, up (``instance/netguard.py``): the rule ``labctl ssh`` keeps for its own logins.
    """
    live: dict[str, str] = {}
    refused: dict[str, str] = {}
    bridges: dict[str, list[str]] = {}
    for rec in state.guests.values():
        backend = backends.get(rec.engine)
        live[rec.name] = backend.state(rec.resource)
        if rec.engine not in SSH_ENGINES or not rec.address or live[rec.name] != "running":
            continue
        if rec.engine not in bridges:
            bridges[rec.engine] = backend.bridges(state)
        try:
            netguard.require_lab_bridge(rec.address, bridges[rec.engine], rec.name)
        except netguard.NotOurNetwork as exc:
            refused[rec.name] = exc.message
    return Survey(live, refused)
