"""``labctl host setup`` and ``labctl host teardown``: prepare or release this machine."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from functools import partial

import typer
from rich.markup import escape
from rich.status import Status

from labctl import console
from labctl.cli import tables
from labctl.cli.app import app
from labctl.host import setup as host_setup
from labctl.host.ansible import PlaybookResult, TaskEvent

host_app = typer.Typer(help="Prepare this machine for the lab (packages, engines) or release it.")
app.add_typer(host_app, name="host")

YesOpt = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
TestToolsOpt = typer.Option(
    False,
    "--test-tools",
    help="Also install what the test suite needs besides the engines (vagrant, "
    "vagrant-libvirt): for test and CI hosts, used by ./bootstrap test.",
)


class SystemContainers(str, Enum):
    """The engines that can run the system containers (``labctl.paths.SYSTEM_CONTAINERS``)."""

    lxd = "lxd"
    incus = "incus"


SystemContainersOpt = typer.Option(
    None,
    "--system-containers",
    help="The system-container engine: lxd or incus (Debian 12: from bookworm-backports). "
    "Default: the one an earlier setup chose, else LXD (Ubuntu 24.04: Incus).",
)

_LABEL = {
    "ok": "[green]ok     [/green]",
    "changed": "[yellow]changed[/yellow]",
    "skipped": "[dim]skipped[/dim]",
    "ignored": "[magenta]ignored[/magenta]",
    "failed": "[bold red]failed [/bold red]",
}


class _TaskView:
    """Shows the running task on a spinner and one line per finished task."""

    def __init__(self, status: Status) -> None:
        self.status = status

    def __call__(self, event: TaskEvent) -> None:
        name = escape(event.task)
        if event.status == "start":
            self.status.update(f"[bold]{name}[/bold]")
            return
        if event.status == "skipped" and not console.VERBOSE:
            return
        line = f"{_LABEL.get(event.status, event.status)}  {name}"
        if event.status in ("failed", "ignored") and event.message:
            line += f": {escape(event.message)}"
        console.err.print(line, soft_wrap=True)


def _confirm(question: str, yes: bool) -> None:
    if not yes:
        tables.confirm(question)


def _run(action: Callable[..., PlaybookResult], title: str) -> PlaybookResult:
    with console.err.status(title, spinner="dots") as status:
        return action(on_task=_TaskView(status))


def _report(result: PlaybookResult, done: str) -> None:
    """One line: what the playbook changed on the host (``done``: "set up", "torn down")."""
    if result.nothing_changed:
        console.out.print(f"host already {done}: nothing changed ({result.seconds:.1f} s)")
    else:
        console.out.print(
            f"host {done} in {result.seconds:.1f} s: {result.changed} change"
            f"{'s' if result.changed != 1 else ''} ({', '.join(result.changed_tasks)})",
            soft_wrap=True,
        )


@host_app.command("setup")
def setup(
    yes: bool = YesOpt,
    test_tools: bool = TestToolsOpt,
    system_containers: SystemContainers | None = SystemContainersOpt,
) -> None:
    """Install QEMU, libvirt, Docker, Podman and LXD (or Incus), configure and start them.

    Idempotent: a second run changes nothing.
    """
    distro = host_setup.preflight()
    chosen = system_containers.value if system_containers else None
    sc = {"lxd": "LXD", "incus": "Incus"}.get(chosen or "", "LXD (or Incus)")
    _confirm(
        f"Install packages and start containerd, dockerd, Podman's API, virtlogd, libvirtd and "
        f"{sc} on this {distro.pretty} host?",
        yes,
    )
    extravars: dict[str, object] = {"labctl_test_tools": True} if test_tools else {}
    if chosen:
        extravars["labctl_system_containers"] = chosen
    result = _run(partial(host_setup.setup, extravars or None), "Setting up the host")
    _report(result, "set up")
    console.err.print("Check the result with: labctl doctor")


@host_app.command("teardown")
def teardown(yes: bool = YesOpt) -> None:
    """Stop the engines host setup started (by PID) and remove the bridges and rules they leave."""
    host_setup.preflight()
    _confirm(
        "Stop the engines labctl started (running guests and containers stop with them) and "
        "remove docker0, lxdbr0, virbr0 and the engines' firewall rules?",
        yes,
    )
    result = _run(host_setup.teardown, "Tearing down the host")
    _report(result, "torn down")
