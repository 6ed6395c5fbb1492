"""The comparison in the terminal: the host, the figures and the claims as rich tables."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from labctl.compare.model import METRICS, NOT_MEASURABLE, SHOWN, Report

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


def figures_tables(report: Report) -> list[Table]:
    """One small table per metric: median, min-max and number of counted runs."""
    tables = []
    for key, metric in METRICS.items():
        rows = [f for f in report.figures if f.metric == key]
        if not rows:
            continue
        table = Table(
            "subject",
            "accel",
            "devices",
            "median",
            "min-max",
            "n",
            title=f"{metric.title} ({metric.unit}, {metric.better} is better)",
            title_justify="left",
            title_style="bold",
        )
        for f in rows:
            s = f.samples
            table.add_row(
                f.subject,
                f.accel if f.accel != "tcg" else "[yellow]tcg[/yellow]",
                escape(f.devices),
                num(s.median),
                "-" if s.n == 1 else f"{num(s.min)}-{num(s.max)}",
                str(s.n),
            )
        tables.append(table)
    return tables


def claims_table(report: Report) -> RenderableType:
    """The lesson's claims with ratio and verdict; evidence, threshold and reason below."""
    table = Table("#", "claim", "ratio (worst case)", "verdict", title="Claims", title_style="bold")
    notes = []
    for i, c in enumerate(report.claims, 1):
        ratio = "-" if c.ratio is None else f"{c.ratio:.2f}× ({c.conservative:.2f}×)"
        table.add_row(str(i), escape(c.text), ratio, f"[{VERDICT_STYLE[c.verdict]}]{c.verdict}[/]")
        notes.append(
            f"{i}. [dim]{escape(c.evidence)}; threshold: {escape(c.threshold)}[/dim]\n"
            f"   {escape(c.reason)}"
        )
    return Group(table, Text.from_markup("\n".join(notes)))


def gaps_text(report: Report) -> RenderableType | None:
    """What was not measured, and why."""
    if not report.gaps:
        return None
    lines = [
        f"{'[red]failed[/red]' if g.failed else 'skipped'} {escape(g.metric)} "
        f"{escape(g.subject)}: {escape(g.reason)}"
        for g in report.gaps
    ]
    return Text.from_markup("\n".join(lines))


def render(report: Report) -> RenderableType:
    """Everything, in reading order."""
    parts: list[RenderableType] = [header(report), *figures_tables(report), claims_table(report)]
    gaps = gaps_text(report)
    if gaps is not None:
        parts.append(gaps)
    return Group(*parts)
