"""``labctl compare``: measure the lab's techniques side by side, with the host as reference."""

from __future__ import annotations

from pathlib import Path

import typer

from labctl import console
from labctl.cli import tables
from labctl.cli.app import app
from labctl.cli.options import InstanceOpt, LabNameOpt
from labctl.instance.naming import check_instance


@app.command()
def compare(
    quick: bool = typer.Option(
        False, "--quick", help="Smaller workloads, 3 runs each after a warm-up (the shortest run)."
    ),
    json_out: bool = tables.json_option("Print the report as JSON."),
    html: Path | None = typer.Option(
        None,
        "--html",
        metavar="PATH",
        help="Write the self-contained HTML report with charts to PATH "
        "(default: beside the saved results, same name, .html).",
    ),
    restart_guests: bool = typer.Option(
        False,
        "--restart-guests",
        help="Also cold-boot each VM to time a fresh start (powers the VMs off and on; "
        "what runs inside them is lost).",
    ),
    lab: str = LabNameOpt,
    instance: str = InstanceOpt,
) -> None:
    """Measure start time, CPU, disk, network, memory and disk use of every guest and the host,
    and check the lesson's claims against the numbers."""
    from labctl.compare import report_html, report_term, runner
    from labctl.compare.workloads import FULL, QUICK
    from labctl.private import write_private

    def progress(stage: str, detail: str) -> None:
        if not json_out:
            console.err.print(f"[bold]▸ {stage}[/bold] {detail}".rstrip())

    from labctl.cli.lab import lab_name

    report, path = runner.run(
        lab_name(lab),
        check_instance(instance),
        QUICK if quick else FULL,
        restart_guests=restart_guests,
        report=progress,
    )
    if html is None:  # beside the saved results: root's, as everything in the lab's state
        html = path.with_suffix(".html")
        write_private(html, report_html.render(report))
    else:  # where the user asked for it: theirs to share
        html.write_text(report_html.render(report))
    if json_out:
        console.write_json(report.to_json())
    else:
        console.out.print(report_term.render(report))
        # One path a line, never broken by rich: a student copies it into a browser.
        console.err.print(f"Saved: {path}", soft_wrap=True)
        console.err.print(f"HTML report: {html}", soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)
