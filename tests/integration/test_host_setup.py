"""`labctl host setup` for real on this machine: it succeeds, a second run changes nothing, and
the doctor then reports the engines up and KVM as it really is.

Teardown is deliberately not tested here: it would stop the daemons the other tests need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl.host import probe
from labctl.paths import second_system_containers, system_containers

LABCTL = Path(sys.executable).parent / "labctl"
DAEMONS = ("containerd", "dockerd", "podman", "virtlogd", "libvirtd")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def needs_root(in_ci: bool) -> None:
    if os.geteuid() != 0:
        if in_ci:
            pytest.fail("host setup tests need root")
        pytest.skip("host setup needs root")


@pytest.mark.timeout(1200)
def test_setup_then_nothing_changes_then_doctor_agrees() -> None:
    # first run end to end, as a user would: the console script in a subprocess
    first = subprocess.run(
        [str(LABCTL), "host", "setup", "--yes"],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert "set up" in first.stdout

    # second run in-process: idempotent, and the CLI says so
    second = CliRunner().invoke(app, ["host", "setup", "--yes"], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "host already set up: nothing changed" in second.stdout

    daemon = {"incus": "incusd", "lxd": "lxd"}
    chosen = daemon[system_containers() or "lxd"]  # the recorded choice
    second = second_system_containers()  # started beside it by --test-tools, kept by setup
    if not Path("/run/systemd/system").exists():
        for name in (*DAEMONS, chosen, *([daemon[second]] if second else [])):
            pid = int(Path(f"/run/labctl/{name}.pid").read_text())
            exe = Path(f"/proc/{pid}/exe").resolve().name
            assert exe == name, f"/run/labctl/{name}.pid points at {exe}, not {name}"

    doctor = CliRunner().invoke(app, ["doctor", "--json"], catch_exceptions=False)
    rows = {r["name"]: r for r in json.loads(doctor.stdout)}
    assert doctor.exit_code == 0, doctor.stdout
    ok = (
        "libvirt",
        "libvirt capabilities",
        "docker",
        "podman",
        "lxd",
        "qemu x86_64",
        "qemu aarch64",
    )
    if second is not None:  # the engine beside the chosen one has a row of its own
        ok += (f"{second} (2nd)",)
        assert rows[f"{second} (2nd)"]["detail"].startswith(f"{second} "), rows
    for name in ok:
        assert rows[name]["status"] == "ok", rows[name]
    kvm = rows["kvm"]
    if "kvm_pvm" in probe.kernel_modules() and not probe.cpu().virt_flags:
        assert kvm["status"] == "warn"
        assert "unusable" in kvm["detail"] and "TCG" in kvm["detail"]
    else:
        assert kvm["status"] in ("ok", "warn")
