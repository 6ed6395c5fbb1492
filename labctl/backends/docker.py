"""Application containers through docker-py: one published port, ready when HTTP answers."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import replace

import docker
import requests
from docker.errors import APIError, DockerException, NotFound
from docker.types import IPAMConfig, IPAMPool

from labctl import cancel
from labctl.backends.base import Backend, EngineState, GuestPlan, Ready
from labctl.command import CommandResult
from labctl.docker_client import connect
from labctl.errors import EngineError, ReadyTimeout
from labctl.keys import KeyPair
from labctl.lab import naming, subnets
from labctl.lab.state import GuestRecord, LabState
from labctl.spec.model import DockerGuest, Lab

HINT = "is dockerd running? labctl host setup starts it; labctl doctor shows its state"


def _err(action: str, exc: DockerException) -> EngineError:
    text = getattr(exc, "explanation", None) or str(exc)
    return EngineError(f"docker could not {action}: {text}", HINT)


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
        """The docker client, connected on first use."""
        if self._client is None:
            self._client = connect()
        return self._client

    def preflight(self) -> None:
        self.client.ping()

    def prepare(self, state: LabState, lab: Lab) -> LabState:
        name = naming.network(state.lab, state.instance)
        try:
            existing = [n for n in self.client.networks.list(names=[name]) if n.name == name]
            if existing:
                return replace(state, docker_network=name)
            used = subnets.host_subnets()
            for net in self.client.networks.list():
                for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
                    if cfg.get("Subnet", "").count(".") == 3:
                        used.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
            if state.subnet:
                used.append(ipaddress.ip_network(state.subnet))
            subnet = subnets.pick(lab.network.pool, used)
            state = replace(state, docker_network=name)
            self.client.networks.create(
                name,
                driver="bridge",
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]),
                labels={"labctl.lab": state.lab, "labctl.instance": state.instance},
            )
        except DockerException as exc:
            raise _err(f"create network {name}", exc) from exc
        return state

    def cleanup(self, state: LabState) -> None:
        name = naming.network(state.lab, state.instance)
        try:
            for net in self.client.networks.list(names=[name]):
                if net.name == name:  # names= matches substrings
                    net.remove()
        except NotFound:
            pass
        except DockerException as exc:
            raise _err(f"remove network {name}", exc) from exc

    def create(self, plan: GuestPlan) -> GuestRecord:
        guest = plan.spec
        assert isinstance(guest, DockerGuest)
        record = GuestRecord(
            name=plan.name,
            engine=self.engine,
            resource=plan.resource,
            stage="created",
            devices="host kernel, namespaces + cgroups",
        )
        if self.state(plan.resource) != "absent":
            return record
        if guest.host_port is not None and not _port_free(guest.host_port):
            raise EngineError(
                f"port 127.0.0.1:{guest.host_port} for {plan.name} is already in use",
                "free the port, or set host_port to another port (or leave it empty) in the lab",
            )
        try:
            self.client.containers.create(
                plan.manifest.engine_ref,
                name=plan.resource,
                hostname=plan.name,
                labels=plan.labels,
                ports={f"{guest.port}/tcp": ("127.0.0.1", guest.host_port)},
                network=plan.network,
                mem_limit=f"{guest.memory}m",
                init=True,
                detach=True,
            )
        except DockerException as exc:
            raise _err(f"create {plan.resource}", exc) from exc
        return record

    def start(self, plan: GuestPlan) -> None:
        try:
            container = self.client.containers.get(plan.resource)
            if container.status != "running":
                container.start()
        except DockerException as exc:
            raise _err(f"start {plan.resource}", exc) from exc

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
                logs = self._logs(plan.resource)
                raise ReadyTimeout(
                    f"{plan.name} did not answer HTTP: {last}\ncontainer log, last lines:\n{logs}",
                    f"see: docker logs {plan.resource}",
                )
            cancel.check()
            time.sleep(0.3)

    def _logs(self, resource: str) -> str:
        try:
            text = self.client.containers.get(resource).logs(tail=10).decode(errors="replace")
        except DockerException:
            return "  (no logs)"
        return "\n".join("  " + line for line in text.splitlines()) or "  (empty)"

    def state(self, resource: str) -> EngineState:
        try:
            container = self.client.containers.get(resource)
        except NotFound:
            return "absent"
        except DockerException as exc:
            raise _err(f"inspect {resource}", exc) from exc
        return "running" if container.status == "running" else "stopped"

    def destroy(self, resource: str) -> None:
        try:
            self.client.containers.get(resource).remove(force=True)
        except NotFound:
            return
        except APIError as exc:
            raise _err(f"remove {resource}", exc) from exc

    def exec(self, record: GuestRecord, key: KeyPair, command: str) -> CommandResult:
        try:
            container = self.client.containers.get(record.resource)
            rc, (out, err) = container.exec_run(["sh", "-c", command], demux=True)
        except DockerException as exc:
            raise _err(f"exec in {record.resource}", exc) from exc
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
        try:
            found = self.client.containers.list(all=True, filters={"label": labels})
        except DockerException as exc:
            raise _err("list containers", exc) from exc
        return sorted(c.name for c in found)
