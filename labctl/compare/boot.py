"""Start to usable: the lab's own ``ready_seconds``, and fresh starts measured one at a time.

Usable means what ``labctl up`` waits for: a VM accepts an SSH login with the lab key and runs
a command; a container runs a command through its engine (``exec``); the app answers HTTP
200 on its published port.

Fresh starts never touch a container of the lab: a throwaway container is made from the
same image and labelled with the lab instance (so ``labctl down`` would find it after a
crash), started and stopped a few times, then removed. A VM cannot be cloned that cheaply;
it is powered off and cold-booted in place, which is why that needs ``--restart-guests``.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import libvirt
import requests

from labctl import backends, cancel
from labctl.compare.model import Figure, Samples, Subject
from labctl.errors import EngineError, LabctlError, ReadyTimeout
from labctl.keys import KeyPair
from labctl.lab.state import GuestRecord, LabState
from labctl.ssh import SshTarget, wait_for_login

LAB_UP_METHOD = (
    "ready_seconds recorded by labctl up: from create to usable, guests started in parallel "
    "(at most one VM per core at a time)"
)
USABLE = {
    "libvirt": "SSH login with the lab key runs a command",
    "lxd": "a command runs through the engine (exec)",
    "docker": "the app answers HTTP 200 on its published port",
}


def from_lab_up(record: GuestRecord, subject: Subject) -> Figure:
    """The guest's ``ready_seconds`` from the state file (one sample)."""
    if record.ready_seconds is None:
        raise LabctlError(
            f"{record.name} has no ready time in the lab state (stage {record.stage})"
        )
    usable = "SSH login" if record.engine in ("libvirt", "lxd") else USABLE[record.engine]
    return Figure(
        "boot_lab_up",
        record.name,
        Samples((float(record.ready_seconds),)),
        subject.accel,
        subject.devices,
        f"{LAB_UP_METHOD}; usable = {usable}",
        "one sample, taken while other guests were booting",
    )


def _until(check: Callable[[], bool], deadline: float, what: str) -> None:
    while not check():
        if time.monotonic() >= deadline:
            raise ReadyTimeout(f"{what} did not happen in time")
        cancel.check()
        time.sleep(0.1)


def _timed_runs(runs: int, warmup: int, one: Callable[[], float]) -> Samples:
    values = [one() for _ in range(warmup + runs)]
    return Samples(tuple(values[warmup:]), tuple(values[:warmup]))


def _throwaway_name(resource: str) -> str:
    return f"{resource}-cmp{secrets.token_hex(2)}"


def lxd_fresh(
    state: LabState, record: GuestRecord, subject: Subject, runs: int, warmup: int
) -> Figure:
    """Start a throwaway copy of the system container (same image) until exec works."""
    from labctl.backends.lxd import LxdBackend
    from labctl.lxd_client import engine_errors

    backend = backends.get("lxd")
    assert isinstance(backend, LxdBackend)
    client = backend.client
    name = _throwaway_name(record.resource)
    with engine_errors(f"read {record.resource}"):
        source = client.instances.get(record.resource)
    fingerprint = source.config.get("volatile.base_image")
    if not fingerprint:
        raise LabctlError(f"{record.resource} does not say which image it came from")
    config = {
        "user.labctl.lab": state.lab,
        "user.labctl.instance": state.instance,
        "user.labctl.guest": f"{record.name}-compare",
    }
    if source.config.get("limits.memory"):
        config["limits.memory"] = source.config["limits.memory"]
    with engine_errors(f"create {name}"):
        clone = client.instances.create(
            {
                "name": name,
                "source": {"type": "image", "fingerprint": fingerprint},
                "profiles": source.profiles,
                "config": config,
            },
            wait=True,
        )

    def one() -> float:
        with engine_errors(f"start {name}"):
            t0 = time.monotonic()
            clone.start(wait=True)

            def runs_command() -> bool:
                return bool(clone.execute(["true"]).exit_code == 0)

            _until(runs_command, t0 + 60, f"exec in {name}")
            seconds = time.monotonic() - t0
            clone.stop(force=True, wait=True)
        return seconds

    try:
        samples = _timed_runs(runs, warmup, one)
    finally:
        with engine_errors(f"remove {name}"):
            clone.sync()
            if clone.status == "Running":
                clone.stop(force=True, wait=True)
            clone.delete(wait=True)
    return Figure(
        "boot_fresh",
        record.name,
        samples,
        subject.accel,
        subject.devices,
        f"start of a throwaway container from the same image (creation not timed) until "
        f"{USABLE['lxd']}; stopped between runs",
    )


def docker_fresh(
    state: LabState,
    record: GuestRecord,
    subject: Subject,
    port: int,
    http_path: str,
    runs: int,
    warmup: int,
) -> Figure:
    """Start a throwaway container of the app's image until it answers HTTP 200."""
    from labctl.backends.docker import DockerBackend
    from labctl.docker_client import engine_errors

    backend = backends.get("docker")
    assert isinstance(backend, DockerBackend)
    client = backend.client
    name = _throwaway_name(record.resource)
    with engine_errors(f"read {record.resource}"):
        source = client.containers.get(record.resource)
        memory = source.attrs.get("HostConfig", {}).get("Memory") or None
        clone = client.containers.create(
            source.image.id,
            name=name,
            labels={
                "labctl.lab": state.lab,
                "labctl.instance": state.instance,
                "labctl.guest": f"{record.name}-compare",
            },
            ports={f"{port}/tcp": ("127.0.0.1", None)},
            network=state.docker_network,
            mem_limit=memory,
            detach=True,
        )

    def answers() -> bool:
        clone.reload()
        bindings = (clone.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []
        if not bindings:
            return False
        url = f"http://127.0.0.1:{bindings[0]['HostPort']}{http_path}"
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def one() -> float:
        with engine_errors(f"start {name}"):
            t0 = time.monotonic()
            clone.start()
            _until(answers, t0 + 60, f"HTTP answer from {name}")
            seconds = time.monotonic() - t0
            clone.stop(timeout=5)
        return seconds

    try:
        samples = _timed_runs(runs, warmup, one)
    finally:
        with engine_errors(f"remove {name}"):
            clone.remove(force=True)
    return Figure(
        "boot_fresh",
        record.name,
        samples,
        subject.accel,
        subject.devices,
        f"start of a throwaway container from the same image (creation not timed) until "
        f"{USABLE['docker']}; stopped between runs",
    )


def replaced_images(pid: int, proc: Path = Path("/proc")) -> list[str]:
    """Disk images the QEMU process ``pid`` has open that were replaced or removed on disk.

    A qcow2 overlay refers to its base image by path. If the image cache rebuilt the base
    while the guest ran, QEMU still reads the old file; a cold boot would open the new one
    under the old overlay and corrupt the guest's file system.
    """
    replaced = []
    for fd in (proc / str(pid) / "fd").iterdir():
        try:
            target = os.readlink(fd)
            if not target.endswith((".qcow2", ".qcow2 (deleted)", ".img", ".img (deleted)")):
                continue
            if target.endswith(" (deleted)"):
                replaced.append(target.removesuffix(" (deleted)"))
            elif os.stat(fd).st_ino != os.stat(target).st_ino:
                replaced.append(target)
        except OSError:
            continue
    return sorted(set(replaced))


def _check_restartable(record: GuestRecord) -> None:
    from labctl.compare.probes import QEMU_PIDS

    try:
        pid = int((QEMU_PIDS / f"{record.resource}.pid").read_text().strip())
        replaced = replaced_images(pid)
    except (OSError, ValueError) as exc:
        raise LabctlError(f"{record.name}: cannot check its QEMU process: {exc}") from exc
    if replaced:
        raise LabctlError(
            f"{record.name} was not restarted: its image changed on disk since it started "
            f"({', '.join(replaced)}); a cold boot would put its overlay on the new base and "
            "corrupt its file system",
            "take the lab down and up again to use the rebuilt images",
        )


def vm_restart(record: GuestRecord, subject: Subject, key: KeyPair, timeout: float) -> Figure:
    """Power the VM off from inside, cold-boot it and time it to an SSH login (one sample)."""
    from labctl.backends.libvirt import connection

    assert record.address
    _check_restartable(record)
    target = SshTarget(record.address, record.port or 22, "root", key.private)
    backend = backends.get("libvirt")
    try:
        # The guest's own poweroff works on both architectures (the aarch64 one has no ACPI).
        backend.connect(record, key).run("nohup sh -c 'sleep 1; poweroff' >/dev/null 2>&1 &")
    except OSError as exc:
        raise LabctlError(f"{record.name}: could not ask it to power off: {exc}") from exc
    with connection() as conn:
        try:
            dom = conn.lookupByName(record.resource)
            deadline = time.monotonic() + 90
            _until(lambda: not dom.isActive(), deadline, f"power-off of {record.name}")
            t0 = time.monotonic()
            dom.create()
        except libvirt.libvirtError as exc:
            raise EngineError(
                f"libvirt could not restart {record.resource}: {exc.get_error_message()}",
                "run `labctl up` for this instance to start it again",
            ) from exc
    wait_for_login(target, t0 + timeout, command="true", poll=0.3)
    seconds = time.monotonic() - t0
    return Figure(
        "boot_fresh",
        record.name,
        Samples((seconds,)),
        subject.accel,
        subject.devices,
        f"cold boot of the lab's VM (powered off from inside, started by libvirt) until "
        f"{USABLE['libvirt']}",
        "one sample: a VM boot is too long to repeat",
    )
