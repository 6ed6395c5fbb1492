"""A lab file written for a test module, and instances of it that must vanish with ``down``."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from labctl import backends
from labctl.host.accel import detect
from labctl.images.registry import store
from labctl.instance.state import LabState
from labctl.lab import down as lab_down
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
    """Instances ``names`` that must not exist yet, taken down at the end; once that worked,
    nothing of them may be left."""
    for name in names:
        left = inventory(lab.name, name)
        assert left.empty, f"{name} exists before its test: {left}"
    try:
        yield
    finally:
        for name in names:
            lab_down.down(lab.name, name)
    for name in names:
        left = inventory(lab.name, name)
        assert left.empty, f"left behind after down: {left}"


@dataclass(frozen=True)
class Pair:
    """Two instances of one lab, up: the lab, its file, each one's state, and how long the
    ``up`` of both took."""

    lab: Lab
    path: Path
    a: LabState
    b: LabState
    up_seconds: float


def wait_powered_off(resource: str, seconds: float = 180) -> None:
    """Until the VM ``resource`` has powered off (as after a student's poweroff inside)."""
    vm = backends.get("libvirt")
    deadline = time.monotonic() + seconds
    while vm.state(resource) != "stopped":
        assert time.monotonic() < deadline, f"{resource} did not power off in {seconds:.0f} s"
        time.sleep(1)


def up(lab: Lab, path: Path, instance: str) -> LabState:
    """``labctl up`` of one instance of the lab at ``path``, on this host's images."""
    return lifecycle.up(lab, path, instance, store(), detect()).state


@dataclass(frozen=True)
class One:
    """One instance of a lab, up: the lab, its file, the instance, its state, how long ``up``
    took."""

    lab: Lab
    path: Path
    instance: str
    state: LabState
    up_seconds: float


@contextmanager
def one_instance(
    factory: pytest.TempPathFactory, folder: str, text: str, exercises: Iterable[Path] = ()
) -> Iterator[One]:
    """A new instance of the lab ``text`` (written into ``folder``, beside a copy of each of
    ``exercises``), up; taken down at the end, and nothing of it left."""
    path, lab = write_lab(factory, folder, text)
    (path.parent / "exercises").mkdir()
    for exercise in exercises:
        shutil.copy(exercise, path.parent / "exercises")
    (instance,) = instance_names(1)
    with taken_down(lab, [instance]):
        t0 = time.monotonic()
        state = up(lab, path, instance)
        yield One(lab, path, instance, state, time.monotonic() - t0)


@contextmanager
def two_instances(
    factory: pytest.TempPathFactory, folder: str, text: str, *, at_once: bool = False
) -> Iterator[Pair]:
    """Two new instances of the lab ``text`` (written into ``folder``), one after the other or
    both ``up`` at the same moment; taken down at the end, and nothing of them left."""
    path, lab = write_lab(factory, folder, text)
    names = instance_names()
    with taken_down(lab, names):
        t0 = time.monotonic()
        if at_once:
            with ThreadPoolExecutor(max_workers=len(names)) as pool:
                a, b = pool.map(lambda name: up(lab, path, name), names)
        else:
            a, b = (up(lab, path, name) for name in names)
        yield Pair(lab, path, a, b, time.monotonic() - t0)
