"""``labctl inventory``: the builder on fake records, both renderings read back by Ansible itself.

The INI and YAML texts are parsed by the venv's ``ansible-inventory`` (ansible-core is a
dependency of labctl), so a quoting mistake shows up as Ansible would see it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from labctl import backends
from labctl.cli import app
from labctl.cli.inventory import render_ini, render_yaml
from labctl.errors import ExitCode, LabctlError
from labctl.host.ansible import has_plugin
from labctl.instance import netguard
from labctl.instance.state import GuestRecord, LabState, NotUp
from labctl.lab import inventory as lab_inventory
from labctl.lab import status as lab_status
from labctl.lab.inventory import SSH_ARGS, Inventory, build
from labctl.paths import LABS_DIR

ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
TECHNIQUES = {
    "arm-emulated": "emulation",
    "kvm-full": "full-virtualization",
    "kvm-virtio": "paravirtualization",
    "lxc-system": "system-container",
    "docker-app": "app-container",
}
SSH_GUESTS = ["arm-emulated", "kvm-full", "kvm-virtio", "lxc-system"]


def rec(name: str, engine: str, address: str | None, **kw: Any) -> GuestRecord:
    return GuestRecord(name, engine, f"labctl-v-s1-{name}", stage="ready", address=address, **kw)


def lab_state() -> LabState:
    """The default lab's five guests, as ``up`` records them."""
    guests = [
        rec("arm-emulated", "libvirt", "10.210.3.10", port=22),
        rec("kvm-full", "libvirt", "10.210.3.11", port=22),
        rec("kvm-virtio", "libvirt", "10.210.3.12", port=2222),
        rec("lxc-system", "lxd", "10.210.4.20", port=22),
        rec("docker-app", "docker", "127.0.0.1", port=18080),
    ]
    return LabState("virtualization", "s1", "x", guests={g.name: g for g in guests})


RUNNING = dict.fromkeys(TECHNIQUES, "running")
#: a key path Ansible must read back whole: a space, a '#', quotes
KEY = Path("/var/lib/labctl test/v-s1 #1/id_'ed\"25519")


def ansible_inventory(tmp_path: Path, text: str, suffix: str) -> dict[str, Any]:
    """What Ansible itself reads from ``text``: ``ansible-inventory --list`` as JSON."""
    path = tmp_path / f"inventory.{suffix}"
    path.write_text(text)
    # Only the parser of the format under test, so a file that parser rejects is an error.
    plugin = "ini" if suffix == "ini" else "yaml"
    env = {**os.environ, "ANSIBLE_INVENTORY_ENABLED": plugin, "ANSIBLE_NOCOLOR": "1"}
    env["ANSIBLE_INVENTORY_UNPARSED_FAILED"] = "1"
    proc = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def members(listing: dict[str, Any], group: str) -> list[str]:
    return list(listing.get(group, {}).get("hosts", []))


# ---- the builder ---------------------------------------------------------------------------


def test_every_running_ssh_guest_is_a_host_logging_in_as_root_with_the_lab_key() -> None:
    inv = build(lab_state(), RUNNING, KEY, TECHNIQUES, docker_api=False)
    assert list(inv.hosts) == SSH_GUESTS
    assert inv.hosts["kvm-full"] == {"ansible_host": "10.210.3.11"}
    assert inv.hosts["kvm-virtio"] == {"ansible_host": "10.210.3.12", "ansible_port": 2222}
    assert inv.hosts["lxc-system"] == {"ansible_host": "10.210.4.20"}
    assert inv.group_vars["ssh"] == {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(KEY),
        "ansible_ssh_common_args": SSH_ARGS,
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    assert "StrictHostKeyChecking=no" in SSH_ARGS and "UserKnownHostsFile=/dev/null" in SSH_ARGS
    assert inv.all_vars == {"labctl_lab": "virtualization", "labctl_instance": "s1"}


def test_groups_by_kind_technique_and_engine_in_the_labs_order() -> None:
    inv = build(lab_state(), RUNNING, KEY, TECHNIQUES, docker_api=False)
    assert inv.groups == {
        "ssh": tuple(SSH_GUESTS),
        "vms": ("arm-emulated", "kvm-full", "kvm-virtio"),
        "containers": ("lxc-system",),
        "emulation": ("arm-emulated",),
        "full_virtualization": ("kvm-full",),
        "paravirtualization": ("kvm-virtio",),
        "system_container": ("lxc-system",),
        "libvirt": ("arm-emulated", "kvm-full", "kvm-virtio"),
        "lxd": ("lxc-system",),
    }
    assert inv.groups_of("lxc-system") == ["ssh", "containers", "system_container", "lxd"]


def test_the_app_container_is_left_out_and_said_so_without_the_docker_collection() -> None:
    inv = build(lab_state(), RUNNING, KEY, TECHNIQUES, docker_api=False)
    assert "docker-app" not in inv.hosts and "docker" not in inv.groups
    assert inv.notes == (
        "docker-app (an application container, no SSH) left out: Ansible reaches it only "
        "through community.docker.docker_api, and that collection is not installed",
    )


def test_with_the_docker_collection_the_app_container_is_a_docker_api_host() -> None:
    inv = build(lab_state(), RUNNING, KEY, TECHNIQUES, docker_api=True)
    assert inv.hosts["docker-app"] == {
        "ansible_connection": "community.docker.docker_api",
        "ansible_host": "labctl-v-s1-docker-app",
    }
    assert inv.groups["containers"] == ("lxc-system", "docker-app")
    assert inv.groups["app_container"] == ("docker-app",) == inv.groups["docker"]
    assert "docker-app" not in inv.groups["ssh"]  # the SSH variables are the ssh group's
    assert inv.notes == ()


def test_guests_that_cannot_be_reached_are_left_out_each_with_its_reason() -> None:
    state = lab_state().with_guest(rec("kvm-full", "libvirt", None))
    live = {**RUNNING, "arm-emulated": "stopped", "lxc-system": "running"}
    del live["docker-app"]  # the engine no longer has it
    refused = {"lxc-system": "lxc-system: labctl will not contact 10.210.4.20: packets to it..."}
    inv = build(state, live, KEY, TECHNIQUES, docker_api=True, refused=refused)
    assert list(inv.hosts) == ["kvm-virtio"]
    assert inv.notes == (
        "arm-emulated is stopped: left out (labctl up starts it)",
        "kvm-full has no address yet: left out (it never became ready)",
        "lxc-system: labctl will not contact 10.210.4.20: packets to it...; left out",
        "docker-app is absent: left out (labctl up starts it)",
    )
    assert "containers" not in inv.groups  # no empty group


def test_a_guest_without_a_technique_in_the_lab_file_is_still_grouped_by_kind() -> None:
    techniques = {k: v for k, v in TECHNIQUES.items() if k != "kvm-full"}
    inv = build(lab_state(), RUNNING, KEY, techniques, docker_api=False)
    assert inv.groups_of("kvm-full") == ["ssh", "vms", "libvirt"]


def test_nothing_running_gives_an_inventory_with_notes_and_no_group() -> None:
    inv = build(lab_state(), {}, KEY, TECHNIQUES, docker_api=False)
    assert inv.hosts == {} and inv.groups == {} and inv.group_vars == {}
    assert len(inv.notes) == 5


# ---- the renderings, as Ansible reads them ---------------------------------------------------


def full_inventory() -> Inventory:
    return build(lab_state(), RUNNING, KEY, TECHNIQUES, docker_api=True)


@pytest.mark.parametrize(("render", "suffix"), [(render_ini, "ini"), (render_yaml, "yaml")])
def test_ansible_reads_back_every_host_group_and_variable(
    tmp_path: Path, render: Any, suffix: str
) -> None:
    inv = full_inventory()
    listing = ansible_inventory(tmp_path, render(inv), suffix)
    hostvars = listing["_meta"]["hostvars"]
    assert set(hostvars) == set(inv.hosts)
    for host, own in inv.hosts.items():
        expected = dict(inv.all_vars) | dict(own)
        for group in inv.groups_of(host):
            expected |= inv.group_vars.get(group, {})
        assert hostvars[host] == expected, host
    assert hostvars["kvm-virtio"]["ansible_port"] == 2222  # a number, not a string
    assert hostvars["lxc-system"]["ansible_ssh_private_key_file"] == str(KEY)
    for group, hosts in inv.groups.items():
        assert members(listing, group) == list(hosts), group
    assert members(listing, "ungrouped") == []
    assert sorted(listing["all"]["children"]) == sorted([*inv.groups, "ungrouped"])


@pytest.mark.parametrize(("render", "suffix"), [(render_ini, "ini"), (render_yaml, "yaml")])
def test_values_that_look_like_numbers_stay_strings(
    tmp_path: Path, render: Any, suffix: str
) -> None:
    state = lab_state()
    numbered = LabState(state.lab, "42", state.spec_path, guests=state.guests)  # a seat number
    inv = build(numbered, RUNNING, Path("/srv/True"), TECHNIQUES, docker_api=False)
    hostvars = ansible_inventory(tmp_path, render(inv), suffix)["_meta"]["hostvars"]
    assert hostvars["kvm-full"]["labctl_instance"] == "42"
    assert hostvars["kvm-full"]["ansible_ssh_private_key_file"] == "/srv/True"


def test_the_yaml_is_plain_yaml_and_both_say_what_was_left_out() -> None:
    inv = build(lab_state(), RUNNING, KEY, TECHNIQUES, docker_api=False)
    data = yaml.safe_load(render_yaml(inv))
    assert list(data["all"]["hosts"]) == SSH_GUESTS
    assert data["all"]["children"]["vms"]["hosts"] == dict.fromkeys(SSH_GUESTS[:3])
    assert data["all"]["children"]["ssh"]["vars"]["ansible_user"] == "root"
    for text in (render_ini(inv), render_yaml(inv)):
        comments = [line for line in text.splitlines() if line.startswith("#")]
        assert max(len(c) for c in comments) <= 100
        said = " ".join(c.lstrip("# ") for c in comments)
        assert "Note: docker-app (an application container, no SSH) left out" in said
        assert "through community.docker.docker_api, and that collection is not installed" in said
        assert "labctl inventory --instance s1" in said


def test_an_empty_inventory_still_parses(tmp_path: Path) -> None:
    inv = build(lab_state(), {}, KEY, TECHNIQUES, docker_api=False)
    for render, suffix in ((render_ini, "ini"), (render_yaml, "yaml")):
        listing = ansible_inventory(tmp_path, render(inv), suffix)
        assert listing["_meta"]["hostvars"] == {}


# ---- is the docker collection there? --------------------------------------------------------


def test_has_plugin_asks_ansible_where_it_looks_for_collections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_SCAN_SYS_PATH", "False")
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))  # not the user's ~/.ansible/collections
    assert not has_plugin("connection", "community.docker.docker_api")
    assert has_plugin("connection", "ansible.builtin.ssh")
    plugin = tmp_path / "c/ansible_collections/community/docker/plugins/connection/docker_api.py"
    plugin.parent.mkdir(parents=True)
    plugin.write_text('DOCUMENTATION = """\nname: docker_api\nshort_description: x\n"""\n')
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(tmp_path / "c"))
    assert has_plugin("connection", "community.docker.docker_api")


# ---- the command, in-process ----------------------------------------------------------------


class FakeEngine:
    """A backend that says each guest runs (or not) and names the lab's bridge."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states

    def state(self, resource: str) -> str:
        return self.states.get(resource, "running")

    def bridges(self, state: LabState) -> list[str]:
        return ["lcbr-vm", "lcbr-lxd"]


@pytest.fixture
def lab_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The CLI sees ``lab_state()`` up; addresses lie behind the lab's bridges except 10.9.x."""
    state = lab_state()
    state = LabState(
        state.lab,
        state.instance,
        str(LABS_DIR / "virtualization" / "lab.yaml"),
        guests=state.guests,
    )
    inst = SimpleNamespace(key=tmp_path / "id_ed25519")
    monkeypatch.setattr(lab_status, "load", lambda lab, instance: (inst, state))
    states: dict[str, str] = {}
    monkeypatch.setattr(backends, "get", lambda engine: FakeEngine(states))

    def ip(argv: list[str], **_kw: object) -> subprocess.CompletedProcess[bytes]:
        if argv[2:4] == ["route", "get"]:
            dev = "eth0" if argv[4].startswith("10.9.") else "lcbr-vm"
            out: list[dict[str, object]] = [{"dst": argv[4], "dev": dev}]
        else:
            out = [{"ifname": argv[5], "flags": ["UP"]}]
        return subprocess.CompletedProcess(argv, 0, json.dumps(out).encode(), b"")

    monkeypatch.setattr(netguard, "run", ip)
    monkeypatch.setattr("labctl.host.ansible.has_plugin", lambda kind, name: False)
    return states


def test_inventory_command_writes_the_file_ansible_reads(
    lab_up: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "hosts.yaml"
    result = CliRunner().invoke(app, ["inventory", "-i", "s1", "--format", "yaml", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "Wrote 4 hosts" in result.stderr and "docker-app" in result.stderr
    listing = ansible_inventory(tmp_path, out.read_text(), "yaml")
    assert sorted(listing["_meta"]["hostvars"]) == sorted(SSH_GUESTS)
    key = listing["_meta"]["hostvars"]["kvm-full"]["ansible_ssh_private_key_file"]
    assert key == str(tmp_path / "id_ed25519")
    assert members(listing, "emulation") == ["arm-emulated"]


def test_inventory_command_prints_ini_and_leaves_out_what_it_must_not_hand_out(
    lab_up: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lab_up["labctl-v-s1-arm-emulated"] = "stopped"
    state = lab_status.load("virtualization", "s1")[1]
    odd = state.with_guest(rec("kvm-full", "libvirt", "10.9.0.5"))
    monkeypatch.setattr(lab_status, "load", lambda lab, instance: (SimpleNamespace(key=KEY), odd))
    result = CliRunner().invoke(app, ["inventory", "-i", "s1"])
    assert result.exit_code == 0, result.output
    hosts = [line.split()[0] for line in result.stdout.splitlines() if "ansible_host=" in line]
    assert hosts == ["kvm-virtio", "lxc-system"]
    assert "arm-emulated is stopped" in result.stderr
    assert "kvm-full: labctl will not contact 10.9.0.5" in result.stderr


def test_an_output_file_that_cannot_be_written_is_a_usage_error(
    lab_up: dict[str, str], tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["inventory", "-o", str(tmp_path / "no-such-dir" / "x.ini")])
    assert isinstance(result.exception, LabctlError)
    assert result.exception.code == ExitCode.USAGE
    assert "cannot write the inventory to" in result.exception.message


def test_inventory_of_a_lab_that_is_not_up_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LABCTL_STATE", str(tmp_path))
    result = CliRunner().invoke(app, ["inventory", "-i", "s1"])
    assert isinstance(result.exception, NotUp)
    assert result.exception.code == ExitCode.NOTHING_RAN == 2
    assert "lab virtualization (instance s1) is not up" in result.exception.message


def test_inventory_of_a_lab_that_is_not_up_exits_2_as_a_process(tmp_path: Path) -> None:
    labctl = Path(sys.executable).parent / "labctl"
    env = {**os.environ, "LABCTL_STATE": str(tmp_path)}
    proc = subprocess.run(
        [str(labctl), "inventory", "-i", "s1"], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Error: lab virtualization (instance s1) is not up" in proc.stderr


def test_survey_asks_the_engines_and_the_netguard(lab_up: dict[str, str]) -> None:
    lab_up["labctl-v-s1-kvm-full"] = "absent"
    state = lab_state().with_guest(rec("lxc-system", "lxd", "10.9.1.1"))
    seen = lab_inventory.survey(state)
    assert seen.live["kvm-full"] == "absent" and seen.live["arm-emulated"] == "running"
    assert list(seen.refused) == ["lxc-system"]
