"""``labctl inventory``: the running lab as an Ansible inventory (INI or YAML)."""

from __future__ import annotations

import shlex
import sys
import textwrap
from enum import Enum
from pathlib import Path

import typer
import yaml
from rich.markup import escape

from labctl import console
from labctl.cli.app import app
from labctl.cli.lab import lab_name
from labctl.cli.options import InstanceOpt, LabNameOpt
from labctl.console import plural
from labctl.errors import ExitCode, LabctlError
from labctl.instance.naming import check_instance
from labctl.lab import inventory as lab_inventory
from labctl.lab import status as lab_status
from labctl.lab.inventory import Inventory, Vars


class Format(str, Enum):
    """Ansible's two inventory formats."""

    ini = "ini"
    yaml = "yaml"


def _header(inv: Inventory) -> list[str]:
    """Comment lines: whose inventory this is, and what was left out and why."""
    flag = "" if inv.instance == "main" else f" --instance {inv.instance}"
    lines = [
        f"Ansible inventory of lab {inv.lab}, instance {inv.instance}: the guests running now.",
        f"Written by `labctl inventory{flag}`; write it again after `labctl up` re-creates a",
        "guest (its address may change). Try: ansible -i THIS_FILE all -m ping",
    ]
    comments = [f"# {line}" for line in lines]
    for note in inv.notes:
        comments += textwrap.wrap(
            note, 92, initial_indent="# Note: ", subsequent_indent="#   ", break_long_words=False
        )
    return comments


def _ini_value(value: str | int) -> str:
    """A value for a ``[group:vars]`` line: Ansible reads it back with ``ast.literal_eval``."""
    return str(value) if isinstance(value, int) else repr(value)


def _ini_host_vars(variables: Vars) -> str:
    """``k=v`` pairs for a host line: Ansible splits the line the way a shell would."""
    return " ".join(f"{k}={shlex.quote(str(v))}" for k, v in variables.items())


def render_ini(inv: Inventory) -> str:
    """The inventory in Ansible's INI format; each host's variables on its first line."""
    lines = _header(inv)
    lines += ["", "[all:vars]", *(f"{k}={_ini_value(v)}" for k, v in inv.all_vars.items())]
    placed: set[str] = set()
    for group, hosts in inv.groups.items():
        lines += ["", f"[{group}]"]
        for host in hosts:
            own = "" if host in placed else _ini_host_vars(inv.hosts[host])
            lines.append(f"{host} {own}".rstrip())
            placed.add(host)
        if group in inv.group_vars:
            lines += ["", f"[{group}:vars]"]
            lines += [f"{k}={_ini_value(v)}" for k, v in inv.group_vars[group].items()]
    return "\n".join(lines) + "\n"


def render_yaml(inv: Inventory) -> str:
    """The inventory in Ansible's YAML format: hosts and their variables under ``all``."""
    children: dict[str, dict[str, object]] = {}
    for group, hosts in inv.groups.items():
        children[group] = {"hosts": dict.fromkeys(hosts)}
        if group in inv.group_vars:
            children[group]["vars"] = dict(inv.group_vars[group])
    data = {
        "all": {
            "vars": dict(inv.all_vars),
            "hosts": {h: dict(v) for h, v in inv.hosts.items()},
            "children": children,
        }
    }
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000)
    return "\n".join(_header(inv)) + "\n" + body


RENDER = {Format.ini: render_ini, Format.yaml: render_yaml}


@app.command()
def inventory(
    lab: str = LabNameOpt,
    instance: str = InstanceOpt,
    fmt: Format = typer.Option(Format.ini, "--format", "-f", help="Ansible's INI or YAML."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file instead of printing."
    ),
) -> None:
    """Write the running lab as an Ansible inventory: its SSH guests, grouped by technique.

    Hosts log in as root with the lab's key; groups: ssh, vms, containers, one per
    technique (emulation, paravirtualization...) and one per engine.
    """
    from labctl.host.ansible import has_plugin
    from labctl.spec.model import load_lab

    inst, state = lab_status.load(lab_name(lab), check_instance(instance))
    spec = load_lab(Path(state.spec_path))
    seen = lab_inventory.survey(state)
    docker_api = any(
        r.engine in lab_inventory.DOCKER_API_ENGINES for r in state.guests.values()
    ) and has_plugin("connection", lab_inventory.DOCKER_CONNECTION)
    inv = lab_inventory.build(
        state,
        seen.live,
        inst.key,
        {name: g.technique for name, g in spec.guests.items()},
        docker_api=docker_api,
        refused=seen.refused,
    )
    text = RENDER[fmt](inv)
    for note in inv.notes:
        console.err.print(f"[yellow]Note:[/yellow] {escape(note)}", soft_wrap=True)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise LabctlError(
            f"cannot write the inventory to {output}: {exc.strerror or exc}",
            "give --output a file in a directory that exists and you may write to",
            ExitCode.USAGE,
        ) from exc
    console.err.print(f"Wrote {plural(len(inv.hosts), 'host')} to {output}.")
