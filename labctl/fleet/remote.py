"""How the controller reaches a class's lab hosts: Ansible's fan-out, and where labctl is there."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from labctl.fleet.inventory import Inventory
from labctl.host.ansible import FanOut, fan_out

#: labctl as ``fleet-install.yml`` installs it on a lab host: its own venv's script, never the
#: ``/usr/local/bin/labctl`` link, which goes with a class's last student account on that host
REMOTE_LABCTL = "/opt/labctl/venv/bin/labctl"
#: labctl's state on a lab host (its default ``LABCTL_STATE``)
REMOTE_STATE = "/var/lib/labctl"


class Runner(Protocol):
    """``labctl.host.ansible.fan_out`` over the class's inventory (a fake in unit tests)."""

    def __call__(
        self,
        hosts: list[str],
        *,
        playbook: Path | None = None,
        module: str | None = None,
        args: str = "",
        extravars: dict[str, Any] | None = None,
        timeout: int | None = None,
    ) -> FanOut: ...


def ansible_runner_for(inventory: Inventory, forks: int, log: Path | None) -> Runner:
    """The real :data:`Runner`: ansible-runner on ``inventory``."""
    return partial(fan_out, inventory.path, forks=forks, log_path=log)


#: the Ansible output of every fan-out of a class, in its folder (gone with the class)
ANSIBLE_LOG = "ansible.log"


class Refused(ValueError):
    """A host's labctl failed and said why (its ``--json`` error)."""


def answered(text: str, command: str) -> Any:
    """The JSON a host's ``labctl ... --json`` printed (``ValueError`` when it is none); a
    labctl error it printed instead is :class:`Refused` with the host's words."""
    doc = json.loads(text)
    error = doc.get("error") if isinstance(doc, dict) and len(doc) == 1 else None
    if isinstance(error, dict) and "message" in error:
        hint = f" (hint: {error['hint']})" if error.get("hint") else ""
        raise Refused(f"{command} failed there: {error['message']}{hint}")
    return doc


def remote_dir(class_name: str) -> str:
    """Where the controller puts a class's roster and lab on a host."""
    return f"{REMOTE_STATE}/fleet/{class_name}"
