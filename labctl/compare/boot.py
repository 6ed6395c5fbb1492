"""Start to usable: the lab's own ``ready_seconds``, and fresh starts measured one at a time.

Usable means what ``labctl up`` waits for (each backend's ``ready_means``). A fresh start is
the backend's to make: a throwaway copy of the guest from the same image, labelled with the
lab instance (so ``labctl down`` would find it after a crash), started a few times and
removed. An engine that cannot copy its guests cheaply (libvirt) says so; its guests are
then cold-booted in place, which is why that needs ``--restart-guests``.
"""

from __future__ import annotations

from labctl import backends
from labctl.backends.base import BOOTED, Copy
from labctl.compare.model import Figure, Samples, Subject
from labctl.compare.workloads import Runs
from labctl.errors import LabctlError, NotSupported
from labctl.instance.state import GuestRecord

LAB_UP_METHOD = (
    "ready_seconds recorded by labctl up: from create to usable, guests started in parallel "
    "(at most one VM per core at a time)"
)


def from_lab_up(record: GuestRecord, subject: Subject) -> Figure:
    """The guest's ``ready_seconds`` from the state file (one sample), if up booted it.

    A guest that ``up`` restored from a saved template, resumed or found running was not
    booted: its ready time says nothing about a start from scratch, so it is no figure.
    """
    if record.started != BOOTED:
        how = record.started or "started (how, the state does not say)"
        raise NotSupported(
            f"{record.name}: {how} by labctl up, not booted: its ready time is no boot",
            "labctl compare --restart-guests starts each such guest from power-off and times that",
        )
    if record.ready_seconds is None:
        raise LabctlError(
            f"{record.name} has no ready time in the lab state (stage {record.stage})"
        )
    usable = backends.get(record.engine).ready_means
    return Figure(
        "boot_lab_up",
        record.name,
        Samples((float(record.ready_seconds),)),
        subject.accel,
        subject.devices,
        f"{LAB_UP_METHOD}; usable = {usable}",
        "one sample, taken while other guests were booting",
    )


def fresh(copy: Copy, subject: Subject, runs: Runs, restart: bool) -> Figure:
    """Fresh starts of a throwaway copy (the warm-up discarded, then the counted ones).

    Where the engine copies no guest, and ``restart`` allows it, the guest itself is
    powered off and cold-booted once; otherwise the engine's :class:`NotSupported` stands.
    """
    backend = backends.get(copy.record.engine)
    try:
        times = backend.fresh_start(copy, runs.total)
        if len(times.seconds) != runs.total:
            raise LabctlError(
                f"{copy.record.name}: {len(times.seconds)} fresh starts, {runs.total} asked"
            )
        samples = Samples(times.seconds[runs.warmup :], times.seconds[: runs.warmup])
    except NotSupported:
        if not restart:
            raise
        times = backend.restart(copy.record, copy.key, copy.timeout)
        samples = Samples(times.seconds)
    return Figure(
        "boot_fresh",
        copy.record.name,
        samples,
        subject.accel,
        subject.devices,
        times.method,
        times.note,
    )
