"""What a student's account reaches: the owner file, the firewall's uid rules, the sheet."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.classroom import accounts, reach
from labctl.errors import LabctlError
from labctl.instance import isolation
from labctl.instance.state import GuestRecord, InstanceDir, LabState, Owner
from tests.unit.fake_accounts import FakeSystem
from tests.unit.fake_nft import FakeNft

BRIDGES = ["lcbr1111aaaa", "lclx1111aaaa", "br-0123456789ab"]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    monkeypatch.setenv("LABCTL_STATE", str(root))
    return root


def make_account(tmp_path: Path) -> accounts.Account:
    return accounts.ensure_account(
        "ana", "Ana García", None, "so24a", server="lab.example.org", system=FakeSystem(tmp_path)
    )


def lab_up(instance: str) -> None:
    """The instance's state as `up` leaves it: a VM, a system container, an app container."""
    guests = {
        "kvm-full": GuestRecord("kvm-full", "libvirt", "r1", "ready", address="10.200.3.11"),
        "lxc-system": GuestRecord("lxc-system", "lxd", "r2", "ready", address="10.201.3.20"),
        "docker-app": GuestRecord("docker-app", "docker", "r3", "ready", host_port=18080),
    }
    InstanceDir("virtualization", instance).save(
        LabState("virtualization", instance, "/labs/v.yaml", guests=guests)
    )


def test_before_the_lab_exists_the_account_reaches_no_lab(state: Path, tmp_path: Path) -> None:
    account = make_account(tmp_path)
    nft = FakeNft()
    isolation.apply("virtualization", "so24a-bo", ["lclx2222bbbb"], nft)  # another student
    reach.admit("ana", "so24a", nft)
    assert set(nft.sets["students"]) == {account.uid}
    assert not nft.sets["student_bridges"] and not nft.sets["student_ports"]
    owner = InstanceDir("virtualization", "so24a-ana").owner()
    # guests get the key at creation; the lab's lifecycle confines the uid again on each up
    assert owner == Owner("so24a", "ana", account.public_key, account.uid)
    assert "ProxyJump" not in account.sheet.read_text()  # no guest to jump to yet


def test_once_up_the_account_reaches_its_own_bridges_and_port_and_the_sheet_says_how(
    state: Path, tmp_path: Path
) -> None:
    account = make_account(tmp_path)
    assert account.uid is not None
    nft = FakeNft()
    isolation.apply("virtualization", "so24a-ana", BRIDGES, nft)
    isolation.publish("virtualization", "so24a-ana", [18080], nft)
    isolation.apply("virtualization", "so24a-bo", ["lclx2222bbbb"], nft)
    isolation.publish("virtualization", "so24a-bo", [18081], nft)
    lab_up("so24a-ana")
    account.sheet.write_text(account.sheet.read_text() + "\n--- progress page ---\ntoken: x\n")
    reach.admit("ana", "so24a", nft)
    assert set(nft.sets["student_bridges"]) == {(account.uid, b) for b in BRIDGES}
    assert set(nft.sets["student_ports"]) == {(account.uid, 18080)}
    text = account.sheet.read_text()
    assert (
        "Host labctl-so24a-kvm-full\n"
        "    HostName 10.200.3.11\n"
        "    User root\n"
        "    ProxyJump labctl-so24a\n"
        "    IdentityFile ~/.ssh/labctl-so24a\n" in text
    )
    assert "Host labctl-so24a-lxc-system\n    HostName 10.201.3.20\n" in text
    assert "    LocalForward 127.0.0.1:18080 127.0.0.1:18080\n" in text
    # the server as ensure_account was told, not this host's name
    assert "Host labctl-so24a-docker-app\n    HostName lab.example.org\n" in text
    assert text.endswith("--- progress page ---\ntoken: x\n")  # the dashboard's part is kept
    reach.admit("ana", "so24a", nft)  # a rerun changes nothing
    assert len(nft.sets["student_bridges"]) == 3
    assert account.sheet.read_text() == text


def test_an_unknown_account_is_refused(state: Path) -> None:
    with pytest.raises(LabctlError, match="no account zed of class so24a"):
        reach.admit("zed", "so24a", FakeNft())
