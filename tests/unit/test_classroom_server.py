"""What the access sheets call the server: LABCTL_SERVER, else a name a laptop can reach."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.classroom import accounts, capacity, server
from labctl.classroom import down as class_down
from labctl.classroom import lifecycle as class_lifecycle
from labctl.classroom.state import ClassDir
from labctl.cli import app
from labctl.cli import classroom as cli_classroom
from labctl.errors import SpecError
from tests.unit.fake_accounts import FakeSystem
from tests.unit.test_classroom_lifecycle import ROOMY, World, make_world
from tests.unit.test_recovery import NoKvm

HOSTS = {
    "localhost": ["127.0.0.1", "::1"],
    "vm": ["127.0.0.1"],  # a container's /etc/hosts: the host's name on the loopback
    "lab1": ["127.0.1.1"],  # Debian's /etc/hosts
    "lab1.example.org": ["192.168.1.20"],
}


def find(fqdn: str, route: str | None = "10.0.0.5", env: dict[str, str] | None = None):
    return server.find(env or {}, lambda: fqdn, lambda name: HOSTS.get(name, []), lambda: route)


@pytest.mark.parametrize("fqdn", ["localhost", "localhost.localdomain", "vm", "lab1", "127.0.0.1"])
def test_a_loopback_fqdn_gives_the_address_on_the_default_route(fqdn: str) -> None:
    found = find(fqdn)
    assert (found.name, found.source) == ("10.0.0.5", "route")
    note = found.note()
    assert note is not None and "10.0.0.5" in note and f"its FQDN {fqdn} is a loopback" in note
    assert "LABCTL_SERVER=" in note


def test_a_name_that_resolves_to_nothing_is_no_better_than_loopback() -> None:
    assert find("nowhere").name == "10.0.0.5"


def test_a_real_fqdn_is_kept_and_said() -> None:
    found = find("lab1.example.org")
    assert (found.name, found.source) == ("lab1.example.org", "fqdn")
    note = found.note()
    assert note is not None and note.startswith("The access sheets name this server ")
    assert "lab1.example.org (its FQDN)" in note and "LABCTL_SERVER=NAME" in note


def test_labctl_server_wins_and_nothing_is_said() -> None:
    for fqdn in ("localhost", "lab1.example.org"):
        found = find(fqdn, env={"LABCTL_SERVER": " lab.example.org "})
        assert (found.name, found.source) == ("lab.example.org", "env")
        assert found.note() is None
    assert find("localhost", env={"LABCTL_SERVER": "  "}).source == "route"  # blank: unset


@pytest.mark.parametrize(
    "given", ["lab1", "lab1.example.org", "lab1.example.org.", "192.0.2.10", "2001:db8::10"]
)
def test_labctl_server_may_be_a_host_name_or_an_address(given: str) -> None:
    assert find("localhost", env={"LABCTL_SERVER": given}).name == given


@pytest.mark.parametrize(
    "given",
    [
        "bad name;rm",
        "lab1;rm -rf /",
        "-lab1",
        "lab1-.example.org",
        "a..b",
        "10.0.0.256",
        "fe80::1%eth0",
        "a" * 64,
        "lab\n.example.org",  # a line of its own in ssh_config
    ],
)
def test_labctl_server_that_is_no_host_name_is_refused_naming_the_variable(given: str) -> None:
    with pytest.raises(SpecError) as err:
        find("lab1.example.org", env={"LABCTL_SERVER": given})
    assert err.value.message.startswith(f"LABCTL_SERVER={given!r} is not a host name or an IP")
    assert err.value.code == 2 and err.value.hint and "LABCTL_SERVER" in err.value.hint


def test_with_nothing_better_the_fqdn_is_used_with_a_warning() -> None:
    found = find("localhost", route=None)
    assert (found.name, found.source) == ("localhost", "unreachable")
    note = found.note()
    assert note is not None and note.startswith("Warning: ")
    assert "localhost" in note and "cannot reach" in note and "LABCTL_SERVER=NAME" in note


def test_the_default_route_is_found_without_sending_a_packet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, object]] = []

    class Udp:
        def __init__(self, family: int, kind: int) -> None:
            assert kind == server.socket.SOCK_DGRAM
            self.family = family

        def __enter__(self) -> Udp:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def connect(self, where: tuple[str, int]) -> None:
            calls.append(("connect", where))
            if self.family == server.socket.AF_INET:
                raise OSError(101, "Network is unreachable")

        def getsockname(self) -> tuple[str, int, int, int]:
            return ("2001:db8:1::20", 40000, 0, 0)

        def send(self, data: bytes) -> None:  # pragma: no cover - never called
            raise AssertionError("a packet was sent")

    monkeypatch.setattr(server.socket, "socket", Udp)
    assert server.route_address() == "2001:db8:1::20"  # no IPv4 route: the IPv6 one
    assert [c[1] for c in calls] == [("192.0.2.1", 9), ("2001:db8::1", 9)]


def test_the_account_takes_the_name_found_now_so_a_rerun_changes_its_sheet(
    state_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeSystem(tmp_path / "home")
    monkeypatch.setattr(accounts, "find_server", lambda: find("localhost"))
    first = accounts.ensure_account("ana", "Ana", None, "so24a", system=fake)
    assert first.server == "10.0.0.5"
    sheet = first.sheet.read_text()
    assert "Server:   10.0.0.5" in sheet and "HostName 10.0.0.5" in sheet
    assert "localhost" not in sheet
    monkeypatch.setenv("LABCTL_SERVER", "lab.example.org")
    monkeypatch.setattr(accounts, "find_server", server.find)
    again = accounts.ensure_account("ana", "Ana", None, "so24a", system=fake)
    assert again.server == "lab.example.org" == accounts.record("ana").server  # type: ignore[union-attr]
    assert "HostName lab.example.org" in again.sheet.read_text()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    w = make_world(tmp_path, monkeypatch)
    monkeypatch.setattr("labctl.images.registry.store", lambda: w.store)
    monkeypatch.setattr("labctl.host.accel.detect", NoKvm)
    monkeypatch.setattr(capacity, "host_capacity", lambda: ROOMY)
    servers: list[str | None] = []
    langs: list[str] = []

    def host_accounts(name: str | None = None, lang: str = "en") -> object:
        servers.append(name)
        langs.append(lang)
        return w.accounts

    monkeypatch.setattr(class_lifecycle, "HostAccounts", host_accounts)
    monkeypatch.setattr(class_down, "HostAccounts", host_accounts)
    w.servers = servers  # type: ignore[attr-defined]
    w.langs = langs  # type: ignore[attr-defined]
    return w


def class_up(world: World, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``class up``'s arguments for Ana alone in class so; the server found as localhost."""
    world.roster_file.write_text("id,name\nana,Ana\n")
    monkeypatch.setattr(cli_classroom, "find_server", lambda: find("localhost"))
    return ["class", "up", str(world.roster_file), str(world.path), "-c", "so"]


def test_class_up_says_which_server_the_sheets_name_and_how_to_change_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = class_up(world, monkeypatch)
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if "access sheets" in line]
    assert said == [
        "The access sheets name this server 10.0.0.5 (its address on the default route: its "
        "FQDN localhost is a loopback name or resolves to no address); to change it, set "
        "LABCTL_SERVER=NAME (what students' laptops reach) and run the same class up again."
    ]
    assert world.servers == ["10.0.0.5"]  # type: ignore[attr-defined]
    given = find("localhost", env={"LABCTL_SERVER": "lab.example.org"})
    monkeypatch.setattr(cli_classroom, "find_server", lambda: given)
    again = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert again.exit_code == 0, again.output
    assert "access sheets" not in again.stderr
    assert world.servers[-1] == "lab.example.org"  # type: ignore[attr-defined]


def test_the_sheets_language_is_given_once_and_kept_by_a_rerun(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = class_up(world, monkeypatch)
    assert CliRunner().invoke(app, [*args, "--lang", "es"]).exit_code == 0
    assert ClassDir("so").require().lang == "es"
    # a rerun from an English shell keeps the class's language; --lang changes it
    assert CliRunner().invoke(app, args, env={"LANG": "en_GB.UTF-8"}).exit_code == 0
    assert CliRunner().invoke(app, [*args, "--lang", "en"]).exit_code == 0
    assert world.langs == ["es", "es", "en"]  # type: ignore[attr-defined]
    assert ClassDir("so").require().lang == "en"
    refused = CliRunner().invoke(app, [*args, "--lang", "fr"])
    assert isinstance(refused.exception, SpecError)
    assert refused.exception.message == "unknown language 'fr'"


def test_a_new_class_takes_the_sheets_language_from_the_locale(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = class_up(world, monkeypatch)
    assert CliRunner().invoke(app, args, env={"LANG": "es_ES.UTF-8"}).exit_code == 0
    assert world.langs == ["es"]  # type: ignore[attr-defined]
