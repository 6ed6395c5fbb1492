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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from filelock import FileLock, Timeout

from labctl import backends
from labctl.backends.base import Copy
from labctl.compare import boot, claims, measure, probes, results
from labctl.compare.model import HOST, NATIVE, Figure, Gap, HostInfo, Report, Subject
from labctl.compare.workloads import Profile
from labctl.connection import Connection
from labctl.errors import LabctlError, NotSupported
from labctl.host.accel import detect
from labctl.instance.state import GuestRecord, InstanceDir, LabState
from labctl.keys import KeyPair
from labctl.lab import plan
from labctl.lab import status as lab_status
from labctl.spec.model import Lab, LibvirtGuest, load_lab

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
        try:  # the device models really in use; the record says what up asked for
            devices = backends.get(row.engine).devices(state.guests[row.guest].resource).summary
        except LabctlError:
            devices = f"{row.devices or '-'} (as recorded)"
        found[row.guest] = Subject(
            name=row.guest,
            technique=spec.technique,
            engine=row.engine,
            arch=spec.arch if isinstance(spec, LibvirtGuest) else platform.machine(),
            accel=(row.accel or "unknown") if vm else NATIVE,
            devices=devices,
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

    def attempt(
        self,
        metric: str,
        subject: str,
        fn: Callable[[], Figure | list[Figure]],
        stage: str | None = None,
    ) -> None:
        """Run one measurement; a LabctlError becomes a gap (not applicable: NotSupported)."""
        stage = stage or metric
        self.report(stage, subject)
        try:
            out = fn()
        except NotSupported as exc:
            why = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
            self.gaps.append(Gap(metric, subject, why, failed=False))
            self.report(stage, f"{subject}: not measured: {exc.message.splitlines()[0]}")
            return
        except LabctlError as exc:
            self.gaps.append(Gap(metric, subject, exc.message))
            self.report(stage, f"{subject}: failed: {exc.message.splitlines()[0]}")
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
            r.attempt("footprint", name, partial(probes.footprint, rec, subj[name]))
        report("memory", f"{profile.memory_samples} samples")
        mem, gaps = probes.memory(records, guests, profile.memory_samples)
        r.figures.extend(mem)
        r.gaps.extend(gaps)

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
        r.figures = _note_footprint_growth(r.figures, records, subj)

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


def _note_footprint_growth(
    figures: list[Figure],
    records: dict[str, GuestRecord],
    subjects: dict[str, Subject],
) -> list[Figure]:
    """Say how much the disk test grew a guest's footprint (a qcow2 never gives blocks back)."""
    tested = {f.subject for f in figures if f.metric == "disk_write"}
    out = []
    for f in figures:
        rec = records.get(f.subject)
        if f.metric == "footprint" and rec is not None and f.subject in tested:
            try:
                after = probes.footprint(rec, subjects[f.subject]).samples.median
            except LabctlError:
                after = f.samples.median
            grown = after - f.samples.median
            if grown >= 1:
                extra = f"this run's disk test then added {grown:.0f} MiB to it"
                f = replace(f, note=f"{f.note}; {extra}" if f.note else extra)
        out.append(f)
    return out


def _guest_disk(
    target: Connection, subject: Subject, record: GuestRecord, profile: Profile
) -> list[Figure]:
    figures = measure.disk(target, subject, profile, GUEST_DISK_DIR)
    try:
        cache = backends.get(record.engine).devices(record.resource).disk_cache
    except LabctlError:
        cache = None
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
        r.attempt("boot_lab_up", name, partial(boot.from_lab_up, rec, guests[name]), "boot")
    runs, warmup = profile.boot_reps, profile.boot_warmup
    timeout = plan.ready_timeout(lab)
    for name, rec in records.items():
        copy = Copy(state.lab, state.instance, rec, lab.guests[name], key, timeout)
        fresh = partial(boot.fresh, copy, guests[name], runs, warmup, restart_guests)
        r.attempt("boot_fresh", name, fresh, "boot")
