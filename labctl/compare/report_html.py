"""The comparison as one self-contained HTML file: inline CSS and SVG, nothing fetched.

One horizontal bar chart per metric: the bar is the median, the whisker spans min-max, the
host is the grey reference bar. Guests meant for KVM that ran under TCG are hatched and the
page says so at the top.
"""

from __future__ import annotations

import math
from html import escape

from labctl.compare.model import METRICS, NOT_MEASURABLE, SHOWN, Figure, Report, Subject
from labctl.compare.report_term import kvm_warning, num

COLORS = {
    "emulation": "#c0392b",
    "full-virtualization": "#e67e22",
    "paravirtualization": "#27ae60",
    "system-container": "#2980b9",
    "app-container": "#8e44ad",
    "host": "#7f8c8d",
}
VERDICT_CLASS = {SHOWN: "shown", NOT_MEASURABLE: "na", "not shown": "notshown"}

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
 margin:24px auto;max-width:1100px;padding:0 16px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 2px}
.meta{color:#555;margin:0 0 12px}
.warn{background:#fff4d6;border:2px solid #e0a800;border-radius:6px;padding:10px 14px;
 margin:12px 0;font-weight:600}
table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{border-bottom:1px solid #ddd;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f8;font-weight:600}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-weight:600;
 white-space:nowrap;font-size:13px}
.shown{background:#d4f4dd;color:#14632c}.notshown{background:#fbd9d6;color:#8a1c12}
.na{background:#eceff1;color:#555}
.sub{color:#555;margin:0 0 6px;font-size:13px}
.chart{margin:4px 0 8px}
.small{font-size:13px;color:#555}
.quote{font-style:italic;color:#666;font-size:12.5px;margin:0 0 3px}
code{font-size:12.5px;background:#f4f6f8;padding:1px 4px;border-radius:3px}
"""

WIDTH = 1000
LABEL_W = 300
BAR_X = LABEL_W + 10
BAR_W = 520
ROW_H = 40
TOP = 26


def _nice_max(value: float) -> float:
    """A round axis end at or above ``value`` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _ticks(top: float) -> list[float]:
    """Round tick values from 0 to ``top`` (a value :func:`_nice_max` returned)."""
    power = 10 ** math.floor(math.log10(top))
    lead = round(top / power, 1)
    steps = {1.0: 5, 2.0: 4, 2.5: 5, 5.0: 5, 10.0: 5}.get(lead, 4)
    return [top * i / steps for i in range(steps + 1)]


def _hatched(subject: Subject | None) -> bool:
    return bool(
        subject and subject.is_vm and subject.accel != "kvm" and subject.technique != "emulation"
    )


def chart(report: Report, figures: list[Figure]) -> str:
    """An SVG bar chart of one metric: median bars, min-max whiskers, values written out."""
    info = figures[0].info
    top = _nice_max(max(f.samples.max for f in figures) * 1.05)
    height = TOP + ROW_H * len(figures) + 28

    def x(value: float) -> float:
        return BAR_X + BAR_W * value / top

    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(info.title)}">',
        '<defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="3" height="8" fill="#fff" '
        'fill-opacity="0.55"/></pattern></defs>',
    ]
    axis_y = TOP + ROW_H * len(figures)
    for v in _ticks(top):
        gx = x(v)
        parts.append(
            f'<line x1="{gx:.1f}" y1="{TOP - 6}" x2="{gx:.1f}" y2="{axis_y}" stroke="#e3e6e8"/>'
            f'<text x="{gx:.1f}" y="{axis_y + 16}" font-size="12" fill="#666" '
            f'text-anchor="middle">{num(v)}</text>'
        )
    parts.append(
        f'<text x="{BAR_X + BAR_W}" y="{TOP - 10}" font-size="12" fill="#666" '
        f'text-anchor="end">{escape(info.unit)}, {info.better} is better</text>'
    )
    for row, f in enumerate(figures):
        subject = report.subject(f.subject)
        color = COLORS.get(subject.technique if subject else "host", "#555")
        y = TOP + row * ROW_H
        s = f.samples
        detail = f"{f.accel} · {f.devices}"
        parts.append(
            f'<text x="{LABEL_W}" y="{y + 15}" font-size="14" font-weight="600" '
            f'text-anchor="end">{escape(f.subject)}</text>'
            f'<text x="{LABEL_W}" y="{y + 30}" font-size="11.5" fill="#666" '
            f'text-anchor="end">{escape(detail[:48])}</text>'
        )
        bar_w = max(x(s.median) - BAR_X, 1.5)
        parts.append(
            f'<rect x="{BAR_X}" y="{y + 6}" width="{bar_w:.1f}" height="24" fill="{color}" '
            f'rx="2"><title>{escape(f.subject)}: median {num(s.median)} {escape(info.unit)}'
            f"</title></rect>"
        )
        if _hatched(subject):
            parts.append(
                f'<rect x="{BAR_X}" y="{y + 6}" width="{bar_w:.1f}" height="24" '
                'fill="url(#hatch)"/>'
            )
        end = x(s.median)
        if s.n > 1:
            lo, hi, mid = x(s.min), x(s.max), y + 18
            end = hi
            parts.append(
                f'<g stroke="#111" stroke-width="1.6"><line x1="{lo:.1f}" y1="{mid}" '
                f'x2="{hi:.1f}" y2="{mid}"/><line x1="{lo:.1f}" y1="{mid - 7}" x2="{lo:.1f}" '
                f'y2="{mid + 7}"/><line x1="{hi:.1f}" y1="{mid - 7}" x2="{hi:.1f}" '
                f'y2="{mid + 7}"/></g>'
            )
            label = f"{num(s.median)}  ({num(s.min)}–{num(s.max)}, n={s.n})"
        else:
            label = f"{num(s.median)}  (n=1)"
        parts.append(f'<text x="{end + 8:.1f}" y="{y + 23}" font-size="13">{escape(label)}</text>')
    parts.append(
        f'<line x1="{BAR_X}" y1="{TOP - 6}" x2="{BAR_X}" y2="{axis_y}" stroke="#888"/></svg>'
    )
    return "".join(parts)


def _how(figures: list[Figure]) -> str:
    """The method above a chart (when all share it) and the figures' notes below it."""
    methods = {f.method for f in figures}
    how = methods.pop() if len(methods) == 1 else "per guest: see “How each figure was measured”"
    notes: dict[str, list[str]] = {}
    for f in figures:
        if f.note:
            notes.setdefault(f.note, []).append(f.subject)
    lines = "".join(
        f"<br>{escape(', '.join(names))}: {escape(note)}" for note, names in notes.items()
    )
    return f'<p class="sub">{escape(how)}{lines}</p>'


def _legend() -> str:
    items = "".join(
        f'<span style="display:inline-block;margin-right:14px"><span style="display:inline-block;'
        f'width:12px;height:12px;background:{c};margin-right:5px;vertical-align:-1px"></span>'
        f"{escape(t)}</span>"
        for t, c in COLORS.items()
    )
    return (
        f'<p class="small">{items}<br>Bar: median. Whisker: min–max of the counted runs '
        "(warm-up runs discarded). Hatched: a guest meant for KVM that ran under TCG.</p>"
    )


def _claims(report: Report) -> str:
    rows = []
    previous = None
    for c in report.claims:
        ratio = "–"
        if c.ratio is not None:
            ratio = f"{c.ratio:.2f}×<br><span class=small>worst {c.conservative:.2f}×</span>"
        # The lesson's sentence once per group of claims that come from it.
        quote = "" if c.lesson == previous else f"<div class=quote>«{escape(c.lesson)}»</div>"
        previous = c.lesson
        rows.append(
            f"<tr><td>{quote}<b>{escape(c.text)}</b><br><span class=small>{escape(c.evidence)}"
            f"; threshold: {escape(c.threshold)}</span></td><td>{ratio}</td>"
            f"<td><span class='badge {VERDICT_CLASS[c.verdict]}'>{escape(c.verdict)}</span></td>"
            f"<td class=small>{escape(c.reason)}</td></tr>"
        )
    return (
        "<table><tr><th style='width:42%'>claim</th><th>ratio</th><th>verdict</th>"
        f"<th style='width:34%'>why</th></tr>{''.join(rows)}</table>"
    )


def _summary(report: Report) -> str:
    counts = {v: sum(c.verdict == v for c in report.claims) for v in VERDICT_CLASS}
    badges = " ".join(
        f"<span class='badge {cls}'>{n} {escape(v)}</span>"
        for v, cls in VERDICT_CLASS.items()
        if (n := counts[v])
    )
    return f'<p class="meta">Claims of the lesson: {badges} (table below the charts)</p>'


def _methods(report: Report) -> str:
    rows = "".join(
        f"<tr><td>{escape(f.info.title)}</td><td>{escape(f.subject)}</td>"
        f"<td><code>{escape(f.method)}</code>"
        + (f"<br><span class=small>{escape(f.note)}</span>" if f.note else "")
        + "</td></tr>"
        for f in report.figures
    )
    return f"<table><tr><th>metric</th><th>subject</th><th>how</th></tr>{rows}</table>"


def _gaps(report: Report) -> str:
    if not report.gaps:
        return ""
    items = "".join(
        f"<li><b>{'failed' if g.failed else 'not measured'}</b> {escape(g.metric)} / "
        f"{escape(g.subject)}: {escape(g.reason)}</li>"
        for g in report.gaps
    )
    return f"<h2>Not measured</h2><ul>{items}</ul>"


def render(report: Report) -> str:
    """The whole report as one HTML document."""
    h = report.host
    warning = kvm_warning(report)
    sections = []
    order = {s.name: i for i, s in enumerate(report.subjects)}
    for key, metric in METRICS.items():
        figs = sorted(
            (f for f in report.figures if f.metric == key), key=lambda f: order.get(f.subject, 99)
        )
        if figs:
            sections.append(f"<h2>{escape(metric.title)}</h2>{_how(figs)}{chart(report, figs)}")
    subjects = "".join(
        f"<tr><td>{escape(s.name)}</td><td>{escape(s.technique)}</td><td>{escape(s.engine)}</td>"
        f"<td>{escape(s.arch)}</td><td>{escape(s.accel)}</td><td>{escape(s.devices)}</td></tr>"
        for s in report.subjects
    )
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            f"<title>labctl compare: {escape(report.lab)} ({escape(report.instance)})</title>",
            f"<style>{CSS}</style></head><body>",
            f"<h1>Kinds of virtualization, measured: lab {escape(report.lab)}</h1>",
            f'<p class="meta">instance {escape(report.instance)} · {escape(report.mode)} run '
            f"of {report.seconds:.0f} s · started {escape(report.started)}<br>host CPU: "
            f"{escape(h.cpu_model)} · {h.cores} cores · kernel {escape(h.kernel)} · KVM usable: "
            f"{'yes' if h.kvm_usable else 'no'}</p>",
            f'<div class="warn">⚠ {escape(warning)}</div>' if warning else "",
            _summary(report),
            _legend(),
            *sections,
            "<h2>Claims of the lesson</h2>",
            _claims(report),
            "<h2>Guests</h2><table><tr><th>subject</th><th>technique</th><th>engine</th>"
            f"<th>arch</th><th>accelerator</th><th>devices</th></tr>{subjects}</table>",
            _gaps(report),
            "<h2>How each figure was measured</h2>",
            _methods(report),
            "</body></html>\n",
        ]
    )
