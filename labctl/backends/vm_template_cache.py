"""What the template cache holds: each VM template judged current or stale against this
host now (images built, QEMU and libvirt versions, host CPU, domain layout), listed and pruned.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from labctl import libvirt_client
from labctl.backends import base
from labctl.backends.domain_xml import LAYOUT, devices_text
from labctl.backends.vm_templates import (
    host_cpu,
    lock_of,
    locked,
    remove_if_free,
    saved_at,
    templates_dir,
)
from labctl.errors import EngineError


@dataclass(frozen=True)
class Now:
    """What a template must match to be started from: each image's recipe hash, QEMU's and
    libvirt's versions (None: libvirtd did not answer, so they are not judged), the host CPU."""

    recipes: Mapping[str, str]
    versions: tuple[int, int] | None
    host_cpu: str
    layout: int = LAYOUT

    @classmethod
    def here(cls, recipes: Mapping[str, str]) -> Now:
        """This host's, now."""
        try:
            with libvirt_client.connection() as conn:
                versions: tuple[int, int] | None = (conn.getVersion(), conn.getLibVersion())
        except (EngineError, libvirt.libvirtError):
            versions = None
        return cls(recipes, versions, host_cpu())


def stale(name: str, facts: Mapping[str, Any], now: Now) -> str | None:
    """Why no guest will start from the template ``name`` of ``facts`` again (None: one may).

    A template recorded by an older labctl has only its name's facts (image and recipe);
    the rest is recorded the next time a guest starts from it.
    """
    spec = facts.get("spec")
    image, recipe_prefix, _key = name.rsplit("-", 2)
    recipe = now.recipes.get(image)
    if recipe is None:
        return f"no image {image} is built now"
    if not recipe.startswith(recipe_prefix):
        return f"{image} was rebuilt since"
    if not isinstance(spec, dict):
        return None
    if spec.get("layout") != now.layout:
        return "labctl now defines VMs otherwise (domain layout)"
    if now.versions is not None and (spec["qemu"], spec["libvirt"]) != now.versions:
        return "QEMU or libvirt was upgraded since"
    if spec["host_cpu"] != now.host_cpu:
        return "made on a host CPU with other flags"
    return None


def _own_bytes(directory: Path) -> int:
    """Disk the template holds of its own: its disk's writes and its saved memory (the
    kernel, initrd and base disk are hard links of the image's files)."""
    total = 0
    for name in ("disk.qcow2", "memory.save"):
        with contextlib.suppress(OSError):
            total += (directory / name).stat().st_blocks * 512
    return total


def inventory(now: Now) -> list[base.VmTemplate]:
    """Every template in the cache, current, stale or busy (being made now), by name."""
    root = templates_dir()
    if not root.is_dir():
        return []
    found = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            facts: dict[str, Any] = json.loads((d / "template.json").read_text())
        except (OSError, ValueError):
            facts = {}
        spec = facts.get("spec") or {}
        params = spec.get("params") or {}
        made = saved_at(d)
        with locked(lock_of(d), wait=False) as free:
            busy = not free
        if busy:
            why = None
        elif facts and made is not None and d.name.count("-") >= 2:
            why = stale(d.name, facts, now)
        else:
            why = "incomplete: its making was cut short"
        found.append(
            base.VmTemplate(
                name=d.name,
                image=str(facts.get("image") or d.name.rsplit("-", 2)[0]),
                devices=devices_text(params["disk_bus"], params["nic_model"]) if params else None,
                accel=spec.get("accel"),
                size=_own_bytes(d),
                made_at=facts.get("made_at") or made,
                boot_seconds=facts.get("boot_seconds"),
                stale=why,
                busy=busy,
            )
        )
    return found


def prune(now: Now) -> list[base.VmTemplate]:
    """Remove every stale template that no ``labctl`` holds now (making it, or choosing it
    for a guest); those removed.

    Guests started from one keep running: their run directories hold hard links of its disk.
    A fresh clone not started yet boots instead of being restored (``LibvirtBackend.start``).
    """
    return [
        t
        for t in inventory(now)
        if t.stale is not None and remove_if_free(templates_dir() / t.name)
    ]
