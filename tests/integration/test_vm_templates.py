"""VM templates on the real engines: two guests of one image and one device set, on one lab
network, both started from the same saved boot, must be two machines (name, address, MAC,
SSH host key, clock of their own) that reach each other; one powered off boots by itself, and
one whose plug is pulled right after its start comes back with the host key it was given."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import backends, libvirt_client
from labctl.backends import vm_templates
from labctl.instance.state import InstanceDir, LabState
from labctl.keys import KeyPair
from labctl.spec.model import Lab
from tests.integration.labs import One, one_instance, up, wait_powered_off
from tests.labs import lab_yaml

TWIN = """\
  {name}:
    engine: libvirt
    technique: paravirtualization
    image: vm-amd64
    accel: auto
"""
LAB = lab_yaml("twins", TWIN.format(name="twin-a"), TWIN.format(name="twin-b"))


@pytest.fixture(scope="module")
def twins(
    tmp_path_factory: pytest.TempPathFactory, built_images: list[str], state_root: Path
) -> Iterator[One]:
    with one_instance(tmp_path_factory, "twins", LAB) as twins:
        yield twins
    run_dir = InstanceDir(twins.lab.name, twins.instance).run
    assert not list(run_dir.glob("*.memory*")) and not list(run_dir.glob("*.clone"))


def sh(lab: Lab, state: LabState, guest: str, command: str) -> str:
    inst = InstanceDir(lab.name, state.instance)
    rec = inst.load()
    assert rec is not None
    result = backends.connect(rec.guests[guest], KeyPair(inst.key)).run(command)
    assert result.succeeded, result.detail
    return result.stdout.strip()


def console(state: LabState, guest: str) -> str:
    log = state.guests[guest].console_log
    assert log
    return Path(log).read_text(errors="replace")


def last_prompt(state: LabState, guest: str, timeout: float = 30) -> str | None:
    """The name in the serial console's last login prompt, waiting up to ``timeout`` for it to
    be ``guest``'s: a clone draws its prompt again once renamed, maybe after it said ready."""
    deadline = time.monotonic() + timeout
    while True:
        prompts = re.findall(r"([\w.-]+) login:", console(state, guest))
        last = prompts[-1] if prompts else None
        if last == guest or time.monotonic() > deadline:
            return last
        time.sleep(0.5)


def test_two_clones_of_one_template_are_two_machines(
    twins: One,
) -> None:
    lab, state = twins.lab, twins.state
    for guest in ("twin-a", "twin-b"):  # both started from the template's memory
        assert "started from a template's saved boot" in console(state, guest), guest
        assert last_prompt(state, guest) == guest  # not the template's name
    templates = vm_templates.templates_dir().glob("vm-amd64-*/memory.save")
    assert list(templates), "no template in the cache"
    seen = {}
    for guest in ("twin-a", "twin-b"):
        rec = state.guests[guest]
        facts = sh(
            lab, state, guest,
            "hostname; ip -o -4 addr show dev eth0 | awk '{print $4}'; "
            "cat /sys/class/net/eth0/address; date +%s; "
            "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | awk '{print $2}'",
        ).split()  # fmt: skip
        name, address, mac, clock, host_key = facts
        assert name == guest
        assert address.split("/")[0] == rec.address  # its own, and only its own
        assert mac == rec.mac
        assert abs(int(clock) - time.time()) < 15, "the clock was not set after the restore"
        seen[guest] = host_key
    assert seen["twin-a"] != seen["twin-b"], "the clones share the template's SSH host key"
    other = state.guests["twin-b"].address
    assert sh(lab, state, "twin-a", f"ping -c 2 -W 5 {other} > /dev/null && echo reached") == (
        "reached"
    )


def test_a_clone_powered_off_boots_from_its_own_kernel_command_line(
    twins: One,
) -> None:
    lab, path, state = twins.lab, twins.path, twins.state
    resource = state.guests["twin-a"].resource
    inst = InstanceDir(lab.name, state.instance)
    record = state.guests["twin-a"]
    # a student's poweroff (a clean one: the image's disk cache is QEMU's "unsafe" under TCG,
    # and a pulled plug may lose the guest's last writes, template or not)
    backends.connect(record, KeyPair(inst.key)).run("systemctl poweroff")
    wait_powered_off(resource)
    again = up(lab, path, state.instance)
    log = console(again, "twin-a")
    assert "labctl: up after" in log and "template" not in log  # a boot, not a restore
    name, address = sh(
        lab, again, "twin-a", "hostname; ip -o -4 addr show dev eth0 | awk '{print $4}'"
    ).split()
    assert name == "twin-a" and address.split("/")[0] == state.guests["twin-a"].address
    mac = sh(lab, again, "twin-a", "cat /sys/class/net/eth0/address")
    assert mac == state.guests["twin-a"].mac  # labctl.mac: not the template's


HOST_KEY = "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | awk '{print $2}'"


def test_a_clone_stopped_by_force_at_once_keeps_its_host_key(
    twins: One,
) -> None:
    """A pulled plug (virsh destroy) seconds after a clone's start: the SSH host key that
    labctl-setup made for it was written through to the disk, and sshd starts at the boot."""
    lab, path, state = twins.lab, twins.path, twins.state
    resource = state.guests["twin-b"].resource
    assert backends.get("libvirt").destroy(resource)  # gone: the next up makes a new clone
    fresh = up(lab, path, state.instance)
    assert "started from a template's saved boot" in console(fresh, "twin-b")
    key = sh(lab, fresh, "twin-b", HOST_KEY)
    with libvirt_client.connection() as conn:
        conn.lookupByName(resource).destroy()  # stopped, still defined: the plug is pulled
    again = up(lab, path, state.instance)
    assert "labctl: up after" in console(again, "twin-b")  # a boot, on the clone's own disk
    assert sh(lab, again, "twin-b", HOST_KEY) == key
