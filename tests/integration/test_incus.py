"""The system container on Incus: the same lxd-system guest, the engine host setup can choose.

Runs labctl as a subprocess with ``LABCTL_SYSTEM_CONTAINERS=incus`` on every command (what
``labctl host setup --system-containers incus`` records), so the session's own LXD clients are
not involved: the rest of the suite keeps the host's choice (LXD here) while this test proves
Incus beside it (``labctl host setup --test-tools`` starts both). Skipped where Incus is not
set up, except in CI, where a missing Incus fails, and on a host that set it up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labctl import lxd_client
from labctl.errors import EngineError
from labctl.paths import LABS_DIR, second_system_containers, system_containers
from tests.integration.engines import inventory
from tests.integration.labs import instance_names, write_lab

pytestmark = pytest.mark.integration

LABCTL = str(Path(sys.executable).parent / "labctl")
SYSTEM_LAB = """\
name: incus
title: the system container on Incus
guests:
  lxc-system:
    engine: lxd
    technique: system-container
    image: lxd-system
"""


def _labctl(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LABCTL_SYSTEM_CONTAINERS": "incus", "LABCTL_STATE": str(state)}
    return subprocess.run([LABCTL, *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def incus(in_ci: bool) -> None:
    try:
        lxd_client.connect(list(lxd_client.ENGINE_SOCKETS["incus"]))
    except EngineError as exc:
        if in_ci or "incus" in (system_containers(), second_system_containers()):
            raise  # CI runs both engines; a host that set Incus up expects it to answer
        pytest.skip(f"Incus is not set up here: {exc.message} ({exc.hint})")


def test_lxc_system_runs_on_incus_and_leaves_nothing(
    incus: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    state = tmp_path_factory.mktemp("incus-state")
    path, lab = write_lab(tmp_path_factory, "incus", SYSTEM_LAB)
    exercise = LABS_DIR / "virtualization-full" / "exercises" / "48-lxc-motores.yaml"
    (path.parent / "exercises").mkdir()
    shutil.copy(exercise, path.parent / "exercises")
    (instance,) = instance_names(1)
    built = _labctl("images", "build", "lxd-system", state=state)
    assert built.returncode == 0, built.stderr
    doctor = _labctl("doctor", "--json", state=state)
    rows = {c["name"]: c for c in json.loads(doctor.stdout)}
    assert rows["lxd"]["status"] == "ok" and rows["lxd"]["detail"].startswith("incus ")
    try:
        up = _labctl("up", str(path), "-i", instance, state=state)
        assert up.returncode == 0, up.stderr + up.stdout
        status = _labctl("status", "-l", lab.name, "-i", instance, "--json", state=state)
        (row,) = json.loads(status.stdout)["guests"]
        assert (row["guest"], row["state"]) == ("lxc-system", "running")
        assert row["engine"] == "incus"  # the daemon that runs it, not the lab file's "lxd"
        ran = _labctl(
            "exec", "-l", lab.name, "-i", instance, "lxc-system", "--", "cat", "/proc/1/comm",
            state=state,
        )  # fmt: skip
        assert ran.returncode == 0 and ran.stdout.strip() == "systemd", ran.stderr
        held = lxd_client.connect(list(lxd_client.ENGINE_SOCKETS["incus"])).instances.all()
        resource = f"labctl-incus-{instance}-lxc-system"
        assert resource in {i.name for i in held}
        if system_containers() == "lxd":  # LXD answers beside it, and holds nothing of this lab
            beside = lxd_client.connect(list(lxd_client.ENGINE_SOCKETS["lxd"])).instances.all()
            assert resource not in {i.name for i in beside}
        _lxc_motores_both_ways(path.parent, instance, resource, state)
    finally:
        down = _labctl("down", "-l", lab.name, "-i", instance, state=state)
        # the image cache names one fingerprint: import it back into the chosen engine too
        env = {**os.environ, "LABCTL_STATE": str(state)}
        back = subprocess.run([LABCTL, "images", "build", "lxd-system"], env=env, timeout=900)
    assert down.returncode == 0, down.stderr
    assert back.returncode == 0
    left = inventory(lab.name, instance)
    assert left.empty, f"left behind after down: {left}"


def _lxc_motores_both_ways(lab_dir: Path, instance: str, resource: str, state: Path) -> None:
    """The exercise fails untouched, passes solved with the incus command, refuses "lxd"."""
    student = "t" + instance[1:]
    where = ("-l", str(lab_dir), "-i", instance, "-s", student)

    def check(*extra: str) -> tuple[int, list[str]]:
        out = _labctl("exercise", "check", "lxc-motores", *where, "--json", *extra, state=state)
        report = json.loads(out.stdout)
        return out.returncode, [r["status"] for st in report["steps"] for r in st["results"]]

    assert check() == (1, ["failed", "failed"])
    answered = _labctl("exercise", "answer", "lxc-motores", "motor", "incus", *where, state=state)
    assert answered.returncode == 0, answered.stderr
    subprocess.run(["incus", "config", "set", resource, "user.alumno", student], check=True)
    assert check() == (0, ["passed", "passed"])
    _labctl("exercise", "answer", "lxc-motores", "motor", "lxd", *where, state=state)
    assert check("--step", "motor") == (1, ["failed"])
