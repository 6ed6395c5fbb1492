"""What each guest costs the host, read on the host side: memory and disk.

The backends read them (``memory``, ``footprint``) and say how; a VM's cost is its QEMU
process and its qcow2 overlay, a container's its cgroup and what the engine keeps for it.
"""

from __future__ import annotations

import time

from labctl import backends
from labctl.backends.base import HostUse
from labctl.compare.model import Figure, Gap, Samples, Subject
from labctl.errors import LabctlError, NotSupported
from labctl.instance.state import GuestRecord

MIB = 1024 * 1024


def memory(
    records: dict[str, GuestRecord],
    subjects: dict[str, Subject],
    samples: int,
    interval: float = 1.0,
) -> tuple[list[Figure], list[Gap]]:
    """Sample every guest's memory ``samples`` times; the figures, and a gap per failed guest."""
    values: dict[str, list[float]] = {name: [] for name in records}
    last: dict[str, HostUse] = {}
    gaps: dict[str, Gap] = {}
    for i in range(samples):
        if i:
            time.sleep(interval)
        for name, rec in records.items():
            if name in gaps:
                continue
            try:
                use = backends.get(rec.engine).memory(rec.resource)
            except LabctlError as exc:
                gaps[name] = Gap("memory", name, exc.message, not isinstance(exc, NotSupported))
                continue
            values[name].append(use.bytes / MIB)
            last[name] = use
    figures = []
    for name, vals in values.items():
        if name in gaps or not vals:
            continue
        subject = subjects[name]
        figures.append(
            Figure(
                "memory",
                name,
                Samples(tuple(vals)),
                subject.accel,
                subject.devices,
                f"{last[name].method}, {samples} samples {interval:g} s apart, idle",
                last[name].note,
            )
        )
    return figures, list(gaps.values())


def footprint(record: GuestRecord, subject: Subject) -> Figure:
    """Disk the guest's instance occupies on the host, beyond what it shares with others."""
    use = backends.get(record.engine).footprint(record.resource)
    return Figure(
        "footprint",
        record.name,
        Samples((use.bytes / MIB,)),
        subject.accel,
        subject.devices,
        use.method,
        use.note,
    )
