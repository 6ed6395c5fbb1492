"""``labctl app``: a student's images and containers stay in their scope; a fake at docker-py.

The fake (``fake_engines.FakeDockerClient``) holds the lab's image ``labctl/webapp:latest``
and whatever the tests build; every refusal is checked to leave the engine untouched.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from typer.testing import CliRunner

from labctl import backends
from labctl.backends import apps as app_rules
from labctl.backends.apps import (
    DOCKERFILE_LIMIT,
    AppScope,
    NotYours,
    Reader,
    Removed,
    dockerfile_sources,
    read_context,
)
from labctl.backends.docker import DockerBackend
from labctl.backends.docker_apps import DockerApps
from labctl.cli import app
from labctl.errors import EngineError, HostError, NotFoundError, SpecError
from labctl.instance import isolation
from labctl.instance.state import LabState
from labctl.paths import LABS_DIR
from tests.ci import needs
from tests.unit.fake_engines import FakeDockerClient

LAB_IMAGE = {"labctl.image": "docker-app", "labctl.recipe": "abc"}
ANA = AppScope("virtualization", "so-ana", "ana", "so", network="labctl-virtualization-so-ana")
BOB = AppScope("virtualization", "so-bob", "bob", "so", network="labctl-virtualization-so-bob")
DOCKERFILE = "FROM labctl/webapp:latest\nCOPY index.html /srv/www/index.html\n"


def context(dockerfile: str = DOCKERFILE) -> bytes:
    """A build context as labctl's reader makes it: a tar with the Dockerfile at its root."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, text in (("Dockerfile", dockerfile), ("index.html", "<h1>v2</h1>\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture
def fake() -> FakeDockerClient:
    client = FakeDockerClient()
    client.images.add("labctl/webapp:latest", dict(LAB_IMAGE))
    client.images.add("debian:bookworm", {})
    return client


@pytest.fixture
def engine(fake: FakeDockerClient) -> DockerApps:
    return DockerApps(fake)  # type: ignore[arg-type]


# ---- names: one owner each -----------------------------------------------------------------


@pytest.mark.parametrize("tag", ["labctl/webapp:v2-ana", "labctl/mi.web:v3-ana"])
def test_a_student_names_images_and_containers_after_themselves(tag: str) -> None:
    assert ANA.tag(tag) == tag
    assert ANA.container("web-ana") == "web-ana"


@pytest.mark.parametrize(
    "tag",
    [
        "labctl/webapp:v2-bob",  # another student's
        "labctl/webapp:latest",  # the lab's
        "labctl/webapp:ana",  # no word before the id: it could be anyone's
        "labctl/webapp:v2-x-ana",  # student x-ana's, not ana's
        "other/webapp:v2-ana",  # outside labctl/
        "registry.example.org:5000/labctl/webapp:v2-ana",
    ],
)
def test_a_tag_of_someone_else_s_shape_is_refused(tag: str) -> None:
    with pytest.raises(NotYours, match="is not a tag of yours") as err:
        ANA.tag(tag)
    assert err.value.code == 2 and "labctl/webapp:v2-ana" in (err.value.hint or "")


def test_a_dash_in_a_student_id_still_gives_one_owner() -> None:
    x_ana = AppScope("virtualization", "so-x-ana", "x-ana")
    assert x_ana.tag("labctl/webapp:v2-x-ana") and x_ana.container("web-x-ana")
    with pytest.raises(NotYours):
        ANA.container("web-x-ana")
    with pytest.raises(NotYours):
        x_ana.container("web-ana")


# ---- build ---------------------------------------------------------------------------------


def test_a_build_is_labelled_on_the_student_s_network_from_their_context(
    engine: DockerApps, fake: FakeDockerClient
) -> None:
    image = engine.build(ANA, context(), "labctl/webapp:v2-ana")
    assert image.tag == "labctl/webapp:v2-ana" and image.layers == 5
    build = fake.images.builds[0]
    assert build["context"] == context() and build["custom_context"] is True
    assert build["labels"] == {
        "labctl.lab": "virtualization",
        "labctl.instance": "so-ana",
        "labctl.student": "ana",
        "labctl.app": "student",
        "labctl.class": "so",
    }
    assert build["network_mode"] == "labctl-virtualization-so-ana"
    assert build["pull"] is False and build["use_config_proxy"] is False
    assert build["rm"] and build["forcerm"] and build["container_limits"]["memory"] > 0


def test_a_rebuild_takes_the_tag_and_drops_the_old_image(
    engine: DockerApps, fake: FakeDockerClient
) -> None:
    first = engine.build(ANA, context(), "labctl/webapp:v2-ana")
    second = engine.build(ANA, context(), "labctl/webapp:v2-ana")
    assert first.id != second.id and first.id not in fake.images.by_id


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM labctl/webapp:v2-bob\n",  # bob's image
        "FROM debian:bookworm\n",  # not the lab's
        "FROM labctl/webapp:latest AS a\nFROM scratch\nCOPY --from=labctl/webapp:v2-bob / /\n",
    ],
)
def test_a_build_from_someone_else_s_image_is_refused(
    engine: DockerApps, fake: FakeDockerClient, dockerfile: str
) -> None:
    engine.build(BOB, context(), "labctl/webapp:v2-bob")
    with pytest.raises(NotYours, match="is not yours"):
        engine.build(ANA, context(dockerfile), "labctl/webapp:v2-ana")
    assert len(fake.images.builds) == 1


def test_a_build_from_the_student_s_own_image_and_stages_is_fine(engine: DockerApps) -> None:
    engine.build(ANA, context(), "labctl/webapp:v2-ana")
    text = "FROM labctl/webapp:v2-ana AS base\nFROM scratch\nCOPY --from=base /srv /srv\n"
    assert engine.build(ANA, context(text), "labctl/webapp:v3-ana").tag == "labctl/webapp:v3-ana"


@pytest.mark.parametrize(
    ("dockerfile", "problem"),
    [
        ("FROM $BASE\n", "Dockerfile:1: FROM names files and images plainly"),
        (
            "FROM labctl/webapp:latest\nADD http://10.0.0.5/x /x\n",
            "Dockerfile:2: ADD is not taken by labctl app build (use COPY)",
        ),
        (
            "# a comment\nFROM labctl/webapp:latest\nRUN true \\\n  && true\n"
            "ONBUILD COPY --from=labctl/webapp:v2-bob / /\n",
            "Dockerfile:5: ONBUILD is not taken",
        ),
        ("RUN true\n", "a Dockerfile starts FROM an image"),
        ("FROM labctl/webapp:latest\nVOLUME /data\n", "Dockerfile:2: VOLUME is not taken"),
        # what a reader other than the engine's would read otherwise (a second review's cases)
        (
            "FROM labctl/webapp:latest\nRUN echo \\\n\nFROM labctl/webapp:latest AS s\n"
            "COPY --from=labctl/webapp:v2-bob /srv /x\n",
            "Dockerfile:3: a blank or comment line inside a continued line",
        ),
        (
            "\ufeff# escape=`\nFROM labctl/webapp:latest\n",
            "Dockerfile:1: a Dockerfile here is printable ASCII text and tabs",
        ),
        ("# syntax=docker/dockerfile:1\nFROM x\n", "Dockerfile:1: parser directives"),
        (
            "FROM labctl/webapp:latest\nRUN echo \\\xa0\nFROM labctl/webapp:v2-bob\n",
            "Dockerfile:2: a Dockerfile here is printable ASCII",
        ),
        (
            'FROM labctl/webapp:latest\nCOPY --fr""om=labctl/webapp:v2-bob / /\n',
            "Dockerfile:2: COPY names files and images plainly",
        ),
        (
            "FROM labctl/webapp:latest\nCOPY --from labctl/webapp:v2-bob / /\n",
            "Dockerfile:2: COPY takes --chmod=VALUE, --chown=VALUE, --from=VALUE here, not --from",
        ),
        ("FROM --platform=linux/arm64 x\n", "Dockerfile:1: FROM takes no flags here"),
        ("FROM x AS Bad\n", "Dockerfile:1: a stage name is"),
        ("FROM x\r\nRUN true\r\n", "Dockerfile:1: a Dockerfile here is printable ASCII"),
        ("FROM x\nRUN --mount=type=bind,from=y,target=/y true\n", "RUN takes no flags"),
        ("FROM x\nRUN true \\\n", "Dockerfile:2: the last instruction ends in a continuation"),
    ],
)
def test_a_dockerfile_that_would_reach_outside_is_refused_at_its_line(
    dockerfile: str, problem: str
) -> None:
    with pytest.raises(SpecError) as err:
        dockerfile_sources(dockerfile)
    assert problem in err.value.message


def test_the_sources_of_a_dockerfile_are_its_images_not_its_stages() -> None:
    text = (
        "FROM labctl/webapp:latest AS b\nFROM b\nCOPY --from=0 / /\nCOPY --from=labctl/x:y /a /\n"
    )
    assert dockerfile_sources(text) == [(1, "labctl/webapp:latest"), (4, "labctl/x:y")]


def test_a_build_without_the_lab_s_network_is_refused(engine: DockerApps) -> None:
    down = AppScope("virtualization", "so-ana", "ana")
    with pytest.raises(HostError, match="no Docker network"):
        engine.build(down, context(), "labctl/webapp:v2-ana")


# ---- history, run, ls, rm ------------------------------------------------------------------


def test_history_of_one_s_own_and_the_lab_s_images_only(engine: DockerApps) -> None:
    engine.build(ANA, context(), "labctl/webapp:v2-ana")
    engine.build(BOB, context(), "labctl/webapp:v2-bob")
    assert engine.history(ANA, "labctl/webapp:v2-ana").layers == 5
    assert engine.history(ANA, "labctl/webapp").layers == 4  # :latest
    for other in ("labctl/webapp:v2-bob", "debian:bookworm"):
        with pytest.raises(NotYours):
            engine.history(ANA, other)


def test_a_tag_of_the_student_s_shape_not_made_by_labctl_app_is_not_theirs(
    engine: DockerApps, fake: FakeDockerClient
) -> None:
    fake.images.add("labctl/webapp:v9-ana", dict(LAB_IMAGE))  # root's own docker tag
    with pytest.raises(NotYours):
        engine.history(ANA, "labctl/webapp:v9-ana")
    with pytest.raises(NotYours):
        engine.build(ANA, context(), "labctl/webapp:v9-ana")


def test_a_container_runs_confined_on_the_student_s_network(
    engine: DockerApps, fake: FakeDockerClient
) -> None:
    engine.build(ANA, context(), "labctl/webapp:v2-ana")
    c = engine.run(ANA, "labctl/webapp:v2-ana", "web-ana", 23737, None, 0)
    assert (c.name, c.image, c.port) == ("web-ana", "labctl/webapp:v2-ana", 23737)
    made = fake.containers.by_name["web-ana"]
    assert made.status == "running" and made.labels == ANA.labels
    assert made.attrs["HostConfig"]["PortBindings"] == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "23737"}]
    }
    options = made.options
    assert options["network"] == ANA.network and options["image"] == "labctl/webapp:v2-ana"
    assert options["security_opt"] == ["no-new-privileges"] and options["pids_limit"] > 0
    for forbidden in ("privileged", "cap_add", "volumes", "devices", "network_mode", "pid_mode"):
        assert forbidden not in options


def test_a_second_run_under_the_same_name_says_what_to_do_not_the_engines_conflict(
    engine: DockerApps, fake: FakeDockerClient
) -> None:
    engine.run(ANA, "labctl/webapp:latest", "web-ana", 23737, None, 0)
    with pytest.raises(SpecError) as err:
        engine.run(ANA, "labctl/webapp:latest", "web-ana", 23738, None, 0)
    assert err.value.message == "you have a container web-ana already (running)"
    assert err.value.code == 2 and "labctl app rm web-ana" in (err.value.hint or "")
    assert fake.containers.by_name["web-ana"].status == "running"  # left as it was


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("labctl/webapp:v2-bob", "web-ana"),
        ("debian:bookworm", "web-ana"),
        ("labctl/webapp:latest", "web-bob"),
        ("labctl/webapp:latest", "labctl-virtualization-so-ana-docker-app"),  # the lab's guest
    ],
)
def test_running_someone_else_s_image_or_name_is_refused(
    engine: DockerApps, fake: FakeDockerClient, image: str, name: str
) -> None:
    engine.build(BOB, context(), "labctl/webapp:v2-bob")
    with pytest.raises(NotYours):
        engine.run(ANA, image, name, 23737, None, 0)
    assert fake.containers.by_name == {}


def test_ls_and_rm_see_the_student_s_own_things_only(
    engine: DockerApps, fake: FakeDockerClient
) -> None:
    engine.build(ANA, context(), "labctl/webapp:v2-ana")
    engine.build(BOB, context(), "labctl/webapp:v2-bob")
    engine.run(ANA, "labctl/webapp:latest", "prueba-ana", 31000, None, 0)
    engine.run(BOB, "labctl/webapp:latest", "prueba-bob", 31001, None, 0)
    mine = engine.listing(ANA)
    assert [i.tag for i in mine.images] == ["labctl/webapp:v2-ana"]
    assert [c.name for c in mine.containers] == ["prueba-ana"]
    with pytest.raises(NotYours):
        engine.remove(ANA, "prueba-bob")
    with pytest.raises(NotYours):
        engine.remove(ANA, "labctl/webapp:v2-bob")
    fake.containers.create("labctl/webapp:latest", "x-ana", {})  # by hand, not labctl app's
    with pytest.raises(NotYours, match="not made by labctl app for you"):
        engine.remove(ANA, "x-ana")
    with pytest.raises(NotFoundError, match="you have no container"):
        engine.remove(ANA, "nada-ana")
    container = fake.containers.by_name["prueba-ana"]
    assert str(engine.remove(ANA, "prueba-ana")) == "container prueba-ana"
    assert container.volumes_removed  # with its anonymous volumes (docker rm -v)
    assert engine.remove(ANA, "labctl/webapp:v2-ana") == Removed("image", "labctl/webapp:v2-ana")
    assert engine.listing(ANA).images == () and engine.listing(ANA).containers == ()
    assert [c.name for c in engine.listing(BOB).containers] == ["prueba-bob"]


def test_down_removes_the_instance_s_student_images_and_nothing_else(
    fake: FakeDockerClient,
) -> None:
    engine = DockerApps(fake)  # type: ignore[arg-type]
    engine.build(ANA, context(), "labctl/webapp:v2-ana")
    engine.build(ANA, context("FROM labctl/webapp:v2-ana\n"), "labctl/webapp:v3-ana")
    engine.build(BOB, context(), "labctl/webapp:v2-bob")
    state = LabState("virtualization", "so-ana", "x")
    DockerBackend(fake).cleanup(state)  # type: ignore[arg-type]
    tags = {t for i in fake.images.by_id.values() for t in i.tags}
    assert tags == {"labctl/webapp:latest", "debian:bookworm", "labctl/webapp:v2-bob"}


# ---- the build context, read with the student's rights -------------------------------------


def _names(data: bytes) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: "link" if m.issym() else "file" for m in tar.getmembers()}


def test_the_context_is_a_tar_of_the_directory_with_links_kept_as_links(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = home / "web"
    work.mkdir(parents=True)
    (work / "Dockerfile").write_text(DOCKERFILE)
    (work / "index.html").write_text("hi")
    (work / "shadow").symlink_to("/etc/shadow")  # a link, never followed
    os.mkfifo(work / "pipe")  # left out
    me = Reader(os.getuid(), os.getgid(), home)
    assert _names(read_context(str(work), me)) == {
        "Dockerfile": "file",
        "index.html": "file",
        "shadow": "link",
    }


def test_a_context_outside_the_home_or_escaping_it_by_a_link_is_refused(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    (elsewhere / "Dockerfile").write_text(DOCKERFILE)
    (home / "web").symlink_to(elsewhere)
    me = Reader(os.getuid(), os.getgid(), home)
    for path in (elsewhere, home / "web"):
        with pytest.raises(NotYours, match="is not inside your home") as err:
            read_context(str(path), me)
        assert err.value.code == 2
    with pytest.raises(NotYours, match="has no Dockerfile"):
        read_context(str(home), me)


@needs(os.geteuid() == 0, "reads as another uid")
def test_the_context_is_read_with_the_student_s_rights_not_root_s() -> None:
    top = Path(tempfile.mkdtemp(dir="/var/tmp"))  # /tmp/pytest-of-root is root's only
    try:
        _read_as_nobody(top)
    finally:
        shutil.rmtree(top)


def _read_as_nobody(top: Path) -> None:
    top.chmod(0o755)
    home = top / "home"
    work = home / "web"
    work.mkdir(parents=True)
    (work / "Dockerfile").write_text(DOCKERFILE)
    secret = work / "root-only"
    secret.write_text("x")
    secret.chmod(0o600)
    for path in (home, work, work / "Dockerfile"):
        shutil.chown(path, 65534, 65534)
    nobody = Reader(65534, 65534, home)
    with pytest.raises(NotYours, match="Permission denied: .*root-only"):
        read_context(str(work), nobody)
    secret.unlink()
    assert _names(read_context(str(work), nobody)) == {"Dockerfile": "file"}
    shutil.chown(work, 0, 0)  # a directory in their home that is not theirs
    with pytest.raises(NotYours, match="is not yours"):
        read_context(str(work), nobody)


# ---- the command line: ports from the student's exercises ----------------------------------


class RecordingApps:
    """The engine the CLI talks to, recording what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def run(self, scope: AppScope, ref: str, name: str, port: int, inner: Any, wait: float) -> Any:
        self.calls.append(("run", (scope, ref, name, port)))
        return app_rules.AppContainer(name, ref, "running", port, 0.5 if wait else None)


@pytest.fixture
def ana_runs(
    state_root: Path, monkeypatch: pytest.MonkeyPatch, fake_nft: Any
) -> tuple[RecordingApps, Callable[..., Any]]:
    """The engine the CLI asks, and ``labctl app run labctl/webapp:latest --name web-ana``
    as ana on the default lab with more arguments (the result of CliRunner's invoke)."""
    recording = RecordingApps()
    monkeypatch.setattr(backends, "app_engine", lambda: recording)
    lab = str(LABS_DIR / "virtualization")
    base = ["app", "run", "labctl/webapp:latest", "--name", "web-ana", "-l", lab, "-s", "ana"]
    return recording, lambda *more: CliRunner().invoke(app, [*base, *more])


def _ports_in(hint: str | None) -> list[int]:
    return [int(p) for p in (hint or "").replace(",", " ").split() if p.isdigit()]


def test_a_student_publishes_only_the_ports_their_exercises_give_them(
    ana_runs: tuple[RecordingApps, Callable[..., Any]], fake_nft: Any
) -> None:
    recording, run = ana_runs
    refused = run("--port", "12345").exception
    assert isinstance(refused, NotYours) and refused.code == 2
    assert refused.message == "port 12345 is not one of yours (ana)"
    assert "for app-imagen" in (refused.hint or "") and recording.calls == []
    port = next(p for p in _ports_in(refused.hint) if 20000 <= p <= 29999)
    ran = run("--port", str(port), "--wait")
    assert ran.exit_code == 0, ran.output
    assert "answered 0.50 s" in ran.output
    scope, _ref, _name, published = recording.calls[0][1]
    assert (scope.student, scope.instance, published) == ("ana", "main", port)
    # in labctl's firewall (students reach their own published ports only) before it listens
    assert fake_nft.sets["ports"] == {port: "labctl virtualization/main"}


def test_run_speaks_the_students_language(
    ana_runs: tuple[RecordingApps, Callable[..., Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _recording, run = ana_runs
    port = next(p for p in _ports_in(run("--port", "1").exception.hint) if 20000 <= p <= 29999)
    monkeypatch.setenv("LANG", "es_ES.UTF-8")
    ran = run("--port", str(port), "--wait")
    assert ran.exit_code == 0, ran.output
    assert f"web-ana ejecuta labctl/webapp:latest en http://127.0.0.1:{port}/" in ran.output
    assert "Respondió 0.50 s después de que labctl lo arrancara." in ran.output


def test_a_port_another_lab_publishes_is_refused_before_anything_is_asked(
    ana_runs: tuple[RecordingApps, Callable[..., Any]], fake_nft: Any
) -> None:
    recording, run = ana_runs
    port = _ports_in(run("--port", "1").exception.hint)[0]
    # bob's lab was given the same port and published it first: his stays his
    isolation.publish("virtualization", "so-bob", [port])
    refused = run("--port", str(port)).exception
    assert isinstance(refused, NotYours) and refused.code == 2
    said = f"port {port} is already published for virtualization/so-bob on this server"
    assert refused.message == said
    assert recording.calls == []
    assert fake_nft.sets["ports"] == {port: "labctl virtualization/so-bob"}


@pytest.mark.parametrize(
    "spec", ["²", "\u0662\u0660\u0660\u0660\u0660", "0", "70000", "20080:99999", "1:2:3"]
)
def test_a_port_is_plain_digits_in_range(
    ana_runs: tuple[RecordingApps, Callable[..., Any]], spec: str
) -> None:
    refused = ana_runs[1]("--port", spec).exception
    assert isinstance(refused, NotYours) and "ports 1-65535" in refused.message, refused


def _with_dockerfile(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_dockerfile_that_is_a_link_or_too_large_is_refused(engine: DockerApps) -> None:
    link = tarfile.TarInfo("Dockerfile")
    link.type, link.linkname = tarfile.SYMTYPE, "sub/../evil"
    with pytest.raises(NotYours, match="a link or not a file"):
        engine.build(ANA, _with_dockerfile(link), "labctl/webapp:v2-ana")
    big = tarfile.TarInfo("Dockerfile")
    data = b"#" * (DOCKERFILE_LIMIT + 1)
    big.size = len(data)
    with pytest.raises(NotYours, match="larger than 64 KiB"):
        engine.build(ANA, _with_dockerfile(big, data), "labctl/webapp:v2-ana")


def test_an_image_the_engine_keeps_does_not_keep_the_others_and_is_reported(
    fake: FakeDockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = DockerApps(fake)  # type: ignore[arg-type]
    kept = engine.build(ANA, context(), "labctl/webapp:v2-ana")
    engine.build(ANA, context(), "labctl/webapp:v3-ana")
    remove = fake.images.remove

    def refuse_one(ref: str, force: bool = False) -> None:
        if ref == kept.id:
            raise docker.errors.APIError("409", explanation="image is being used by a container")
        remove(ref, force)

    monkeypatch.setattr(fake.images, "remove", refuse_one)
    with pytest.raises(EngineError, match="being used by a container") as err:
        engine.remove_all("virtualization", "so-ana")
    assert "labctl down -i so-ana" in (err.value.hint or "")
    assert {t for i in fake.images.by_id.values() for t in i.tags} == {
        "labctl/webapp:latest",
        "debian:bookworm",
        "labctl/webapp:v2-ana",
    }
