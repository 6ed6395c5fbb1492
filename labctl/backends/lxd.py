"""System containers through pylxd (LXD or Incus), reached by students over SSH."""

from __future__ import annotations

import time

from pylxd.exceptions import LXDAPIException, NotFound

from labctl import cancel
from labctl.backends.base import Backend, EngineState, GuestPlan, Ready
from labctl.command import CommandResult
from labctl.errors import EngineError, ReadyTimeout
from labctl.keys import KeyPair
from labctl.lab.state import GuestRecord
from labctl.lxd_client import connect
from labctl.spec.model import LxdGuest
from labctl.ssh import SshTarget, wait_for_login

HINT = "is LXD (or Incus) running and initialised? labctl host setup does both"


def _err(action: str, exc: Exception) -> EngineError:
    return EngineError(f"LXD could not {action}: {exc}", HINT)


class LxdBackend(Backend):
    """Containers from the lab's LXD image, on the host's LXD bridge."""

    engine = "lxd"

    def __init__(self) -> None:
        self._client = None

    @property
    def client(self):  # type: ignore[no-untyped-def]
        """The pylxd client, connected on first use."""
        if self._client is None:
            self._client = connect()
        return self._client

    def preflight(self) -> None:
        try:
            self.client.host_info  # noqa: B018 - a request that fails if LXD is not usable
        except LXDAPIException as exc:
            raise _err("answer", exc) from exc

    def _get(self, resource: str):  # type: ignore[no-untyped-def]
        try:
            return self.client.instances.get(resource)
        except NotFound:
            return None
        except LXDAPIException as exc:
            raise _err(f"look up {resource}", exc) from exc

    def create(self, plan: GuestPlan) -> GuestRecord:
        guest = plan.spec
        assert isinstance(guest, LxdGuest)
        if self._get(plan.resource) is None:
            config = {
                "limits.memory": f"{guest.memory}MB",
                **{f"user.{k}": v for k, v in plan.labels.items()},
            }
            try:
                instance = self.client.instances.create(
                    {
                        "name": plan.resource,
                        "source": {"type": "image", "fingerprint": plan.manifest.engine_ref},
                        "profiles": ["default"],
                        "config": config,
                    },
                    wait=True,
                )
                instance.files.put(
                    "/root/.ssh/authorized_keys", plan.key.public_line + "\n", mode=0o600
                )
            except LXDAPIException as exc:
                raise _err(f"create {plan.resource}", exc) from exc
        return GuestRecord(
            name=plan.name,
            engine=self.engine,
            resource=plan.resource,
            stage="created",
            devices="host kernel, namespaces + cgroups, own init",
            port=22,
        )

    def start(self, plan: GuestPlan) -> None:
        instance = self._get(plan.resource)
        if instance is None:
            raise EngineError(f"container {plan.resource} does not exist", "run labctl up again")
        if instance.status != "Running":
            try:
                instance.start(wait=True)
            except LXDAPIException as exc:
                raise _err(f"start {plan.resource}", exc) from exc

    def _address(self, resource: str) -> str | None:
        instance = self._get(resource)
        if instance is None:
            return None
        eth0 = (instance.state().network or {}).get("eth0", {})
        for addr in eth0.get("addresses", []):
            if addr.get("family") == "inet" and addr.get("scope") == "global":
                return str(addr["address"])
        return None

    def wait_ready(self, plan: GuestPlan, deadline: float) -> Ready:
        address = None
        while address is None:
            address = self._address(plan.resource)
            if address is None:
                if time.monotonic() >= deadline:
                    raise ReadyTimeout(
                        f"{plan.name} got no IPv4 address on eth0",
                        f"look inside: lxc exec {plan.resource} -- journalctl -b",
                    )
                cancel.check()
                time.sleep(0.5)
        target = SshTarget(address, 22, "root", plan.key.private)
        wait_for_login(target, deadline, command="true")
        return Ready(address, 22, " ".join(target.argv))

    def state(self, resource: str) -> EngineState:
        instance = self._get(resource)
        if instance is None:
            return "absent"
        return "running" if instance.status == "Running" else "stopped"

    def destroy(self, resource: str) -> None:
        instance = self._get(resource)
        if instance is None:
            return
        try:
            if instance.status == "Running":
                instance.stop(force=True, wait=True)
            instance.delete(wait=True)
        except LXDAPIException as exc:
            raise _err(f"remove {resource}", exc) from exc

    def exec(self, record: GuestRecord, key: KeyPair, command: str) -> CommandResult:
        instance = self._get(record.resource)
        if instance is None:
            raise EngineError(f"container {record.resource} does not exist", "run labctl up")
        try:
            result = instance.execute(["sh", "-c", command])
        except LXDAPIException as exc:
            raise _err(f"exec in {record.resource}", exc) from exc
        return CommandResult(command, result.exit_code, result.stdout, result.stderr)

    def shell_argv(self, record: GuestRecord, key: KeyPair) -> list[str]:
        assert record.address
        return SshTarget(record.address, 22, "root", key.private).argv

    def list_guests(self, lab: str, instance: str) -> list[str]:
        try:
            found = self.client.instances.all()
        except LXDAPIException as exc:
            raise _err("list instances", exc) from exc
        return sorted(
            i.name
            for i in found
            if i.config.get("user.labctl.lab") == lab
            and i.config.get("user.labctl.instance") == instance
        )
