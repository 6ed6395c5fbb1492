"""The fixed workloads, identical in every guest and on the host, and the parsers of their output.

Each script runs all its repetitions in one shell so that the SSH login (seconds under TCG)
is never part of a sample; it times itself inside the guest and prints one ``@tag value``
line per run. Warm-up runs are simply the first lines, discarded by the caller.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from labctl.compare.model import Samples
from labctl.errors import LabctlError

IPERF_PORT = 5201
IPERF_PIDFILE = "/run/labctl-compare-iperf3.pid"
TEST_FILE = ".labctl-compare.bin"


class ParseError(LabctlError):
    """A workload printed something other than what it should have."""


@dataclass(frozen=True)
class Runs:
    """How often a workload runs: ``counted`` runs after ``warmup`` discarded ones."""

    counted: int
    warmup: int = 1

    @property
    def total(self) -> int:
        """Every run, the warm-up included."""
        return self.warmup + self.counted

    def split(self, values: Sequence[float], what: str) -> Samples:
        """The runs' values as samples, the warm-up kept apart; a wrong count is an error."""
        if len(values) != self.total:
            raise ParseError(f"{what}: expected {self.total} runs, got {len(values)}")
        if any(v <= 0 for v in values):
            raise ParseError(f"{what}: a run reported a non-positive value: {list(values)}")
        return Samples(tuple(values[self.warmup :]), tuple(values[: self.warmup]))


@dataclass(frozen=True)
class Profile:
    """How much of each workload to run: sizes and runs."""

    name: str
    cpu_mib: int
    cpu: Runs
    disk_mib: int
    disk: Runs
    net_seconds: int
    net: Runs
    memory_samples: int
    boot: Runs  # fresh container starts (VMs: one cold restart each)


QUICK = Profile(
    "quick",
    cpu_mib=64, cpu=Runs(3),
    disk_mib=64, disk=Runs(3),
    net_seconds=2, net=Runs(3),
    memory_samples=3, boot=Runs(3),
)  # fmt: skip
FULL = Profile(
    "full",
    cpu_mib=128, cpu=Runs(7, warmup=2),
    disk_mib=256, disk=Runs(5),
    net_seconds=5, net=Runs(5),
    memory_samples=5, boot=Runs(5),
)  # fmt: skip

# A nanosecond clock in any POSIX shell: GNU/busybox ``date +%s%N``, else /proc/uptime
# (10 ms steps). ``1${frac}-100`` keeps a fraction like "08" from being read as octal.
_NOW = (
    "now() { t=$(date +%s%N 2>/dev/null); case $t in ''|*[!0-9]*) read u _ </proc/uptime;"
    " f=${u#*.}; t=$(( ${u%.*} * 1000000000 + (1$f - 100) * 10000000 ));; esac; echo $t; }"
)


def cpu_method(profile: Profile) -> str:
    """The CPU workload as a reader sees it."""
    return f"dd if=/dev/zero bs=1M count={profile.cpu_mib} | sha256sum"


def cpu_script(profile: Profile) -> str:
    """Hash ``cpu_mib`` MiB of zeros, warm-up + reps times; prints ``@cpu <ns>`` per run."""
    total = profile.cpu.total
    return "\n".join(
        [
            "export LC_ALL=C",
            _NOW,
            "i=0",
            f"while [ $i -lt {total} ]; do",
            "  s=$(now)",
            f"  dd if=/dev/zero bs=1M count={profile.cpu_mib} 2>/dev/null | sha256sum >/dev/null"
            " || { echo '@error sha256sum failed'; exit 1; }",
            "  e=$(now)",
            '  echo "@cpu $((e - s))"',
            "  i=$((i + 1))",
            "done",
        ]
    )


def disk_method(profile: Profile) -> str:
    """The disk workload as a reader sees it."""
    n = profile.disk_mib
    return (
        f"dd if=/dev/zero of=FILE bs=1M count={n} oflag=direct conv=notrunc,fsync; "
        "dd if=FILE of=/dev/null bs=1M iflag=direct"
    )


def disk_script(profile: Profile, directory: str) -> str:
    """Write then read ``disk_mib`` MiB with O_DIRECT in ``directory``; ``@write``/``@read`` lines.

    ``conv=notrunc`` rewrites the same blocks every run, so after the first (warm-up) run the
    figure is the device path, not the allocation of new blocks in a qcow2 overlay.
    """
    total = profile.disk.total
    path = shlex.quote(f"{directory.rstrip('/')}/{TEST_FILE}")
    n = profile.disk_mib
    return "\n".join(
        [
            "export LC_ALL=C",
            f"f={path}",
            "trap 'rm -f \"$f\"' EXIT",
            "last() { printf '%s\\n' \"$1\" | tail -n 1; }",
            "i=0",
            f"while [ $i -lt {total} ]; do",
            f'  o=$(dd if=/dev/zero of="$f" bs=1M count={n} oflag=direct conv=notrunc,fsync 2>&1)'
            ' || { echo "@error write: $(last "$o")"; exit 1; }',
            '  echo "@write $(last "$o")"',
            '  o=$(dd if="$f" of=/dev/null bs=1M iflag=direct 2>&1)'
            ' || { echo "@error read: $(last "$o")"; exit 1; }',
            '  echo "@read $(last "$o")"',
            "  i=$((i + 1))",
            "done",
        ]
    )


def iperf_server_start(port: int = IPERF_PORT) -> str:
    """Start an iperf3 server in the guest, in the background, its PID in a file."""
    return (
        f"rm -f {IPERF_PIDFILE}; iperf3 -s -D -p {port} -I {IPERF_PIDFILE} >/dev/null 2>&1; "
        f"sleep 0.5; [ -s {IPERF_PIDFILE} ] || {{ echo 'iperf3 server did not start'; exit 1; }}"
    )


def iperf_server_stop() -> str:
    """Stop the server :func:`iperf_server_start` started (and only that one)."""
    return f"[ -s {IPERF_PIDFILE} ] && kill $(cat {IPERF_PIDFILE}); rm -f {IPERF_PIDFILE}; true"


def iperf_client_argv(
    address: str, seconds: int, reverse: bool, port: int = IPERF_PORT
) -> list[str]:
    """The host side: send to (or with ``reverse`` receive from) the guest's server."""
    argv = ["iperf3", "-c", address, "-p", str(port), "-t", str(seconds), "-J"]
    return [*argv, "-R"] if reverse else argv


def net_method(seconds: int, reverse: bool) -> str:
    """The network workload as a reader sees it."""
    return f"iperf3 -c GUEST -t {seconds}{' -R' if reverse else ''} (TCP, one stream)"


# -- parsers ----------------------------------------------------------------------------


def tagged(output: str, tag: str) -> list[str]:
    """The values of the ``@tag value`` lines; an ``@error`` line raises ParseError."""
    values = []
    for line in output.splitlines():
        if line.startswith("@error"):
            raise ParseError(line[len("@error") :].strip() or "the workload failed")
        if line.startswith(f"@{tag} "):
            values.append(line[len(tag) + 2 :].strip())
    return values


def parse_ns(values: list[str]) -> list[float]:
    """Durations printed in nanoseconds, as seconds."""
    try:
        return [int(v) / 1e9 for v in values]
    except ValueError as exc:
        raise ParseError(f"not a duration in nanoseconds: {exc}") from exc


_DD_RE = re.compile(
    r"^(?P<bytes>\d+) bytes\b.*\bcopied, "
    r"(?P<secs>[0-9]+(?:[.,][0-9]+)?(?:e-?[0-9]+)?) s(?:econds)?\b"
)


def parse_dd(line: str) -> tuple[int, float]:
    """Bytes and seconds from dd's summary line (GNU coreutils or busybox)."""
    m = _DD_RE.match(line.strip())
    if not m:
        raise ParseError(f"not a dd summary line: {line!r}")
    secs = float(m["secs"].replace(",", "."))
    if secs <= 0:
        raise ParseError(f"dd reports no elapsed time: {line!r}")
    return int(m["bytes"]), secs


def dd_rate(line: str) -> float:
    """Throughput in MB/s (10^6 bytes per second) from dd's summary line."""
    size, secs = parse_dd(line)
    return size / secs / 1e6


def parse_iperf3(text: str) -> float:
    """Throughput in Mbit/s from ``iperf3 -J``: bytes received over the test's duration.

    The receiver's own duration is sometimes reported far too short (a rate of hundreds of
    Gbit/s); the longer of the sender's and the receiver's durations is the honest one.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ParseError(f"iperf3 did not print JSON: {text[:200]!r}") from exc
    if data.get("error"):
        raise ParseError(f"iperf3: {data['error']}")
    end = data.get("end") or {}
    received, sent = end.get("sum_received"), end.get("sum_sent")
    if not received or not sent:
        raise ParseError("iperf3 printed no TCP summary (sum_received/sum_sent)")
    seconds = max(float(sent.get("seconds") or 0), float(received.get("seconds") or 0))
    if seconds <= 0 or not received.get("bytes"):
        raise ParseError("iperf3 reports no data or no duration")
    return float(received["bytes"]) * 8 / seconds / 1e6
