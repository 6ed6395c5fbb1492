#!/usr/bin/env python3
"""Time `labctl class up` for N students and measure host memory per student.

For each N, on the real engines and from cached images: a class of N students (ids s01..)
brought up by classroom.lifecycle.up (one lab instance each, --max-parallel as given),
the time until every guest of every student is usable, host memory per student
(MemAvailable before minus after, divided by N; and what the engines say the guests use:
QEMU's RSS, the containers' cgroups), then with KSM turned on for --ksm-wait seconds
(full lab only; KSM is off for the baseline and restored afterwards), then `class down`.
The default lab and a containers-only lab (its system and app containers). No student accounts are
made: what is measured is the labs.

The default lab runs with its VMs started from templates (labctl.backends.vm_templates: each
VM image booted once on this host, its memory saved, every guest a restored copy) and, with
``--templates both``, again with every VM booted (``LABCTL_VM_TEMPLATES=0``), side by side.
The templates are made before the clock starts, like the images, and the time that took is
printed: it is paid once per image, device set and host.

Usage: sudo .venv/bin/python bench/class.py [--full 1,2,4] [--containers 1,2,4,8]
       [--max-parallel N] [--ksm-wait 45] [--templates on|off|both]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labctl import backends
from labctl.classroom import capacity, roster
from labctl.classroom import down as class_down
from labctl.classroom import lifecycle as class_lifecycle
from labctl.classroom.state import ClassDir
from labctl.errors import LabctlError
from labctl.host.accel import detect
from labctl.images.registry import standard_images, store
from labctl.instance.state import InstanceDir
from labctl.lab import down as lab_down
from labctl.lab import lifecycle
from labctl.paths import LABS_DIR
from labctl.spec.model import Lab, load_lab
from tests.labs import CONTAINERS, lab_yaml

KSM_RUN = Path("/sys/kernel/mm/ksm/run")
#: KSM's default (100 pages per 20 ms, ~20 MiB/s) takes minutes to scan a class once; the
#: bench scans faster while it measures, and puts the default back.
KSM_SCAN = Path("/sys/kernel/mm/ksm/pages_to_scan")
FAST_SCAN = "4000"


@dataclass(frozen=True)
class Row:
    lab: str
    templates: bool | None  # None: a lab without VMs
    students: int
    up_s: float
    slowest_s: float  # the slowest student's own up
    mib_per_student: float
    engine_mib_per_student: float  # what the engines say the guests use (backend.memory)
    ksm_mib_per_student: float | None
    ksm_saved_mib: int | None
    down_s: float
    failed: int


def _roster(folder: Path, n: int) -> roster.Roster:
    path = folder / f"roster-{n}.csv"
    path.write_text("id,name\n" + "".join(f"s{i:02d},Student {i}\n" for i in range(1, n + 1)))
    return roster.load(path)


def _settled_available(seconds: float = 5.0) -> int:
    time.sleep(seconds)  # let page cache and balloon-free memory settle
    return capacity.memory_available_mib()


def _with_ksm(wait: float) -> tuple[int, int]:
    """(MemAvailable, MiB KSM saves) after ``wait`` seconds of KSM; KSM restored after."""
    before, scan = KSM_RUN.read_text().strip(), KSM_SCAN.read_text().strip()
    KSM_SCAN.write_text(FAST_SCAN + "\n")
    KSM_RUN.write_text("1\n")
    try:
        time.sleep(wait)
        return capacity.memory_available_mib(), capacity.ksm().saved_mib
    finally:
        # 2 unmerges every shared page and stops: back to what the host had
        KSM_RUN.write_text(("2" if before == "0" else before) + "\n")
        KSM_SCAN.write_text(scan + "\n")


def _engine_memory_mib(lab: Lab, instances: list[str]) -> float:
    """Memory the engines say every guest of the instances uses (QEMU RSS, cgroups)."""
    total = 0
    for instance in instances:
        state = InstanceDir(lab.name, instance).load()
        for rec in state.guests.values() if state else ():
            try:
                total += backends.get(rec.engine).memory(rec.resource).bytes
            except LabctlError:
                continue  # an engine that cannot say: MemAvailable's column still counts it
    return total / 2**20


def run(
    lab: Lab,
    path: Path,
    n: int,
    folder: Path,
    parallel: int,
    ksm_wait: float,
    templates: bool | None,
) -> Row:
    os.environ["LABCTL_VM_TEMPLATES"] = "0" if templates is False else "1"
    name = f"{lab.name[0]}{n:02d}"[:5]
    r = _roster(folder, n)
    ksm_was = KSM_RUN.read_text().strip() if KSM_RUN.exists() else None
    if ksm_was is not None and ksm_wait > 0:  # the baseline without KSM (host setup turns it on)
        KSM_RUN.write_text("2\n")  # unmerge and stop
    free_before = _settled_available(2.0)
    t0 = time.monotonic()
    try:  # whatever happens (a timeout's SIGTERM too), the class goes down
        result = class_lifecycle.up(
            r, name, lab, path, store(), detect(), max_parallel=parallel, accounts=None
        )
        up_s = time.monotonic() - t0
        free_after = _settled_available()
        per = (free_before - free_after) / n
        engines = _engine_memory_mib(lab, [s.instance for s in result.results]) / n
        ksm_per: float | None = None
        saved: int | None = None
        if ksm_wait > 0 and KSM_RUN.exists():
            free_ksm, saved = _with_ksm(ksm_wait)
            ksm_per = (free_before - free_ksm) / n
    finally:
        t1 = time.monotonic()
        if ClassDir(name).load() is not None:  # refused before anything: nothing to take down
            class_down.down(ClassDir(name), accounts=None)
        down_s = time.monotonic() - t1
        if ksm_was is not None and ksm_wait > 0:
            KSM_RUN.write_text(("2" if ksm_was == "0" else ksm_was) + "\n")
    slowest = max((s.seconds for s in result.results), default=0.0)
    failed = len(result.failed)
    return Row(lab.name, templates, n, up_s, slowest, per, engines, ksm_per, saved, down_s, failed)


def _make_templates(lab: Lab, path: Path) -> float:
    """Seconds one ``up`` of the lab took with templates on (made then if not yet), down after."""
    os.environ["LABCTL_VM_TEMPLATES"] = "1"
    t0 = time.monotonic()
    try:
        lifecycle.up(lab, path, "tmpl", store(), detect())
        return time.monotonic() - t0
    finally:
        lab_down.down(lab.name, "tmpl")


def _counts(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _interrupted(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # so that `finally` takes the class down


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupted)
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--full", type=_counts, default=[1, 2, 4], help="N for the default lab")
    args.add_argument("--containers", type=_counts, default=[1, 2, 4, 8], help="N, containers")
    args.add_argument("--max-parallel", type=int, default=os.cpu_count() or 1)
    args.add_argument("--ksm-wait", type=float, default=45.0, help="0: no KSM measurement")
    args.add_argument("--templates", choices=("on", "off", "both"), default="on")
    opts = args.parse_args()
    os.environ.setdefault("LABCTL_STATE", tempfile.mkdtemp(prefix="labctl-bench-"))
    folder = Path(tempfile.mkdtemp(prefix="labctl-bench-class-"))
    store().build(standard_images())  # cached images: not what is measured
    full_path = LABS_DIR / "virtualization" / "lab.yaml"
    small_path = folder / "lab.yaml"
    small_path.write_text(lab_yaml("benchc", CONTAINERS))
    probe = detect()
    print(
        f"host: {os.cpu_count()} cores, {capacity.memory_available_mib()} MiB available; "
        f"KVM usable: {probe.usable}; --max-parallel {opts.max_parallel}"
    )
    modes = {"on": [True], "off": [False], "both": [True, False]}[opts.templates]
    if True in modes and opts.full:
        seconds = _make_templates(load_lab(full_path), full_path)
        print(f"templates ready (one up of the default lab, made if not cached): {seconds:.1f} s")
    rows = []
    for path, counts, ksm_wait, kinds in (
        (full_path, opts.full, opts.ksm_wait, modes),
        (small_path, opts.containers, 0.0, [None]),
    ):
        lab = load_lab(path)
        for n in counts:
            for templates in kinds:
                row = run(lab, path, n, folder, opts.max_parallel, ksm_wait, templates)
                rows.append(row)
                print(f"  {row}", flush=True)
    print(
        f"\n{'lab':15}{'templates':>10}{'N':>3}"
        f"{'all usable':>11}{'slowest':>8}{'MiB/st.':>8}{'engines':>8}"
        f"{'KSM on':>8}{'KSM saved':>10}{'down':>7}{'failed':>7}"
    )
    for r in rows:
        ksm = f"{r.ksm_mib_per_student:.0f}" if r.ksm_mib_per_student is not None else "-"
        saved = f"{r.ksm_saved_mib}" if r.ksm_saved_mib is not None else "-"
        print(
            f"{r.lab:15}{ {True: 'yes', False: 'no', None: '-'}[r.templates]:>10}{r.students:>3}"
            f"{r.up_s:>10.1f}s{r.slowest_s:>7.1f}s"
            f"{r.mib_per_student:>8.0f}{r.engine_mib_per_student:>8.0f}{ksm:>8}{saved:>10}"
            f"{r.down_s:>6.1f}s{r.failed:>7}"
        )


if __name__ == "__main__":
    main()
