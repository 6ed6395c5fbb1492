"""Resource names, the state file and its lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labctl.errors import LabctlError, SpecError
from labctl.instance import naming
from labctl.instance.state import GuestRecord, InstanceDir, LabState, NotUp
from labctl.private import Damaged
from tests.unit.lock_holder import held


def test_resource_names_carry_lab_instance_and_guest() -> None:
    assert naming.resource("virtualization", "alumno07", "kvm-full") == (
        "labctl-virtualization-alumno07-kvm-full"
    )


def test_two_instances_never_share_a_bridge_or_mac() -> None:
    assert naming.bridge("lab", "a") != naming.bridge("lab", "b")
    assert len(naming.bridge("a-very-long-lab-name", "a-long-instance")) <= 15
    assert naming.mac("lab", "a", "vm") != naming.mac("lab", "b", "vm")
    assert naming.mac("lab", "a", "vm").startswith("52:54:00:")


@pytest.mark.parametrize("bad", ["", "UPPER", "with space", "x" * 17, "-lead"])
def test_bad_instance_names_are_refused(bad: str) -> None:
    with pytest.raises(SpecError):
        naming.check_instance(bad)


def test_state_round_trips_and_is_written_atomically(tmp_path: Path) -> None:
    inst = InstanceDir("lab", "main", root=tmp_path)
    assert inst.load() is None
    state = LabState("lab", "main", "/x/lab.yaml", subnet="10.210.3.0/24").with_guest(
        GuestRecord("vm", "libvirt", "labctl-lab-main-vm", stage="ready", accel="tcg")
    )
    inst.save(state)
    assert inst.load() == state
    assert [p.name for p in inst.run.iterdir()] == ["state.json"]


def test_damaged_state_file_says_what_to_do(tmp_path: Path) -> None:
    inst = InstanceDir("virtualization", "a1", root=tmp_path)
    inst.run.mkdir(parents=True)
    inst.state_file.write_text("{not json")
    with pytest.raises(Damaged, match="damaged") as err:
        inst.load()
    assert err.value.hint == (  # never a down: it would remove what the students made
        "labctl up --instance a1 sets it aside and rebuilds it from the guests that run "
        "(nothing of theirs is lost)"
    )


def test_second_process_on_the_same_lab_is_refused(tmp_path: Path) -> None:
    inst = InstanceDir("lab", "main", root=tmp_path)
    other = InstanceDir("lab", "main", root=tmp_path)
    heard: list[str] = []
    with (
        held(inst, "labctl up"),
        pytest.raises(LabctlError, match=rf"labctl \(pid {os.getpid()}: labctl up\) is still"),
        other.locked(wait=0.2, on_wait=heard.append),
    ):
        pass
    assert heard == [f"labctl (pid {os.getpid()}: labctl up) working on lab lab instance main"]
    assert not inst.holder_file.exists()  # the holder's note goes with its lock
    with other.locked(wait=1, on_wait=heard.append):  # free again: no waiting, no word
        pass
    assert len(heard) == 1


def test_subnet_choice_skips_every_used_range() -> None:
    import ipaddress

    from labctl.errors import EngineError
    from labctl.instance.subnets import pick

    used = [ipaddress.ip_network("10.210.0.0/23"), ipaddress.ip_network("10.210.3.0/24")]
    assert pick("10.210.0.0/16", used) == "10.210.2.0/24"
    with pytest.raises(EngineError, match="no free /24"):
        pick("10.210.0.0/24", [ipaddress.ip_network("10.0.0.0/8")])


def test_lab_key_is_private_and_reused(tmp_path: Path) -> None:
    from labctl.keys import ensure_keypair

    pair = ensure_keypair(tmp_path / "id_ed25519", "labctl-test")
    assert (pair.private.stat().st_mode & 0o777) == 0o600
    assert pair.public_line.startswith("ssh-ed25519 ") and pair.public_line.endswith("labctl-test")
    assert ensure_keypair(tmp_path / "id_ed25519", "other").public_line == pair.public_line


def test_a_state_file_of_another_instance_is_never_taken_for_this_one(tmp_path: Path) -> None:
    # lab "net" instance "adv-1" and lab "net-adv" instance "1" share a directory name
    theirs = InstanceDir("net", "adv-1", tmp_path)
    theirs.save(LabState("net", "adv-1", "x"))
    mine = InstanceDir("net-adv", "1", tmp_path)
    assert mine.path == theirs.path
    with pytest.raises(LabctlError, match="belongs to lab net instance adv-1"):
        mine.load()
    assert theirs.load() == LabState("net", "adv-1", "x")


def test_not_up_is_one_error_with_exit_2_and_the_command_to_run(state_root: Path) -> None:
    err = NotUp("virtualization", "alumno07", (": nothing to check", ": no hay nada que comprobar"))
    assert err.code == 2 and err.message.endswith("is not up: nothing to check")
    assert err.said("es") == (
        "el laboratorio virtualization (instancia alumno07) no está en marcha: no hay nada que "
        "comprobar",
        "ejecuta: labctl up --instance alumno07",
    )
    assert err.hint == "run: labctl up --instance alumno07"
    assert NotUp("virtualization", "main").hint == "run: labctl up"
    assert NotUp("fleet-mini", "main").hint == "run: labctl up fleet-mini"  # not the default
    # a lab labctl does not ship comes up from its own file: `labctl up net` would be refused
    assert NotUp("net", "a1").hint == (
        "run: labctl up LAB_FILE --instance a1 (the file that names lab net; labs shipped: "
        "fleet-mini, virtualization, virtualization-full)"
    )
    # a shipped lab's name mistyped: said first, the command for a lab of that name after
    assert (NotUp("virtualisation", "walk").hint or "").startswith(
        "did you mean --lab virtualization? labs here: fleet-mini, virtualization, "
        "virtualization-full; or run: labctl up LAB_FILE --instance walk"
    )


def test_not_up_names_the_lab_the_instance_is_up_in(state_root: Path) -> None:
    InstanceDir("fleet-mini", "wk17-ana").save(LabState("fleet-mini", "wk17-ana", "x"))
    # `labctl exec kvm-virtio -i wk17-ana` without --lab asks lab virtualization
    assert NotUp("virtualization", "wk17-ana").hint == (
        "instance wk17-ana is up in lab fleet-mini: add --lab fleet-mini; or, for lab "
        "virtualization, run: labctl up --instance wk17-ana"
    )
    assert NotUp("virtualization", "wk17-bea").hint == "run: labctl up --instance wk17-bea"


def test_up_names_the_lab_file_an_instance_came_up_from(monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.instance.state import up_command
    from labctl.paths import LABS_DIR

    monkeypatch.chdir(LABS_DIR.parent)
    full = LABS_DIR / "virtualization-full"
    assert up_command("virtualization-full", "a1", str(full / "lab.yaml")) == (
        "labctl up virtualization-full --instance a1"
    )
    # the same lab's other file (with the s390x guest): `up virtualization-full` would not do
    assert up_command("virtualization-full", "a1", str(full / "s390x.yaml")) == (
        "labctl up labs/virtualization-full/s390x.yaml --instance a1"
    )


def test_an_instance_folder_goes_only_when_nothing_but_labctls_leftovers_are_in_it(
    state_root: Path,
) -> None:
    inst = InstanceDir("net", "a1")
    assert inst.remove_leftovers()  # never there
    (inst.path / "progress").mkdir(parents=True)
    (inst.path / "lock").write_text("")
    assert inst.remove_leftovers() and not inst.path.exists()
    (inst.path / "progress").mkdir(parents=True)
    (inst.path / "progress" / "ana.json").write_text("{}")  # a student's work: kept
    assert not inst.remove_leftovers() and (inst.path / "progress" / "ana.json").exists()
