"""The class plan's arithmetic: per-student cost from the lab file, fit, refusal, KSM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labctl.classroom import capacity
from labctl.errors import HostError
from labctl.spec.model import Lab, load_lab
from tests.labs import APP, BOX, VM, lab_yaml


def lab(tmp_path: Path, *guests: str) -> Lab:
    path = tmp_path / "lab.yaml"
    path.write_text(lab_yaml("cap", *guests))
    return load_lab(path)


NO_KSM = capacity.Ksm(True, False, 0)


def host(memory: int, disk: int = 100_000, cores: int = 2) -> capacity.HostCapacity:
    return capacity.HostCapacity(memory, disk, cores, NO_KSM)


def test_a_students_cost_is_the_guests_memory_plus_each_engines_overhead(tmp_path: Path) -> None:
    cost = capacity.student_cost(lab(tmp_path, VM, BOX, APP))
    # vm 384 + 48, box 256 + 16, app 128 + 8
    assert cost == capacity.StudentCost(memory_mib=840, disk_mib=472, vcpus=1, guests=3, inotify=10)
    assert capacity.student_cost(lab(tmp_path, BOX, APP)).memory_mib == 408


def test_the_default_lab_costs_its_five_guests(tmp_path: Path) -> None:
    from labctl.paths import LABS_DIR

    cost = capacity.student_cost(load_lab(LABS_DIR / "virtualization"))
    assert cost.memory_mib == 3 * (384 + 48) + (256 + 16) + (128 + 8)
    assert cost.vcpus == 3 and cost.guests == 5


def test_the_full_lab_costs_its_podman_guest_as_a_docker_one() -> None:
    from labctl.paths import LABS_DIR

    full = capacity.student_cost(load_lab(LABS_DIR / "virtualization-full"))
    default = capacity.student_cost(load_lab(LABS_DIR / "virtualization"))
    assert full.guests == default.guests + 1
    assert full.memory_mib == default.memory_mib + 128 + 8  # the same app, another engine


def test_fit_is_the_tighter_of_memory_and_disk_with_the_hosts_reserve_kept(
    tmp_path: Path,
) -> None:
    spec = lab(tmp_path, VM, BOX, APP)  # 840 MiB, 472 MiB disk
    p = capacity.plan(spec, 4, host(memory=1024 + 840 * 4 + 839))
    assert (p.fit_memory, p.limit, p.fits) == (4, "memory", True)
    p = capacity.plan(spec, 5, host(memory=1024 + 840 * 4 + 839))
    assert not p.fits and p.fit == 4
    p = capacity.plan(spec, 5, host(memory=100_000, disk=2048 + 472 * 3))
    assert (p.fit, p.limit, p.fits) == (3, "disk", False)
    assert capacity.plan(spec, 1, host(memory=500)).fit == 0  # less than the reserve


def test_an_overcommit_is_refused_with_the_numbers_and_advice(tmp_path: Path) -> None:
    spec = lab(tmp_path, VM, BOX, APP)
    p = capacity.plan(spec, 30, host(memory=1024 + 840 * 12))
    with pytest.raises(HostError) as err:
        capacity.refuse_overcommit(p)
    msg, hint = err.value.message, err.value.hint or ""
    assert "30 students do not fit" in msg and "840 MiB of memory" in msg
    assert f"{1024 + 840 * 12} MiB available" in msg and "12 fit (memory is the limit)" in msg
    assert "--max-students 12" in hint and "smaller lab" in hint
    capacity.refuse_overcommit(capacity.plan(spec, 12, host(memory=1024 + 840 * 12)))


def test_cpu_share_and_slow_boot_advice(tmp_path: Path) -> None:
    p = capacity.plan(lab(tmp_path, VM, BOX, APP), 10, host(memory=100_000, cores=2))
    assert p.cpu_share == 0.2 and p.vcpus_per_core == 5.0
    assert any("TCG guests will boot slowly" in a for a in p.advice())
    assert p.fits  # CPU only slows a class down: it never refuses one


def test_ksm_is_read_from_sysfs(tmp_path: Path) -> None:
    assert capacity.ksm(tmp_path / "none") == capacity.Ksm(False, False, 0)
    (tmp_path / "run").write_text("1\n")
    (tmp_path / "pages_sharing").write_text("25600\n")
    k = capacity.ksm(tmp_path)
    assert k.available and k.running
    saved = 25600 * os.sysconf("SC_PAGE_SIZE") // 2**20  # 100 MiB with 4 KiB pages
    assert k.saved_mib == saved and f"saving {saved} MiB" in k.summary
    (tmp_path / "run").write_text("0\n")
    assert "off" in capacity.ksm(tmp_path).summary


def test_memavailable_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 24000000 kB\nMemAvailable:   2097152 kB\n")
    assert capacity.memory_available_mib(meminfo) == 2048
    meminfo.write_text("MemTotal: 1 kB\n")
    with pytest.raises(HostError, match="no MemAvailable"):
        capacity.memory_available_mib(meminfo)


def test_root_inotify_instances_cap_system_containers(tmp_path: Path) -> None:
    spec = lab(tmp_path, VM, BOX, APP)  # one system container: 10 instances
    tight = capacity.HostCapacity(100_000, 500_000, 2, NO_KSM, inotify_free=25)
    p = capacity.plan(spec, 3, tight)
    assert (p.fit_inotify, p.fit, p.limit, p.fits) == (2, 2, "inotify instances", False)
    assert any("fs.inotify.max_user_instances" in a for a in p.advice())
    with pytest.raises(HostError, match="25 inotify instances for 10 each; 2 fit"):
        capacity.refuse_overcommit(p)
    vms_only = capacity.plan(lab(tmp_path, VM, APP), 30, tight)
    assert vms_only.fit_inotify is None and vms_only.fits  # no system container, no limit
    unknown = capacity.HostCapacity(100_000, 500_000, 2, NO_KSM, inotify_free=None)
    assert capacity.plan(spec, 30, unknown).fits


def test_inotify_instances_of_root_and_its_containers_are_counted(tmp_path: Path) -> None:
    proc = tmp_path / "proc"

    def process(pid: int, uid: int, inotify: int, other: int = 1) -> None:
        (proc / str(pid) / "fd").mkdir(parents=True)
        (proc / str(pid) / "status").write_text(f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
        for fd in range(inotify + other):
            target = "anon_inode:inotify" if fd < inotify else "/dev/null"
            (proc / str(pid) / "fd" / str(fd)).symlink_to(target)

    process(1, 0, 2)  # the host's own
    process(2, 100000, 5)  # a system container's systemd
    process(3, 100100, 1)  # its D-Bus
    process(4, 1000, 3)  # a user's editor: not root's
    (proc / "self").mkdir()
    subuid = tmp_path / "subuid"
    subuid.write_text("_lxd:100000:65536\nroot:100000:65536\n")
    assert capacity.root_inotify_used(proc, subuid) == 8
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    assert capacity.inotify_free(limit, proc, subuid) == 120
    assert capacity.inotify_free(tmp_path / "none", proc, subuid) is None
