"""One comparison run as a sequence of stages over a running lab instance.

Guests are measured one after another, never in parallel, so a sample never shares the CPU
with another workload of the comparison (other labs on the host still may: the spread says
how much that mattered). A measurement that fails becomes a recorded gap, not an abort.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from filelock import FileLock, Timeout

from labctl.compare import boot, claims, measure, probes, results
from labctl.compare.model import HOST, NATIVE, Figure, Gap, HostInfo, Report, Subject
from labctl.compare.workloads import Profile
from labctl.connection import Connection
from labctl.errors import LabctlError
from labctl.host.accel import detect
from labctl.keys import KeyPair
from labctl.lab import plan
from labctl.lab import status as lab_status
from labctl.lab.state import GuestRecord, InstanceDir, LabState
from labctl.spec.model import DockerGuest, Lab, LibvirtGuest, load_lab

STAGES = ("host", "footprint", "memory", "boot", "cpu", "disk", "network", "claims")
DISK_TECHNIQUES = ("full-virtualization", "paravirtualization", "system-container")
NET_TECHNIQUES = ("full-virtualization", "paravirtualization")
GUEST_DISK_DIR = "/root"  # on the guest's own root disk, never a tmpfs

#: (stage, detail) -> None
Reporter = Callable[[str, str], None]


def _quiet(_stage: str, _detail: str) -> None:
    pass


def host_info() -> HostInfo:
    """CPU model, cores, kernel, and whether KVM can really run guests here."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    probe = detect()
    return HostInfo(model, os.cpu_count() or 1, platform.release(), probe.usable, probe.reason)


def _disk_cache(resource: str) -> str | None:
    """The cache mode of a domain's disk (``unsafe`` sends guest I/O to the host page cache)."""
    import libvirt

    from labctl.backends.libvirt import connection

    try:
        with connection() as conn:
            xml = conn.lookupByName(resource).XMLDesc()
    except (LabctlError, libvirt.libvirtError):
        return None
    driver = ET.fromstring(xml).find("devices/disk/driver")
    return driver.get("cache") if driver is not None else None


def subjects(state: LabState, lab: Lab) -> tuple[dict[str, Subject], dict[str, str]]:
    """The running guests as subjects (live accelerator from QEMU), and why others are not."""
    found: dict[str, Subject] = {}
    absent: dict[str, str] = {}
    for row in lab_status.status(state):
        if row.state != "running":
            absent[row.guest] = f"{row.guest} is {row.state}"
            continue
        spec = lab.guests.get(row.guest)
        if spec is None:
            absent[row.guest] = f"{row.guest} is not in the lab file {state.spec_path} any more"
            continue
        vm = isinstance(spec, LibvirtGuest)
        found[row.guest] = Subject(
            name=row.guest,
            technique=spec.technique,
            engine=row.engine,
            arch=spec.arch if isinstance(spec, LibvirtGuest) else platform.machine(),
            accel=(row.accel or "unknown") if vm else NATIVE,
            devices=row.devices or "-",
            accel_note=row.accel_note,
        )
    return found, absent


def host_subject() -> Subject:
    """The bare host: the reference every guest is compared with."""
    return Subject(HOST, "host", "host", platform.machine(), NATIVE, "the host's own disk and NIC")


@contextmanager
def _exclusive(inst: InstanceDir) -> Iterator[None]:
    inst.path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(inst.path / "compare.lock"))
    try:
        lock.acquire(timeout=1)
    except Timeout as exc:
        raise LabctlError(
            f"another labctl compare is measuring lab {inst.lab} (instance {inst.instance})",
            "wait for it to finish: two comparisons at once would measure each other",
        ) from exc
    try:
        yield
    finally:
        lock.release()


class _Run:
    """The figures and gaps collected so far."""

    def __init__(self, report: Reporter) -> None:
        self.figures: list[Figure] = []
        self.gaps: list[Gap] = []
        self.report = report

    def attempt(self, metric: str, subject: str, fn: Callable[[], Figure | list[Figure]]) -> None:
        self.report(metric, subject)
        try:
            out = fn()
        except LabctlError as exc:
            self.gaps.append(Gap(metric, subject, exc.message))
            self.report(metric, f"{subject}: failed: {exc.message.splitlines()[0]}")
            return
        self.figures.extend(out if isinstance(out, list) else [out])


def run(
    lab_name: str,
    instance: str,
    profile: Profile,
    *,
    restart_guests: bool = False,
    report: Reporter = _quiet,
) -> tuple[Report, Path]:
    """Measure every running guest of the instance and the host; save and return the report."""
    inst, state = lab_status.load(lab_name, instance)
    key = KeyPair(inst.key)
    with _exclusive(inst):
        started = datetime.now(timezone.utc)
        t0 = time.monotonic()
        report("host", "")
        lab = load_lab(Path(state.spec_path))
        host = host_info()
        guests, absent = subjects(state, lab)
        subj = {HOST: host_subject(), **guests}
        records = {name: state.guests[name] for name in guests}
        r = _Run(report)
        r.gaps.extend(Gap("all", name, why) for name, why in absent.items())

        for name, rec in records.items():
            r.attempt("footprint", name, partial(probes.footprint, rec, subj[name], inst.run))
        report("memory", f"{profile.memory_samples} samples")
        mem, errors = probes.memory(records, guests, profile.memory_samples)
        r.figures.extend(mem)
        r.gaps.extend(Gap("memory", name, why) for name, why in errors.items())

        _boot(r, state, lab, records, guests, key, profile, restart_guests)

        targets = measure.connections(records, key)
        for name, target in targets.items():
            r.attempt("cpu", name, partial(measure.cpu, target, subj[name], profile))

        host_dir = measure.host_disk_directory(inst.path)
        try:
            r.attempt(
                "disk",
                HOST,
                partial(measure.disk, targets[HOST], subj[HOST], profile, str(host_dir)),
            )
        finally:
            shutil.rmtree(host_dir, ignore_errors=True)
        for name, s in guests.items():
            if s.technique in DISK_TECHNIQUES:
                r.attempt(
                    "disk", name, partial(_guest_disk, targets[name], s, records[name], profile)
                )
        r.figures = _note_overlay_growth(r.figures, records, subj, inst.run)

        for name, s in guests.items():
            if s.is_vm and s.technique in NET_TECHNIQUES:
                net = partial(measure.network, targets[name], records[name], s, state, profile)
                r.attempt("network", name, net)

        report("claims", "")
        result = Report(
            lab=state.lab,
            instance=state.instance,
            mode=profile.name,
            started=started.isoformat(timespec="seconds"),
            seconds=0.0,
            host=host,
            profile=asdict(profile),
            subjects=tuple(subj.values()),
            figures=tuple(r.figures),
            gaps=tuple(r.gaps),
            extra={"restart_guests": restart_guests},
        )
        result = replace(result, claims=claims.evaluate(result))
        result = replace(result, seconds=round(time.monotonic() - t0, 1))
        path = results.save(result, inst)
    return result, path


def _note_overlay_growth(
    figures: list[Figure],
    records: dict[str, GuestRecord],
    subjects: dict[str, Subject],
    run_dir: Path,
) -> list[Figure]:
    """Say how much the disk test grew each VM's overlay (qcow2 never gives blocks back)."""
    out = []
    for f in figures:
        rec = records.get(f.subject)
        if f.metric == "footprint" and rec is not None and rec.engine == "libvirt":
            try:
                after = probes.footprint(rec, subjects[f.subject], run_dir).samples.median
            except LabctlError:
                after = f.samples.median
            grown = after - f.samples.median
            if grown >= 1:
                extra = f"this run's disk test then added {grown:.0f} MiB to the overlay"
                f = replace(f, note=f"{f.note}; {extra}" if f.note else extra)
        out.append(f)
    return out


def _guest_disk(
    target: Connection, subject: Subject, record: GuestRecord, profile: Profile
) -> list[Figure]:
    figures = measure.disk(target, subject, profile, GUEST_DISK_DIR)
    if record.engine != "libvirt":
        return figures
    cache = _disk_cache(record.resource)
    if cache in ("unsafe", "writeback"):
        note = (
            f"QEMU disk cache={cache}: the guest's direct I/O ends in the host's page cache, "
            "so this is the cost of the device path, not of the physical disk"
        )
        figures = [replace(f, note=note) for f in figures]
    return figures


def _boot(
    r: _Run,
    state: LabState,
    lab: Lab,
    records: dict[str, GuestRecord],
    guests: dict[str, Subject],
    key: KeyPair,
    profile: Profile,
    restart_guests: bool,
) -> None:
    for name, rec in records.items():
        r.attempt("boot", name, partial(boot.from_lab_up, rec, guests[name]))
    runs, warmup = profile.boot_reps, profile.boot_warmup
    for name, rec in records.items():
        s = guests[name]
        spec = lab.guests[name]
        if rec.engine == "lxd":
            r.attempt("boot", name, partial(boot.lxd_fresh, state, rec, s, runs, warmup))
        elif isinstance(spec, DockerGuest):
            fresh = partial(
                boot.docker_fresh, state, rec, s, spec.port, spec.http_path, runs, warmup
            )
            r.attempt("boot", name, fresh)
        elif rec.engine == "libvirt" and restart_guests:
            r.attempt("boot", name, partial(boot.vm_restart, rec, s, key, plan.ready_timeout(lab)))
    if not restart_guests:
        for name, rec in records.items():
            if rec.engine == "libvirt":
                r.gaps.append(
                    Gap(
                        "boot_fresh",
                        name,
                        "not restarted: a fresh VM boot powers the guest off and on "
                        "(labctl compare --restart-guests)",
                        failed=False,
                    )
                )
