"""Every image recipe labctl knows, by name."""

from __future__ import annotations

from labctl.images.cache import ImageStore
from labctl.images.recipe import Recipe


def all_recipes() -> list[Recipe]:
    """The recipes of the default lab's images."""
    from labctl.images import containers, vm

    return [*vm.recipes(), *containers.recipes()]


def store() -> ImageStore:
    """The image store over the configured cache directory."""
    return ImageStore(all_recipes())
