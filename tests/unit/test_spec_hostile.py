"""Hostile lab and exercise files, and hostile ``--lab`` values: refused with FILE:LINE, exit 2.

Each test is one item of "Bad input" in issue 10; test_spec_fuzz.py throws generated files.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.cli import app
from labctl.errors import ExitCode, LabctlError, SpecError
from labctl.exercises.model import load_exercise
from labctl.exercises.progress import ProgressStore
from labctl.images.registry import guest_images
from labctl.instance import naming
from labctl.instance.state import InstanceDir
from labctl.paths import LABS_DIR, within
from labctl.spec import yamlpos
from labctl.spec.model import DockerGuest, load_lab
from tests.labs import APP, BOX, lab_yaml

runner = CliRunner()

FULL_VM = """\
  vm:
    engine: libvirt
    technique: full-virtualization
    image: vm-amd64
"""
LAB = lab_yaml("demo", FULL_VM, BOX, APP, title="Demo")


def write(tmp_path: Path, text: str | bytes, name: str = "lab.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def refused(path: Path) -> str:
    """Load ``path`` (a lab); it must be refused quickly; return the message."""
    t0 = time.monotonic()
    with pytest.raises(SpecError) as err:
        load_lab(path)
    assert time.monotonic() - t0 < 1.0
    assert err.value.code == ExitCode.USAGE == 2
    return err.value.message


def validate_cli(path: Path) -> tuple[int, str]:
    """``labctl lab validate PATH`` in-process: exit code and message."""
    result = runner.invoke(app, ["lab", "validate", str(path)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert isinstance(result.exception, SpecError), repr(result.exception)
        return result.exception.code, result.exception.message
    return result.exit_code, result.stdout


def test_the_sample_lab_and_its_exercises_still_load() -> None:
    assert len(load_lab(LABS_DIR / "virtualization").guests) == 5
    for path in sorted((LABS_DIR / "virtualization" / "exercises").glob("*.yaml")):
        load_exercise(path)


# ---- not UTF-8 ---------------------------------------------------------------------------


def test_binary_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"name: demo\ntitle: \xff\xfe\x00\x81\n")
    assert refused(path) == f"{path}:2: not UTF-8 text (byte 0xff)"
    assert validate_cli(path)[0] == 2


def test_utf16_and_random_bytes_are_refused(tmp_path: Path) -> None:
    refused(write(tmp_path, LAB.encode("utf-16")))
    refused(write(tmp_path, bytes(range(256)) * 4))


def test_huge_file_and_non_regular_file_are_refused(tmp_path: Path) -> None:
    big = write(tmp_path, "name: demo\n" + "# padding\n" * 30_000)
    assert "larger than" in refused(big)
    assert "not a regular file" in refused(Path("/dev/zero"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert refused(empty) == f"{empty / 'lab.yaml'} does not exist"  # a folder without one


# ---- aliases ---------------------------------------------------------------------------

BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_alias_bomb_is_refused_in_under_a_second(tmp_path: Path) -> None:
    assert len(BILLION_LAUGHS) < 2000
    path = write(tmp_path, BILLION_LAUGHS)
    message = refused(path)
    assert message.startswith(f"{path}:") and "aliases expand this to more than" in message


def test_too_many_aliases_are_refused(tmp_path: Path) -> None:
    text = "x: &x 1\nl: [" + ", ".join(["*x"] * (yamlpos.MAX_ALIASES + 1)) + "]\n"
    assert f"{tmp_path / 'lab.yaml'}:2: more than {yamlpos.MAX_ALIASES} aliases" in refused(
        write(tmp_path, text)
    )


@pytest.mark.parametrize(
    "text",
    ["a: &a [*a]\n", "a: &a\n  b: *a\n", "a: &a {b: [1, {c: *a}]}\n"],
    ids=["sequence", "mapping", "nested"],
)
def test_recursive_alias_is_refused(tmp_path: Path, text: str) -> None:
    assert "recursion" in refused(write(tmp_path, text))


def test_many_values_are_refused_before_the_whole_file_is_parsed(tmp_path: Path) -> None:
    path = write(tmp_path, "a: [" + ",".join(["1"] * 30_000) + "]\n")
    assert refused(path) == f"{path}:1: more than {yamlpos.MAX_NODES} values"


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    assert "nested more than" in refused(write(tmp_path, "a: " + "[" * 500 + "]" * 500 + "\n"))


def test_a_few_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    text = """\
name: demo
x-vm: &vm
  engine: libvirt
  technique: full-virtualization
  image: vm-amd64
guests:
  one: *vm
  two:
    <<: *vm
    memory: 512
"""
    doc = yamlpos.load(write(tmp_path, text))
    assert doc.data["guests"]["two"] == {**doc.data["guests"]["one"], "memory": 512}
    assert doc.line_of(("guests", "two", "memory")) == 10


# ---- duplicate keys --------------------------------------------------------------------


def test_two_guests_with_one_name_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, LAB + "  vm:\n    engine: lxd\n")
    message = refused(path)
    assert message == f"{path}:16: duplicate key 'vm' (first at line 4)"
    code, text = validate_cli(path)
    assert code == 2 and text == message


def test_a_key_twice_in_a_guest_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, LAB.replace("    image: vm-amd64\n", "    image: vm-amd64\n" * 2))
    assert refused(path) == f"{path}:8: duplicate key 'image' (first at line 7)"


def test_duplicate_key_in_an_exercise_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "id: x\nid: y\n", "10-x.yaml")
    with pytest.raises(SpecError, match=r"10-x.yaml:2: duplicate key 'id'"):
        load_exercise(path)


# ---- images and names ------------------------------------------------------------------


def test_known_images_and_kinds_come_from_the_recipes() -> None:
    images = guest_images()
    assert {n: i.kind for n, i in images.items()} == {
        "vm-amd64": "vm",
        "vm-arm64": "vm",
        "vm-amd64-tiny": "vm",
        "vm-arm64-tiny": "vm",
        "vm-s390x": "vm",
        "lxd-system": "lxd",
        "docker-app": "docker",
        "podman-app": "podman",
    }
    assert images["vm-arm64"].arch == "aarch64" and images["vm-amd64"].arch == "x86_64"


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("vm-i386", "no image 'vm-i386'"),
        ("/var/tmp/evil.qcow2", "no image '/var/tmp/evil.qcow2'"),
        ("../../vm-amd64", "no image '../../vm-amd64'"),
        ("docker-app", "'docker-app' is a docker image, not a vm image"),
        ("lxd-system", "'lxd-system' is a lxd image, not a vm image"),
        ("system-rootfs", "no image 'system-rootfs'"),  # a build step, not a guest image
        ("vm-arm64", "image vm-arm64 is for aarch64 guests, arch is x86_64"),
    ],
)
def test_vm_image_must_be_a_known_vm_image(tmp_path: Path, image: str, problem: str) -> None:
    path = write(tmp_path, LAB.replace("image: vm-amd64", f"image: {image}"))
    message = refused(path)
    line = 7 if "arch" not in problem else 4  # the arch rule is about the whole guest
    assert message.startswith(f"{path}:{line}: guests.vm") and problem in message


@pytest.mark.parametrize(
    ("old", "new"),
    [("image: lxd-system", "image: vm-amd64"), ("image: docker-app", "image: docker-base")],
)
def test_container_images_must_fit_their_engine(tmp_path: Path, old: str, new: str) -> None:
    assert "images for this engine" in refused(write(tmp_path, LAB.replace(old, new)))


def test_names_too_long_once_prefixed_are_refused(tmp_path: Path) -> None:
    lab, guest = "l" * 24, "g" * 24
    text = f"name: {lab}\nguests:\n  {guest}:\n" + LAB.split("  box:\n")[1]
    path = write(tmp_path, text)
    longest = naming.longest_resource(lab, guest)
    assert len(longest) == 73
    message = refused(path)
    assert message.startswith(f"{path}:2: guests:") and "73 characters" in message
    assert validate_cli(path)[0] == 2


def test_the_longest_accepted_names_fit_every_engine(tmp_path: Path) -> None:
    lab, guest = "l" * 24, "g" * 14  # 7 + 24 + 1 + 16 + 1 + 14 = 63
    load_lab(write(tmp_path, f"name: {lab}\nguests:\n  {guest}:\n" + LAB.split("  box:\n")[1]))
    assert len(naming.longest_resource(lab, guest)) == naming.MAX_RESOURCE == 63
    assert len(naming.bridge(lab, "x" * naming.MAX_INSTANCE)) <= 15


def test_two_docker_guests_cannot_publish_one_host_port(tmp_path: Path) -> None:
    app = LAB.split("  app:\n")[1] + "    host_port: 8081\n"
    path = write(tmp_path, LAB + "    host_port: 8081\n  app2:\n" + app)
    assert "guests app and app2 both ask for host_port 8081" in refused(path)


# ---- http_path -------------------------------------------------------------------------

BAD_HTTP_PATHS = [
    "@somehost:9/",
    "//somehost/",
    "http://somehost/",
    "somehost/",
    "",
    "/a b",
    "/a\tb",
    "/\u00e9",
    "/x@somehost/",
    "/\\\\somehost/",
    "/" + "a" * 300,
]


@pytest.mark.parametrize("value", BAD_HTTP_PATHS)
def test_unsafe_http_path_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="http_path must be an absolute path"):
        DockerGuest(engine="docker", technique="app-container", image="docker-app", http_path=value)


@pytest.mark.parametrize("value", ["/", "/health", "/cgi-bin/info?x=1&y=%20", "/a:b/#top"])
def test_plain_http_paths_are_accepted(value: str) -> None:
    guest = DockerGuest(
        engine="docker", technique="app-container", image="docker-app", http_path=value
    )
    assert guest.http_path == value


def test_http_path_in_a_lab_file_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, LAB + '    http_path: "@somehost:9/"\n')
    assert refused(path).startswith(f"{path}:16: guests.app.http_path: Value error")


# ---- control characters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('title: "\\e[2J\\e[31mDemo"\n', 1),  # ESC, written as a YAML escape
        ("description: |\n  one\n  two \x1b[0m\n", 3),  # ESC, raw: its own line
        ('title: "a\\rb"\n', 1),  # CR
        ('title: "\\x9b31m"\n', 1),  # CSI, the one-byte C1 form of ESC [
        ('title: "\\0"\n', 1),
        ("\n\ntitle: x\x07\n", 3),  # BEL, raw
    ],
)
def test_control_characters_in_texts_are_refused(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, "name: demo\n" + text)
    message = refused(path)
    assert message.startswith(f"{path}:{line + 1}: control character U+")


def test_tabs_and_newlines_are_fine(tmp_path: Path) -> None:
    lab = load_lab(write(tmp_path, LAB + 'description: "one\\ttab\\nand a line"\n'))
    assert lab.description == "one\ttab\nand a line"


def test_escape_in_an_exercise_hint_is_refused(tmp_path: Path) -> None:
    text = (LABS_DIR / "virtualization" / "exercises" / "11-emu-arquitecturas.yaml").read_text()
    start = text.index("hints:")
    hostile = text[:start] + text[start:].replace("es: ", 'es: "\\e]8;;http://x\\e\\\\" ', 1)
    path = write(tmp_path, hostile, "11-emu-arquitecturas.yaml")
    with pytest.raises(
        SpecError, match=r"11-emu-arquitecturas.yaml:\d+: control character U\+001B"
    ):
        load_exercise(path)


# ---- paths from user input -------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "", "../x", "a/b", "/etc", "x\0y", "a\\b"])
def test_within_refuses_anything_but_one_plain_component(tmp_path: Path, name: str) -> None:
    with pytest.raises(SpecError):
        within(tmp_path, name)


def test_within_joins_a_plain_name(tmp_path: Path) -> None:
    assert within(tmp_path, "lab-main") == tmp_path / "lab-main"


def test_instance_dir_and_progress_stay_in_the_state_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError):
        InstanceDir("../../x", "main", root=tmp_path)
    with pytest.raises(SpecError):
        ProgressStore("lab/..", "main", "ana", root=tmp_path)
    with pytest.raises(SpecError):
        ProgressStore("lab", "main", "../ana", root=tmp_path)
    assert ProgressStore("lab", "main", "ana", root=tmp_path).states() == {}


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state directory, and beside it a ``run/`` that ``--lab ../x`` would point at."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("LABCTL_STATE", str(state))
    victim = tmp_path / "x-main" / "run"
    victim.mkdir(parents=True)
    (victim / "keep").write_text("precious")
    return victim


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert isinstance(result.exception, LabctlError), result.output
    return result.exception.code, result.exception.message


def test_down_with_a_path_as_lab_removes_nothing(outside: Path) -> None:
    code, message = invoke("down", "--lab", "../x")
    assert code == 2 and "lab name '../x' is not valid" in message
    assert (outside / "keep").read_text() == "precious"


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--lab", "../x"],
        ["exec", "g", "--lab", "../x", "--", "true"],
        ["ssh", "g", "--lab", "../x"],
        ["down", "--lab", "/etc"],
        ["exercise", "list", "--lab", "../nope"],
        ["exercise", "progress", "--lab", "Bad/Name"],
        ["up", "../no-such-lab"],
    ],
)
def test_lab_option_must_be_a_lab_name(outside: Path, args: list[str]) -> None:
    code, _message = invoke(*args)
    assert code == 2
    assert (outside / "keep").exists()


def test_down_through_main_exits_2_without_a_traceback(
    outside: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from labctl.cli import main

    monkeypatch.setattr("sys.argv", ["labctl", "down", "--lab", "../x"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Error:" in err and "Traceback" not in err
    assert (outside / "keep").exists()
