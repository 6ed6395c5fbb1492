"""Exercises that need the Debian VMs are listed and refused on a lab of tiny VMs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from labctl.errors import LabctlError
from labctl.exercises import runner
from labctl.instance.state import InstanceDir, LabState
from labctl.paths import LABS_DIR

LAB = LABS_DIR / "virtualization"
# systemd, apt, the kernel's modules in the VM
NEED_DEBIAN = {"lxc-gemelos", "lxc-modulos", "lxc-diario", "pv-hipervisores"}


def workspace(tmp_path: Path, profile: str | None) -> runner.Workspace:
    state = LabState("virtualization", "t", str(LAB / "lab.yaml"), vm_profile=profile)
    inst = InstanceDir("virtualization", "t", root=tmp_path)
    return runner.Workspace("virtualization", "t", LAB / "exercises", inst, state)


def test_the_shipped_exercises_that_need_the_debian_vms_say_so(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "debian")
    assert {e.id for e in ws.exercises() if e.vm_profile == "debian"} == NEED_DEBIAN
    assert all(ws.unavailable(e) is None for e in ws.exercises())
    # a state recorded before VM profiles existed ran the Debian VMs
    assert all(workspace(tmp_path, None).unavailable(e) is None for e in ws.exercises())


def test_on_tiny_vms_they_are_refused_with_what_to_do(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "tiny")
    refused = {e.id for e in ws.exercises() if ws.unavailable(e)}
    assert refused == NEED_DEBIAN
    with pytest.raises(
        LabctlError, match="needs the debian VM images; this lab runs the tiny"
    ) as err:
        ws.exercise("lxc-gemelos")
    assert err.value.code == 2 and "LABCTL_VM_PROFILE=debian" in (err.value.hint or "")
    assert ws.exercise("lxc-usuario").id == "lxc-usuario"  # the others run on either


def test_a_lab_that_is_not_up_lists_every_exercise(tmp_path: Path) -> None:
    ws = replace(workspace(tmp_path, "tiny"), state=None)
    assert all(ws.unavailable(e) is None for e in ws.exercises())
