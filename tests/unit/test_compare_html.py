"""The HTML report: one self-contained file, one SVG chart per metric, the KVM note."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console

from labctl.compare import claims, report_html, report_term
from labctl.compare.model import Figure, Gap, Report, Samples
from tests.unit.compare_data import TCG_HOST, fig, report

SVG = "{http://www.w3.org/2000/svg}"


def sample(accel: str = "tcg") -> Report:
    figures = [
        fig("cpu", "host", [0.1, 0.11, 0.12], "native"),
        fig("cpu", "arm-emulated", [1.0, 1.1, 1.3], "tcg"),
        fig("cpu", "kvm-full", [0.9, 1.0, 1.2], accel),
        fig("cpu", "kvm-virtio", [0.9, 1.0, 1.1], accel),
        fig("memory", "kvm-full", [600.0, 601.0, 602.0], accel),
        fig("memory", "lxc-system", [14.0, 14.0, 14.5], "native"),
        fig("boot_lab_up", "kvm-full", [34.4], accel),
    ]
    r = report(figures, accel=accel, host=TCG_HOST)
    return Report(**{**r.__dict__, "claims": claims.evaluate(r)})


def svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


def test_one_self_contained_document() -> None:
    html = report_html.render(sample())
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script" not in html and "<link" not in html and "src=" not in html
    # the only URL is the SVG namespace, which is never fetched
    assert set(re.findall(r"https?://[^\"' <]+", html)) == {"http://www.w3.org/2000/svg"}


def test_one_chart_per_metric_with_a_bar_per_figure_and_whiskers_for_spread() -> None:
    r = sample()
    charts = svgs(report_html.render(r))
    assert len(charts) == 3  # cpu, boot_lab_up, memory
    by_label = {c.get("aria-label"): c for c in charts}
    cpu = by_label["CPU: fixed workload"]
    bars = [e for e in cpu.iter(f"{SVG}rect") if e.find(f"{SVG}title") is not None]
    assert len(bars) == 4
    assert len(cpu.findall(f"{SVG}g")) == 4  # a min-max whisker per bar (n=3 each)
    boot = by_label["Start to usable (during labctl up)"]
    assert boot.findall(f"{SVG}g") == []  # a single sample has no whisker
    assert "n=1" in "".join(boot.itertext())


def test_bars_are_as_long_as_their_median() -> None:
    cpu = svgs(report_html.render(sample()))[1]  # metrics in METRICS order: boot, cpu, memory
    widths = {}
    for bar in cpu.iter(f"{SVG}rect"):
        title = bar.findtext(f"{SVG}title")
        if title:
            widths[title.split(":")[0]] = float(bar.get("width", "0"))
    assert widths["kvm-full"] / widths["host"] == pytest.approx(1.0 / 0.11, rel=1e-2)


def test_kvm_missing_is_said_loudly_and_tcg_bars_are_hatched() -> None:
    html = report_html.render(sample("tcg"))
    assert 'class="warn"' in html and "ran under TCG" in html
    assert "url(#hatch)" in html
    assert "not measurable" in html


def test_no_kvm_note_when_the_kvm_guests_used_kvm() -> None:
    html = report_html.render(sample("kvm"))
    assert 'class="warn"' not in html and "url(#hatch)" not in html


def test_claims_table_has_a_row_per_claim_and_text_is_escaped() -> None:
    r = sample()
    html = report_html.render(r)
    table = html[html.index("<h2>Claims of the lesson</h2>") :]
    assert table.count("class='badge") == len(r.claims)
    evil = Report(**{**r.__dict__, "instance": "<b>x</b>"})
    assert "<b>x</b>" not in report_html.render(evil)


def test_terminal_view_shows_figures_claims_and_the_kvm_note() -> None:
    console = Console(record=True, width=110)
    console.print(report_term.render(sample()))
    text = console.export_text()
    assert "CPU: fixed workload" in text and "Claims" in text
    assert "ran under TCG" in text and "not measurable" in text


def test_terminal_view_reads_in_80_columns_devices_once_notes_and_gaps_grouped() -> None:
    cache = "QEMU disk cache=unsafe: the guest's direct I/O ends in the host's page cache"
    figures = [
        fig("disk_write", "host", [500.0, 510.0, 520.0], "native"),
        fig("disk_write", "kvm-full", [1000.0, 1100.0, 1200.0], "tcg", note=cache),
        fig("disk_write", "kvm-virtio", [1100.0, 1150.0, 1160.0], "tcg", note=cache),
        # a figure taken otherwise than its subject row says shows how, beside its name
        Figure("cpu", "kvm-full", Samples((1.0, 1.1, 1.2)), "kvm", "IDE + e1000", "m"),
    ]
    why = "a VM is not copied for a fresh start"
    gaps = [Gap("boot_fresh", n, f"{n}: {why}", failed=False) for n in ("kvm-full", "kvm-virtio")]
    r = report(figures, accel="tcg", host=TCG_HOST, gaps=gaps)
    console = Console(record=True, width=80, highlight=False)
    console.print(report_term.render(Report(**{**r.__dict__, "claims": claims.evaluate(r)})))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in "\n".join(lines)
    text = " ".join(" ".join(lines).split())
    figures_part = text[: text.index(" Claims ")]  # the claims' evidence names devices again
    assert figures_part.count("IDE + e1000") == 2  # the subjects table; the cpu row under kvm
    assert "kvm-full (kvm, IDE + e1000)" in text
    assert text.count("page cache") == 1 and f"kvm-full, kvm-virtio: {cache}" in text
    assert f"skipped boot_fresh kvm-full, kvm-virtio: {why}" in text
    assert "Disk: sequential write, direct I/O (MB/s, higher is better)" in lines
    first = next(i for i, line in enumerate(lines) if line.startswith(" 1. "))
    notes = lines[first : lines.index("", first)]  # the claims' notes, up to the gaps
    assert len(notes) > len(r.claims) * 2  # some wrap; each under its own text, not its number
    assert all(re.match(r"(\d\d| \d)\. |    \S", line) for line in notes), notes
    cache_note = lines.index(next(line for line in lines if "QEMU disk cache" in line))
    assert lines[cache_note + 1].startswith(" " * 24 + "the host's")  # under the note's text


def test_terminal_view_of_a_figure_without_a_subject_row_says_how_it_ran_and_escapes() -> None:
    ghost = Figure("cpu", "ghost[b]x[/b]", Samples((1.0, 1.1, 1.2)), "tcg", "IDE + e1000", "m")
    r = report([ghost])
    r = Report(**{**r.__dict__, "subjects": ()})
    console = Console(record=True, width=80, highlight=False)
    console.print(report_term.render(r))
    text = console.export_text()
    assert "ghost[b]x[/b] (tcg, IDE + e1000)" in text
    assert "Subjects" not in text  # no empty table


@pytest.mark.parametrize(
    ("value", "top", "ticks"),
    [
        (23.0, 25.0, [0, 5, 10, 15, 20, 25]),
        (1.7, 2.0, [0, 0.5, 1, 1.5, 2]),
        (4100.0, 5000.0, [0, 1000, 2000, 3000, 4000, 5000]),
        (0.09, 0.1, [0, 0.02, 0.04, 0.06, 0.08, 0.1]),
    ],
)
def test_axes_end_on_round_numbers_with_round_ticks(
    value: float, top: float, ticks: list[float]
) -> None:
    assert report_html._nice_max(value) == pytest.approx(top)
    assert report_html._ticks(top) == pytest.approx(ticks)
