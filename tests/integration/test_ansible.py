"""Ansible against the live lab, through the inventory ``labctl inventory`` writes.

The session's lab (conftest's ``running_lab``) is written as an inventory by the real command,
read back by ``ansible-inventory``, and a playbook runs ``ping``, ``apt``, ``service`` and
``user`` on every SSH guest: what an instructor who provisions the lab with Ansible needs.

``LABCTL_ANSIBLE_LIMIT`` (an Ansible host pattern, default ``ssh``: every SSH guest) narrows
the playbook run, as ``ansible-playbook --limit`` does: ``LABCTL_ANSIBLE_LIMIT=lxc-system``
runs it on the system container alone (say, on a lab of the busybox ``-tiny`` VM images, which
have no python3 and answer only ``-m raw``). The inventory itself is always checked whole.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from labctl import backends
from labctl.cli import app
from labctl.exercises import facts
from labctl.host.ansible import has_plugin
from labctl.keys import KeyPair
from tests.integration.conftest import RunningLab
from tests.interrupts import cancel_on_signals

BIN = Path(sys.executable).parent
LIMIT = os.environ.get("LABCTL_ANSIBLE_LIMIT", "ssh")
SSH_GUESTS = {"arm-emulated", "kvm-full", "kvm-virtio", "lxc-system"}
#: a package every SSH guest's image installs (its sshd); apt must find it already there
INSTALLED = "openssh-server"


def ansible_env(tmp: Path) -> dict[str, str]:
    """Ansible's environment: the venv first on PATH, its files in ``tmp``, patient with TCG.

    An arm64 guest under TCG needs tens of seconds for an SSH key exchange: the connect
    timeout is raised from Ansible's 10 s.
    """
    return {
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "/usr/bin:/bin")]),
        "HOME": os.environ.get("HOME", "/root"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_TIMEOUT": "120",
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp / "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp / "cp"),
    }


def listed(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """``ansible-inventory --list`` of ``path``: what Ansible itself reads from it."""
    proc = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(path), "--list"],
        capture_output=True, text=True, env={**os.environ, **env}, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ansible")


@pytest.fixture(scope="module")
def inventory_file(running_lab: RunningLab, workdir: Path) -> Path:
    """The inventory, written by ``labctl inventory`` in-process (INI, the default)."""
    path = workdir / "hosts.ini"
    result = CliRunner().invoke(
        app, ["inventory", "--instance", running_lab.instance, "--output", str(path)]
    )
    assert result.exit_code == 0, result.output
    return path


def test_the_inventory_holds_every_ssh_guest_at_its_address(
    running_lab: RunningLab, inventory_file: Path, workdir: Path
) -> None:
    data = listed(inventory_file, ansible_env(workdir))
    hostvars = data["_meta"]["hostvars"]
    docker_api = has_plugin("connection", "community.docker.docker_api")
    assert set(hostvars) == SSH_GUESTS | ({"docker-app"} if docker_api else set())
    key = str(running_lab.inst.key)
    for guest in SSH_GUESTS:
        rec = running_lab.state.guests[guest]
        assert hostvars[guest]["ansible_host"] == rec.address, guest
        assert hostvars[guest]["ansible_user"] == "root"
        assert hostvars[guest]["ansible_ssh_private_key_file"] == key
    assert sorted(data["vms"]["hosts"]) == ["arm-emulated", "kvm-full", "kvm-virtio"]
    assert data["emulation"]["hosts"] == ["arm-emulated"]
    assert data["paravirtualization"]["hosts"] == ["kvm-virtio"]
    assert "lxc-system" in data["containers"]["hosts"]
    if not docker_api:
        assert "# Note: docker-app" in inventory_file.read_text()


def test_the_yaml_inventory_from_the_command_line_says_the_same(
    running_lab: RunningLab, inventory_file: Path, workdir: Path
) -> None:
    proc = subprocess.run(
        [str(BIN / "labctl"), "inventory", "--instance", running_lab.instance, "-f", "yaml"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert set(yaml.safe_load(proc.stdout)["all"]["hosts"]) >= SSH_GUESTS
    path = workdir / "hosts.yaml"
    path.write_text(proc.stdout)
    env = ansible_env(workdir)
    assert listed(path, env)["_meta"] == listed(inventory_file, env)["_meta"]


def targets(inventory: Path, env: Mapping[str, str]) -> set[str]:
    """The hosts ``LIMIT`` selects, as Ansible resolves the pattern."""
    proc = subprocess.run(
        [str(BIN / "ansible"), "ssh", "-i", str(inventory), "--limit", LIMIT, "--list-hosts"],
        capture_output=True, text=True, env={**os.environ, **env}, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hosts = {line.strip() for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert hosts, f"LABCTL_ANSIBLE_LIMIT={LIMIT!r} selects no SSH guest"
    return hosts


def playbook(user: str) -> list[dict[str, Any]]:
    """ping, apt (a package already there; the lists only where a mirror answers), service
    (sshd started), user (created, seen, removed)."""
    return [
        {
            "hosts": "ssh",
            "gather_facts": False,
            "tasks": [
                {"name": "ping", "ansible.builtin.ping": {}},
                {
                    "name": "apt present",
                    "ansible.builtin.apt": {
                        "name": INSTALLED,
                        "state": "present",
                        "update_cache": False,
                    },
                },
                {
                    "name": "apt update",
                    "ansible.builtin.apt": {"update_cache": True},
                    "when": "inventory_hostname in mirror_hosts",
                },
                {
                    "name": "service started",
                    "ansible.builtin.service": {"name": "ssh", "state": "started"},
                },
                {"name": "user add", "ansible.builtin.user": {"name": user, "state": "present"}},
                {
                    "name": "user seen",
                    "ansible.builtin.command": {"argv": ["getent", "passwd", user]},
                    "changed_when": False,
                },
                {
                    "name": "user remove",
                    "ansible.builtin.user": {"name": user, "state": "absent", "remove": True},
                },
            ],
        }
    ]


#: each task in order, and whether it must report changed ("apt update" runs where a mirror
#: answers and must be skipped elsewhere)
EXPECTED: dict[str, bool | str] = {
    "ping": False,
    "apt present": False,
    "apt update": False,
    "service started": False,
    "user add": True,
    "user seen": False,
    "user remove": True,
}


def outcomes(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(host, task) -> what the runner reported: status, changed, and what the module said."""
    kinds = {
        "runner_on_ok": "ok",
        "runner_on_failed": "failed",
        "runner_on_skipped": "skipped",
        "runner_on_unreachable": "unreachable",
    }
    found = {}
    for event in events:
        kind = kinds.get(event.get("event", ""))
        if kind is None:
            continue
        data = event["event_data"]
        res = data.get("res") or {}
        said = [res.get("msg"), res.get("module_stderr"), res.get("module_stdout")]
        found[(data["host"], data["task"])] = {
            "status": kind,
            "changed": bool(res.get("changed")),
            "said": " | ".join(str(x).strip()[-300:] for x in said if x and str(x).strip()),
        }
    return found


def test_ansible_modules_work_on_every_ssh_guest(
    running_lab: RunningLab, inventory_file: Path, workdir: Path
) -> None:
    import ansible_runner

    env = ansible_env(workdir)
    hosts = targets(inventory_file, env)
    key = KeyPair(running_lab.inst.key)
    # "Can this guest reach a mirror?" decided as the exercises decide it, never by apt's rc.
    mirror = {
        h: facts.measure("apt-mirror", backends.connect(running_lab.state.guests[h], key))
        for h in sorted(hosts)
    }
    # Ansible's apt module needs python3-apt; without it, it installs it (from a mirror).
    had_apt = {
        h: backends.connect(running_lab.state.guests[h], key)
        .run("dpkg-query -W -f '${Status}' python3-apt")
        .stdout.endswith("installed")
        for h in sorted(hosts)
    }
    user = "ans" + secrets.token_hex(3)
    play = workdir / "play.yml"
    play.write_text(yaml.safe_dump(playbook(user), sort_keys=False))
    private = workdir / "runner"
    private.mkdir(exist_ok=True)
    started = time.monotonic()
    with cancel_on_signals() as canceled:
        run = ansible_runner.run(
            private_data_dir=str(private),
            playbook=str(play),
            inventory=str(inventory_file),
            limit=LIMIT,
            extravars={"mirror_hosts": [h for h, v in mirror.items() if v == "si"]},
            envvars=env,
            quiet=True,
            timeout=1200,
            cancel_callback=canceled,
        )
    seconds = time.monotonic() - started
    seen = outcomes(list(run.events))
    table = "\n".join(f"  {h:13} {t:16} {o}" for (h, t), o in sorted(seen.items()))
    print(f"\nmirror reached: {mirror}\npython3-apt before: {had_apt}")
    print(f"ansible {run.status} rc={run.rc} in {seconds:.1f} s:\n{table}")
    problems = []
    for host in sorted(hosts):
        wanted = dict(EXPECTED)
        if mirror[host] != "si":
            wanted["apt update"] = "skipped"
        for task, want in wanted.items():
            got = seen.get((host, task))
            if want == "skipped":
                fine = got is not None and got["status"] == "skipped"
            else:
                fine = got is not None and got["status"] == "ok" and got["changed"] == want
            if not fine:
                what = "not run" if got is None else f"{got['status']}: {got['said']}"
                problems.append(f"{host} {task}: {what}")
                break  # Ansible runs nothing more on a host after its first failure
    assert not problems, "\n".join(problems)
    assert run.status == "successful" and run.rc == 0
    assert {h for h, _ in seen} == hosts  # the limit ran where Ansible said it would
    for host in sorted(hosts):  # the user is really gone, seen through labctl's own door
        conn = backends.connect(running_lab.state.guests[host], key)
        assert conn.run(f"getent passwd {user}").rc == 2, host
