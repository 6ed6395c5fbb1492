"""The container images on the real engines: built, launched, reached, removed.

Images come from the shared cache (``LABCTL_CACHE``, default /var/cache/labctl) and are built
there if missing. Every container is named ``labctl-test-<random>`` and removed even when a
test fails. Timings are printed (``pytest -s``) and recorded as test properties.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labctl import docker_client, lxd_client
from labctl.errors import BuildError, EngineError
from labctl.images.cache import ImageStore
from labctl.images.containers import APP_REPO, LXD_ALIAS, DockerApp, recipes
from labctl.images.recipe import BuildContext, Manifest
from labctl.keys import ensure_keypair
from labctl.ssh import SshTarget, run, wait_for_login

pytestmark = pytest.mark.integration

Record = Callable[[str, object], None]


def _name() -> str:
    return f"labctl-test-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def store() -> ImageStore:
    return ImageStore(recipes())


@pytest.fixture(scope="module")
def images(store: ImageStore, in_ci: bool) -> dict[str, Manifest]:
    """The container images, built or found current; a second pass must find all cached."""
    for connect in (lxd_client.connect, docker_client.connect):
        try:
            connect()
        except EngineError as exc:
            if in_ci:
                raise
            pytest.skip(f"{exc.message} ({exc.hint})")
    outcomes = store.build(["lxd-system", "docker-app"])
    for o in outcomes:
        print(f"\n{o.name}: {o.verb} in {o.seconds:.1f} s, {o.manifest.total_size / 1e6:.1f} MB")
    again = store.build(["lxd-system", "docker-app"])
    assert [o.built for o in again] == [False] * 4, "present() or the recipe hash is unstable"
    return {o.name: o.manifest for o in outcomes}


# --- LXD: a system container reached over SSH ----------------------------------------------


def _ipv4_on_lab_network(instance: Any, client: Any) -> str | None:
    """eth0's IPv4 address, if it lies in the subnet of the network the NIC is attached to."""
    nic = instance.expanded_devices.get("eth0", {})
    subnet = ipaddress.ip_interface(client.networks.get(nic["network"]).config["ipv4.address"])
    addresses = (instance.state().network or {}).get("eth0", {}).get("addresses", [])
    for addr in addresses:
        if addr["family"] == "inet" and ipaddress.ip_address(addr["address"]) in subnet.network:
            return str(addr["address"])
    return None


@pytest.fixture
def lxd_container() -> Iterator[Any]:
    client = lxd_client.connect()
    name = _name()
    config = {
        "name": name,
        "source": {"type": "image", "alias": LXD_ALIAS},
        "profiles": ["default"],
    }
    instance = client.instances.create(config, wait=True)
    try:
        yield instance
    finally:
        instance.sync()
        if instance.status != "Stopped":
            instance.stop(force=True, wait=True)
        instance.delete(wait=True)


def test_system_container_answers_ssh_with_the_host_kernel(
    images: dict[str, Manifest], lxd_container: Any, tmp_path: Path, record_property: Record
) -> None:
    client = lxd_client.connect()
    image = client.images.get_by_alias(LXD_ALIAS)
    assert image.fingerprint == images["lxd-system"].engine_ref
    assert image.properties["labctl.recipe"] == images["lxd-system"].recipe_hash

    key = ensure_keypair(tmp_path / "id_ed25519", "labctl-test")
    lxd_container.files.put("/root/.ssh/authorized_keys", key.public_line + "\n", mode=0o600)
    t0 = time.monotonic()
    lxd_container.start(wait=True)
    deadline = t0 + 60
    address = None
    while address is None and time.monotonic() < deadline:
        address = _ipv4_on_lab_network(lxd_container, client)
        if address is None:
            time.sleep(0.25)
    assert address, f"{lxd_container.name} got no IPv4 address on eth0 in 60 s"
    t_address = time.monotonic() - t0

    target = SshTarget(address, 22, "root", key.private)
    result = wait_for_login(target, deadline, command="uname -r", poll=0.5)
    t_ssh = time.monotonic() - t0
    assert result.stdout.strip() == os.uname().release  # containers share the host kernel

    # The image's per-instance identity and its systemd came up cleanly.
    facts = run(target, "hostname; systemctl is-system-running --wait; ls /etc/ssh/")
    lines = facts.stdout.split()
    assert lines[0] == lxd_container.name
    assert lines[1] == "running", facts.stdout
    assert "ssh_host_ed25519_key" in lines
    password = run(target, "sshd -T | grep -i '^passwordauthentication'")
    assert password.stdout.split() == ["passwordauthentication", "no"]

    print(f"\nlxd: start to address {t_address:.1f} s, start to SSH login {t_ssh:.1f} s")
    record_property("lxd_start_to_address_s", round(t_address, 2))
    record_property("lxd_start_to_ssh_s", round(t_ssh, 2))


# --- Docker: the web app over HTTP -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, deadline: float) -> tuple[str, str]:
    """Body and content type of ``url``, retried until ``deadline`` (monotonic)."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode(), response.headers.get("Content-Type", "")
        except (urllib.error.URLError, ConnectionError) as exc:
            if time.monotonic() >= deadline:
                raise AssertionError(f"no answer from {url}: {exc}") from exc
            time.sleep(0.1)


@pytest.fixture
def docker_names() -> Iterator[list[str]]:
    """Names of containers a test creates; removed afterwards whatever happened."""
    names: list[str] = []
    yield names
    client = docker_client.connect()
    for name in names:
        for container in client.containers.list(all=True, filters={"name": f"^{name}$"}):
            container.remove(force=True)


def test_webapp_answers_http_and_stops_on_sigterm(
    images: dict[str, Manifest], docker_names: list[str], record_property: Record
) -> None:
    client = docker_client.connect()
    manifest = images["docker-app"]
    assert docker_client.image_id(client, f"{APP_REPO}:latest") == manifest.engine_ref
    port = _free_port()
    name = _name()
    docker_names.append(name)
    t0 = time.monotonic()
    container = client.containers.run(
        manifest.engine_ref, name=name, detach=True, ports={"8080/tcp": ("127.0.0.1", port)}
    )
    page, _ = _get(f"http://127.0.0.1:{port}/", t0 + 30)
    t_http = time.monotonic() - t0
    assert "<h1>labctl webapp</h1>" in page

    body, content_type = _get(f"http://127.0.0.1:{port}/cgi-bin/info", t0 + 30)
    info = json.loads(body)
    assert content_type == "application/json"
    assert info["hostname"] == container.id[:12]
    assert info["kernel"] == os.uname().release  # the host's kernel, as in the LXD container
    assert info["app_version"] == manifest.facts["app_version"]

    t1 = time.monotonic()
    container.stop(timeout=10)
    t_stop = time.monotonic() - t1
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0
    assert t_stop < 3, f"stop took {t_stop:.1f} s: PID 1 ignores SIGTERM"

    print(f"\ndocker: run to HTTP {t_http:.2f} s, stop {t_stop:.2f} s")
    record_property("docker_run_to_http_s", round(t_http, 2))
    record_property("docker_stop_s", round(t_stop, 2))


def test_app_version_can_be_overridden_per_container(
    images: dict[str, Manifest], docker_names: list[str]
) -> None:
    client = docker_client.connect()
    port, name = _free_port(), _name()
    docker_names.append(name)
    client.containers.run(
        images["docker-app"].engine_ref,
        name=name,
        detach=True,
        environment={"APP_VERSION": "2.0-test"},
        ports={"8080/tcp": ("127.0.0.1", port)},
    )
    body, _ = _get(f"http://127.0.0.1:{port}/cgi-bin/info", time.monotonic() + 30)
    assert json.loads(body)["app_version"] == "2.0-test"


class _BrokenApp(DockerApp):
    """The app recipe with a Dockerfile whose last step fails after two new layers."""

    def __init__(self, app_dir: Path) -> None:
        self.recipe_dir = str(app_dir)  # absolute: IMAGES_DIR / it is it


def test_failed_app_build_leaves_no_images(
    images: dict[str, Manifest], store: ImageStore, tmp_path: Path
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "VERSION").write_text("broken\n")
    marker = secrets.token_hex(8)  # no cache hit: every step makes a new image
    (app_dir / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE}\n"
        f"RUN echo {marker} > /marker\n"
        f'LABEL test="{marker}"\n'
        "RUN exit 3\n"
    )
    client = docker_client.connect()
    before = {i.id for i in client.images.list(all=True)}
    out = tmp_path / "out"
    out.mkdir()
    ctx = BuildContext(out, {"docker-base": store.path("docker-base")}, lambda s: None, marker)
    with pytest.raises(BuildError, match="non-zero code: 3"):
        _BrokenApp(app_dir).build(ctx)
    # Other tests may add images meanwhile; none of ours may be left, named or not.
    new = [i for i in client.images.list(all=True) if i.id not in before]
    assert not [i.id for i in new if not i.tags or i.labels.get("test") == marker]
    assert client.images.get(images["docker-base"].engine_ref)  # the base is untouched
    assert "RUN exit 3" in (out / "build.log").read_text()
