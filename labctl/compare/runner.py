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
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, replace
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
from labctl.spec.model import Lab, load_lab
from labctl.stages import Stage, execute

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
        vm = spec.engine == "libvirt"
        try:  # the device models really in use; the record says what up asked for
            rec = state.guests[row.guest]  # row.engine names the daemon (incus), rec the backend
            devices = backends.get(rec.engine).devices(rec.resource).summary
        except LabctlError:
            devices = f"{row.devices or '-'} (as recorded)"
        found[row.guest] = Subject(
            name=row.guest,
            technique=spec.technique,
            engine=row.engine,
            arch=spec.arch if spec.engine == "libvirt" else platform.machine(),
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


@dataclass
class _Compare:
    """What the comparison's stages share; filled in stage by stage."""

    lab_name: str
    instance: str
    profile: Profile
    restart_guests: bool
    report: Reporter
    inst: InstanceDir | None = None
    state: LabState | None = None
    lab: Lab | None = None
    key: KeyPair | None = None
    run: _Run | None = None
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    t0: float = field(default_factory=time.monotonic)
    host: HostInfo | None = None
    guests: dict[str, Subject] = field(default_factory=dict)
    subjects: dict[str, Subject] = field(default_factory=dict)
    records: dict[str, GuestRecord] = field(default_factory=dict)
    targets: dict[str, Connection] = field(default_factory=dict)
    result: Report | None = None
    path: Path | None = None

    @property
    def r(self) -> _Run:
        assert self.run is not None, "the host stage opened the run"
        return self.run


def _open(c: _Compare) -> None:
    c.inst, c.state = lab_status.load(c.lab_name, c.instance)
    c.key = KeyPair(c.inst.key)


def _lock(c: _Compare) -> AbstractContextManager[object]:
    assert c.inst is not None
    return _exclusive(c.inst)


def _host(c: _Compare) -> None:
    assert c.state is not None and c.key is not None
    c.started, c.t0 = datetime.now(timezone.utc), time.monotonic()
    c.lab = load_lab(Path(c.state.spec_path))
    c.host = host_info()
    c.guests, absent = subjects(c.state, c.lab)
    c.subjects = {HOST: host_subject(), **c.guests}
    c.records = {name: c.state.guests[name] for name in c.guests}
    c.run = _Run(c.report)
    c.r.gaps.extend(Gap("all", name, why) for name, why in absent.items())
    c.targets = measure.connections(c.records, c.key)


def _footprint(c: _Compare) -> None:
    for name, rec in c.records.items():
        c.r.attempt("footprint", name, partial(probes.footprint, rec, c.subjects[name]))


def _memory(c: _Compare) -> None:
    mem, gaps = probes.memory(c.records, c.guests, c.profile.memory_samples)
    c.r.figures.extend(mem)
    c.r.gaps.extend(gaps)


def _boots(c: _Compare) -> None:
    assert c.state is not None and c.lab is not None and c.key is not None
    _boot(c.r, c.state, c.lab, c.records, c.guests, c.key, c.profile, c.restart_guests)


def _cpu(c: _Compare) -> None:
    for name, target in c.targets.items():
        c.r.attempt("cpu", name, partial(measure.cpu, target, c.subjects[name], c.profile))


def _disk(c: _Compare) -> None:
    assert c.inst is not None
    host_dir = measure.host_disk_directory(c.inst.path)
    try:
        host = partial(measure.disk, c.targets[HOST], c.subjects[HOST], c.profile, str(host_dir))
        c.r.attempt("disk", HOST, host)
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)
    for name, s in c.guests.items():
        if s.technique in DISK_TECHNIQUES:
            guest = partial(_guest_disk, c.targets[name], s, c.records[name], c.profile)
            c.r.attempt("disk", name, guest)
    c.r.figures = _note_footprint_growth(c.r.figures, c.records, c.subjects)


def _network(c: _Compare) -> None:
    assert c.state is not None
    for name, s in c.guests.items():
        if s.is_vm and s.technique in NET_TECHNIQUES:
            net = partial(
                measure.network,
                c.targets[name],
                c.targets[HOST],
                c.records[name],
                s,
                c.state,
                c.profile,
            )
            c.r.attempt("network", name, net)


def _claims(c: _Compare) -> None:
    assert c.state is not None and c.host is not None and c.inst is not None
    result = Report(
        lab=c.state.lab,
        instance=c.state.instance,
        mode=c.profile.name,
        started=c.started.isoformat(timespec="seconds"),
        seconds=0.0,
        host=c.host,
        profile=asdict(c.profile),
        subjects=tuple(c.subjects.values()),
        figures=tuple(c.r.figures),
        gaps=tuple(c.r.gaps),
        extra={"restart_guests": c.restart_guests},
    )
    result = replace(result, claims=claims.evaluate(result))
    c.result = replace(result, seconds=round(time.monotonic() - c.t0, 1))
    c.path = results.save(c.result, c.inst)


#: One comparison: guests measured one after another, a failed measurement a recorded gap.
STAGES: tuple[Stage[_Compare], ...] = (
    Stage("open", _open, silent=True),
    Stage("lock", hold=_lock, silent=True),
    Stage("host", _host),
    Stage("footprint", _footprint, silent=True),
    Stage("memory", _memory, describe=lambda c: f"{c.profile.memory_samples} samples"),
    Stage("boot", _boots, silent=True),
    Stage("cpu", _cpu, silent=True),
    Stage("disk", _disk, silent=True),
    Stage("network", _network, silent=True),
    Stage("claims", _claims),
)


def run(
    lab_name: str,
    instance: str,
    profile: Profile,
    *,
    restart_guests: bool = False,
    report: Reporter = _quiet,
) -> tuple[Report, Path]:
    """Measure every running guest of the instance and the host; save and return the report."""
    c = _Compare(lab_name, instance, profile, restart_guests, report)
    execute(STAGES, c, lambda _guest, stage, detail: report(stage, detail))
    assert c.result is not None and c.path is not None
    return c.result, c.path


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
        # the boot up measured (a restore, or a cold boot), then a fresh one timed here
        r.attempt("boot_lab_up", name, partial(boot.from_lab_up, rec, guests[name]), "boot at up")
    timeout = plan.ready_timeout(lab)
    for name, rec in records.items():
        copy = Copy(state.lab, state.instance, rec, plan.params(lab.guests[name]), key, timeout)
        fresh = partial(boot.fresh, copy, guests[name], profile.boot, restart_guests)
        r.attempt("boot_fresh", name, fresh, "fresh boot")
