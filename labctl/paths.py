"""Where labctl keeps its cache (built images) and its state (running labs)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = REPO_ROOT / "images"
PLAYBOOKS_DIR = REPO_ROOT / "playbooks"
LABS_DIR = REPO_ROOT / "labs"


def cache_dir() -> Path:
    """Image cache; ``LABCTL_CACHE`` overrides ``/var/cache/labctl``."""
    return Path(os.environ.get("LABCTL_CACHE", "/var/cache/labctl"))


def state_dir() -> Path:
    """Lab state (state, keys, disks, logs); ``LABCTL_STATE`` overrides ``/var/lib/labctl``."""
    return Path(os.environ.get("LABCTL_STATE", "/var/lib/labctl"))
