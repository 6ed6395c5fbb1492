"""Application containers through docker-py: one published port, ready when HTTP answers."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import replace

import docker
import requests
from docker.errors import DockerException, NotFound
from docker.types import IPAMConfig, IPAMPool

from labctl import cancel
from labctl.backends.base import Backend, EngineState, GuestPlan, Ready
from labctl.command import CommandResult
from labctl.docker_client import connect, engine_errors
from labctl.errors import EngineError, ReadyTimeout
from labctl.keys import KeyPair
from labctl.lab import naming, subnets
from labctl.lab.state import GuestRecord, LabState
from labctl.spec.model import DockerGuest, Lab


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class DockerBackend(Backend):
    """Containers on a per-lab bridge network, ports published on 127.0.0.1 only."""

    engine = "docker"

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        """The docker client, connected (and pinged) on first use."""
        if self._client is None:
            self._client = connect()
        return self._client

    def preflight(self) -> None:
        self.client  # noqa: B018 - connecting pings the daemon

    def _network(self, name: str) -> docker.models.networks.Network | None:
        # names= matches substrings: keep the exact name only.
        found = [n for n in self.client.networks.list(names=[name]) if n.name == name]
        return found[0] if found else None

    def prepare(self, state: LabState, lab: Lab) -> LabState:
        name = naming.network(state.lab, state.instance)
        with engine_errors(f"create network {name}"):
            if self._network(name) is None:
                used = subnets.host_subnets()
                for net in self.client.networks.list():
                    for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
                        if "." in cfg.get("Subnet", ""):
                            used.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
                if state.subnet:
                    used.append(ipaddress.ip_network(state.subnet))
                self.client.networks.create(
                    name,
                    driver="bridge",
                    ipam=IPAMConfig(
                        pool_configs=[IPAMPool(subnet=subnets.pick(lab.network.pool, used))]
                    ),
                    labels={"labctl.lab": state.lab, "labctl.instance": state.instance},
                )
        return replace(state, docker_network=name)

    def cleanup(self, state: LabState) -> None:
        name = naming.network(state.lab, state.instance)
        try:
            with engine_errors(f"remove network {name}"):
                net = self._network(name)
                if net is not None:
                    net.remove()
        except NotFound:
            pass

    def create(self, plan: GuestPlan) -> GuestRecord:
        guest = plan.spec
        assert isinstance(guest, DockerGuest)
        record = GuestRecord(
            name=plan.name,
            engine=self.engine,
            resource=plan.resource,
            stage="created",
            devices="shared host kernel",
        )
        if self.state(plan.resource) != "absent":
            return record
        if guest.host_port is not None and not _port_free(guest.host_port):
            raise EngineError(
                f"port 127.0.0.1:{guest.host_port} for {plan.name} is already in use",
                "free the port, or set host_port to another port (or leave it empty) in the lab",
            )
        with engine_errors(f"create {plan.resource}"):
            self.client.containers.create(
                plan.manifest.engine_ref,
                name=plan.resource,
                hostname=plan.name,
                labels=plan.labels,
                ports={f"{guest.port}/tcp": ("127.0.0.1", guest.host_port)},
                network=plan.network,
                mem_limit=f"{guest.memory}m",
                detach=True,
            )
        return record

    def start(self, plan: GuestPlan) -> None:
        with engine_errors(f"start {plan.resource}"):
            container = self.client.containers.get(plan.resource)
            if container.status != "running":
                container.start()

    def _published_port(self, resource: str, port: int) -> int | None:
        container = self.client.containers.get(resource)
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []
        for b in bindings:
            if b.get("HostIp") in ("127.0.0.1", "0.0.0.0", ""):
                return int(b["HostPort"])
        return None

    def wait_ready(self, plan: GuestPlan, deadline: float) -> Ready:
        guest = plan.spec
        assert isinstance(guest, DockerGuest)
        last = "not started"
        while True:
            try:
                host_port = self._published_port(plan.resource, guest.port)
                if host_port:
                    url = f"http://127.0.0.1:{host_port}{guest.http_path}"
                    answer = requests.get(url, timeout=3)
                    if answer.status_code == 200:
                        return Ready("127.0.0.1", host_port, url)
                    last = f"HTTP {answer.status_code} from {url}"
                else:
                    last = "port not published yet"
            except (requests.RequestException, DockerException) as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise ReadyTimeout(
                    f"{plan.name} did not answer HTTP: {last}\n"
                    f"container log, last lines:\n{self._logs(plan.resource)}",
                    f"see: docker logs {plan.resource}",
                )
            cancel.check()
            time.sleep(0.2)

    def _logs(self, resource: str) -> str:
        try:
            text = self.client.containers.get(resource).logs(tail=10).decode(errors="replace")
        except DockerException:
            return "  (no logs)"
        return "\n".join("  " + line for line in text.splitlines()) or "  (empty)"

    def state(self, resource: str) -> EngineState:
        try:
            with engine_errors(f"inspect {resource}"):
                container = self.client.containers.get(resource)
        except NotFound:
            return "absent"
        return "running" if container.status == "running" else "stopped"

    def destroy(self, resource: str) -> bool:
        try:
            with engine_errors(f"remove {resource}"):
                self.client.containers.get(resource).remove(force=True)
        except NotFound:
            return False
        return True

    def exec(
        self, record: GuestRecord, key: KeyPair, command: str, silence: float | None = 60.0
    ) -> CommandResult:
        with engine_errors(f"run a command in {record.resource}"):
            container = self.client.containers.get(record.resource)
            rc, (out, err) = container.exec_run(["sh", "-c", command], demux=True)
        return CommandResult(
            command,
            rc,
            (out or b"").decode(errors="replace"),
            (err or b"").decode(errors="replace"),
        )

    def shell_argv(self, record: GuestRecord, key: KeyPair) -> list[str]:
        return ["docker", "exec", "-it", record.resource, "sh"]

    def list_guests(self, lab: str, instance: str) -> list[str]:
        labels = [f"labctl.lab={lab}", f"labctl.instance={instance}"]
        with engine_errors("list containers"):
            found = self.client.containers.list(all=True, filters={"label": labels})
        return sorted(c.name for c in found)
