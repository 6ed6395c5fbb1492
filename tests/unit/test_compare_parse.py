"""The workloads' output parsers (dd, iperf3, timings, /proc) and the scripts themselves."""

from __future__ import annotations

import json
import subprocess

import pytest

from labctl.compare import workloads
from labctl.compare.measure import lab_address_problem
from labctl.compare.probes import parse_vmrss
from labctl.compare.workloads import ParseError, Profile

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
    profile = Profile("t", 1, 2, 1, 1, 1, 0, 1, 1, 0, 1, 1, 0)
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


def test_profiles_keep_at_least_three_counted_runs_after_a_warmup() -> None:
    for p in (workloads.QUICK, workloads.FULL):
        assert min(p.cpu_reps, p.disk_reps, p.net_reps, p.memory_samples, p.boot_reps) >= 3
        assert min(p.cpu_warmup, p.disk_warmup, p.net_warmup, p.boot_warmup) >= 1


@pytest.mark.parametrize(
    ("address", "subnet", "bridge", "dev", "up", "problem"),
    [
        ("10.210.2.11", "10.210.2.0/24", "lcbr1", "lcbr1", True, None),
        ("10.210.3.11", "10.210.2.0/24", "lcbr1", "lcbr1", True, "not in the lab's subnet"),
        ("10.210.2.11", "10.210.2.0/24", "lcbr1", "eth0", True, "via eth0"),
        ("10.210.2.11", "10.210.2.0/24", "lcbr1", "lcbr1", False, "not up"),
        ("10.210.2.11", None, None, "lcbr1", True, "no network of its own"),
        ("8.8.8.8", "10.210.2.0/24", "lcbr1", "eth0", True, "not in the lab's subnet"),
        ("nonsense", "10.210.2.0/24", "lcbr1", None, True, "not an IPv4"),
    ],
)
def test_traffic_only_to_the_labs_own_bridge(
    address: str, subnet: str | None, bridge: str | None, dev: str, up: bool, problem: str | None
) -> None:
    found = lab_address_problem(address, subnet, bridge, dev, up)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
