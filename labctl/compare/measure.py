"""Running the workloads: in a guest through its connection (as ``labctl exec``), or on the host.

Every function here returns a :class:`Figure` or raises a :class:`LabctlError` that the
caller records as a gap; nothing is retried silently except iperf3's connection race.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from labctl import backends
from labctl.compare import workloads
from labctl.compare.model import HOST, Figure, Subject
from labctl.compare.workloads import ParseError, Profile
from labctl.connection import TIMED_OUT, Connection, LocalConnection
from labctl.errors import HostError, LabctlError
from labctl.instance import netguard
from labctl.instance.state import GuestRecord, LabState
from labctl.keys import KeyPair

#: the host's workloads finish well within this; one that does not is killed (exit 124)
HOST_TIMEOUT = 900.0


def connections(records: Mapping[str, GuestRecord], key: KeyPair) -> dict[str, Connection]:
    """The host (the reference) and each guest, reached the way ``labctl exec`` reaches it."""
    found: dict[str, Connection] = {HOST: LocalConnection(HOST, timeout=HOST_TIMEOUT)}
    found.update({name: backends.connect(rec, key) for name, rec in records.items()})
    return found


def _run_tagged(
    target: Connection, script: str, tags: tuple[str, ...]
) -> tuple[dict[str, list[str]], float]:
    """Run a workload script; its ``@tag`` values per tag and the host's wall time for it."""
    t0 = time.monotonic()
    result = target.run(script)
    wall = time.monotonic() - t0
    values = {tag: workloads.tagged(result.stdout, tag) for tag in tags}
    if not result.succeeded:
        raise LabctlError(f"{target.name}: the workload failed ({result.detail})")
    return values, wall


def cpu(target: Connection, subject: Subject, profile: Profile) -> Figure:
    """The fixed CPU workload, timed inside the target."""
    values, wall = _run_tagged(target, workloads.cpu_script(profile), ("cpu",))
    secs = workloads.parse_ns(values["cpu"])
    samples = profile.cpu.split(secs, f"{target.name} cpu")
    note = None
    # The guest times itself; its clock must not claim more time than the host saw pass.
    if sum(secs) > wall * 1.05 + 0.2:
        note = f"the guest's clock counted {sum(secs):.1f} s while the host saw {wall:.1f} s"
    return Figure(
        "cpu",
        subject.name,
        samples,
        subject.accel,
        subject.devices,
        f"{workloads.cpu_method(profile)}, timed inside the guest (date +%s%N)",
        note,
    )


def disk(target: Connection, subject: Subject, profile: Profile, directory: str) -> list[Figure]:
    """Sequential write and read with O_DIRECT in ``directory`` of the target."""
    values, _wall = _run_tagged(
        target, workloads.disk_script(profile, directory), ("write", "read")
    )
    figures = []
    for tag in ("write", "read"):
        rates = [workloads.dd_rate(line) for line in values[tag]]
        samples = profile.disk.split(rates, f"{target.name} {tag}")
        figures.append(
            Figure(
                f"disk_{tag}",
                subject.name,
                samples,
                subject.accel,
                subject.devices,
                f"{workloads.disk_method(profile)}, FILE on the subject's own disk",
            )
        )
    return figures


def host_disk_directory(base: Path) -> Path:
    """A fresh directory for the host's disk test, on the disk that holds the lab's state."""
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="compare-disk-", dir=base))


# -- network -----------------------------------------------------------------------------


#: iperf3 errors that mean "the server was not ready for the next test yet"
TRANSIENT_IPERF = ("unable to connect", "busy", "control message", "Connection reset")


def _iperf_once(host: Connection, address: str, seconds: int, reverse: bool) -> float:
    line = shlex.join(workloads.iperf_client_argv(address, seconds, reverse))
    last: ParseError | None = None
    for _attempt in range(6):
        result = host.run(line, timeout=seconds + 30)
        if result.rc == TIMED_OUT:
            raise LabctlError(f"iperf3 to {address} did not finish in {seconds + 30} s")
        try:
            return workloads.parse_iperf3(result.stdout)
        except ParseError as exc:
            # The server takes a moment to listen again after each test, longer under TCG.
            if not any(t in exc.message for t in TRANSIENT_IPERF):
                raise
            last = exc
            time.sleep(1.0)
    assert last is not None
    raise last


def network(
    target: Connection,
    host: Connection,
    record: GuestRecord,
    subject: Subject,
    state: LabState,
    profile: Profile,
) -> list[Figure]:
    """iperf3 throughput host → guest and guest → host, server in the guest.

    The host's iperf3 sends only while the guest's address lies behind the lab's own bridge.
    """
    if shutil.which("iperf3") is None:
        raise HostError("iperf3 is not installed on the host", "apt-get install -y iperf3")
    if not record.address:
        raise LabctlError(f"{record.name} has no address recorded in the lab's state")
    address = record.address
    bridges = backends.get(record.engine).bridges(state)
    netguard.require_lab_bridge(address, bridges, record.name)
    started = target.run(workloads.iperf_server_start())
    if not started.succeeded:
        raise LabctlError(f"{target.name}: iperf3 server did not start ({started.detail})")
    figures = []
    try:
        for reverse, metric in ((False, "net_to_guest"), (True, "net_from_guest")):
            runs = [
                _iperf_once(host, address, profile.net_seconds, reverse)
                for _ in range(profile.net.total)
            ]
            figures.append(
                Figure(
                    metric,
                    subject.name,
                    profile.net.split(runs, f"{target.name} {metric}"),
                    subject.accel,
                    subject.devices,
                    workloads.net_method(profile.net_seconds, reverse),
                )
            )
    finally:
        # A failure to stop the server must not hide why the measurement failed.
        with contextlib.suppress(LabctlError):
            target.run(workloads.iperf_server_stop())
    return figures
