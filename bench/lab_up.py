#!/usr/bin/env python3
"""Time `labctl up` against a naive baseline (the same guests booted one after another).

Measured side by side in one run, from cached images, on the real engines:
  1. parallel `up` (what labctl does), then a second `up` on the running lab, then `down`;
  2. sequential `up` (the naive baseline), then `down`.
Prints per-guest ready times and the ratios. Usage: sudo .venv/bin/python bench/lab_up.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labctl.host.accel import detect
from labctl.images.registry import store
from labctl.lab import lifecycle
from labctl.paths import LABS_DIR
from labctl.spec.model import load_lab


def run(sequential: bool, instance: str) -> dict[str, float]:
    lab_file = LABS_DIR / "virtualization" / "lab.yaml"
    lab = load_lab(lab_file)
    probe = detect()
    t0 = time.monotonic()
    result = lifecycle.up(lab, lab_file, instance, store(), probe, sequential=sequential)
    up_s = time.monotonic() - t0
    times = {"up": up_s}
    times.update({f"  {g}": r.ready_seconds or 0.0 for g, r in result.state.guests.items()})
    if not sequential:
        t0 = time.monotonic()
        lifecycle.up(lab, lab_file, instance, store(), probe)
        times["second up"] = time.monotonic() - t0
    t0 = time.monotonic()
    lifecycle.down(lab.name, instance)
    times["down"] = time.monotonic() - t0
    return times


def main() -> None:
    os.environ.setdefault("LABCTL_STATE", tempfile.mkdtemp(prefix="labctl-bench-"))
    store().build(list(store().recipes))  # cached images: this is not what is measured
    probe = detect()
    print(f"host: {os.cpu_count()} cores; KVM usable: {probe.usable} ({probe.reason})")
    parallel = run(sequential=False, instance="benchp")
    naive = run(sequential=True, instance="benchs")
    print(f"{'':24}{'labctl up':>12}{'sequential':>12}")
    for key in parallel:
        seq = f"{naive[key]:.1f}" if key in naive else "-"
        print(f"{key:24}{parallel[key]:>11.1f}s{seq:>11}s")
    print(f"speed-up of up over the naive baseline: {naive['up'] / parallel['up']:.2f}x")
    print(
        f"targets: up <= 90 s -> {parallel['up']:.1f} s; down <= 15 s -> {parallel['down']:.1f} s;"
        f" second up <= 5 s -> {parallel['second up']:.1f} s"
    )


if __name__ == "__main__":
    main()
