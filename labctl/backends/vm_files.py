"""A VM's files in its lab instance's run directory: pinned image files, overlays, console."""

from __future__ import annotations

import os
import shutil
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from labctl import cancel
from labctl.backends import base
from labctl.backends.params import LibvirtParams
from labctl.errors import ReadyTimeout


def overlays(xml: str) -> list[Path]:
    """The domain's disks that labctl created: overlays directly in a lab's run directory."""
    disks = (Path(el.get("file", "")) for el in ET.fromstring(xml).findall("devices/disk/source"))
    return [d for d in disks if d.parent.name == "run" and d.suffix == ".qcow2"]


def pinned(plan: base.GuestPlan[LibvirtParams], artifact: str) -> Path:
    """Where the guest's copy of an image file lives: ``run/<image>-<hash>/<artifact>``."""
    return plan.run_dir / f"{plan.image}-{plan.manifest.recipe_hash}" / artifact


def pin(plan: base.GuestPlan[LibvirtParams], artifact: str) -> None:
    """Hard-link an image file into the lab's run directory.

    A rebuild of the image replaces the cache's files; the guest keeps booting from (and its
    overlay keeps reading) the version it was created with. A hard link costs nothing; across
    file systems the file is copied.
    """
    target = pinned(plan, artifact)
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    link_or_copy(plan.image_dir / artifact, target)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` as ``target`` (a copy across file systems), atomically.

    Guests of one lab are created side by side and pin the same files: each writes its own
    temporary name, and the last rename wins with the same content.
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)
        tmp.rename(target)
    finally:
        # rename does nothing when both are links of one file already; a failed copy (a full
        # disk) leaves no half file behind
        tmp.unlink(missing_ok=True)


def wait_for_marker(path: Path, marker: str, deadline: float) -> None:
    """Wait (until ``deadline``, monotonic) until the console log at ``path`` shows ``marker``."""
    needle = marker.encode()
    while True:
        try:
            if needle in path.read_bytes():
                return
        except FileNotFoundError:
            pass
        if time.monotonic() >= deadline:
            raise ReadyTimeout(f"the guest never printed {marker} on its console")
        cancel.check()
        time.sleep(0.3)


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a console log, indented, for an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "  (no console output)"
    return "\n".join("  " + line for line in text.splitlines()[-lines:]) or "  (empty)"
