"""``labctl host setup`` / ``teardown``: checks first, then the playbooks under ``playbooks/``.

The work itself lives in Ansible (``host-setup.yml``, ``host-teardown.yml``) so the same
playbooks can provision a Vagrant box; this module only refuses early and clearly, and
runs them through :func:`labctl.host.ansible.run_playbook`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labctl.errors import HostError
from labctl.host import probe
from labctl.host.ansible import PlaybookResult, TaskCallback, run_playbook
from labctl.paths import PLAYBOOKS_DIR

SETUP_PLAYBOOK = PLAYBOOKS_DIR / "host-setup.yml"
TEARDOWN_PLAYBOOK = PLAYBOOKS_DIR / "host-teardown.yml"
LOG_DIR = Path("/var/log/labctl")


def preflight(distro: probe.Distro | None = None, root: bool | None = None) -> probe.Distro:
    """Refuse unless running as root on a supported distribution; return the distribution."""
    distro = distro or probe.os_release()
    if not (probe.is_root() if root is None else root):
        raise HostError(
            "host setup needs root: it installs packages and starts system daemons",
            "run it again with sudo",
        )
    if not distro.supported:
        supported = ", ".join(f"{d} {v}" for d, v in probe.SUPPORTED_DISTROS)
        raise HostError(
            f"{distro.pretty} is not supported by labctl host setup",
            f"supported: {supported}; elsewhere install QEMU, libvirt, Docker and LXD by hand "
            "and check with labctl doctor",
        )
    return distro


def _run(
    playbook: Path, extravars: Mapping[str, Any] | None, on_task: TaskCallback | None
) -> PlaybookResult:
    return run_playbook(
        playbook,
        extravars,
        on_task=on_task,
        log_path=LOG_DIR / f"ansible-{playbook.stem}.log",
    )


def setup(
    extravars: Mapping[str, Any] | None = None, on_task: TaskCallback | None = None
) -> PlaybookResult:
    """Install packages, configure libvirt and /dev/kvm, start and initialise the engines."""
    preflight()
    return _run(SETUP_PLAYBOOK, extravars, on_task)


def teardown(
    extravars: Mapping[str, Any] | None = None, on_task: TaskCallback | None = None
) -> PlaybookResult:
    """Stop the engines setup started (by PID) and remove the bridges and rules they leave."""
    preflight()
    return _run(TEARDOWN_PLAYBOOK, extravars, on_task)
