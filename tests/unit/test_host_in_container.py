"""Which hosts host-setup.yml treats as "itself a container", decided by Ansible for real.

``tasks/facts.yml`` runs on this machine with the virtualization facts given as extra vars
(they outrank gathered facts). A system container (LXD, Incus: ``lxc``) is one: no binfmt, no
sysctls, libvirt without cgroups or namespaces, no nested system-container engine. A
privileged application container that runs labctl as its whole host (a CI runner, which
Ansible calls ``docker``) is not: taking it for one gave a fresh CI host no LXD at all.
``labctl_host_in_container`` in the inventory settles it either way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.paths import PLAYBOOKS_DIR

PLAY = """\
- hosts: all
  gather_facts: true
  gather_subset: [min, virtual]
  vars_files: [{vars}]
  tasks:
    - ansible.builtin.include_tasks: {facts}
    - ansible.builtin.copy:
        dest: {out}
        content: "{{{{ {{'in': labctl_in_container | bool, 'engine': labctl_engine}} | to_json }}}}"
"""


def _decide(tmp_path: Path, **extra: str) -> dict[str, object]:
    play = tmp_path / "play.yml"
    play.write_text(
        PLAY.format(
            vars=PLAYBOOKS_DIR / "vars" / "host.yml",
            facts=PLAYBOOKS_DIR / "tasks" / "facts.yml",
            out=tmp_path / "decided.json",
        )
    )
    args = [f"-e{k}={v}" for k, v in extra.items()]
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i", "localhost,", "-c", "local",
            f"-eansible_python_interpreter={sys.executable}",
            f"-elabctl_system_containers_file={tmp_path / 'none-chosen'}",  # a fresh host
            *args, str(play),
        ],
        capture_output=True, text=True, timeout=300, check=False,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1",
             "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return dict(json.loads((tmp_path / "decided.json").read_text()))


@pytest.mark.parametrize(
    ("virt", "extra", "inside"),
    [
        ("docker", {}, False),  # a CI runner or any host that is a privileged container
        ("lxc", {}, True),  # an LXD or Incus system container (a simulated lab host)
        ("docker", {"labctl_host_in_container": "true"}, True),
        ("lxc", {"labctl_host_in_container": "false"}, False),
    ],
)
def test_which_hosts_count_as_containers(
    tmp_path: Path, virt: str, extra: dict[str, str], inside: bool
) -> None:
    got = _decide(
        tmp_path, ansible_virtualization_role="guest", ansible_virtualization_type=virt, **extra
    )
    assert got["in"] is inside
    assert (got["engine"] == "none") is inside  # a container gets no nested engine
