"""A lab file written for a test module, and instances of it that must vanish with ``down``."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from labctl.lab import lifecycle
from labctl.spec.model import Lab, load_lab
from tests.integration.engines import inventory


def write_lab(factory: pytest.TempPathFactory, folder: str, text: str) -> tuple[Path, Lab]:
    """Write ``text`` as lab.yaml into a new temporary folder; its path and the loaded lab."""
    path = factory.mktemp(folder) / "lab.yaml"
    path.write_text(text)
    return path, load_lab(path)


def instance_names(count: int = 2) -> list[str]:
    """Instance names no other run uses: ``t`` and six hex digits."""
    return ["t" + secrets.token_hex(3) for _ in range(count)]


@contextmanager
def taken_down(lab: Lab, names: list[str]) -> Iterator[None]:
    """Take the instances ``names`` down at the end; once that worked, nothing may be left."""
    try:
        yield
    finally:
        for name in names:
            lifecycle.down(lab.name, name)
    for name in names:
        left = inventory(lab.name, name)
        assert left.empty, f"left behind after down: {left}"
