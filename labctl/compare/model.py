"""What a comparison produces: samples with their spread, figures, verdicts, the report.

Everything is a frozen dataclass; the report round-trips through JSON so exercises can read
the saved results (``<instance dir>/compare/latest.json``).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FORMAT = 1

Better = Literal["lower", "higher"]
Verdict = Literal["shown", "not shown", "not measurable"]
SHOWN: Verdict = "shown"
NOT_SHOWN: Verdict = "not shown"
NOT_MEASURABLE: Verdict = "not measurable"  # why (the host, the lab, this run): the reason
#: verdicts as results files of earlier versions wrote them
_OLD_VERDICTS = {"not measurable on this host": NOT_MEASURABLE}

HOST = "host"  # the subject name of the bare host, measured as the reference
NATIVE = "native"  # the "accelerator" of the host and of containers: the CPU itself


@dataclass(frozen=True)
class Metric:
    """One thing measured: its title, unit and which direction is better."""

    key: str
    title: str
    unit: str
    better: Better


METRICS: dict[str, Metric] = {
    m.key: m
    for m in (
        Metric("boot_fresh", "Start to usable (fresh start)", "s", "lower"),
        Metric("boot_lab_up", "Start to usable (during labctl up)", "s", "lower"),
        Metric("cpu", "CPU: fixed workload", "s", "lower"),
        Metric("disk_write", "Disk: sequential write, direct I/O", "MB/s", "higher"),
        Metric("disk_read", "Disk: sequential read, direct I/O", "MB/s", "higher"),
        Metric("net_to_guest", "Network: host → guest (iperf3 TCP)", "Mbit/s", "higher"),
        Metric("net_from_guest", "Network: guest → host (iperf3 TCP)", "Mbit/s", "higher"),
        Metric("memory", "Host memory used by the guest", "MiB", "lower"),
        Metric("footprint", "Host disk used by the instance", "MiB", "lower"),
    )
}


@dataclass(frozen=True)
class Samples:
    """Repeated measurements of one figure; warm-up runs are kept apart, never counted."""

    values: tuple[float, ...]
    discarded: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("a figure needs at least one sample")

    @property
    def n(self) -> int:
        """How many samples count."""
        return len(self.values)

    @property
    def median(self) -> float:
        """The median of the counted samples."""
        return float(statistics.median(self.values))

    @property
    def min(self) -> float:
        """The smallest counted sample."""
        return min(self.values)

    @property
    def max(self) -> float:
        """The largest counted sample."""
        return max(self.values)

    @property
    def spread(self) -> float:
        """max - min, relative to the median (0.1 = the samples span 10 % of the median)."""
        return (self.max - self.min) / self.median if self.median else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Samples plus the statistics, for JSON readers that do not recompute them."""
        return {
            "values": list(self.values),
            "discarded": list(self.discarded),
            "n": self.n,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "spread": round(self.spread, 4),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Samples:
        """Read what :meth:`to_dict` wrote."""
        return cls(tuple(data["values"]), tuple(data.get("discarded", ())))


@dataclass(frozen=True)
class Subject:
    """A guest of the lab, or the bare host."""

    name: str
    technique: str  # the lab's technique, or "host"
    engine: str  # libvirt / lxd / docker / host
    arch: str
    accel: str  # kvm or tcg for VMs (asked of QEMU), "native" for the host and containers
    devices: str
    accel_note: str | None = None

    @property
    def is_vm(self) -> bool:
        """True for a virtual machine."""
        return self.engine == "libvirt"

    @property
    def is_container(self) -> bool:
        """True for a system or application container."""
        return self.technique in ("system-container", "app-container")


@dataclass(frozen=True)
class Figure:
    """One metric of one subject: the samples and how they were obtained."""

    metric: str
    subject: str
    samples: Samples
    accel: str
    devices: str
    method: str  # the exact command or source of the numbers
    note: str | None = None

    @property
    def info(self) -> Metric:
        """Title, unit and direction of the metric."""
        return METRICS[self.metric]


@dataclass(frozen=True)
class Gap:
    """A figure that could not be measured, and why."""

    metric: str
    subject: str
    reason: str
    failed: bool = True  # False when it is not applicable rather than broken


@dataclass(frozen=True)
class HostInfo:
    """The machine the figures come from."""

    cpu_model: str
    cores: int
    kernel: str
    kvm_usable: bool
    kvm_reason: str


@dataclass(frozen=True)
class Claim:
    """A claim of the lesson, the ratio measured for it and the verdict."""

    id: str
    text: str
    lesson: str  # the sentence of the lesson (Spanish) it comes from
    evidence: str  # which figures were compared
    ratio: float | None  # from the medians, in the sense the threshold states
    conservative: float | None  # the same ratio from the ends of the min-max ranges
    threshold: str
    verdict: Verdict
    reason: str


@dataclass(frozen=True)
class Report:
    """A whole comparison run."""

    lab: str
    instance: str
    mode: str  # quick or full
    started: str  # ISO 8601, UTC
    seconds: float
    host: HostInfo
    profile: dict[str, Any]
    subjects: tuple[Subject, ...]
    figures: tuple[Figure, ...]
    gaps: tuple[Gap, ...] = ()
    claims: tuple[Claim, ...] = ()
    format: int = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tcg_instead_of_kvm(self) -> list[Subject]:
        """Guests meant for KVM that ran under TCG."""
        return [
            s for s in self.subjects if s.is_vm and s.accel != "kvm" and s.technique != "emulation"
        ]

    @property
    def failed(self) -> list[Gap]:
        """Measurements that should have worked and did not."""
        return [g for g in self.gaps if g.failed]

    def figure(self, metric: str, subject: str) -> Figure | None:
        """The figure of ``subject`` for ``metric``, if measured."""
        return next((f for f in self.figures if f.metric == metric and f.subject == subject), None)

    def subject(self, name: str) -> Subject | None:
        """The subject called ``name``."""
        return next((s for s in self.subjects if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, figures with their statistics."""
        data = asdict(self)
        data["figures"] = [
            {**asdict(f), "samples": f.samples.to_dict(), "unit": f.info.unit} for f in self.figures
        ]
        data["kvm_unavailable_for"] = [s.name for s in self.tcg_instead_of_kvm]
        return data

    def to_json(self) -> str:
        """Serialise for the results file and ``--json``."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Read what :meth:`to_dict` wrote."""
        figures = []
        for f in data["figures"]:
            f = {k: v for k, v in f.items() if k != "unit"}
            figures.append(Figure(**{**f, "samples": Samples.from_dict(f["samples"])}))
        return cls(
            lab=data["lab"],
            instance=data["instance"],
            mode=data["mode"],
            started=data["started"],
            seconds=data["seconds"],
            host=HostInfo(**data["host"]),
            profile=data["profile"],
            subjects=tuple(Subject(**s) for s in data["subjects"]),
            figures=tuple(figures),
            gaps=tuple(Gap(**g) for g in data.get("gaps", ())),
            claims=tuple(
                Claim(**{**c, "verdict": _OLD_VERDICTS.get(c["verdict"], c["verdict"])})
                for c in data.get("claims", ())
            ),
            format=data.get("format", FORMAT),
            extra=data.get("extra", {}),
        )

    @classmethod
    def from_json(cls, text: str) -> Report:
        """Read a results file."""
        return cls.from_dict(json.loads(text))
