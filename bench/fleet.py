#!/usr/bin/env python3
"""A class over 1, 2 and 3 lab hosts: time to class-ready, and shipping images against building.

For each host count, on fresh simulated lab hosts (``tests/integration/fleet_hosts.py``: LXD
system containers from the prepared host image, reached over SSH) and the same roster:
``labctl.fleet.up.up`` as ``class up --hosts`` runs it, timed stage by stage until
every student's lab is up (class-ready), then ``class down`` and the hosts removed. Then the
images stage (shipping what the controller built, checked on each host) against building the
same images on each host: the builds' own times on this controller, from their manifests. A
lab host cannot build them itself here at all: mmdebstrap needs a mirror it reaches, and the
simulated hosts reach none (their apt goes through this machine's cache).

The lab is ``fleet-mini`` (one VirtIO VM and the web app's container): three default labs
do not fit three nested hosts on this machine. All hosts share this machine's cores: more
hosts add SSH and Ansible in parallel, not CPU.

Usage: sudo .venv/bin/python bench/fleet.py [--hosts 1,2,3] [--students 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labctl.classroom import roster
from labctl.classroom.state import ClassDir
from labctl.fleet import down as fleet_down
from labctl.fleet import inventory as fleet_inventory
from labctl.fleet import remote, ship
from labctl.fleet import state as fleet_state
from labctl.fleet import up as fleet_up
from labctl.images.registry import store
from labctl.keys import ensure_keypair
from labctl.lab import plan as lab_plan
from labctl.paths import LABS_DIR
from labctl.spec.model import load_lab
from tests.integration import fleet_hosts

LAB = "fleet-mini"
CLASS = "bf"


@dataclass
class Stages:
    """Seconds per stage of one ``class up --hosts``, from the executor's reports."""

    started: float = field(default_factory=time.monotonic)
    marks: list[tuple[str, float]] = field(default_factory=list)

    def __call__(self, who: str, step: str, detail: str) -> None:
        if not who:
            self.marks.append((step, time.monotonic()))

    def seconds(self) -> dict[str, float]:
        out = {}
        ends = [t for _, t in self.marks[1:]] + [time.monotonic()]
        for (name, t0), t1 in zip(self.marks, ends, strict=True):
            out[name] = round(t1 - t0, 1)
        return out


@dataclass(frozen=True)
class Row:
    hosts: int
    students: int
    launch_s: float
    ready_s: float
    stages: dict[str, float]
    placed: dict[str, int]
    down_s: float
    up_ok: int


def _roster(path: Path, n: int) -> roster.Roster:
    path.write_text("id,name\n" + "".join(f"s{i:02d},Student {i}\n" for i in range(1, n + 1)))
    return roster.load(path)


def one(count: int, students: int, work: Path, key: Path, pub: str) -> Row:
    run = f"b{count}{os.getpid() % 1000}"
    t0 = time.monotonic()
    hosts = fleet_hosts.launch(fleet_hosts.host_names(run, count), pub)
    launch_s = time.monotonic() - t0
    try:
        inv_path = fleet_hosts.write_inventory(hosts, work / f"hosts-{count}.ini", key)
        inv = fleet_inventory.load(inv_path)
        lab_path = LABS_DIR / LAB / "lab.yaml"
        folder = ClassDir(CLASS)
        # labctl's wheelhouse is built once per version of labctl, before the clock starts
        ship.wheelhouse()
        stages = Stages()
        t1 = time.monotonic()
        result = fleet_up.up(
            _roster(work / "roster.csv", students),
            inv,
            CLASS,
            load_lab(lab_path),
            lab_path,
            store(),
            remote.ansible_runner_for(inv, 10, work / f"ansible-{count}.log"),
            report=stages,
        )
        ready_s = time.monotonic() - t1
        placed = {h.name[-1]: sum(s.host == h.name for s in result.seats) for h in result.hosts}
        spread = fleet_state.load(folder)
        assert spread is not None
        t2 = time.monotonic()
        down = fleet_down.down(folder, spread, remote.ansible_runner_for(inv, 10, None))
        assert down.complete, down.left
        return Row(
            count,
            students,
            round(launch_s, 1),
            round(ready_s, 1),
            stages.seconds(),
            placed,
            round(time.monotonic() - t2, 1),
            sum(s.outcome == "up" for s in result.seats),
        )
    finally:
        fleet_hosts.destroy(hosts)


def built_here(profile: str | None) -> list[tuple[str, float]]:
    """Each image the lab ships and how long its build took on this controller (its manifest)."""
    lab = load_lab(LABS_DIR / LAB / "lab.yaml")
    wanted = sorted({lab_plan.image_of(g, profile) for g in lab.guests.values()})
    images = store()
    out = []
    for name in images.order(wanted):
        manifest = images.manifest(name)
        assert manifest is not None, name
        out.append((name, float(manifest.build_seconds)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", default="1,2,3")
    ap.add_argument("--students", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root (sudo)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="labctl-bench-fleet-") as tmp:
        work = Path(tmp)
        os.environ["LABCTL_STATE"] = str(work / "controller-state")
        keypair = ensure_keypair(work / "id_ed25519", "labctl bench fleet")
        t0 = time.monotonic()
        fleet_hosts.prepare_image(on_step=lambda m: print(f"  prepare: {m}", flush=True))
        print(f"prepared host image ready in {time.monotonic() - t0:.1f} s", flush=True)
        rows = []
        for count in [int(x) for x in args.hosts.split(",")]:
            print(f"class of {args.students} over {count} hosts ...", flush=True)
            rows.append(one(count, args.students, work, keypair.private, keypair.public_line))
            print(f"  {rows[-1]}", flush=True)
        print()
        print(
            "| hosts | students | placed | launch | class-ready | setup | install | images "
            "| measure | labs | down | up |"
        )
        print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            st = r.stages
            placed = " ".join(f"{n}" for n in r.placed.values())
            print(
                f"| {r.hosts} | {r.students} | {placed} | {r.launch_s} s | **{r.ready_s} s** "
                f"| {st.get('setup', 0)} s | {st.get('install', 0)} s | {st.get('images', 0)} s "
                f"| {st.get('measure', 0)} s | {st.get('labs', 0)} s | {r.down_s} s "
                f"| {r.up_ok}/{r.students} |"
            )
        if rows and len(rows) > 1:
            base = rows[0].ready_s
            print()
            print(
                "class-ready against one host: "
                + ", ".join(f"{r.hosts} hosts {r.ready_s / base:.2f}x" for r in rows)
            )
        profile = fleet_hosts.setup_vars().get("labctl_vm_profile")
        built = built_here(profile)
        total = sum(sec for _, sec in built)
        print()
        print("| image (what a host would build itself) | its build here |")
        print("|---|---:|")
        for name, sec in built:
            print(f"| {name} | {sec:.1f} s |")
        print(f"| **all, per host** | **{total:.1f} s** |")
        for r in rows:
            ship_s = r.stages.get("images", 0.0)
            print(
                f"{r.hosts} host(s): shipped (and checked) in {ship_s} s; building on every "
                f"host instead takes at least {total:.0f} s of wall time even with the hosts "
                f"in parallel ({total / max(ship_s, 0.1):.1f}x) and {total * r.hosts:.0f} s "
                f"of build work in all"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
