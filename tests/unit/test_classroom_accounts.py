"""Student accounts: useradd/userdel at a fake boundary, the registry and sheets for real."""

from __future__ import annotations

import base64
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from labctl.classroom import accounts, roster
from labctl.errors import HostError, SpecError
from labctl.keys import ensure_keypair
from tests.unit.fake_accounts import FakeSystem
from tests.unit.fake_nft import FakeNft


@pytest.fixture
def fake(tmp_path: Path) -> FakeSystem:
    return FakeSystem(tmp_path / "home")


def roster_key(tmp_path: Path) -> str:
    return ensure_keypair(tmp_path / "laptop" / "id_ed25519", "ana@laptop").public_line


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def ensure(fake: FakeSystem, key: str | None = None, student: str = "ana", cls: str = "so24a"):
    return accounts.ensure_account(
        student, "Ana García: 1º, B", key, cls, server="lab.example.org", system=fake
    )


def test_a_new_student_gets_a_locked_account_a_generated_key_and_a_private_sheet(
    state_root: Path, fake: FakeSystem
) -> None:
    account = ensure(fake)
    [useradd] = fake.calls
    assert useradd[0] == "useradd" and useradd[-1] == "ana"
    assert useradd[useradd.index("--password") + 1] == "!"  # locked: keys only
    # no subordinate ids: a user namespace would send packets as uids the firewall ignores
    assert useradd[1:5] == ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]
    gecos = useradd[useradd.index("--comment") + 1]
    assert gecos == "Ana García 1º B,,,,labctl class so24a"  # no ':' or ',' from the roster
    assert (account.uid, account.instance, account.key) == (2001, "so24a-ana", "generated")
    assert accounts.record("ana") == account
    assert mode(accounts.registry_dir()) == 0o700
    assert mode(accounts.registry_dir() / "ana.json") == 0o600
    # the generated key's public half is authorised, its private half is in the sheet
    keys = (fake.homes / "ana" / ".ssh" / "authorized_keys").read_text().splitlines()
    assert keys == [account.public_key]
    assert mode(fake.homes / "ana") == 0o700
    assert mode(fake.homes / "ana" / ".ssh") == 0o700
    sheet = account.sheet.read_text()
    assert account.sheet == state_root / "classes" / "so24a" / "access" / "ana.txt"
    assert mode(account.sheet) == 0o600 and mode(account.sheet.parent) == 0o700
    assert account.private_key.read_text().strip() in sheet
    assert "HostName lab.example.org" in sheet and "User ana" in sheet
    assert "IdentityFile ~/.ssh/labctl-so24a" in sheet
    assert fake.allowed == [["ana"]]  # the sudo rule lets the new student in


def test_a_spanish_class_gets_its_sheet_in_spanish_and_a_rerun_rewrites_it(
    state_root: Path, fake: FakeSystem
) -> None:
    args = ("ana", "Ana", None, "so24a")
    account = accounts.ensure_account(*args, server="lab", system=fake, lang="es")
    sheet = account.sheet.read_text()
    assert "Guarda esta clave privada como ~/.ssh/labctl-so24a (chmod 600):" in sheet
    assert "Usuario:     ana" in sheet and "Añade a ~/.ssh/config:" in sheet
    assert "Save the private key" not in sheet and "HostName lab" in sheet  # ssh's own words
    assert accounts.record("ana").lang == "es"  # type: ignore[union-attr]
    again = accounts.ensure_account(*args, server="lab", system=fake, lang="en")
    assert "Save the private key below as ~/.ssh/labctl-so24a" in again.sheet.read_text()


def test_a_roster_key_is_authorised_and_no_key_is_generated(
    tmp_path: Path, state_root: Path, fake: FakeSystem
) -> None:
    key = roster_key(tmp_path)
    account = ensure(fake, key)
    assert account.key == "roster" and account.public_key == key
    assert (fake.homes / "ana" / ".ssh" / "authorized_keys").read_text() == key + "\n"
    assert not account.private_key.exists()
    assert "PRIVATE KEY" not in account.sheet.read_text()
    assert "IdentityFile" not in account.sheet.read_text()


def test_a_fido_key_the_roster_takes_is_taken_here_too(state_root: Path, fake: FakeSystem) -> None:
    blob = base64.b64encode(b"\x00\x00\x00\x1ask-ssh-ed25519@openssh.com" + b"\x01" * 40)
    key = f"sk-ssh-ed25519@openssh.com {blob.decode()} ana@yubikey"
    assert roster.key_problem(key) is None
    assert ensure(fake, key).public_key == key


def test_a_rerun_creates_nothing_twice(state_root: Path, fake: FakeSystem) -> None:
    first = ensure(fake)
    second = ensure(fake)
    assert first == second
    assert [c[0] for c in fake.calls] == ["useradd"]
    keys = (fake.homes / "ana" / ".ssh" / "authorized_keys").read_text().splitlines()
    assert keys == [first.public_key]


@pytest.mark.parametrize("gecos", ["", "Ana García,,,,labctl class so24a"])
def test_an_account_labctl_did_not_create_is_refused_and_left_alone(
    state_root: Path, fake: FakeSystem, gecos: str
) -> None:
    """Even one whose GECOS copies labctl's mark: only the root-only record counts."""
    existing = fake.add("ana", gecos)
    with pytest.raises(HostError, match="already an account on this host") as err:
        ensure(fake)
    assert "another id" in (err.value.hint or "")
    assert fake.calls == []
    assert fake.users["ana"] == existing
    assert accounts.record("ana") is None
    assert not (existing.home / ".ssh").exists()


def test_an_account_of_another_class_is_refused(state_root: Path, fake: FakeSystem) -> None:
    ensure(fake, cls="so24a")
    with pytest.raises(HostError, match="belongs to class so24a, not to re24"):
        ensure(fake, cls="re24")
    assert [c[0] for c in fake.calls] == ["useradd"]
    assert not accounts.owned("ana", "re24", fake)
    assert accounts.owned("ana", "so24a", fake)


def test_a_run_cut_between_record_and_useradd_is_finished(
    state_root: Path, fake: FakeSystem
) -> None:
    broken = FakeSystem(fake.homes)

    def fail(argv: Sequence[str]) -> None:
        raise HostError("interrupted")

    broken.run = fail  # type: ignore[method-assign]
    with pytest.raises(HostError):
        ensure(broken)
    pending = accounts.record("ana")
    assert pending is not None and pending.uid is None
    assert broken.allowed == []  # a half-made account is not let through sudo
    account = ensure(fake)
    assert account.uid == 2001 and account.public_key == pending.public_key


def test_a_run_cut_after_useradd_adopts_the_marked_account(
    state_root: Path, fake: FakeSystem
) -> None:
    class CutAfterUseradd(FakeSystem):
        def run(self, argv: Sequence[str]) -> None:
            fake.run(argv)  # the account exists, but labctl never saw its uid
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ensure(CutAfterUseradd(fake.homes))  # type: ignore[arg-type]
    assert accounts.record("ana").uid is None  # type: ignore[union-attr]
    assert ensure(fake).uid == fake.users["ana"].uid
    assert len(fake.calls) == 1


def test_remove_deletes_the_account_its_sheet_key_and_record(
    state_root: Path, fake: FakeSystem
) -> None:
    account = ensure(fake)
    assert accounts.remove_account("ana", "so24a", kill_processes=True, system=fake)
    assert fake.calls[-1] == ["userdel", "--remove", "ana"]
    assert fake.killed == [account.uid]
    assert "ana" not in fake.users
    assert accounts.record("ana") is None
    assert not account.sheet.exists() and not account.private_key.exists()
    assert accounts.records() == []
    assert fake.allowed[-1] == []  # ... and the rule no longer names them


def test_remove_touches_nothing_labctl_did_not_create(state_root: Path, fake: FakeSystem) -> None:
    fake.add("bob", "Bob,,,,labctl class so24a")
    assert not accounts.remove_account("bob", "so24a", kill_processes=True, system=fake)
    ensure(fake, student="ana", cls="so24a")
    assert not accounts.remove_account("ana", "re24", system=fake)  # another class's name
    assert fake.calls == [fake.calls[0]] and fake.killed == []
    assert set(fake.users) == {"ana", "bob"}


def test_remove_leaves_an_account_recreated_by_someone_else(
    state_root: Path, fake: FakeSystem
) -> None:
    ensure(fake)
    del fake.users["ana"]
    fake.add("ana")  # same name, new uid: not the account labctl made
    assert accounts.remove_account("ana", "so24a", system=fake)
    assert [c[0] for c in fake.calls] == ["useradd"]
    assert "ana" in fake.users
    assert accounts.record("ana") is None


def test_a_symlink_planted_in_the_home_is_not_followed(
    tmp_path: Path, state_root: Path, fake: FakeSystem
) -> None:
    ensure(fake)
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    ssh = fake.homes / "ana" / ".ssh"
    (ssh / "authorized_keys").unlink()
    ssh.rmdir()
    ssh.symlink_to(elsewhere)
    with pytest.raises(HostError, match="not symlinks|cannot install the SSH key"):
        ensure(fake)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    ("student", "key", "cls", "match"),
    [
        ("Ana", None, "so24a", "cannot be a Linux user name"),
        ("7ana", None, "so24a", "cannot be a Linux user name"),
        ("../x", None, "so24a", "cannot be a Linux user name"),
        ("ana", "ssh-ed25519 AAAAnot-a-key", "so24a", "not an SSH public key"),
        ("ana", "ssh-ed25519 AAAA\nssh-rsa BBBB", "so24a", "one line"),
        ("ana", None, "../so", "class name"),
    ],
)
def test_bad_input_is_refused_before_anything_is_made(
    state_root: Path, fake: FakeSystem, student: str, key: str | None, cls: str, match: str
) -> None:
    with pytest.raises(SpecError, match=match):
        accounts.ensure_account(student, "X", key, cls, system=fake)
    assert fake.calls == [] and not state_root.exists()


def test_an_account_is_confined_before_its_key_lets_it_in_and_released_when_removed(
    state_root: Path, fake: FakeSystem, fake_nft: FakeNft
) -> None:
    account = ensure(fake)
    assert set(fake_nft.sets["students"]) == {account.uid}
    assert "lab.example.org" in account.sheet.read_text() and account.server == "lab.example.org"
    assert accounts.remove_account("ana", "so24a", system=fake)
    assert not fake_nft.sets["students"]  # its uid may be someone else's tomorrow


def test_an_account_labctl_made_says_so_in_its_gecos(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    gecos = {1000: "Ana Pérez,,,,labctl class so24a", 1001: "Instructor,,,", 1002: ""}

    def getpwuid(uid: int) -> SimpleNamespace:
        if uid not in gecos:
            raise KeyError(uid)
        return SimpleNamespace(pw_gecos=gecos[uid])

    monkeypatch.setattr(accounts.pwd, "getpwuid", getpwuid)
    assert accounts.made_by_labctl(1000)
    assert not accounts.made_by_labctl(1001) and not accounts.made_by_labctl(1002)
    assert not accounts.made_by_labctl(4242)  # no such account
