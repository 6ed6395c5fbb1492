"""The workloads' output parsers (dd, iperf3, timings, /proc) and the scripts themselves."""

from __future__ import annotations

import json
import subprocess

import pytest

from labctl import backends
from labctl.backends.host_side import parse_vmrss
from labctl.command import CommandResult
from labctl.compare import measure, workloads
from labctl.compare.model import Subject
from labctl.compare.workloads import ParseError, Profile, Runs
from labctl.errors import LabctlError
from labctl.instance import netguard
from labctl.instance.state import GuestRecord, LabState
from tests.unit.fake_connection import FakeConnection

GNU = "268435456 bytes (268 MB, 256 MiB) copied, 0.479988 s, 559 MB/s"
BUSYBOX = "67108864 bytes (64.0MB) copied, 0.500000 seconds, 128.0MB/s"


def test_dd_gnu_summary() -> None:
    assert workloads.parse_dd(GNU) == (268435456, 0.479988)
    assert workloads.dd_rate(GNU) == pytest.approx(268435456 / 0.479988 / 1e6)


def test_dd_busybox_summary() -> None:
    assert workloads.parse_dd(BUSYBOX) == (67108864, 0.5)


def test_dd_decimal_comma_and_exponent() -> None:
    assert workloads.parse_dd("1048576 bytes (1,0 MB, 1,0 MiB) copied, 0,25 s, 4,2 MB/s")[1] == 0.25
    assert workloads.parse_dd("1048576 bytes (1.0 MB) copied, 5e-05 s, 21 GB/s")[1] == 5e-05


@pytest.mark.parametrize(
    "line",
    [
        "dd: failed to open '/x': Permission denied",
        "",
        "64+0 records out",
        GNU.replace("0.479988", "0"),
    ],
)
def test_dd_rejects_what_is_not_a_summary(line: str) -> None:
    with pytest.raises(ParseError):
        workloads.parse_dd(line)


def _iperf(received: tuple[int, float], sent: tuple[int, float]) -> str:
    return json.dumps(
        {
            "end": {
                "sum_received": {"bytes": received[0], "seconds": received[1]},
                "sum_sent": {"bytes": sent[0], "seconds": sent[1]},
            }
        }
    )


def test_iperf3_rate_is_received_bytes_over_the_test_duration() -> None:
    text = _iperf((551471536, 3.007602), (554958848, 3.000094))
    assert workloads.parse_iperf3(text) == pytest.approx(551471536 * 8 / 3.007602 / 1e6)


def test_iperf3_receiver_duration_too_short_does_not_inflate_the_rate() -> None:
    # seen on this host: the receiver reported 0.02 s for a 3 s test (hundreds of Gbit/s)
    text = _iperf((550_000_000, 0.02), (554_958_848, 3.0))
    assert workloads.parse_iperf3(text) == pytest.approx(550_000_000 * 8 / 3.0 / 1e6)


def test_iperf3_error_and_garbage() -> None:
    with pytest.raises(ParseError, match="unable to connect"):
        workloads.parse_iperf3(json.dumps({"start": {}, "end": {}, "error": "unable to connect"}))
    with pytest.raises(ParseError, match="no TCP summary"):
        workloads.parse_iperf3(json.dumps({"end": {}}))
    with pytest.raises(ParseError, match="JSON"):
        workloads.parse_iperf3("iperf3: error")


def test_tagged_lines_and_error_lines() -> None:
    out = "noise\n@cpu 100\n@cpu 200\n@write x\n"
    assert workloads.tagged(out, "cpu") == ["100", "200"]
    assert workloads.tagged(out, "read") == []
    with pytest.raises(ParseError, match="write: No space left"):
        workloads.tagged("@write a\n@error write: No space left on device\n", "write")


def test_durations_in_nanoseconds() -> None:
    assert workloads.parse_ns(["1500000000", "250000000"]) == [1.5, 0.25]
    with pytest.raises(ParseError):
        workloads.parse_ns(["12N"])


def test_vmrss_from_proc_status() -> None:
    status = "Name:\tqemu-system-x86\nVmPeak:\t  900 kB\nVmRSS:\t  413612 kB\nThreads: 5\n"
    assert parse_vmrss(status) == 413612 * 1024


def test_cpu_script_prints_one_duration_per_run_in_a_posix_shell() -> None:
    profile = Profile("t", 1, Runs(2), 1, Runs(1, 0), 1, Runs(1, 0), 1, Runs(1, 0))
    out = subprocess.run(
        ["sh", "-c", workloads.cpu_script(profile)], capture_output=True, text=True, check=True
    ).stdout
    secs = workloads.parse_ns(workloads.tagged(out, "cpu"))
    assert len(secs) == 3 and all(0 < s < 5 for s in secs)


def test_disk_script_quotes_the_directory_and_cleans_up() -> None:
    script = workloads.disk_script(workloads.QUICK, "/tmp/it's here")
    assert "f='/tmp/it'\"'\"'s here/.labctl-compare.bin'" in script
    assert "trap 'rm -f \"$f\"' EXIT" in script
    assert "oflag=direct conv=notrunc,fsync" in script and "iflag=direct" in script


def test_runs_keep_the_warmup_apart_and_refuse_a_wrong_count() -> None:
    runs = Runs(3, warmup=2)
    assert runs.total == 5
    samples = runs.split([9.0, 8.0, 1.0, 2.0, 3.0], "vm cpu")
    assert (samples.values, samples.discarded) == ((1.0, 2.0, 3.0), (9.0, 8.0))
    with pytest.raises(ParseError, match="vm cpu: expected 5 runs, got 4"):
        runs.split([9.0, 8.0, 1.0, 2.0], "vm cpu")
    with pytest.raises(ParseError, match="non-positive"):
        runs.split([9.0, 8.0, 1.0, 0.0, 3.0], "vm cpu")


def test_profiles_keep_at_least_three_counted_runs_after_a_warmup() -> None:
    for p in (workloads.QUICK, workloads.FULL):
        runs = (p.cpu, p.disk, p.net, p.boot)
        assert min(*(r.counted for r in runs), p.memory_samples) >= 3
        assert min(r.warmup for r in runs) >= 1


class Bridges:
    """A backend that names the instance's bridge."""

    def bridges(self, state: LabState) -> list[str]:
        return ["lcbr1"]


@pytest.mark.parametrize(("dev", "up", "sent"), [("lcbr1", True, True), ("eth0", True, False)])
def test_iperf3_only_to_a_guest_behind_the_labs_bridge(
    monkeypatch: pytest.MonkeyPatch, dev: str, up: bool, sent: bool
) -> None:
    def ip(argv: list[str], **_kw: object) -> subprocess.CompletedProcess[bytes]:
        if argv[2:4] == ["route", "get"]:
            out = [{"dst": argv[4], "dev": dev}]
        else:
            out = [{"ifname": argv[5], "flags": ["UP"] if up else []}]
        return subprocess.CompletedProcess(argv, 0, json.dumps(out).encode(), b"")

    monkeypatch.setattr(netguard, "run", ip)
    monkeypatch.setattr(backends, "get", lambda _engine: Bridges())
    monkeypatch.setattr(measure.shutil, "which", lambda _name: "/usr/bin/iperf3")
    guest = FakeConnection({"iperf3": (1, "", "iperf3: not found")}, name="kvm-full")
    rec = GuestRecord("kvm-full", "libvirt", "r", stage="ready", address="10.210.2.11")
    subject = Subject("kvm-full", "full-virtualization", "libvirt", "x86_64", "tcg", "-")
    state = LabState("lab", "main", "x", subnet="10.210.2.0/24", bridge="lcbr1")
    # Past the guard, the fake guest's iperf3 server fails to start: nothing else is sent.
    host = FakeConnection(name="host")
    with pytest.raises(LabctlError) as err:
        measure.network(guest, host, rec, subject, state, workloads.QUICK)
    assert host.commands == []  # no iperf3 client ran
    if sent:
        assert "iperf3 server did not start" in err.value.message
    else:
        assert isinstance(err.value, netguard.NotOurNetwork) and guest.commands == []


IPERF_DONE = json.dumps(
    {"end": {"sum_sent": {"seconds": 2.0}, "sum_received": {"seconds": 2.0, "bytes": 250e6}}}
)


def test_the_iperf3_client_runs_on_the_hosts_connection_and_retries_a_busy_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(measure.time, "sleep", lambda _s: None)
    answers = iter([json.dumps({"error": "the server is busy running a test"}), IPERF_DONE])
    host = FakeConnection(respond=lambda line: CommandResult(line, 0, next(answers), ""))
    assert measure._iperf_once(host, "10.210.2.11", 2, reverse=True) == 1000.0
    assert len(host.commands) == 2 and host.commands[0].startswith("iperf3 ")
    assert "10.210.2.11" in host.commands[0] and " -R" in f"{host.commands[0]} "
    assert host.timeouts == [32, 32]  # the test's seconds and 30 more


def test_an_iperf3_client_that_runs_out_of_time_fails_the_figure() -> None:
    host = FakeConnection({"iperf3": (124, "", "timed out after 32 s")})
    with pytest.raises(LabctlError, match="iperf3 to 10.210.2.11 did not finish in 32 s"):
        measure._iperf_once(host, "10.210.2.11", 2, reverse=False)
