"""Application containers through docker-py: one published port, ready when HTTP answers.

Docker here; Podman (``labctl.backends.podman``) is the same backend on its own socket.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

import docker
import requests
from docker.errors import DockerException
from docker.types import IPAMConfig, IPAMPool

from labctl import cancel
from labctl.backends import base
from labctl.backends.docker_apps import DockerApps
from labctl.backends.host_side import MIB
from labctl.backends.params import DockerParams
from labctl.connection import Connection, ExecConnection
from labctl.docker_client import DOCKER, ApiEngine, connect, engine_errors, exec_with_stdin
from labctl.errors import EngineError, NotFoundError, ReadyTimeout
from labctl.instance import naming
from labctl.instance.reservations import Reservations
from labctl.instance.reservations import port_free as _port_free
from labctl.instance.state import GuestRecord, LabState
from labctl.keys import KeyPair


def _ipam_subnet(attrs: dict[str, Any]) -> str | None:
    """The IPv4 subnet of a network from its IPAM configuration."""
    for cfg in (attrs.get("IPAM") or {}).get("Config") or []:
        if "." in cfg.get("Subnet", ""):
            return str(ipaddress.ip_network(cfg["Subnet"], strict=False))
    return None


#: the network option naming its Linux bridge (Docker's; Podman's compatible API takes it too)
BRIDGE_OPTION = "com.docker.network.bridge.name"


def _bound_port(attrs: dict[str, Any], port: int) -> int | None:
    """The host port a container publishes ``port`` on: configured, else as running."""
    key = f"{port}/tcp"
    configured = ((attrs.get("HostConfig") or {}).get("PortBindings") or {}).get(key) or []
    live = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(key) or []
    for binding in [*configured, *live]:
        if binding.get("HostIp") in ("127.0.0.1", "0.0.0.0", "") and binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


class DockerBackend(base.ClientBackend[DockerParams, docker.DockerClient]):
    """Containers on a per-lab bridge network, ports published on 127.0.0.1 only."""

    engine = "docker"
    ready_means = "the app answers HTTP 200 on its published port"
    #: the engine behind the API: messages, socket, start hint
    api: ClassVar[ApiEngine] = DOCKER
    #: the command students run (``docker logs``, ``docker exec``)
    cli: ClassVar[str] = "docker"
    #: the state file's fields of this engine's network and subnet
    network_field: ClassVar[str] = "docker_network"
    subnet_field: ClassVar[str] = "docker_subnet"

    def _connect(self) -> docker.DockerClient:
        return connect(engine=self.api)  # pings the daemon

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        """docker-py's errors as labctl's, naming this backend's engine."""
        return engine_errors(action, self.api)

    def preflight(self) -> None:
        self.client  # noqa: B018 - connecting pings the daemon

    def _network(self, name: str) -> docker.models.networks.Network | None:
        # names= matches substrings: keep the exact name only.
        found = [n for n in self.client.networks.list(names=[name]) if n.name == name]
        return found[0] if found else None

    def reserve_network(self, state: LabState, pool: str, book: Reservations) -> LabState:
        name = naming.network(state.lab, state.instance)
        with self._errors(f"look up network {name}"):
            net = self._network(name)
            real = _ipam_subnet(net.attrs) if net is not None else None
        recorded = getattr(state, self.subnet_field)
        subnet = book.network_subnet(state, self.engine, pool, self._subnets, recorded, real)
        fields: dict[str, Any] = {self.network_field: name, self.subnet_field: subnet}
        return replace(state, **fields)

    def _subnets(self) -> list[str | None]:
        with self._errors("list networks"):
            return [_ipam_subnet(n.attrs) for n in self.client.networks.list()]

    def prepare(self, state: LabState) -> LabState:
        name = naming.network(state.lab, state.instance)
        subnet = getattr(state, self.subnet_field)
        assert subnet, "reserve_network ran and its state was saved"
        with self._errors(f"create network {name} ({subnet})"):
            if self._network(name) is None:
                self.client.networks.create(
                    name,
                    driver="bridge",
                    ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]),
                    options=self._network_options(state),
                    labels={base.LAB: state.lab, base.INSTANCE: state.instance},
                )
        fields: dict[str, Any] = {self.network_field: name}
        return replace(state, **fields)

    def cleanup(self, state: LabState) -> None:
        name = naming.network(state.lab, state.instance)
        try:
            with self._errors(f"remove network {name}"):
                net = self._network(name)
                if net is not None:
                    net.remove()
        except NotFoundError:
            pass
        # the images a student built with `labctl app` (their containers went with the guests)
        DockerApps(self.client, self.api).remove_all(state.lab, state.instance)

    def bridges(self, state: LabState) -> list[str]:
        name = naming.network(state.lab, state.instance)
        with self._errors(f"look up network {name}"):
            net = self._network(name)
        return [] if net is None else [self._bridge(state, net)]

    def _bridge(self, state: LabState, net: docker.models.networks.Network) -> str:
        """The Linux bridge of the lab's network: Docker names it after the network's id."""
        options = net.attrs.get("Options") or {}
        return str(options.get(BRIDGE_OPTION) or f"br-{net.id[:12]}")

    def _network_options(self, state: LabState) -> dict[str, str]:
        """Driver options of the lab's network: none, Docker names its bridge after its id."""
        return {}

    def identify(
        self, plan: base.GuestPlan[DockerParams], record: GuestRecord, book: Reservations
    ) -> GuestRecord:
        guest = plan.params
        if guest.host_port is not None:  # the lab file fixes it (check_ports looked)
            return replace(record, host_port=guest.host_port)
        use = f"port of {plan.name}"
        try:
            with self._errors(f"inspect {plan.resource}"):
                attrs = self.client.containers.get(plan.resource).attrs
        except NotFoundError:
            attrs = None
        bound = _bound_port(attrs, guest.port) if attrs is not None else None
        if bound is not None:  # the container exists: its port is the port
            book.claim_port(plan.lab, plan.instance, use, bound)
            return replace(record, host_port=bound)
        # A record from before host_port existed still knows the port it answered on.
        preferred = record.host_port or record.port
        port = book.port(plan.lab, plan.instance, use, preferred=preferred)
        return replace(record, host_port=port)

    def create(self, plan: base.GuestPlan[DockerParams]) -> GuestRecord:
        guest = plan.params
        record = GuestRecord(
            name=plan.name,
            engine=self.engine,
            resource=plan.resource,
            stage="created",
            devices="shared host kernel",
        )
        try:
            with self._errors(f"inspect {plan.resource}"):
                found = self.client.containers.get(plan.resource)
        except NotFoundError:
            found = None
        if found is not None:  # ours: up refuses another's (Backend.foreign)
            return record
        host_port = plan.host_port if plan.host_port is not None else guest.host_port
        if host_port is not None and not _port_free(host_port):
            raise EngineError(
                f"port 127.0.0.1:{host_port} for {plan.name} is already in use",
                "free the port, or set host_port to another port (or leave it empty) in the lab",
            )
        with self._errors(f"create {plan.resource}"):
            self.client.containers.create(
                plan.manifest.engine_ref,
                name=plan.resource,
                hostname=plan.name,
                labels=plan.labels,
                ports={f"{guest.port}/tcp": ("127.0.0.1", host_port)},
                network=plan.network,
                mem_limit=f"{guest.memory}m",
                detach=True,
            )
        return record

    def start(self, plan: base.GuestPlan[DockerParams]) -> base.Started:
        with self._errors(f"start {plan.resource}"):
            container = self.client.containers.get(plan.resource)
            if container.status == "running":
                return base.Started(base.RUNNING)
            if container.status == "paused":
                container.unpause()
                return base.Started(base.RESUMED)
            self._reattach(container, plan.network)
            container.start()
            return base.Started(base.BOOTED)

    def _reattach(self, container: Any, network: str | None) -> None:
        """A stopped container whose network was removed (``docker network prune``) and made
        again by ``prepare`` still names the old one's id, and the engine refuses to start
        it ("network ... not found"): it is attached to the network of that name again."""
        attached = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        was = attached.get(network) if network else None
        now = self._network(network) if network else None
        if was is None or now is None or was.get("NetworkID") in ("", None, now.id):
            return
        now.disconnect(container)
        now.connect(container)

    def _published_port(self, resource: str, port: int) -> int | None:
        container = self.client.containers.get(resource)
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []
        for b in bindings:
            if b.get("HostIp") in ("127.0.0.1", "0.0.0.0", "") and b.get("HostPort"):
                return int(b["HostPort"])
        return None

    def wait_ready(self, plan: base.GuestPlan[DockerParams], deadline: float) -> base.Ready:
        guest = plan.params
        last = "not started"
        while True:
            try:
                host_port = self._published_port(plan.resource, guest.port)
                if host_port:
                    url = f"http://127.0.0.1:{host_port}{guest.http_path}"
                    answer = requests.get(url, timeout=3, allow_redirects=False)
                    if answer.status_code == 200:
                        return base.Ready("127.0.0.1", host_port, url)
                    last = f"HTTP {answer.status_code} from {url}"
                else:
                    last = "port not published yet"
            except (requests.RequestException, DockerException) as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise ReadyTimeout(
                    f"{plan.name} did not answer HTTP: {last}\n"
                    f"container log, last lines:\n{self._logs(plan.resource)}",
                    f"see: {self.cli} logs {plan.resource}",
                )
            cancel.check()
            time.sleep(0.2)

    def _logs(self, resource: str) -> str:
        try:
            text = self.client.containers.get(resource).logs(tail=10).decode(errors="replace")
        except DockerException:
            return "  (no logs)"
        return "\n".join("  " + line for line in text.splitlines()) or "  (empty)"

    def state(self, resource: str) -> base.EngineState:
        try:
            with self._errors(f"inspect {resource}"):
                container = self.client.containers.get(resource)
        except NotFoundError:
            return "absent"
        if container.status in ("running", "paused"):
            return "running" if container.status == "running" else "paused"
        return "stopped"

    def labels_of(self, resource: str) -> dict[str, str] | None:
        try:
            with self._errors(f"inspect {resource}"):
                return dict(self.client.containers.get(resource).labels or {})
        except NotFoundError:
            return None

    def destroy(self, resource: str) -> bool:
        try:
            with self._errors(f"remove {resource}"):
                self.client.containers.get(resource).remove(force=True, v=True)
        except NotFoundError:
            return False
        return True

    def connect(self, record: GuestRecord, key: KeyPair) -> Connection:
        return AppConnection(self, record)

    def list_guests(self, lab: str, instance: str) -> list[str]:
        labels = [f"{base.LAB}={lab}", f"{base.INSTANCE}={instance}"]
        with self._errors("list containers"):
            found = self.client.containers.list(all=True, filters={"label": labels})
        return sorted(c.name for c in found)

    # -- what compare measures ---------------------------------------------------------

    def devices(self, resource: str) -> base.Devices:
        with self._errors(f"inspect {resource}"):
            self.client.containers.get(resource)
        return base.Devices("shared host kernel")

    def memory(self, resource: str) -> base.HostUse:
        with self._errors(f"read the memory use of {resource}"):
            stats = self.client.containers.get(resource).stats(stream=False, one_shot=True)
        usage = (stats.get("memory_stats") or {}).get("usage")
        if not usage:
            raise EngineError(f"{self.api.name} reports no memory usage for {resource}")
        return base.HostUse(
            int(usage),
            f"cgroup memory usage of the container ({self.cli} stats memory_stats.usage, "
            "page cache included)",
        )

    def footprint(self, resource: str) -> base.HostUse:
        with self._errors(f"read the size of {resource}"):
            found = self.client.api.containers(all=True, filters={"name": resource}, size=True)
        rows = [c for c in found if f"/{resource}" in c.get("Names", [])]
        if not rows:
            raise NotFoundError(f"{self.api.name} does not list {resource}")
        size_rw = int(rows[0].get("SizeRw") or 0)  # omitted by the daemon when 0
        with_image = int(rows[0].get("SizeRootFs") or 0)
        return base.HostUse(
            size_rw,
            f"the container's writable layer ({self.cli} ps --size, SizeRw)",
            f"with the (shared) image layers: {with_image / MIB:.0f} MiB",
        )

    def fresh_start(self, copy: base.Copy[DockerParams], starts: int) -> base.StartTimes:
        guest = copy.params
        name = copy.new_name()
        try:
            with self._errors(f"create {name}"):
                source = self.client.containers.get(copy.record.resource)
                host_config = source.attrs.get("HostConfig") or {}
                clone = self.client.containers.create(
                    source.image.id,
                    name=name,
                    labels=copy.labels,
                    ports={f"{guest.port}/tcp": ("127.0.0.1", None)},
                    network=host_config.get("NetworkMode"),
                    mem_limit=host_config.get("Memory") or None,
                    detach=True,
                )
            seconds = tuple(self._timed_start(clone, guest, copy.timeout) for _ in range(starts))
        finally:
            self.destroy(name)
        return base.StartTimes(
            seconds,
            "start of a throwaway container from the same image (creation not timed) until "
            f"{self.ready_means}; stopped between runs",
        )

    def _timed_start(
        self, clone: docker.models.containers.Container, guest: DockerParams, timeout: float
    ) -> float:
        with self._errors(f"start {clone.name}"):
            t0 = time.monotonic()
            clone.start()
            while not _answers(clone, guest):
                if time.monotonic() - t0 >= timeout:
                    raise ReadyTimeout(f"{clone.name} did not answer HTTP in {timeout:.0f} s")
                cancel.check()
                time.sleep(0.1)
            seconds = time.monotonic() - t0
            clone.stop(timeout=5)
        return seconds


class AppConnection(ExecConnection):
    """An application container through ``docker exec`` (or Podman's), no SSH and no users.

    Commands run as root, whatever user the application runs as: as in every other guest
    (``labctl ssh``), a student is root inside their own guests, and class mode gives
    students ``labctl exec``, not Docker.
    """

    def __init__(
        self,
        backend: DockerBackend,
        record: GuestRecord,
        terminal: Callable[[], bool] | None = None,
    ) -> None:
        self.name = record.name
        self._backend = backend
        self._record = record
        self._terminal = terminal or _stdin_is_terminal

    def _exec(self, argv: list[str], stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
        rec = self._record
        try:
            with self._backend._errors(f"run a command in {rec.resource}"):
                container = self._backend.client.containers.get(rec.resource)
                if stdin is None:
                    rc, (out, err) = container.exec_run(argv, demux=True, user="root")
                else:
                    api = self._backend.client.api
                    rc, out, err = exec_with_stdin(api, rec.resource, argv, stdin)
        except NotFoundError as exc:
            raise NotFoundError(
                f"{rec.name} is gone: {exc.message}",
                base.up_again("creates it again, from its image, on the same port"),
            ) from exc
        return rc, out or b"", err or b""

    def shell_argv(self) -> list[str]:
        """``docker exec`` (``podman exec``), with a terminal when labctl's stdin is one."""
        # `-t` on a pipe (`echo cmd | labctl ssh app`) is refused: "the input device is not a TTY"
        mode = "-it" if self._terminal() else "-i"
        return [self._backend.cli, "exec", mode, "-u", "root", self._record.resource, "sh"]


def _stdin_is_terminal() -> bool:
    """Whether labctl's stdin is a terminal now (None or closed: not one)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # closed
        return False


def _answers(container: docker.models.containers.Container, guest: DockerParams) -> bool:
    """True once the container's app answers HTTP 200 on its published port."""
    container.reload()
    port = _bound_port(container.attrs, guest.port)
    if port is None:
        return False
    try:
        url = f"http://127.0.0.1:{port}{guest.http_path}"
        answer = requests.get(url, timeout=2, allow_redirects=False)
    except requests.RequestException:
        return False
    return answer.status_code == 200
