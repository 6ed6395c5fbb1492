"""The real lab, brought up once per test session and always brought down.

Images come from the shared cache (built here if missing or outdated); lab state goes to a
temporary directory and the instance name is unique, so a user's own lab is never touched.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labctl.host.accel import detect
from labctl.images.registry import standard_images, store
from labctl.instance.state import InstanceDir, LabState
from labctl.lab import down as lab_down
from labctl.lab import lifecycle
from labctl.paths import LABS_DIR, podman_set_up
from labctl.spec.model import Lab, load_lab
from tests.integration.engines import Inventory, inventory

LAB_DIR = LABS_DIR / "virtualization"


@pytest.fixture(scope="session")
def built_images(in_ci: bool) -> list[str]:
    """Every image, built (or found cached) once per session; Podman's where it is set up.

    Podman is optional on a developer's host; in CI its images must build like the rest. The
    optional s390x VM image is not built here: test_s390x builds it under CI, and elsewhere uses
    it where it was built.
    """
    podman = in_ci or podman_set_up()
    names = [n for n in standard_images() if podman or not n.startswith("podman-")]
    outcomes = store().build(names)
    return [o.name for o in outcomes]


@dataclass(frozen=True)
class RunningLab:
    lab: Lab
    instance: str
    state: LabState
    inst: InstanceDir
    up_seconds: float
    held: Inventory  # what the engines hold for this instance once it is up


@pytest.fixture(scope="session")
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("labctl-state")
    old = os.environ.get("LABCTL_STATE")
    os.environ["LABCTL_STATE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("LABCTL_STATE", None)
    else:
        os.environ["LABCTL_STATE"] = old


@pytest.fixture(scope="session")
def running_lab(built_images: list[str], state_root: Path) -> Iterator[RunningLab]:
    """The default lab, up once for the whole session; `down` and a leak check at the end."""
    lab = load_lab(LAB_DIR)
    instance = "t" + secrets.token_hex(3)
    assert inventory(lab.name, instance).empty
    t0 = time.monotonic()
    try:
        result = lifecycle.up(lab, LAB_DIR / "lab.yaml", instance, store(), detect())
        yield RunningLab(
            lab,
            instance,
            result.state,
            InstanceDir(lab.name, instance),
            time.monotonic() - t0,
            inventory(lab.name, instance),
        )
    finally:
        lab_down.down(lab.name, instance)
    left = inventory(lab.name, instance)
    assert left.empty, f"left behind after down: {left}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test on the running lab shows the end of every VM's serial console."""
    report = yield
    lab = getattr(item, "funcargs", {}).get("running_lab")
    if report.failed and isinstance(lab, RunningLab) and lab.inst.run.is_dir():
        for log in sorted(lab.inst.run.glob("*.console.log")):
            lines = log.read_text(errors="replace").splitlines()[-12:]
            report.sections.append((f"serial console {log.name} (last lines)", "\n".join(lines)))
    return report
