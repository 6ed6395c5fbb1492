#!/usr/bin/env python3
"""Time `labctl compare --quick` (target <= 3 min on a 2-core host) and, with --full, a full run.

Brings the default lab up from cached images under a temporary state directory, runs the
comparison(s), prints the times and the claims, and takes the lab down again.
Usage: sudo .venv/bin/python bench/compare.py [--full]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labctl.compare import runner
from labctl.compare.workloads import FULL, QUICK
from labctl.host.accel import detect
from labctl.images.registry import standard_images, store
from labctl.lab import down as lab_down
from labctl.lab import lifecycle
from labctl.paths import LABS_DIR
from labctl.spec.model import load_lab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="also time a full comparison")
    args = parser.parse_args()
    os.environ.setdefault("LABCTL_STATE", tempfile.mkdtemp(prefix="labctl-bench-"))
    lab_file = LABS_DIR / "virtualization" / "lab.yaml"
    lab = load_lab(lab_file)
    instance = "benchc"
    store().build(standard_images())
    lifecycle.up(lab, lab_file, instance, store(), detect())
    try:
        for name, profile in [("quick", QUICK)] + ([("full", FULL)] if args.full else []):
            t0 = time.monotonic()
            report, _ = runner.run(lab.name, instance, profile)
            seconds = time.monotonic() - t0
            target = " (target <= 180 s)" if name == "quick" else ""
            print(f"compare {name}: {seconds:.0f} s{target}")
            for claim in report.claims:
                ratio = f"{claim.ratio:.2f}x" if claim.ratio is not None else "-"
                print(f"  {claim.verdict:28} {ratio:>8}  {claim.text}")
    finally:
        lab_down.down(lab.name, instance)


if __name__ == "__main__":
    main()
