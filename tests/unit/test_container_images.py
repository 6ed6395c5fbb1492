"""Container image recipes without engines: socket detection, metadata, hooks, cleanup."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import socketserver
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
import requests
import yaml
from pylxd.exceptions import LXDAPIException

from labctl import docker_client, lxd_client
from labctl.errors import BuildError, EngineError
from labctl.images import containers
from labctl.images.cache import ImageStore
from labctl.images.containers import docker as docker_images
from labctl.images.containers import lxd as lxd_images
from labctl.images.recipe import MANIFEST, BuildContext, Manifest
from labctl.paths import IMAGES_DIR
from tests.unit.servers import serving

# --- LXD socket detection ----------------------------------------------------------------


def test_socket_candidates_default_order() -> None:
    assert lxd_client.socket_candidates({}) == list(lxd_client.DEFAULT_SOCKETS)
    assert [str(p) for p in lxd_client.DEFAULT_SOCKETS] == [
        "/var/lib/lxd/unix.socket",
        "/var/snap/lxd/common/lxd/unix.socket",
        "/var/lib/incus/unix.socket",
    ]


def test_socket_candidates_overrides_come_first(tmp_path: Path) -> None:
    env = {
        "LABCTL_LXD_SOCKET": str(tmp_path / "mine.socket"),
        "LXD_DIR": str(tmp_path / "lxd"),
        "INCUS_DIR": str(tmp_path / "incus"),
    }
    found = lxd_client.socket_candidates(env)
    assert found[:3] == [
        tmp_path / "mine.socket",
        tmp_path / "lxd" / "unix.socket",
        tmp_path / "incus" / "unix.socket",
    ]
    assert found[3:] == list(lxd_client.DEFAULT_SOCKETS)


class _LxdHandler(http.server.BaseHTTPRequestHandler):
    """Answers ``GET /1.0`` the way LXD does, enough for pylxd's connection check."""

    def do_GET(self) -> None:
        body = json.dumps(
            {
                "type": "sync",
                "status": "Success",
                "status_code": 200,
                "metadata": {
                    "api_extensions": [],
                    "environment": {"server": "incus", "server_version": "6.0"},
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)


@pytest.fixture
def fake_lxd(tmp_path: Path) -> Iterator[Path]:
    """A socket that answers like an LXD daemon."""
    path = tmp_path / "answers.socket"
    with serving(_UnixHTTPServer(str(path), _LxdHandler)):
        yield path


def test_connect_no_socket_names_the_places_it_looked(tmp_path: Path) -> None:
    with pytest.raises(EngineError) as err:
        lxd_client.connect([tmp_path / "a.socket", tmp_path / "b.socket"])
    assert "a.socket" in err.value.message and "b.socket" in err.value.message
    assert err.value.hint and "labctl host setup" in err.value.hint


def test_connect_skips_dead_socket_and_uses_first_that_answers(
    tmp_path: Path, fake_lxd: Path
) -> None:
    dead = tmp_path / "dead.socket"
    dead.touch()  # exists, nobody listens
    client = lxd_client.connect([tmp_path / "missing.socket", dead, fake_lxd])
    assert lxd_client.server_name(client) == "incus 6.0"


def test_connect_reports_every_socket_that_did_not_answer(tmp_path: Path) -> None:
    dead = tmp_path / "dead.socket"
    dead.touch()
    with pytest.raises(EngineError) as err:
        lxd_client.connect([dead])
    assert "no LXD or Incus daemon answers" in err.value.message
    assert str(dead) in err.value.message


class _Response:
    """The part of a requests.Response that pylxd's exceptions read."""

    def __init__(self, status: int, error: str) -> None:
        self.status_code = status
        self.content = error.encode()

    def json(self) -> dict[str, Any]:
        return {"error": self.content.decode()}


def test_lxd_engine_errors_keep_the_daemons_message() -> None:
    with pytest.raises(EngineError) as err, lxd_client.engine_errors("import the image"):
        raise LXDAPIException(_Response(500, "Image with same fingerprint already exists"))
    assert err.value.message == (
        "LXD refused to import the image: Image with same fingerprint already exists"
    )


# --- Docker helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "bare"),
    [
        ("localhost/labctl/webapp:1", "labctl/webapp:1"),
        ("docker.io/library/debian:12", "debian:12"),
        ("docker.io/labctl/webapp:1", "labctl/webapp:1"),
        ("labctl/webapp:latest", "labctl/webapp:latest"),
    ],
)
def test_bare_name(ref: str, bare: str) -> None:
    assert docker_client.bare_name(ref) == bare


def test_docker_engine_errors_keep_the_daemons_message() -> None:
    response = requests.Response()
    response.status_code = 500
    with pytest.raises(EngineError) as err, docker_client.engine_errors("import the base image"):
        raise docker.errors.APIError("500 Server Error", response, explanation="invalid tar header")
    assert err.value.message == "Docker refused to import the base image: invalid tar header"


def test_import_result_reads_the_image_id() -> None:
    digest = "ab" * 32
    assert docker_images._import_result(f'{{"status":"sha256:{digest}"}}\r\n') == f"sha256:{digest}"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"errorDetail":{"message":"bad"},"error":"bad tar"}', "bad tar"),
        ('{"status":"Downloading"}', "names no image"),
    ],
)
def test_import_result_errors(answer: str, expected: str) -> None:
    with pytest.raises(EngineError, match=expected):
        docker_images._import_result(answer)


# --- LXD metadata --------------------------------------------------------------------------


def test_lxd_metadata_is_complete_and_reproducible(tmp_path: Path) -> None:
    recipe_dir = IMAGES_DIR / "container" / "lxd"
    props = {"labctl.recipe": "0123456789abcdef"}
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    meta = lxd_images.write_lxd_metadata(first, recipe_dir, created=1700000000, properties=props)
    lxd_images.write_lxd_metadata(second, recipe_dir, created=1700000000, properties=props)
    assert first.read_bytes() == second.read_bytes()  # same fingerprint on rebuild
    with tarfile.open(first) as tar:
        names = tar.getnames()
        stored = yaml.safe_load(tar.extractfile("metadata.yaml").read())  # type: ignore[union-attr]
    assert stored == meta
    assert meta["architecture"] == "x86_64" and meta["creation_date"] == 1700000000
    assert meta["properties"]["labctl.recipe"] == "0123456789abcdef"
    for path, template in meta["templates"].items():
        assert f"templates/{template['template']}" in names, path
    assert set(meta["templates"]) == {"/etc/hostname", "/etc/hosts"}


def test_lxd_fingerprint_is_sha256_of_metadata_then_rootfs(tmp_path: Path) -> None:
    (tmp_path / "m").write_bytes(b"meta")
    (tmp_path / "r").write_bytes(b"rootfs")
    expected = hashlib.sha256(b"metarootfs").hexdigest()
    assert lxd_images.lxd_fingerprint(tmp_path / "m", tmp_path / "r") == expected


# --- guest configuration hooks ---------------------------------------------------------------


def _fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for d in (
        "etc/network",
        "etc/ssh/sshd_config.d",
        "etc/systemd/system",
        "etc/apt/apt.conf.d",
        "var/lib/dbus",
        "var/cache/apt",
        "usr/sbin",
    ):
        (root / d).mkdir(parents=True)
    (root / "etc/shadow").write_text("root:$y$secret:19000:0:99999:7:::\n")
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("build-time key")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "etc/resolv.conf").write_text("nameserver 192.0.2.1\n")
    (root / "etc/hostname").write_text("buildhost\n")
    (root / "var/cache/apt/pkgcache.bin").write_bytes(b"x")
    return root


def test_system_container_hook(tmp_path: Path) -> None:
    root = _fake_root(tmp_path)
    script = IMAGES_DIR / "container" / "rootfs" / "customize.sh"
    subprocess.run(["sh", str(script), str(root)], check=True)
    interfaces = (root / "etc/network/interfaces").read_text()
    assert "auto eth0\niface eth0 inet dhcp" in interfaces  # no udev: not allow-hotplug
    for unit in ("systemd-timesyncd.service", "apt-daily.timer", "systemd-binfmt.service"):
        assert (root / "etc/systemd/system" / unit).readlink() == Path("/dev/null")
    sshd = (root / "etc/ssh/sshd_config.d/labctl.conf").read_text()
    assert "PermitRootLogin prohibit-password" in sshd
    assert "PasswordAuthentication no" in sshd
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert (root / "etc/shadow").read_text().startswith("root:*:")
    assert (root / "etc/machine-id").read_text() == ""
    assert not (root / "etc/resolv.conf").exists() and not (root / "etc/hostname").exists()


def test_docker_base_hook(tmp_path: Path) -> None:
    root = _fake_root(tmp_path)
    script = IMAGES_DIR / "docker" / "base" / "customize.sh"
    subprocess.run(["sh", str(script), str(root)], check=True)
    policy = root / "usr/sbin/policy-rc.d"
    assert policy.read_text().endswith("exit 101\n") and policy.stat().st_mode & 0o111
    assert not (root / "var/cache/apt/pkgcache.bin").exists()
    assert not (root / "etc/resolv.conf").exists()


# --- the recipes as a set --------------------------------------------------------------------


def test_recipes_and_their_order() -> None:
    store = ImageStore(containers.recipes(), root=Path("/nonexistent"))
    assert store.order(["lxd-system", "docker-app"]) == [
        "system-rootfs",
        "lxd-system",
        "docker-base",
        "docker-app",
    ]


def test_package_lists_are_not_empty() -> None:
    from labctl.images.debian import read_list

    system = read_list(IMAGES_DIR / "container/rootfs/packages.txt")
    assert {"systemd-sysv", "openssh-server", "ifupdown", "isc-dhcp-client"} <= set(system)
    assert "systemd-networkd" not in system
    assert read_list(IMAGES_DIR / "docker/base/packages.txt") == ["busybox"]


# --- nothing half-built is left in Docker ------------------------------------------------------


BASE_ID = "sha256:" + "b" * 64


class _FakeImage:
    def __init__(self, image_id: str, tags: list[str]) -> None:
        self.id = image_id
        self.tags = list(tags)
        self.attrs = {"Size": 123}


class _FakeApi:
    """docker-py's low-level client as the recipes use it, with Docker's removal rules."""

    def __init__(self, build_stream: list[dict[str, Any]]) -> None:
        self.build_stream = build_stream
        self.images: dict[str, list[str]] = {BASE_ID: ["labctl/debian-base:h"]}
        self.removed: list[str] = []

    def resolve(self, ref: str) -> str:
        for image_id, tags in self.images.items():
            hex_id = image_id.removeprefix("sha256:")
            if ref in tags or ref == image_id or (len(ref) >= 11 and hex_id.startswith(ref)):
                return image_id
        raise docker.errors.ImageNotFound(ref)

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        for chunk in self.build_stream:
            # a step's result is a new image: Docker says " ---> id", Podman "--> id"
            layer = re.sub(r"^ ?-{2,3}> ", "", str(chunk.get("stream", ""))).strip()
            if re.fullmatch("[0-9a-f]{11,12}", layer):
                try:
                    self.resolve(layer)
                except docker.errors.ImageNotFound:
                    self.images["sha256:" + layer * 5 + "0" * 4] = []
            yield chunk

    def tag(self, image: str, repository: str, tag: str, force: bool = False) -> bool:
        self.images[self.resolve(image)].append(f"{repository}:{tag}")
        return True

    def remove_image(self, ref: str, noprune: bool = False) -> None:
        image_id = self.resolve(ref)
        self.removed.append(ref)
        tags = self.images[image_id]
        if ref in tags:
            tags.remove(ref)
            if tags:
                return
        elif len(tags) > 1:
            response = requests.Response()
            response.status_code = 409
            raise docker.errors.APIError("conflict", response, explanation="must force")
        del self.images[image_id]


class _FakeImages:
    def __init__(self, api: _FakeApi) -> None:
        self.api = api

    def get(self, ref: str) -> _FakeImage:
        image_id = self.api.resolve(ref)
        return _FakeImage(image_id, self.api.images[image_id])


class _FakeDocker:
    def __init__(self, build_stream: list[dict[str, Any]]) -> None:
        self.api = _FakeApi(build_stream)
        self.images = _FakeImages(self.api)


def _app_context(
    tmp_path: Path, base: str = "docker-base", report: Callable[[str], None] = lambda s: None
) -> BuildContext:
    base_dir = tmp_path / base
    base_dir.mkdir()
    manifest = Manifest(
        image=base,
        recipe_hash="h",
        built_at="2024-01-01T00:00:00+00:00",
        build_seconds=1.0,
        engine_ref=BASE_ID,
    )
    (base_dir / MANIFEST).write_text(manifest.to_json())
    out = tmp_path / "out"
    out.mkdir()
    return BuildContext(out, {base: base_dir}, report, "apphash")


#: a build that fails at its last step, as each engine streams it: Docker says "Step n/m :"
#: and " ---> <12 hex>", Podman "STEP n/m:" and "--> <11 hex>"
FAILED_BUILDS = {
    "docker": (
        containers.DockerApp,
        [
            {"stream": "Step 1/3 : FROM labctl/debian-base:h\n"},
            {"stream": " ---> bbbbbbbbbbbb\n"},
            {"stream": "Step 2/3 : COPY www/ /srv/www/\n"},
            {"stream": " ---> 111111111111\n"},
            {"stream": "Step 3/3 : RUN false\n"},
            {"stream": " ---> Running in 222222222222\n"},
            {"error": "The command '/bin/sh -c false' returned a non-zero code: 1"},
        ],
        "returned a non-zero code",
    ),
    "podman": (
        containers.PodmanApp,
        [
            {"stream": "STEP 1/3: FROM labctl/debian-base:h\n"},
            {"stream": "STEP 2/3: COPY www/ /srv/www/\n"},
            {"stream": "--> 11111111111\n"},
            {"stream": "STEP 3/3: RUN false\n"},
            {"error": 'building at STEP "RUN false": exit status 1'},
        ],
        "podman build of .* exit status 1",
    ),
}


@pytest.mark.parametrize("engine", sorted(FAILED_BUILDS))
def test_failed_app_build_removes_its_intermediate_images(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe, stream, error = FAILED_BUILDS[engine]
    fake = _FakeDocker(stream)
    asked: list[object] = []
    monkeypatch.setattr(docker_client, "connect", lambda **kw: asked.append(kw["engine"]) or fake)
    steps: list[str] = []
    with pytest.raises(BuildError, match=error):
        recipe().build(_app_context(tmp_path, f"{engine}-base", steps.append))
    assert asked == [recipe.api] and recipe.api.name.lower() == engine
    assert not [i for i in fake.api.images if i.startswith("sha256:1111")]
    assert fake.api.images == {BASE_ID: ["labctl/debian-base:h"]}  # the base is untouched
    assert f"{engine} build step 3/3" in steps
    assert re.search("step 3/3", (tmp_path / "out" / "build.log").read_text(), re.IGNORECASE)


def test_app_build_refuses_a_missing_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeDocker([])
    fake.api.images.clear()
    monkeypatch.setattr(docker_client, "connect", lambda **_: fake)
    with pytest.raises(BuildError, match="is not in Docker") as err:
        containers.DockerApp().build(_app_context(tmp_path))
    assert err.value.hint and "docker-base" in err.value.hint


def test_import_gets_the_asked_tag_where_podman_ignored_it() -> None:
    """Podman 4.3 names an import ``<repo>:latest``; the recipe renames it ``<repo>:<hash>``."""
    fake = _FakeDocker([])
    fake.api.images = {BASE_ID: ["docker.io/labctl/debian-base:latest"]}
    docker_images._name_import(fake, BASE_ID, "h1", docker_client.PODMAN)
    assert fake.api.images == {BASE_ID: ["labctl/debian-base:h1"]}


def test_import_keeps_the_names_docker_gave() -> None:
    fake = _FakeDocker([])
    docker_images._name_import(fake, BASE_ID, "h", docker_client.DOCKER)
    assert fake.api.images == {BASE_ID: ["labctl/debian-base:h"]}
    assert fake.api.removed == []


def test_podman_images_reuse_dockers_rootfs_and_follow_its_hash() -> None:
    store = ImageStore(containers.recipes(), root=Path("/nonexistent"))
    assert store.order(["podman-app"]) == ["docker-base", "podman-base", "podman-app"]
    hashes = store.hashes(["podman-app", "docker-app"])
    assert len(set(hashes.values())) == len(hashes)  # other names, other hashes


# --- nothing half-built is left in LXD ---------------------------------------------------------


class _FakeLxdImage:
    def __init__(self, lxd: _FakeLxd, fingerprint: str) -> None:
        self.lxd = lxd
        self.fingerprint = fingerprint

    def delete(self, wait: bool = False) -> None:
        self.lxd.deleted.append(self.fingerprint)


class _FakeLxdImages:
    def __init__(self, lxd: _FakeLxd) -> None:
        self.lxd = lxd

    def exists(self, fingerprint: str) -> bool:
        return fingerprint in self.lxd.created

    def create(self, data: io.BufferedReader, metadata: io.BufferedReader) -> _FakeLxdImage:
        fingerprint = hashlib.sha256(metadata.read() + data.read()).hexdigest()
        self.lxd.created.append(fingerprint)
        return _FakeLxdImage(self.lxd, fingerprint)

    def get(self, fingerprint: str) -> _FakeLxdImage:
        return _FakeLxdImage(self.lxd, fingerprint)


class _RefusingAlias:
    def put(self, json: dict[str, str]) -> None:
        raise LXDAPIException(_Response(403, "not allowed"))


class _FakeLxd:
    """pylxd's client as the LXD recipe uses it; every alias change is refused."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.host_info = {"environment": {"server": "lxd", "server_version": "5.0.2"}}
        self.images = _FakeLxdImages(self)
        aliases = {"labctl/system": _RefusingAlias()}
        self.api = SimpleNamespace(images=SimpleNamespace(aliases=aliases))


def test_lxd_image_is_deleted_when_the_alias_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rootfs_dir = tmp_path / "system-rootfs"
    rootfs_dir.mkdir()
    (rootfs_dir / containers.ROOTFS).write_bytes(b"not really a tarball")
    manifest = Manifest("system-rootfs", "r", "2024-01-01T00:00:00+00:00", 1.0)
    (rootfs_dir / MANIFEST).write_text(manifest.to_json())
    out = tmp_path / "out"
    out.mkdir()
    fake = _FakeLxd()
    monkeypatch.setattr(lxd_client, "connect", lambda: fake)
    ctx = BuildContext(out, {"system-rootfs": rootfs_dir}, lambda s: None, "lxdhash")
    with pytest.raises(EngineError, match="not allowed"):
        containers.LxdSystem().build(ctx)
    assert fake.created and fake.deleted == fake.created


def test_remove_image_leaves_images_that_have_other_names() -> None:
    fake = _FakeDocker([])
    fake.api.images[BASE_ID].append("labctl/webapp:old")
    docker_client.remove_image(fake, BASE_ID, "labctl/webapp")
    assert fake.api.images == {BASE_ID: ["labctl/debian-base:h"]}


def test_remove_image_drops_all_our_names_and_the_image() -> None:
    fake = _FakeDocker([])
    app_id = "sha256:" + "a" * 64
    fake.api.images[app_id] = ["labctl/webapp:h1", "labctl/webapp:latest"]
    docker_client.remove_image(fake, app_id, "labctl/webapp")
    assert app_id not in fake.api.images and BASE_ID in fake.api.images
    docker_client.remove_image(fake, app_id, "labctl/webapp")  # gone: fine


def test_an_engine_that_does_not_answer_is_never_taken_for_a_missing_image(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from labctl.errors import DaemonDown, NotFoundError

    built = Manifest("docker-base", "h1", "2024-01-01T00:00:00+00:00", 1.0, engine_ref="sha256:1")
    recipe = docker_images.DockerBase()

    def down(**_kw: object) -> object:
        raise DaemonDown("the Docker daemon does not answer: refused", "start it")

    monkeypatch.setattr(docker_client, "connect", down)
    with pytest.raises(DaemonDown) as err:
        recipe.present(built)
    assert err.value.code == 3  # the host is not fit yet: README's table
    # answering: only the image it knows is there
    ids = {f"{docker_images.BASE_REPO}:h1": "sha256:1"}
    monkeypatch.setattr(docker_client, "connect", lambda **_kw: object())
    monkeypatch.setattr(docker_client, "image_id", lambda _c, ref, _api: ids.get(ref))
    assert recipe.present(built)
    assert not recipe.present(Manifest("docker-base", "h2", "t", 1.0, engine_ref="sha256:1"))
    # LXD: no alias is a missing image, a daemon down is said
    lxd = lxd_images.LxdSystem()
    mine = Manifest("lxd-system", "h", "t", 1.0, engine_ref="fp")

    def no_alias() -> object:
        raise NotFoundError("no such alias")

    monkeypatch.setattr(lxd_client, "connect", lambda: SimpleNamespace(api=None))
    monkeypatch.setattr(lxd_client, "engine_errors", lambda _what: _raising(no_alias))
    assert not lxd.present(mine)
    monkeypatch.setattr(lxd_client, "connect", lambda: down())
    with pytest.raises(DaemonDown):
        lxd.present(mine)
    # the cache's listing says so, not "missing from engine"
    store = ImageStore([recipe], root=tmp_path)
    monkeypatch.setattr(store, "manifest", lambda _name: built)
    monkeypatch.setattr(docker_client, "connect", down)
    assert store.status("docker-base", "h1") == "unknown"


class _raising:
    """A context manager that raises what ``make`` makes when its block ends."""

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        raise self.make()  # type: ignore[misc]
