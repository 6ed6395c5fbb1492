"""Each check kind against a fake connection: passes, fails with a teacher's note, or errors."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from labctl.command import CommandResult
from labctl.connection import Connection, HttpAnswer, LocalConnection, ReadError
from labctl.errors import EngineError
from labctl.exercises import checks
from labctl.exercises.checks import CheckResult, evaluate
from labctl.exercises.model import (
    HOST,
    AnswerCheck,
    CommandCheck,
    FileCheck,
    HttpCheck,
    PortCheck,
    ServiceCheck,
)
from labctl.i18n import Lang
from tests.unit.fake_connection import FakeConnection
from tests.unit.servers import web_page

WHAT = {"what": {"es": "lo comprobado", "en": "what is checked"}}


def on(guest: Connection, host: Connection | None = None) -> Callable[[str], Connection]:
    """Every target is ``guest``, but the host (the real one unless given)."""
    here = host or LocalConnection()
    return lambda target: here if target == HOST else guest


def run(check: Any, guest: Connection, lang: Lang = "es", **kw: Any) -> CheckResult:
    return evaluate(check, on(guest), lang, **kw)


# ---- command -------------------------------------------------------------------------------


def command(**kw: Any) -> CommandCheck:
    return CommandCheck.model_validate({"kind": "command", "target": "g", **WHAT, **kw})


def test_command_passes_on_the_expected_exit_code_and_output() -> None:
    result = run(
        command(run="uname -m", stdout="^aarch64$"), FakeConnection({"uname": (0, "aarch64\n")})
    )
    assert result.passed and result.detail == "correcto"


def test_command_failing_says_what_it_got_and_expected() -> None:
    check = command(run="id -u ana", note={"es": "Crea a ana.", "en": "Create ana."})
    result = run(check, FakeConnection({"id": (1, "", "id: 'ana': no such user\n")}))
    assert result.status == "failed"
    assert result.detail == (
        "`id -u ana` en g terminó con código 1 (se esperaba 0): «id: 'ana': no such user»"
    )
    assert result.note == "Crea a ana."


def test_command_output_mismatch_in_english() -> None:
    result = run(
        command(run="getent passwd ana | cut -d: -f7", stdout="^/bin/bash$"),
        FakeConnection({"getent": (0, "/bin/sh\n")}),
        "en",
    )
    assert result.detail.endswith("printed “/bin/sh” (expected “/bin/bash”)")


def test_a_long_command_is_named_not_shown_cut() -> None:
    long = 'u=$(systemctl show -P User reloj); runuser -u "${u:-root}" -- test -w /srv/reloj'
    result = run(command(run=long, rc=0), FakeConnection({"u=": (1, "")}))
    assert result.detail == "la orden de la comprobación en g terminó con código 1 (se esperaba 0)"


def test_a_pattern_that_is_more_than_text_is_not_shown_to_the_student() -> None:
    result = run(
        command(run="date +%T", stdout=r"^\d\d:\d\d:\d\d$"),
        FakeConnection({"date": (0, "noon\n")}),
    )
    assert result.detail == "`date +%T` en g escribió «noon» (no es lo que se pide)"
    nothing = run(command(run="true", stdout=r"\bdummy\b"), FakeConnection({"true": (0, "")}))
    assert nothing.detail == "`true` en g no escribió nada (no es lo que se pide)"


# ---- file ----------------------------------------------------------------------------------


def file(**kw: Any) -> FileCheck:
    return FileCheck.model_validate({"kind": "file", "target": "g", "path": "/etc/x", **WHAT, **kw})


def test_file_missing_fails_and_absent_passes_when_wanted() -> None:
    guest = FakeConnection({"stat": (1, "", "No such file")})
    assert run(file(), guest).detail == "/etc/x no existe en g"
    assert run(file(exists=False), guest).passed


def test_file_mode_owner_and_content_are_all_reported() -> None:
    guest = FakeConnection({"stat": (0, "644 root\n")}, files={"/etc/x": b"hello\n"})
    result = run(file(mode="600", owner="ana", contains="^ssh-ed25519 "), guest)
    assert result.status == "failed"
    assert "tiene permisos 644 y deberían ser 600" in result.detail
    assert "pertenece a root y debería pertenecer a ana" in result.detail
    assert "/etc/x no contiene «ssh-ed25519 »" in result.detail
    other = run(file(contains=r"(?m)^ssh-(ed25519|rsa) "), guest)
    assert other.detail == "/etc/x no contiene lo que se pide"


def test_file_passes_when_everything_matches() -> None:
    guest = FakeConnection({"stat": (0, "600 ana\n")}, files={"/etc/x": b"ssh-ed25519 AAAA x\n"})
    assert run(file(mode="0600", owner="ana", contains="^ssh-ed25519 "), guest).passed
    assert guest.commands[-1] == "read /etc/x"  # the content through the connection


def test_a_mode_at_most_refuses_only_the_bits_beyond_it_and_owners_may_be_several() -> None:
    sshd = {"mode_at_most": "755", "owner": ["ana", "root"]}  # what sshd's StrictModes asks
    for stat in ("600 ana\n", "644 root\n", "755 ana\n"):
        assert run(file(**sshd), FakeConnection({"stat": (0, stat)})).passed, stat
    writable = run(file(**sshd), FakeConnection({"stat": (0, "664 bo\n")}), "en")
    assert writable.detail == (
        "/etc/x has mode 664, more than 755 allows; /etc/x belongs to bo, expected ana or root"
    )


def test_a_file_that_cannot_be_read_says_what_the_guest_said() -> None:
    class Locked(FakeConnection):
        def read_file(self, path: str) -> bytes | None:
            raise ReadError(f"{path} cannot be read on g: Permission denied", "Permission denied")

    result = run(file(contains="x"), Locked({"stat": (0, "600 ana\n")}), "en")
    assert result.status == "failed"
    assert result.detail == "/etc/x cannot be read: Permission denied"


def test_a_home_path_stays_relative_to_home_and_others_are_quoted() -> None:
    guest = FakeConnection({"stat": (0, "600 ana\n")})
    run(file(path="~/.ssh/my key"), guest)
    run(file(path="/tmp/a b"), guest)
    assert guest.commands == [
        "stat -c '%a %U' -- \"$HOME\"/'.ssh/my key'",
        "stat -c '%a %U' -- '/tmp/a b'",
    ]


# ---- service -------------------------------------------------------------------------------


def service(**kw: Any) -> ServiceCheck:
    return ServiceCheck.model_validate(
        {"kind": "service", "target": "g", "name": "web", **WHAT, **kw}
    )


def units(load: str, active: str, enabled: str) -> FakeConnection:
    out = f"LoadState={load}\nActiveState={active}\nUnitFileState={enabled}\n"
    return FakeConnection({"systemctl show": (0, out)})


def test_service_not_found() -> None:
    assert run(service(), units("not-found", "inactive", "")).detail == (
        "no hay ninguna unidad web en g"
    )


def test_service_failed_and_disabled_is_reported_once() -> None:
    result = run(service(enabled=True), units("loaded", "failed", "disabled"), "en")
    assert result.detail == (
        "service web is “failed” (should be running) and “disabled” "
        "(should be enabled, to start at boot)"
    )


def test_service_running_and_enabled_passes() -> None:
    assert run(service(enabled=True), units("loaded", "active", "enabled")).passed


def test_service_without_systemd_is_an_error_not_a_failure() -> None:
    result = run(service(), FakeConnection({}))
    assert result.status == "error" and "no usable systemctl" in result.detail


# ---- port ----------------------------------------------------------------------------------

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   1: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   2: 0500000A:0016 0100000A:D2A4 01 00000000:00000000 02:00091A1A 00000000     0
"""


def test_listening_ports_are_read_from_proc_net_tcp() -> None:
    assert checks.listening_ports(PROC_NET_TCP) == {8080: ["0.0.0.0"], 22: ["127.0.0.1"]}


@pytest.mark.parametrize(
    ("port", "listening", "passed"),
    [(8080, True, True), (9000, True, False), (9000, False, True), (22, False, False)],
)
def test_port_check(port: int, listening: bool, passed: bool) -> None:
    check = PortCheck.model_validate(
        {"kind": "port", "target": "g", "port": str(port), "listening": listening, **WHAT}
    )
    assert run(check, FakeConnection({"/proc/net/tcp": (0, PROC_NET_TCP)})).passed is passed


# ---- http ----------------------------------------------------------------------------------


@pytest.fixture
def web() -> Iterator[str]:
    with web_page(b"<h1>hola 1a2b3c4d</h1>") as url:
        yield url


def http_check(url: str, **kw: Any) -> HttpCheck:
    return HttpCheck.model_validate({"kind": "http", "url": url, **WHAT, **kw})


def test_http_status_and_body(web: str) -> None:
    assert run(http_check(f"{web}/", body="1a2b3c4d"), FakeConnection({})).passed
    assert "no contiene «zzz»" in run(http_check(f"{web}/", body="zzz"), FakeConnection({})).detail
    assert (
        "responde 404 (se esperaba 200)" in run(http_check(f"{web}/x"), FakeConnection({})).detail
    )


def test_http_is_fetched_through_the_hosts_connection() -> None:
    host = FakeConnection(name="host", pages={"http://x/": HttpAnswer(200, "<h1>hola ab12</h1>")})
    check = http_check("http://x/", body="ab12")
    assert evaluate(check, on(FakeConnection({}), host), "en").passed
    assert host.commands == ["fetch http://x/"]


def test_http_nobody_listening_is_a_failure_not_an_error() -> None:
    with socket.socket() as s:  # a port that was free a moment ago, and nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(http_check(f"http://127.0.0.1:{port}/"), FakeConnection({}))
    assert result.status == "failed" and "nadie responde" in result.detail


# ---- answer --------------------------------------------------------------------------------


def answer(**kw: Any) -> AnswerCheck:
    return AnswerCheck.model_validate(
        {"kind": "answer", "truth": {"target": "g", "run": "uname -m"}, **WHAT, **kw}
    )


def test_no_answer_fails_without_measuring() -> None:
    guest = FakeConnection({})
    assert "todavía no has respondido" in run(answer(), guest).detail
    assert guest.commands == []


def test_text_answers_compare_without_case_accents_or_quotes() -> None:
    guest = FakeConnection({"uname": (0, "aarch64\n")})
    assert run(answer(), guest, answer=" «AArch64» ").passed
    yes = answer(synonyms={"si": ["yes"]})
    assert run(yes, FakeConnection({"uname": (0, "si\n")}), answer="Sí").passed
    assert run(yes, FakeConnection({"uname": (0, "si\n")}), answer="YES").passed


def test_synonyms_accept_other_names_of_the_measured_value() -> None:
    check = answer(synonyms={"ata_piix": ["ide", "piix"], "virtio-pci": ["virtio"]})
    ide = run(check, FakeConnection({"uname": (0, "ata_piix\n")}), answer="IDE", lang="en")
    assert ide.passed and ide.detail == "correct: IDE (the lab measures ata_piix)"
    same = run(check, FakeConnection({"uname": (0, "ata_piix\n")}), answer="ata_piix")
    assert same.detail == "correcto: ata_piix"
    assert not run(check, FakeConnection({"uname": (0, "ata_piix\n")}), answer="virtio").passed


def test_a_mac_address_is_the_same_in_any_notation() -> None:
    guest = {"uname": (0, "52:54:00:0f:1f:38\n")}
    for said in ("52:54:00:0F:1F:38", "52-54-00-0f-1f-38", "5254.000f.1f38", "525400 0f1f38"):
        assert run(answer(match="mac"), FakeConnection(guest), answer=said).passed, said
    other = run(answer(match="mac"), FakeConnection(guest), answer="52:54:00:0f:1f:39")
    assert not other.passed and "38" not in other.detail  # the truth is not said


def test_a_wrong_answer_fails_without_revealing_the_truth() -> None:
    result = run(answer(), FakeConnection({"uname": (0, "aarch64\n")}), answer="x86_64")
    assert result.status == "failed" and "aarch64" not in result.detail
    assert "no coincide con lo que el laboratorio mide en g" in result.detail


def test_number_answers_with_tolerance_margin_and_factor() -> None:
    ten = FakeConnection({"uname": (0, "10\n")})
    assert run(answer(match="number"), ten, answer="10").passed
    off_by_one = run(answer(match="number"), ten, answer="11")
    assert not off_by_one.passed  # an exact answer one off is wrong, not "far"
    assert off_by_one.detail.startswith("tu respuesta 11 no es lo que mide el laboratorio (tiene")
    assert run(answer(match="number", tolerance=0.2), ten, answer="12").passed
    assert not run(answer(match="number", tolerance=0.2), ten, answer="12,5").passed
    assert run(answer(match="number", margin=3), ten, answer="7").passed
    assert run(answer(match="number", factor=2), ten, answer="5 veces").passed
    assert not run(answer(match="number", factor=2), ten, answer="4.9").passed
    far = run(answer(match="number", factor=2), ten, answer="21")
    assert "está lejos de lo que mide" in far.detail
    assert "se acepta hasta 2 veces por encima o por debajo" in far.detail
    assert "10" not in far.detail.replace("21", "")


def test_a_ratio_divides_two_measurements() -> None:
    check = answer(
        match="number",
        tolerance=0.1,
        truth={"target": "g", "run": "slow", "divided_by": {"target": "g", "run": "fast"}},
    )
    guest = FakeConnection({"slow": (0, "4000\n"), "fast": (0, "100\n")})
    assert run(check, guest, answer="40").passed
    assert not run(check, guest, answer="4").passed


def measured(*values: str) -> FakeConnection:
    """A guest whose measurement prints the next of ``values`` each time it is taken."""
    left = iter(values)
    return FakeConnection(respond=lambda cmd: CommandResult(cmd, 0, next(left) + "\n", ""))


def test_a_noisy_timing_is_measured_again_before_an_answer_is_wrong() -> None:
    # the student measured 25 while the machine was busy; the lab first measures 10, then 30
    assert not run(answer(match="number", factor=2), measured("10", "30"), answer="25").passed
    guest = measured("10", "30", "31")
    check = answer(match="number", factor=2, remeasure=2)
    result = run(check, guest, answer="25")
    assert result.passed and "el laboratorio mide 30" in result.detail
    assert len(guest.commands) == 2  # stops at the first measurement that agrees


def test_remeasuring_never_makes_a_far_answer_right() -> None:
    guest = measured("10", "11", "9")
    result = run(answer(match="number", factor=2, remeasure=2), guest, answer="1")
    assert result.status == "failed" and len(guest.commands) == 3


def ratio_guest(slow: list[str], fast: list[str]) -> FakeConnection:
    """A guest whose ``slow`` and ``fast`` print their next value each time; then they fail."""
    left = {"slow": iter(slow), "fast": iter(fast)}

    def respond(cmd: str) -> CommandResult:
        out = next(left[cmd], None)
        return CommandResult(cmd, 0, f"{out}\n", "") if out else CommandResult(cmd, 1, "", "gone")

    return FakeConnection(respond=respond)


def test_a_ratio_is_measured_again_whole_and_a_failed_remeasurement_leaves_it_wrong() -> None:
    truth = {"target": "g", "run": "slow", "divided_by": {"target": "g", "run": "fast"}}
    check = answer(match="number", factor=1.5, remeasure=2, truth=truth)
    # 4000/100 = 40 is far from 180; 9000/50 = 180 is the answer (both sides measured again)
    assert run(check, ratio_guest(["4000", "9000"], ["100", "50"]), answer="180").passed
    # 40, 180, then the guest fails: the answer stays wrong, not an error of the exercise
    wrong = run(check, ratio_guest(["4000", "9000"], ["100", "50"]), answer="500")
    assert wrong.status == "failed" and "vuelve a medir" in wrong.detail


def test_not_a_number_is_said_so() -> None:
    result = run(answer(match="number"), FakeConnection({"uname": (0, "3\n")}), answer="tres")
    assert result.detail == "«tres» no es un número"


def test_a_truth_the_lab_cannot_measure_fails_with_its_reason() -> None:
    guest = FakeConnection({"uname": (1, "", "Error: No such image: labctl/webapp:v2-ana\n")})
    result = run(answer(), guest, answer="1")
    assert result.status == "failed"
    assert "el laboratorio no pudo medir la respuesta en g: Error: No such image" in result.detail


def test_a_ratio_over_zero_is_an_error_of_the_exercise() -> None:
    check = answer(
        match="number", truth={"target": "g", "run": "a", "divided_by": {"target": "g", "run": "b"}}
    )
    result = run(check, FakeConnection({"^a$": (0, "3\n"), "^b$": (0, "0\n")}), answer="1")
    assert result.status == "error"


# ---- errors --------------------------------------------------------------------------------


def test_a_guest_that_cannot_be_reached_is_an_error_with_its_hint() -> None:
    def down(_target: str) -> Connection:
        raise EngineError("guest kvm-full is stopped", "run `labctl up`")

    result = evaluate(command(run="true"), down, "en")
    assert (result.status, result.detail, result.note) == (
        "error",
        "guest kvm-full is stopped",
        "run `labctl up`",
    )


def test_a_transport_error_is_an_error_not_a_traceback() -> None:
    def broken(command: str) -> CommandResult:
        raise ConnectionResetError("reset by peer")

    result = run(command(run="true"), FakeConnection(respond=broken))
    assert result.status == "error" and "ConnectionResetError" in result.detail
