"""System containers through pylxd (LXD or Incus), reached by students over SSH."""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pylxd

from labctl import cancel
from labctl.backends import base
from labctl.backends.host_side import du_bytes
from labctl.backends.params import LxdParams
from labctl.connection import Connection, ExecConnection
from labctl.errors import EngineError, NotFoundError, NotSupported, ReadyTimeout
from labctl.instance import naming, netguard
from labctl.instance.reservations import Reservations
from labctl.instance.state import GuestRecord, LabState
from labctl.keys import KeyPair
from labctl.lxd_client import connect, engine_errors, server_name
from labctl.paths import guest_apt_proxy
from labctl.ssh import SshTarget, wait_for_login

#: LXD fails an exec whose command exits 126 or 127 ("Command not executable", "Command not
#: found") and drops its output; the command runs under this tail instead, which exits 0 and
#: says the code on stderr in a line marked for this one run (``$M``), taken off again by
#: :func:`_exit_code` wherever it ends up (a process left behind may write after it)
_TAIL = 'case $r in 126|127) printf "%s%d\\n" "$M" "$r" >&2; exit 0;; esac; exit $r'


def _marker() -> str:
    """The mark of one run's exit-code line: nothing a command prints could make it."""
    return f"@labctl-exit-{uuid.uuid4().hex}:"


def _exit_code(rc: int, err: bytes, mark: str) -> tuple[int, bytes]:
    """The command's own exit code and stderr, the tail's line taken off."""
    at = err.find(mark.encode())
    if rc != 0 or at < 0:
        return rc, err
    end = err.find(b"\n", at)
    code = err[at + len(mark) : end]
    return (int(code), err[:at] + err[end + 1 :]) if code in (b"126", b"127") else (rc, err)


def _bytes(output: bytes | str | None) -> bytes:
    """An exec's output as bytes (pylxd gives them with ``decode=False``, text otherwise)."""
    return output if isinstance(output, bytes) else (output or "").encode()


def _network_subnet(config: dict[str, str]) -> str | None:
    """The IPv4 subnet of an LXD network from its ``ipv4.address`` (``10.210.5.1/24``)."""
    address = config.get("ipv4.address", "")
    if "/" not in address:  # "none", "auto" or unset
        return None
    return str(ipaddress.ip_network(address, strict=False))


_Found = TypeVar("_Found")


def _found(get: Callable[[], _Found], action: str) -> _Found | None:
    """What ``get()`` finds (asked inside engine_errors), or None where LXD has no such object."""
    try:
        with engine_errors(action):
            return get()
    except NotFoundError:
        return None


#: apt's configuration in a system container for the host's apt cache
APT_PROXY_CONF = "/etc/apt/apt.conf.d/01labctl-proxy"
#: LXD's words when an operation on the instance still runs, and how long destroy waits for it
BUSY = "is busy running"
BUSY_WAIT, BUSY_POLL = 120.0, 1.0


class LxdBackend(base.ClientBackend[LxdParams, pylxd.Client]):
    """Containers from the lab's LXD image, on an LXD network of their own instance."""

    engine = "lxd"
    ready_means = "SSH login with the lab key runs a command"

    def _connect(self) -> pylxd.Client:
        return connect()

    def daemon(self) -> str:
        """``lxd`` or ``incus``: the server on the other end of the socket, as it names itself."""
        with engine_errors("describe itself"):
            env = self.client.host_info.get("environment", {})
        return str(env.get("server") or self.engine)

    def preflight(self) -> None:
        with engine_errors("answer"):
            self.client.host_info  # noqa: B018 - a request that fails if LXD is not usable

    # -- the instance's network --------------------------------------------------------

    def _network(self, name: str) -> pylxd.models.Network | None:
        return _found(lambda: self.client.networks.get(name), f"look up network {name}")

    def _subnets(self) -> list[str | None]:
        # One by one: Incus 6.0 cannot describe some interfaces it does not manage (ifb0:
        # "Failed to connect to OVS") and then fails the whole list; those hold no subnet of
        # its own to avoid, a network it manages always answers.
        with engine_errors("list networks"):
            urls = self.client.api.networks.get().json()["metadata"]
        subnets = []
        for name in (str(url).rsplit("/", 1)[-1] for url in urls):
            try:
                with engine_errors(f"look up network {name}"):
                    net = self.client.networks.get(name)
            except EngineError:
                continue
            subnets.append(_network_subnet(net.config or {}))
        return subnets

    def reserve_network(self, state: LabState, pool: str, book: Reservations) -> LabState:
        name = naming.lxd_bridge(state.lab, state.instance)
        net = self._network(name)
        real = _network_subnet(net.config or {}) if net is not None else None
        subnet = book.network_subnet(
            state, self.engine, pool, self._subnets, state.lxd_subnet, real
        )
        return replace(state, lxd_network=name, lxd_subnet=subnet)

    def prepare(self, state: LabState) -> LabState:
        name = naming.lxd_bridge(state.lab, state.instance)
        assert state.lxd_subnet, "reserve_network ran and its state was saved"
        if self._network(name) is None:
            subnet = ipaddress.ip_network(state.lxd_subnet)
            config = {
                "ipv4.address": f"{subnet.network_address + 1}/{subnet.prefixlen}",
                "ipv4.nat": "true",
                "ipv6.address": "none",
                "user.labctl.lab": state.lab,
                "user.labctl.instance": state.instance,
            }
            with engine_errors(f"create network {name} ({state.lxd_subnet})"):
                self.client.networks.create(
                    name,
                    description=f"labctl {state.lab}/{state.instance}",
                    type="bridge",
                    config=config,
                )
        return replace(state, lxd_network=name)

    def cleanup(self, state: LabState) -> None:
        name = naming.lxd_bridge(state.lab, state.instance)
        net = self._network(name)
        if net is not None:
            with engine_errors(f"remove network {name}"):
                net.delete()

    def bridges(self, state: LabState) -> list[str]:
        name = naming.lxd_bridge(state.lab, state.instance)
        return [name] if self._network(name) is not None else []

    # -- guests ----------------------------------------------------------------------

    def _get(self, resource: str) -> pylxd.models.Instance | None:
        return _found(lambda: self.client.instances.get(resource), f"look up {resource}")

    def _must_get(self, resource: str) -> pylxd.models.Instance:
        instance = self._get(resource)
        if instance is None:
            raise EngineError(f"container {resource} does not exist", base.up_again("creates it"))
        return instance

    def create(self, plan: base.GuestPlan[LxdParams]) -> GuestRecord:
        guest = plan.params
        assert plan.network, "the instance's LXD network is prepared before plans are made"
        instance = self._get(plan.resource)
        if instance is None:
            config = {
                "limits.memory": f"{guest.memory}MB",
                **{f"user.{k}": v for k, v in plan.labels.items()},
            }
            source = {"type": "image", "fingerprint": plan.manifest.engine_ref}
            with engine_errors(f"create {plan.resource}"):
                instance = self.client.instances.create(
                    {
                        "name": plan.resource,
                        "source": source,
                        "profiles": ["default"],
                        "config": config,
                        # the default profile's eth0 is on the host's shared bridge: not ours
                        "devices": {
                            "eth0": {"type": "nic", "name": "eth0", "network": plan.network}
                        },
                    },
                    wait=True,
                )
        else:
            nic = (instance.expanded_devices or {}).get("eth0") or {}
            if nic.get("network") != plan.network:  # made before instances had networks
                raise EngineError(
                    f"{plan.resource} is on network {nic.get('network') or 'none'}, not on its "
                    f"instance's own {plan.network}, where labctl keeps it apart from others",
                    "start it afresh: `labctl exercise reset` of one of its exercises, or "
                    "`labctl down` then `labctl up`",
                )
        # Always (re)install the keys: an adopted container may carry older ones.
        with engine_errors(f"install the lab key in {plan.resource}"):
            instance.files.put(
                "/root/.ssh/authorized_keys", plan.authorized_keys + "\n", mode=0o600
            )
        proxy = guest_apt_proxy()
        if proxy is not None:  # apt fetches through the host's cache (labctl host setup)
            with engine_errors(f"point apt in {plan.resource} at the host's apt cache"):
                instance.files.put(APT_PROXY_CONF, f'Acquire::http::Proxy "{proxy}";\n')
        return GuestRecord(
            name=plan.name,
            engine=self.engine,
            resource=plan.resource,
            stage="created",
            # which engine runs it (LXD or Incus) shows in `labctl status --wide`
            devices=f"shared host kernel, own init ({server_name(self.client)})",
            port=22,
        )

    def start(self, plan: base.GuestPlan[LxdParams]) -> base.Started:
        instance = self._must_get(plan.resource)
        if instance.status == "Running":
            return base.Started(base.RUNNING)
        with engine_errors(f"start {plan.resource}"):
            if instance.status == "Frozen":
                instance.unfreeze(wait=True)
                return base.Started(base.RESUMED)
            instance.start(wait=True)
        return base.Started(base.BOOTED)

    def _address(self, resource: str) -> str | None:
        with engine_errors(f"read the address of {resource}"):
            network = self._must_get(resource).state().network or {}
        for addr in network.get("eth0", {}).get("addresses", []):
            if addr.get("family") == "inet" and addr.get("scope") == "global":
                return str(addr["address"])
        return None

    def wait_ready(self, plan: base.GuestPlan[LxdParams], deadline: float) -> base.Ready:
        while (address := self._address(plan.resource)) is None:
            if time.monotonic() >= deadline:
                raise ReadyTimeout(
                    f"{plan.name} got no IPv4 address on eth0",
                    f"look inside: lxc exec {plan.resource} -- journalctl -b",
                )
            cancel.check()
            time.sleep(0.3)
        self._guard(plan.resource, address, plan.name)
        target = SshTarget(address, 22, "root", plan.key.private)
        wait_for_login(target, deadline, command="true", poll=0.3)
        return base.Ready(address, 22, " ".join(target.argv))

    def _guard(self, resource: str, address: str, guest: str) -> None:
        """Refuse to contact ``address`` unless it lies behind the container's own bridge."""
        with engine_errors(f"read the network devices of {resource}"):
            devices = self._must_get(resource).expanded_devices or {}
        bridges = {
            str(d.get("network") or d.get("parent"))
            for d in devices.values()
            if d.get("type") == "nic" and (d.get("network") or d.get("parent"))
        }
        netguard.require_lab_bridge(address, bridges, guest)

    def state(self, resource: str) -> base.EngineState:
        instance = self._get(resource)
        if instance is None:
            return "absent"
        if instance.status == "Running":
            return "running"
        return "paused" if instance.status == "Frozen" else "stopped"

    def labels_of(self, resource: str) -> dict[str, str] | None:
        instance = self._get(resource)
        if instance is None:
            return None
        config = instance.config or {}
        return {k.removeprefix("user."): v for k, v in config.items() if k.startswith("user.")}

    def destroy(self, resource: str) -> bool:
        deadline = time.monotonic() + BUSY_WAIT
        while True:
            instance = self._get(resource)
            if instance is None:
                return False
            try:
                with engine_errors(f"remove {resource}"):
                    if instance.status in ("Running", "Frozen"):  # frozen: lxc pause
                        instance.stop(force=True, wait=True)
                    instance.delete(wait=True)
                return True
            except EngineError as exc:
                # an operation still runs in the daemon for a labctl killed in its middle
                # (a create, a stop): LXD refuses until it ends, so wait for it, then remove
                if BUSY not in exc.message or time.monotonic() > deadline:
                    raise
                cancel.check()
                time.sleep(BUSY_POLL)

    def connect(self, record: GuestRecord, key: KeyPair) -> Connection:
        return ContainerConnection(self, record, key)

    def list_guests(self, lab: str, instance: str) -> list[str]:
        with engine_errors("list instances"):
            found = self.client.instances.all()
        return sorted(
            i.name
            for i in found
            if i.config.get("user.labctl.lab") == lab
            and i.config.get("user.labctl.instance") == instance
        )

    # -- what compare measures ---------------------------------------------------------

    def devices(self, resource: str) -> base.Devices:
        self._must_get(resource)
        return base.Devices("shared host kernel, own init")

    def memory(self, resource: str) -> base.HostUse:
        with engine_errors(f"read the memory use of {resource}"):
            usage = (self._must_get(resource).state().memory or {}).get("usage")
        if not usage:
            raise EngineError(f"LXD reports no memory usage for {resource}")
        return base.HostUse(
            int(usage),
            "cgroup memory usage of the container (LXD state().memory.usage, page cache included)",
        )

    def footprint(self, resource: str) -> base.HostUse:
        with engine_errors(f"find the storage of {resource}"):
            instance = self._must_get(resource)
            pool_name = (instance.expanded_devices.get("root") or {}).get("pool", "default")
            pool = self.client.storage_pools.get(pool_name)
        source = (pool.config or {}).get("source")
        if pool.driver != "dir" or not source:
            raise NotSupported(
                f"storage pool {pool_name} ({pool.driver}): only dir pools are measured"
            )
        path = Path(source) / "containers" / resource
        note = "a dir pool keeps a full copy of the image's rootfs for each container"
        return base.HostUse(du_bytes(path), f"du -sx {path} (LXD dir pool)", note)

    def fresh_start(self, copy: base.Copy[LxdParams], starts: int) -> base.StartTimes:
        source = self._must_get(copy.record.resource)
        fingerprint = source.config.get("volatile.base_image")
        if not fingerprint:
            raise EngineError(f"{copy.record.resource} does not say which image it came from")
        config = {f"user.{k}": v for k, v in copy.labels.items()}
        if source.config.get("limits.memory"):
            config["limits.memory"] = source.config["limits.memory"]
        name = copy.new_name()
        try:
            with engine_errors(f"create {name}"):
                clone = self.client.instances.create(
                    {
                        "name": name,
                        "source": {"type": "image", "fingerprint": fingerprint},
                        "profiles": source.profiles,
                        "config": config,
                        "devices": source.devices,  # its NIC on the instance's own network
                    },
                    wait=True,
                )
            seconds = tuple(self._timed_start(clone, copy.timeout) for _ in range(starts))
        finally:
            self.destroy(name)
        return base.StartTimes(
            seconds,
            "start of a throwaway container from the same image (creation not timed) until a "
            "command runs through the engine (exec); stopped between runs",
            "usable here: a command runs through LXD's exec, before its network and SSH are up "
            f"(labctl up waits until: {self.ready_means})",
        )

    def _timed_start(self, clone: pylxd.models.Instance, timeout: float) -> float:
        with engine_errors(f"start {clone.name}"):
            t0 = time.monotonic()
            clone.start(wait=True)
            while clone.execute(["true"]).exit_code != 0:
                if time.monotonic() - t0 >= timeout:
                    raise ReadyTimeout(f"exec in {clone.name} did not work in {timeout:.0f} s")
                cancel.check()
                time.sleep(0.1)
            seconds = time.monotonic() - t0
            clone.stop(force=True, wait=True)
        return seconds


class ContainerConnection(ExecConnection):
    """A system container: commands through LXD's exec, the student's shell over SSH.

    LXD's exec reaches the container through the daemon, not the network.
    """

    def __init__(self, backend: LxdBackend, record: GuestRecord, key: KeyPair) -> None:
        self.name = record.name
        self._backend = backend
        self._record = record
        self._key = key

    def _running(self) -> pylxd.models.Instance:
        """The container, if it runs; else the error a stopped VM gets too."""
        rec = self._record
        instance = self._backend._must_get(rec.resource)
        if instance.status.lower() != "running":  # Stopped, Frozen
            now = "paused" if instance.status.lower() == "frozen" else "stopped"
            raise EngineError(
                f"{rec.name} is {now} (not running)", base.up_again("starts it again")
            )
        return instance

    def _exec(self, argv: list[str], stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
        """``stdin`` goes in as a file the command reads and removes: exec's stdin websocket
        takes one message, and the daemon drops one of a few hundred kB. The output comes
        back as bytes: pylxd decodes it as strict UTF-8 otherwise, and fails on a binary."""
        resource = self._record.resource
        instance = self._running()
        mark = _marker()
        with engine_errors(f"run a command in {resource}"):
            if stdin is None:
                script = 'M=$1; shift; "$@"; r=$?; ' + _TAIL
                result = instance.execute(["sh", "-c", script, "sh", mark, *argv], decode=False)
            else:
                given = f"/tmp/.labctl-stdin-{uuid.uuid4().hex}"
                instance.files.put(given, stdin, mode="0600")
                script = 'M=$1; f=$2; shift 2; "$@" < "$f"; r=$?; rm -f "$f"; ' + _TAIL
                try:
                    argv = ["sh", "-c", script, "sh", mark, given, *argv]
                    result = instance.execute(argv, decode=False)
                except Exception:
                    with suppress(Exception):  # best effort: the error said is the exec's
                        instance.files.delete(given)
                    raise
        rc, err = _exit_code(result.exit_code, _bytes(result.stderr), mark)
        return rc, _bytes(result.stdout), err

    def shell_argv(self) -> list[str]:
        """``ssh`` into the container, only while its address lies behind its own bridge."""
        rec = self._record
        self._running()  # `ssh` to a stopped one would only say "No route to host"
        if not rec.address:
            raise EngineError(
                f"{rec.name} has no address yet: it never became ready",
                base.up_again("makes it ready") + f"; without SSH: lxc exec {rec.resource} -- bash",
            )
        self._backend._guard(rec.resource, rec.address, rec.name)
        return SshTarget(rec.address, 22, "root", self._key.private).argv
