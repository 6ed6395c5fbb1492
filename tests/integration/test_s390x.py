"""The optional s390x guest on the real engines: a mainframe machine whose virtio devices sit
on the channel subsystem, its exercise (pv-canales) in both directions, nothing left after.

A short lab of its own (the s390x guest only). Its image is optional and minutes of emulation
to build, so the session fixture does not build it. Under CI this module builds it (or finds it
cached) and runs, as every engine test does there; elsewhere it runs where someone ran
``labctl images build vm-s390x`` (the image is current) and is skipped otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import backends
from labctl.exercises import runner
from labctl.images.registry import store
from labctl.paths import LABS_DIR
from tests.integration.exercise_solutions import (
    Student,
    fails_untouched_passes_solved_refuses_wrong,
)
from tests.integration.labs import One, one_instance

pytestmark = pytest.mark.integration

IMAGE = "vm-s390x"
Z_LAB = """\
name: zlab
title: the optional s390x guest
ready_timeout: 900
guests:
  s390x:
    engine: libvirt
    technique: paravirtualization
    image: vm-s390x
    arch: s390x
    accel: tcg
    memory: 384
"""
EXERCISE = LABS_DIR / "virtualization-full" / "exercises" / "35-pv-canales.yaml"


@pytest.fixture(scope="module")
def zlab(tmp_path_factory: pytest.TempPathFactory, state_root: Path, in_ci: bool) -> Iterator[One]:
    """The s390x guest up in one instance for the module; down and leak-checked after."""
    images = store()
    if in_ci:
        images.build([IMAGE])  # a build that fails raises: the module errors, never skips
    elif not images.is_current(IMAGE, images.hashes([IMAGE])[IMAGE]):
        pytest.skip(f"the optional image {IMAGE} is not built here: labctl images build {IMAGE}")
    with one_instance(tmp_path_factory, "zlab", Z_LAB, [EXERCISE]) as z:
        yield z


def test_the_guest_is_an_emulated_mainframe_with_virtio_on_the_channel_subsystem(zlab: One) -> None:
    rec = zlab.state.guests["s390x"]
    assert rec.stage == "ready", rec
    backend = backends.get("libvirt")
    assert backend.accelerator(rec.resource) == "tcg"  # what QEMU says: a foreign CPU
    assert backend.devices(rec.resource).summary == "virtio-blk + virtio-net (paravirtual)"
    conn = runner.Connections(runner.open_workspace(str(zlab.path.parent), zlab.instance))("s390x")
    assert conn.run("uname -m").stdout.strip() == "s390x"
    lscss = conn.run("lscss")
    assert lscss.rc == 0, lscss.detail
    # two subchannels, disk and NIC (Device, Subchan., DevType, then CU Type): virtio's 3832
    assert len(re.findall(r"^0\.0\.\S+\s+0\.0\.\S+\s+\S+\s+3832/0[12]", lscss.stdout, re.M)) == 2, (
        lscss.stdout
    )
    assert conn.run("ls /sys/bus/pci/devices | wc -l").stdout.strip() == "0"  # no PCI at all
    print(f"\ns390x up in {zlab.up_seconds:.1f} s (ready after {rec.ready_seconds} s)")


def pv_canales(s: Student) -> None:
    """As a student: lscss, the CU type of its rows, and eth0's path up to its ccw device."""
    rows = re.findall(
        r"^(0\.0\.\S+)\s+0\.0\.\S+\s+\S+\s+(\w{4})/\w{2}", s.guest("s390x", "lscss"), re.M
    )
    s.answer("subcanales", len(rows))
    (cu,) = {cu for _, cu in rows}
    s.answer("unidad", cu)
    device = s.guest("s390x", "readlink -f /sys/class/net/eth0/device").strip()
    s.answer("driver", s.guest("s390x", f"basename $(readlink {device}/../driver)").strip())


WRONG = {"subcanales": "0", "unidad": "1af4", "driver": "virtio-pci"}


def test_pv_canales_fails_untouched_passes_solved_and_refuses_wrong_answers(
    zlab: One, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Student.new(zlab.path.parent, zlab.instance, "pv-canales", tmp_path)
    fails_untouched_passes_solved_refuses_wrong(s, pv_canales, WRONG, checks=3)
