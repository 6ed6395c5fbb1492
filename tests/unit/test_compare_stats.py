"""Samples and their statistics; the report's JSON round trip."""

from __future__ import annotations

import json

import pytest

from labctl.compare.claims import evaluate
from labctl.compare.model import NOT_MEASURABLE, Gap, Report, Samples
from tests.unit.compare_data import fig, report


def test_median_min_max_of_odd_and_even_counts() -> None:
    s = Samples((3.0, 1.0, 2.0))
    assert (s.median, s.min, s.max, s.n) == (2.0, 1.0, 3.0, 3)
    assert Samples((1.0, 2.0, 3.0, 10.0)).median == 2.5


def test_spread_is_relative_to_the_median() -> None:
    assert Samples((9.0, 10.0, 11.0)).spread == pytest.approx(0.2)
    assert Samples((5.0,)).spread == 0.0
    assert Samples((0.0, 0.0)).spread == 0.0  # no division by zero


def test_warmup_runs_are_kept_apart_and_never_counted() -> None:
    s = Samples((1.0, 1.0, 1.0), discarded=(50.0,))
    assert s.max == 1.0 and s.n == 3
    assert s.to_dict()["discarded"] == [50.0]


def test_a_figure_needs_a_sample() -> None:
    with pytest.raises(ValueError):
        Samples(())


def test_samples_dict_carries_the_statistics_and_round_trips() -> None:
    s = Samples((1.0, 2.0, 4.0), (9.0,))
    d = s.to_dict()
    assert (d["median"], d["min"], d["max"], d["n"]) == (2.0, 1.0, 4.0, 3)
    assert Samples.from_dict(d) == s


def test_report_round_trips_through_json() -> None:
    r = report(
        [fig("cpu", "host", [0.1, 0.11, 0.12]), fig("memory", "kvm-full", [400.0])],
        gaps=[Gap("network", "kvm-full", "iperf3 failed")],
    )
    text = r.to_json()
    data = json.loads(text)
    assert data["figures"][0]["samples"]["median"] == 0.11
    assert data["figures"][0]["unit"] == "s"
    assert Report.from_json(text) == r


def test_results_saved_by_an_earlier_version_read_their_old_verdict() -> None:
    r = report([fig("cpu", "host", [0.1, 0.11, 0.12])], accel="tcg")
    r = Report(**{**r.__dict__, "claims": evaluate(r)})
    data = json.loads(r.to_json())
    unmeasurable = [c for c in data["claims"] if c["verdict"] == NOT_MEASURABLE]
    assert unmeasurable  # nothing of kvm-full was measured
    for c in unmeasurable:
        c["verdict"] = "not measurable on this host"  # as results files said before
    assert Report.from_dict(data) == r


def test_report_names_the_guests_that_ran_under_tcg_instead_of_kvm() -> None:
    assert [s.name for s in report([], accel="tcg").tcg_instead_of_kvm] == [
        "kvm-full",
        "kvm-virtio",
    ]
    assert report([], accel="kvm").tcg_instead_of_kvm == []  # arm-emulated is meant for TCG


def test_failed_gaps_exclude_skipped_ones() -> None:
    r = report([], gaps=[Gap("boot_fresh", "kvm-full", "not asked", failed=False)])
    assert r.failed == []
