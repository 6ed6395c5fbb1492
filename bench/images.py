#!/usr/bin/env python3
"""Time a cold build of every image (fresh cache directory) and a warm run, and report sizes.

Usage: sudo .venv/bin/python bench/images.py [--cache DIR]
The cold build goes into a new temporary cache (removed afterwards unless --keep).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labctl.images.cache import ImageStore
from labctl.images.registry import all_recipes, standard_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, help="cache directory to build into")
    parser.add_argument("--keep", action="store_true", help="keep the cache afterwards")
    args = parser.parse_args()
    root = args.cache or Path(tempfile.mkdtemp(prefix="labctl-bench-cache-"))
    store = ImageStore(all_recipes(), root=root)
    try:
        t0 = time.monotonic()
        cold = store.build(standard_images(), force=True)  # not the optional s390x VM
        cold_s = time.monotonic() - t0
        t0 = time.monotonic()
        warm = store.build(standard_images())
        warm_s = time.monotonic() - t0
        print(f"{'image':16}{'build s':>10}{'size MiB':>10}")
        total = 0
        for o in cold:
            total += o.manifest.total_size
            print(f"{o.name:16}{o.seconds:>10.1f}{o.manifest.total_size / 2**20:>10.1f}")
        print(f"{'total':16}{cold_s:>10.1f}{total / 2**20:>10.1f}")
        print(
            f"cold build {cold_s:.1f} s (target <= 900 s); warm run {warm_s:.2f} s (target <= 5 s);"
            f" rebuilt on warm run: {[o.name for o in warm if o.built] or 'none'}"
        )
        print(f"size {total / 2**30:.2f} GiB (target <= 1 GiB)")
    finally:
        # Engine images (docker, LXD) are named by recipe hash and shared with the real cache:
        # only the files of this temporary cache are removed.
        if not args.keep and not args.cache:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
