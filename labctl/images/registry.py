"""Every image recipe labctl knows, by name, and which of them a guest can run."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from labctl.images.cache import ImageStore
from labctl.images.recipe import Recipe

Kind = Literal["vm", "lxd", "docker", "podman"]


@dataclass(frozen=True)
class GuestImage:
    """An image a guest can run: its kind, and for a VM its CPU architecture."""

    name: str
    kind: Kind
    arch: str | None = None  # libvirt's name (x86_64, aarch64); VMs only


def all_recipes() -> list[Recipe]:
    """The recipes of the default lab's images."""
    from labctl.images import containers, vm, vm_debian, vm_s390x

    return [*vm_debian.recipes(), *vm.recipes(), *containers.recipes(), *vm_s390x.recipes()]


def standard_images() -> list[str]:
    """Every image but the optional ones: what ``--all``, the tests and the benchmarks build."""
    return [r.name for r in all_recipes() if not r.optional]


@cache
def guest_images() -> dict[str, GuestImage]:
    """The images a lab file may name, from the recipes alone (no cache, no engine).

    ``system-rootfs``, ``docker-base`` and ``podman-base`` are only steps of other builds: no
    guest runs them.
    """
    from labctl.images import containers, vm, vm_debian, vm_s390x

    kinds: dict[type[Recipe], Kind] = {
        vm_debian.DebianVmImage: "vm",
        vm_s390x.S390xVmImage: "vm",
        vm.VmImage: "vm",
        containers.LxdSystem: "lxd",
        containers.DockerApp: "docker",
        containers.PodmanApp: "podman",
    }
    images = {}
    for recipe in all_recipes():
        kind = kinds.get(type(recipe))
        if kind is not None:
            vms = (vm.VmImage, vm_debian.DebianVmImage)
            arch = recipe.arch.qemu if isinstance(recipe, vms) else None
            images[recipe.name] = GuestImage(recipe.name, kind, arch)
    return images


def store() -> ImageStore:
    """The image store over the configured cache directory."""
    return ImageStore(all_recipes())


def profile_image(name: str, profile: str) -> str:
    """The image a guest naming ``name`` runs under VM ``profile`` (``labctl.paths.vm_profile``).

    ``tiny`` swaps a VM image for its ``-tiny`` variant where there is one; anything else
    (containers, an image without a tiny variant, the ``debian`` profile) is unchanged.
    """
    if profile == "tiny" and f"{name}-tiny" in guest_images():
        return f"{name}-tiny"
    return name
