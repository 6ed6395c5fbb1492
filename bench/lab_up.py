#!/usr/bin/env python3
"""Time `labctl up` of the default lab with the Debian VMs and with the tiny ones, side by side.

Measured in one run, from cached images, on the real engines (every guest counts as up once
labctl has logged in to it, or for the app container once it answers HTTP):
  1. for each VM profile (``debian``, ``tiny``): ``--rounds`` fresh `up`s (median printed),
     host memory of the whole lab once it is up (RSS of each QEMU, each container's cgroup),
     a second `up` on the running lab, then `down`;
  2. the naive baseline: the Debian lab's guests brought up one after another. Each VM then
     starts alone (restored from its template, or booted with LABCTL_VM_TEMPLATES=0), so the
     sum of their start times over the cores is the floor for a parallel `up` on this host
     (starts are CPU-bound under TCG).
Prints the table and the ratios. Usage: sudo .venv/bin/python bench/lab_up.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labctl import backends
from labctl.host.accel import detect
from labctl.images.registry import store
from labctl.lab import down as lab_down
from labctl.lab import lifecycle
from labctl.lab.plan import image_of
from labctl.paths import LABS_DIR
from labctl.spec.model import load_lab

LAB_FILE = LABS_DIR / "virtualization" / "lab.yaml"
MIB = 1024 * 1024


def one_up(instance: str, *, sequential: bool = False, keep: bool = False) -> dict[str, float]:
    """Bring the lab up once; seconds for `up` and per guest, MiB of host memory; then down."""
    lab = load_lab(LAB_FILE)
    probe = detect()
    t0 = time.monotonic()
    result = lifecycle.up(lab, LAB_FILE, instance, store(), probe, sequential=sequential)
    row = {"up": time.monotonic() - t0}
    row.update({f"  {g}": r.ready_seconds or 0.0 for g, r in result.state.guests.items()})
    memory = 0
    for rec in result.state.guests.values():
        memory += backends.get(rec.engine).memory(rec.resource).bytes
    row["memory MiB"] = memory / MIB
    if keep:
        t0 = time.monotonic()
        lifecycle.up(lab, LAB_FILE, instance, store(), probe)
        row["second up"] = time.monotonic() - t0
    t0 = time.monotonic()
    lab_down.down(lab.name, instance)
    row["down"] = time.monotonic() - t0
    return row


def median_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rows if k in r) for k in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh ups per profile")
    args = parser.parse_args()
    os.environ.setdefault("LABCTL_STATE", tempfile.mkdtemp(prefix="labctl-bench-"))
    lab = load_lab(LAB_FILE)
    columns: dict[str, dict[str, float]] = {}
    for profile in ("debian", "tiny"):
        os.environ["LABCTL_VM_PROFILE"] = profile
        images = sorted({image_of(g) for g in lab.guests.values()})
        store().build(images)  # cached images: this is not what is measured
        rows = []
        for i in range(args.rounds):
            rows.append(one_up(f"bench{profile[0]}{i}", keep=i == 0))
            print(f"{profile} round {i + 1}: up {rows[-1]['up']:.1f} s", flush=True)
        columns[f"{profile} (median)"] = median_rows(rows)
        columns[f"{profile} (max)"] = {k: max(r[k] for r in rows if k in r) for k in rows[0]}
    os.environ["LABCTL_VM_PROFILE"] = "debian"
    columns["debian, one by one"] = one_up("benchseq", sequential=True)

    probe = detect()
    print(f"\nhost: {os.cpu_count()} cores; KVM usable: {probe.usable} ({probe.reason})")
    keys = list(next(iter(columns.values())))
    print(f"{'':22}" + "".join(f"{name:>20}" for name in columns))
    for key in keys:
        cells = []
        for col in columns.values():
            value = col.get(key)
            unit = "" if key.endswith("MiB") else "s"
            cells.append(f"{value:>19.1f}{unit}" if value is not None else f"{'-':>20}")
        print(f"{key:22}" + "".join(cells))
    deb, tiny, seq = (
        columns["debian (median)"],
        columns["tiny (median)"],
        columns["debian, one by one"],
    )
    vms = [g for g, spec in lab.guests.items() if spec.engine == "libvirt"]
    floor = sum(seq[f"  {g}"] for g in vms) / (os.cpu_count() or 1)
    print(
        f"\ncost of realism (Debian / tiny): up {deb['up'] / tiny['up']:.2f}x, "
        f"memory {deb['memory MiB'] / tiny['memory MiB']:.2f}x"
    )
    alone = ", ".join(f"{g} {seq['  ' + g]:.1f} s" for g in vms)
    print(
        f"Debian VMs started alone: {alone}; "
        f"floor on {os.cpu_count()} cores ~{floor:.1f} s; up reaches it at "
        f"{deb['up'] / floor:.2f}x"
    )
    print(
        f"targets: Debian up <= 45 s (median) -> {deb['up']:.1f} s, never over 60 s -> "
        f"max {columns['debian (max)']['up']:.1f} s; memory <= 2560 MiB -> "
        f"{deb['memory MiB']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
