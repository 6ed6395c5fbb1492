"""From a validated lab to per-guest plans: images, accelerators, addresses."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Collection
from pathlib import Path

from labctl.backends.base import GuestPlan
from labctl.backends.params import DockerParams, LibvirtParams, LxdParams, Params, PodmanParams
from labctl.errors import HostError, LabctlError, SpecError
from labctl.images.cache import ImageStore
from labctl.images.registry import profile_image
from labctl.instance import naming
from labctl.instance.state import InstanceDir, LabState
from labctl.keys import KeyPair
from labctl.lab.accel import AccelChoice, KvmProbe, choose
from labctl.paths import LABS_DIR, podman_set_up, podman_socket, vm_profile
from labctl.spec.model import DockerGuest, Guest, Lab, LibvirtGuest, load_lab

FIRST_HOST = 10  # guests get .10, .11, ... on the lab's /24; .1 is the host
READY_TIMEOUT_ENV = "LABCTL_READY_TIMEOUT"
READY_TIMEOUT_RANGE = (10, 7200)


def ready_timeout(lab: Lab, override: int | None = None) -> int:
    """Seconds each guest may take to become usable.

    ``--ready-timeout`` (``override``), else ``$LABCTL_READY_TIMEOUT``, else the lab file's
    ``ready_timeout``. The environment is for hosts slower than the lab's author planned for,
    e.g. a Vagrant VM under TCG whose arm64 guest is translated twice.
    """
    if override is not None:
        return override
    raw = os.environ.get(READY_TIMEOUT_ENV, "").strip()
    if not raw:
        return lab.ready_timeout
    low, high = READY_TIMEOUT_RANGE
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise SpecError(
            f"{READY_TIMEOUT_ENV}={raw!r} is not a number of seconds from {low} to {high}",
            f"unset it to use the lab file's ready_timeout ({lab.ready_timeout} s)",
        )
    return int(raw)


def image_of(guest: Guest, profile: str | None = None) -> str:
    """The image ``guest`` runs: its own, or its tiny variant under the ``tiny`` VM profile.

    ``profile`` is the one an instance recorded when it first came up; without one, this
    host's (:func:`labctl.paths.vm_profile`).
    """
    return profile_image(guest.image, profile or vm_profile())


def instance_profile(state: LabState | None) -> str:
    """The VM profile of an instance: the one it recorded, else this host's."""
    return (state.vm_profile if state is not None else None) or vm_profile()


def images_of(state: LabState) -> set[str]:
    """The images an instance's guests run, from its lab file (empty if it is gone)."""
    try:
        lab = load_lab(Path(state.spec_path))
    except LabctlError:
        return set()
    profile = instance_profile(state)
    return {image_of(g, profile) for name, g in lab.guests.items() if name in state.guests}


def lab_images() -> list[str]:
    """The images the labs under ``labs/`` run on this host (its VM profile decides).

    Podman's guests count only where host setup started Podman: it is an optional engine.
    """
    podman = podman_set_up()
    return sorted(
        {
            image_of(g)
            for f in LABS_DIR.glob("*/lab.yaml")
            for g in load_lab(f).guests.values()
            if g.engine != "podman" or podman
        }
    )


def check_engines(lab: Lab) -> None:
    """Refuse a lab whose guests need an optional engine this host has not set up (Podman)."""
    podman = sorted(n for n, g in lab.guests.items() if g.engine == "podman")
    if podman and not podman_set_up():
        raise HostError(
            f"{', '.join(podman)} run{'s' if len(podman) == 1 else ''} on Podman, which is "
            f"not set up here (no API socket at {podman_socket()})",
            "run: labctl host setup (installs Podman and starts its API service), "
            "then labctl images build",
        )


def check_images(lab: Lab, store: ImageStore, profile: str | None = None) -> list[str]:
    """Raise if an image the lab needs is not built; return those whose recipe changed since.

    An outdated image still runs (it is what was built); ``up`` says that a rebuild would
    change it.
    """
    wanted = sorted({image_of(g, profile) for g in lab.guests.values()})
    unknown = [w for w in wanted if w not in store.recipes]
    if unknown:
        raise LabctlError(
            f"lab {lab.name} names unknown image(s): {', '.join(unknown)}",
            f"known images: {', '.join(sorted(store.recipes))}",
        )
    hashes = store.hashes(wanted)
    outdated = []
    missing = []
    for name in wanted:
        manifest = store.manifest(name)
        if manifest is None or not store.recipes[name].present(manifest):
            missing.append(name)
        elif manifest.recipe_hash != hashes[name]:
            outdated.append(name)
    if missing:
        raise HostError(
            f"image(s) not built: {', '.join(missing)}",
            "run: labctl images build",
        )
    return outdated


def memory_needed(lab: Lab, only: Collection[str] | None = None) -> int:
    """MiB the lab's guests (those named in ``only``, by default all) may use together."""
    return sum(g.memory for n, g in lab.guests.items() if only is None or n in only)


def check_memory(lab: Lab, available_mib: int, only: Collection[str] | None = None) -> None:
    """Refuse before creating anything when the guests (``only`` these) cannot fit in memory."""
    needed = memory_needed(lab, only) + 512  # headroom for QEMU itself and the engines
    if needed > available_mib:
        raise HostError(
            f"the lab needs about {needed} MiB of memory and {available_mib} MiB are available",
            "stop other labs or guests, or lower the guests' memory in the lab file",
        )


def check_ports(lab: Lab, only: Collection[str] | None = None) -> None:
    """Refuse before creating anything when a fixed host port (of ``only``) is already taken."""
    for name, guest in lab.guests.items():
        if only is not None and name not in only:
            continue
        if isinstance(guest, DockerGuest) and guest.host_port is not None:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", guest.host_port))
                except OSError as exc:
                    raise HostError(
                        f"port 127.0.0.1:{guest.host_port} for {name} is already in use",
                        "free the port, or change host_port (or leave it empty) in the lab file",
                    ) from exc


def available_memory_mib() -> int:
    """MemAvailable from /proc/meminfo, in MiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def accelerators(lab: Lab, probe: KvmProbe, require_kvm: bool) -> dict[str, AccelChoice]:
    """The accelerator of every VM guest."""
    return {
        name: choose(g, probe, require_kvm, name)
        for name, g in lab.guests.items()
        if isinstance(g, LibvirtGuest)
    }


def params(guest: Guest) -> Params:
    """What the lab file says of ``guest``, in its engine's terms (all a backend sees of it)."""
    if guest.engine == "libvirt":
        return LibvirtParams(guest.arch, guest.cpus, guest.memory, guest.disk_bus, guest.nic_model)
    if guest.engine == "lxd":
        return LxdParams(guest.memory)
    app = PodmanParams if guest.engine == "podman" else DockerParams
    return app(guest.port, guest.host_port, guest.memory, guest.http_path)


def plans(
    lab: Lab,
    state: LabState,
    store: ImageStore,
    inst: InstanceDir,
    key: KeyPair,
    accel: dict[str, AccelChoice],
) -> dict[str, GuestPlan[Params]]:
    """One plan per guest; VM addresses come from the lab network recorded in ``state``.

    Identities recorded for a guest (UUID, MAC, host port) go into its plan.
    """
    result: dict[str, GuestPlan[Params]] = {}
    owner = inst.owner()  # class mode: labels and the student's key on every guest
    vm_index = 0
    net = ipaddress.ip_network(state.subnet) if state.subnet else None
    for name, guest in lab.guests.items():
        image = image_of(guest, state.vm_profile)
        manifest = store.manifest(image)
        assert manifest is not None  # check_images ran first
        extra: dict[str, object] = {}
        if isinstance(guest, LibvirtGuest):
            assert net is not None, "the libvirt network is prepared before plans are made"
            extra = {
                "accel": accel[name].accel,
                "address": str(net.network_address + FIRST_HOST + vm_index),
                "gateway": str(net.network_address + 1),
                "prefix": net.prefixlen,
                "network": state.network,
            }
            vm_index += 1
        elif guest.engine == "docker":
            extra = {"network": state.docker_network}
        elif guest.engine == "podman":
            extra = {"network": state.podman_network}
        elif guest.engine == "lxd":
            extra = {"network": state.lxd_network}
        rec = state.guests.get(name)
        if rec is not None:
            extra.update(uuid=rec.uuid, mac=rec.mac, host_port=rec.host_port)
        result[name] = GuestPlan(
            name=name,
            resource=naming.resource(lab.name, state.instance, name),
            params=params(guest),
            lab=lab.name,
            instance=state.instance,
            image=image,
            manifest=manifest,
            image_dir=store.path(image),
            run_dir=inst.run,
            key=key,
            owner=owner,
            **extra,  # type: ignore[arg-type]
        )
    return result
