"""Rosters: every bad input refused at FILE:LINE with what to do; good ones in every encoding."""

from __future__ import annotations

import base64
import struct
import time
from pathlib import Path

import pytest

from labctl.classroom import roster
from labctl.errors import SpecError
from labctl.instance import naming
from labctl.keys import ensure_keypair


def write(tmp_path: Path, data: str | bytes, name: str = "class.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def refused(tmp_path: Path, data: str | bytes) -> str:
    with pytest.raises(SpecError) as err:
        roster.load(write(tmp_path, data))
    assert err.value.hint  # every refusal says what to do
    return err.value.message


@pytest.fixture(scope="module")
def public_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    return ensure_keypair(tmp_path_factory.mktemp("k") / "id", "ana@laptop").public_line


def test_utf8_with_bom_crlf_accents_and_optional_columns(tmp_path: Path, public_key: str) -> None:
    text = (
        "id,name,email,ssh_key\r\n"
        "ana,Ana García Núñez,ana@example.org,\r\n"
        f'b-ruiz07,"Ruiz, Bea",,{public_key}\r\n'
        "\r\n"
    )
    r = roster.load(write(tmp_path, b"\xef\xbb\xbf" + text.encode()))
    assert r.ids == ["ana", "b-ruiz07"]
    ana, bea = r.students
    assert (ana.name, ana.email, ana.ssh_key, ana.line) == (
        "Ana García Núñez",
        "ana@example.org",
        None,
        2,
    )
    assert (bea.name, bea.email, bea.ssh_key, bea.line) == ("Ruiz, Bea", None, public_key, 3)


def test_columns_in_any_order_and_only_id_and_name(tmp_path: Path) -> None:
    r = roster.load(write(tmp_path, "name,id\nZoë,zoe\n"))
    assert [(s.id, s.name) for s in r.students] == [("zoe", "Zoë")]


def test_an_empty_file_and_a_header_alone_are_refused(tmp_path: Path) -> None:
    assert refused(tmp_path, "").endswith("class.csv:1: the roster is empty")
    assert refused(tmp_path, b"\xef\xbb\xbf\r\n\r\n").endswith(":1: the roster is empty")
    assert "has a header and no students" in refused(tmp_path, "id,name\r\n")


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("id,nombre", "unknown column(s) 'nombre'; missing column(s) name"),
        ("name,email", "missing column(s) id"),
        ("id,name,id", "column(s) named twice: id"),
    ],
)
def test_a_bad_header_names_the_line(tmp_path: Path, header: str, says: str) -> None:
    message = refused(tmp_path, f"\n{header}\nana,Ana\n")
    assert message.startswith(f"{tmp_path / 'class.csv'}:2: the header")
    assert says in message


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    message = refused(tmp_path, "id,name\nana,Ana\nbo,\nbo,Bo\nana,Ana B\n")
    assert "class.csv:5: id 'ana' is already the student of line 2" in message
    # a row refused for another reason still holds its id
    assert "class.csv:4: id 'bo' is already the student of line 3" in message
    assert "class.csv:3: the name is empty" in message
    assert message.startswith("3 problem(s) in the roster")
    assert "nothing was created" in message


def test_a_key_or_an_email_given_twice_names_both_lines(tmp_path: Path, public_key: str) -> None:
    kind, blob, *_ = public_key.split()
    message = refused(
        tmp_path,
        "id,name,email,ssh_key\n"
        f"ana,Ana,ana@example.org,{public_key}\n"
        f"bo,Bo,ANA@example.org,{kind} {blob} bo@laptop\n"  # ana's key, another comment
        "cy,Cy\x07,,\n"
        f"dan,Dan,,{kind} {blob}\n",
    )
    assert "class.csv:3: email 'ANA@example.org' is already the address of line 2" in message
    assert "class.csv:3: ssh_key is the key of line 2 too (comments aside)" in message
    assert "class.csv:5: ssh_key is the key of line 2 too" in message
    assert "give each student their own key" in message
    assert message.startswith("4 problem(s) in the roster")  # listed with the others
    assert "class.csv:4: the name must be printable" in message


def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path: Path) -> None:
    message = refused(tmp_path, 'id,name\nana,"Ana\nbo,Bo\n')
    assert "class.csv:2: not valid CSV: a quote opened on this line is never closed" in message
    assert "class.csv:3:" not in message
    message = refused(tmp_path, 'id,name\nana,Ana\n\nbo,"Bo')
    assert "class.csv:4: not valid CSV: a quote opened on this line" in message
    message = refused(tmp_path, 'id,name\nana,"Ana"x\n')  # other CSV errors: where they are
    assert "class.csv:2: not valid CSV: ',' expected after '\"'" in message


@pytest.mark.parametrize(
    ("student_id", "says"),
    [
        ("Ana", "not a valid Linux user name and engine name"),
        ("1ana", "not a valid Linux user name"),
        ("ana.garcia", "not a valid Linux user name"),
        ("ana_g", "not a valid Linux user name"),
        ("ana-", "not ending with a dash"),
        ("añа", "not a valid Linux user name"),
        ("abcdefghijk", "has 11 characters, at most 10 fit"),
        ("", "the id is empty"),
    ],
)
def test_ids_that_are_not_user_names_or_engine_names(
    tmp_path: Path, student_id: str, says: str
) -> None:
    message = refused(tmp_path, f"id,name\nok,Fine\n{student_id},Someone\n")
    assert "class.csv:3: " in message and says in message


def test_the_longest_id_fits_every_engine_name_with_the_longest_class() -> None:
    longest = "a" * roster.MAX_ID
    instance = roster.instance_of("b" * roster.MAX_CLASS, longest)
    assert len(instance) == naming.MAX_INSTANCE
    assert roster.id_problem(longest) is None
    # the lab file's own check already guarantees guest names fit with a 16-char instance
    assert naming.INSTANCE_RE.match(instance)
    assert len(naming.bridge("virtualization", instance)) <= 15


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("ssh-ed25519", "not a public key line"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "type 'ssh-dss' is not one OpenSSH accepts"),
        ("ssh-ed25519 not*base64", "not valid base64"),
        ("-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC", "holds a PRIVATE key"),
    ],
)
def test_a_bad_ssh_key_names_the_line(tmp_path: Path, key: str, says: str) -> None:
    message = refused(tmp_path, f"id,name,ssh_key\nana,Ana,{key}\n")
    assert "class.csv:2: " in message and says in message


def test_a_key_whose_data_is_another_type_is_refused(tmp_path: Path, public_key: str) -> None:
    kind, blob, *_ = public_key.split()
    message = refused(tmp_path, f"id,name,ssh_key\nana,Ana,ssh-rsa {blob}\n")
    assert "class.csv:2: ssh_key says ssh-rsa but its data is a ssh-ed25519 key" in message


def rsa_line(bits: int) -> str:
    """An ssh-rsa public key line of the size a ``bits``-bit key has (its numbers are zeros)."""
    field = lambda b: struct.pack(">I", len(b)) + b  # noqa: E731
    blob = field(b"ssh-rsa") + field(b"\x01\x00\x01") + field(b"\x00" * (bits // 8 + 1))
    return "ssh-rsa " + base64.b64encode(blob).decode() + " ana@laptop"


def test_an_rsa_key_too_long_for_a_vm_command_line_is_refused(tmp_path: Path) -> None:
    assert roster.key_problem(rsa_line(4096)) is None
    message = refused(tmp_path, f"id,name,ssh_key\nana,Ana,{rsa_line(8192)}\n")
    assert "class.csv:2: ssh_key is too long" in message and "ed25519" in message


def test_not_utf8_names_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    data = b"id,name\nana,Ana\n" + "bo,Bo Muñoz\n".encode("latin-1")
    message = refused(tmp_path, data)
    assert message.startswith(f"{tmp_path / 'class.csv'}:3: the roster is not UTF-8")


def test_too_many_cells_bad_email_and_control_characters(tmp_path: Path) -> None:
    message = refused(
        tmp_path, "id,name,email\nana,Ana,Garcia,ana@x.org\nbo,Bo,bo-at-x\ncy,C\x07y,\n"
    )
    assert "class.csv:2: 4 cells for 3 columns" in message
    assert "class.csv:3: email 'bo-at-x' is not an address" in message
    assert "class.csv:4: the name must be printable" in message


def test_500_students_are_read_at_once_and_501_refused_at_the_line(tmp_path: Path) -> None:
    rows = "".join(f"s{i:03d},Estudiante {i}\n" for i in range(500))
    t0 = time.monotonic()
    r = roster.load(write(tmp_path, "id,name\n" + rows))
    assert len(r.students) == 500 and time.monotonic() - t0 < 1.0
    message = refused(tmp_path, "id,name\n" + rows + "s500,Uno más\n")
    assert message.startswith(f"{tmp_path / 'class.csv'}:502: more than 500 students")


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the roster .*nope.csv"):
        roster.load(tmp_path / "nope.csv")


def test_ids_of_existing_accounts_are_refused_unless_labctl_made_them(tmp_path: Path) -> None:
    r = roster.load(write(tmp_path, "id,name\nana,Ana\nroot,Root\nbo,Bo\n"))
    host = {"root", "bo"}
    with pytest.raises(SpecError) as err:
        roster.check_accounts(r, "so24a", host.__contains__, lambda u, c: False)
    assert "class.csv:3: id 'root' is an existing account" in err.value.message
    assert "class.csv:4: id 'bo'" in err.value.message
    assert "2 student id(s) clash" in err.value.message
    # bo's account was made by labctl for this class: a rerun may use it, root never
    ours = {("bo", "so24a")}
    with pytest.raises(SpecError) as err:
        roster.check_accounts(r, "so24a", host.__contains__, lambda u, c: (u, c) in ours)
    assert "'root'" in err.value.message and "'bo'" not in err.value.message
    roster.check_accounts(r, "so24a", {"bo"}.__contains__, lambda u, c: (u, c) in ours)
    with pytest.raises(SpecError, match="'bo'"):  # made by labctl, but for another class
        roster.check_accounts(r, "other", {"bo"}.__contains__, lambda u, c: (u, c) in ours)


def test_ids_of_existing_accounts_are_listed_with_the_other_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "id,name\nana,\nroot,Root\nbo,Bo\nroot,Root again\n")
    ours = {("bo", "so24a")}
    check = roster.account_check("so24a", {"root", "bo"}.__contains__, lambda u, c: (u, c) in ours)
    with pytest.raises(SpecError) as err:
        roster.load(path, account=check)
    message = err.value.message
    assert message.startswith("3 problem(s) in the roster")
    assert "class.csv:2: the name is empty" in message
    assert (
        "class.csv:3: id 'root' is an existing account on this host, not one labctl made for "
        "class 'so24a'; give the student another id" in message
    )
    assert "class.csv:5: id 'root' is already the student of line 3" in message
    assert "'bo'" not in message  # labctl made bo's account for this class
    assert "class.csv:3: id 'root'" not in refused(tmp_path, path.read_text())  # not asked


@pytest.mark.parametrize("name", ["", "So24a", "so-24", "sixchr", "1a"])
def test_bad_class_names(name: str) -> None:
    with pytest.raises(SpecError, match="class name"):
        roster.check_class(name)


def test_a_record_over_several_lines_is_cited_where_it_begins(tmp_path: Path) -> None:
    # a quoted name may hold a newline (the CSV is valid): the record is line 3, not 4
    message = refused(tmp_path, 'id,name\nana,Ana\nana,"Ana\nMaría"\nbo,Bo\n\nbo,Bo\n')
    assert "class.csv:3: id 'ana' is already the student of line 2" in message
    assert "class.csv:7: id 'bo' is already the student of line 5" in message
    assert "class.csv:3: the name holds a line break; put it on one line" in message


def test_an_account_of_this_host_is_found_in_its_passwd_database() -> None:
    assert roster.account_exists("root")  # every host has it
    assert not roster.account_exists("labctl-no-such-account-4f1c")
