#!/usr/bin/env python3
"""Interrupt `labctl up` at many points, for real, and require one rerun to finish the lab.

For each delay and each signal (SIGINT as Ctrl-C delivers it, SIGKILL as a crash or an OOM
kill), `labctl up` of a small lab with one guest per engine (a VM, a system container, an app
container) runs as its own process and gets the signal that many seconds after it started.
Then a second `labctl up` must exit 0 with every guest running, and `labctl down` must leave
nothing the engines hold for the instance (the integration suite's leak inventory).

Run as root from a checkout with the images built:
    sudo .venv/bin/python bench/interrupt_up.py [--delays 0.5,1,2,4,7,11]
Prints one row per round and exits 1 if any round failed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.engines import inventory
from tests.labs import APP, BOX, VM, lab_yaml

LAB = "intr"
LABCTL = str(Path(sys.executable).parent / "labctl")
# Python keeps SIGINT ignored when its parent ignored it (a background job does): reset it,
# or the SIGINT rounds would test nothing.
WITH_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys; "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])",
]


def labctl(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LABCTL, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def interrupted_up(lab_file: Path, instance: str, delay: float, sig: signal.Signals) -> int:
    """Start `labctl up`, send ``sig`` after ``delay`` seconds; its exit code (or -signal)."""
    proc = subprocess.Popen(
        [*WITH_SIGINT, LABCTL, "up", str(lab_file), "--instance", instance],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=delay)
        return proc.returncode  # it finished before the signal: still a valid round
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
    return proc.wait(timeout=120)


def one_round(lab_file: Path, delay: float, sig: signal.Signals) -> tuple[bool, str]:
    instance = "i" + secrets.token_hex(3)
    first = interrupted_up(lab_file, instance, delay, sig)
    t0 = time.monotonic()
    rerun = labctl("up", str(lab_file), "--instance", instance, "--json")
    rerun_s = time.monotonic() - t0
    status = labctl("status", "--lab", LAB, "--instance", instance, "--json")
    down = labctl("down", "--lab", LAB, "--instance", instance)
    left = inventory(LAB, instance)
    try:
        data = json.loads(status.stdout)
        rows = data["guests"] if isinstance(data, dict) else data
        states = sum(r["state"] == "running" for r in rows)
    except (ValueError, KeyError, TypeError):
        states = 0
    ok = rerun.returncode == 0 and states == 3 and down.returncode == 0 and left.empty
    why = "" if ok else (rerun.stderr.strip().splitlines() or [""])[-1][:90]
    if not left.empty:
        why += f" left: {left}"
    return ok, f"first exit {first:>4}  rerun {rerun.returncode} in {rerun_s:5.1f} s  " + (
        f"running {states}/3  down {down.returncode}  leftovers {'none' if left.empty else 'YES'}"
        + (f"  {why}" if why else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", default="0.5,1,2,4,7,11", help="seconds, comma-separated")
    args = parser.parse_args()
    delays = [float(d) for d in args.delays.split(",")]
    os.environ.setdefault("LABCTL_STATE", tempfile.mkdtemp(prefix="labctl-interrupt-"))
    lab_file = Path(tempfile.mkdtemp(prefix="labctl-interrupt-lab-")) / "lab.yaml"
    lab_file.write_text(lab_yaml(LAB, VM, BOX, APP))
    failed = 0
    print(f"{'signal':8}{'after':>7}  result")
    for delay in delays:
        for sig in (signal.SIGINT, signal.SIGKILL):
            ok, line = one_round(lab_file, delay, sig)
            failed += not ok
            print(f"{sig.name:8}{delay:>6.1f}s  {'ok  ' if ok else 'FAIL'} {line}", flush=True)
    rounds = 2 * len(delays)
    print(f"{rounds - failed} of {rounds} interrupted ups completed by one rerun, nothing left")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
