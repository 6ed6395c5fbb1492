"""The comparison in the terminal: the host, the subjects, the figures and the claims.

Borderless tables that read in 80 columns: each subject's accelerator and devices are said
once, in the subjects table, so a metric's table needs only the subject's name beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from labctl import console
from labctl.compare.model import METRICS, NOT_MEASURABLE, SHOWN, Figure, Report

VERDICT_STYLE = {SHOWN: "bold green", NOT_MEASURABLE: "yellow", "not shown": "bold red"}


def num(value: float) -> str:
    """A figure with three significant digits, no exponent for everyday sizes."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def kvm_warning(report: Report) -> str | None:
    """One sentence when guests meant for KVM ran under TCG."""
    names = [s.name for s in report.tcg_instead_of_kvm]
    if not names:
        return None
    return (
        f"KVM was not available on this host ({report.host.kvm_reason}): "
        f"{', '.join(names)} ran under TCG (pure emulation), not hardware-assisted "
        "virtualization. Their figures are emulation figures."
    )


def header(report: Report) -> RenderableType:
    """Lab, mode, host and the KVM note."""
    h = report.host
    lines = [
        f"[bold]labctl compare[/bold]: lab {escape(report.lab)} (instance "
        f"{escape(report.instance)}), {report.mode} run of {report.seconds:.0f} s, "
        f"started {report.started}",
        f"host: {escape(h.cpu_model)}, {h.cores} cores, kernel {escape(h.kernel)}, "
        f"KVM usable: {'yes' if h.kvm_usable else 'no'}",
    ]
    warning = kvm_warning(report)
    if warning:
        lines.append(f"[bold yellow]Note:[/bold yellow] {escape(warning)}")
    return Text.from_markup("\n".join(lines))


def subjects_table(report: Report) -> RenderableType:
    """Each subject once: its technique, its accelerator and its devices."""
    table = console.table("subject", "technique", "accel", "devices")
    table.columns[0].no_wrap = True
    for s in report.subjects:
        table.add_row(escape(s.name), escape(s.technique), _accel(s.accel), escape(s.devices))
    return Group(_title("Subjects"), table)


def _accel(accel: str) -> str:
    return "[yellow]tcg[/yellow]" if accel == "tcg" else escape(accel)


def _differs(report: Report, f: Figure) -> str:
    """`` (tcg, IDE …)`` when a figure ran otherwise than its subject row says (or has no
    subject row), else ``""``."""
    s = report.subject(f.subject)
    if s is not None and (s.accel, s.devices) == (f.accel, f.devices):
        return ""
    return f" ({_accel(f.accel)}, {escape(f.devices)})"


def _grouped(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(names, text)`` with the names that share a text joined, in first-seen order."""
    names: dict[str, list[str]] = {}
    for name, text in pairs:
        names.setdefault(text, []).append(name)
    return [(", ".join(n), text) for text, n in names.items()]


def figures_tables(report: Report) -> list[RenderableType]:
    """One small table per metric (median, min-max, counted runs), its notes below it."""
    out: list[RenderableType] = []
    for key, metric in METRICS.items():
        rows = [f for f in report.figures if f.metric == key]
        if not rows:
            continue
        table = console.table("subject", "median", "min-max", "n")
        table.columns[0].no_wrap = True
        for f in rows:
            s = f.samples
            span = "-" if s.n == 1 else f"{num(s.min)}-{num(s.max)}"
            who = escape(f.subject) + _differs(report, f)
            table.add_row(who, num(s.median), span, str(s.n))
        notes = _grouped([(f.subject, f.note) for f in rows if f.note])
        said = [(f"[dim]{escape(who)}:[/dim]", f"[dim]{escape(note)}[/dim]") for who, note in notes]
        title = _title(f"{metric.title} ({metric.unit}, {metric.better} is better)")
        out.append(Group(title, table, *([_hanging(said, indent=2)] if said else [])))
    return out


def _hanging(rows: Sequence[tuple[str, ...]], indent: int = 0) -> RenderableType:
    """Rows of markup whose last cell wraps under itself, so a long note never runs back to
    the left margin; the other cells stay on one line."""
    grid = Table.grid(padding=(0, 1, 0, 0))
    for i in range(len(rows[0])):
        grid.add_column(no_wrap=i < len(rows[0]) - 1)
    for row in rows:
        grid.add_row(*row)
    return Padding(grid, (0, 0, 0, indent)) if indent else grid


def _title(text: str) -> Text:
    """A section's title, on a line of its own after a blank one (a table's own title would
    wrap within the table's width)."""
    return Text("\n" + text, style="bold")


def claims_table(report: Report) -> RenderableType:
    """The lesson's claims with ratio and verdict; evidence, threshold and reason below."""
    table = console.table("#", "claim", "ratio (worst case)", "verdict")
    notes = []
    width = len(f"{len(report.claims)}.")
    for i, c in enumerate(report.claims, 1):
        ratio = "-" if c.ratio is None else f"{c.ratio:.2f}× ({c.conservative:.2f}×)"
        table.add_row(str(i), escape(c.text), ratio, f"[{VERDICT_STYLE[c.verdict]}]{c.verdict}[/]")
        evidence = f"[dim]{escape(c.evidence)}; threshold: {escape(c.threshold)}[/dim]"
        notes.append((f"{i}.".rjust(width), f"{evidence}\n{escape(c.reason)}"))
    return Group(_title("Claims"), table, *([_hanging(notes)] if notes else []))


def gaps_text(report: Report) -> RenderableType | None:
    """What was not measured, and why: the subjects that share a reason on one line."""
    if not report.gaps:
        return None
    lines = []
    for failed in (True, False):
        for metric in dict.fromkeys(g.metric for g in report.gaps):
            gaps = [g for g in report.gaps if g.failed is failed and g.metric == metric]
            reasons = [(g.subject, g.reason.removeprefix(f"{g.subject}: ")) for g in gaps]
            word = "[red]failed[/red]" if failed else "skipped"
            lines += [
                (word, escape(metric), f"{escape(who)}: {escape(why)}")
                for who, why in _grouped(reasons)
            ]
    return Group(Text(), _hanging(lines))


def render(report: Report) -> RenderableType:
    """Everything, in reading order."""
    parts: list[RenderableType] = [
        header(report),
        *([subjects_table(report)] if report.subjects else []),
        *figures_tables(report),
        claims_table(report),
    ]
    gaps = gaps_text(report)
    if gaps is not None:
        parts.append(gaps)
    return Group(*parts)
