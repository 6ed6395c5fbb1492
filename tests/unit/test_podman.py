"""Podman beside Docker: the same backend on its own socket, network, state fields and images.

Fakes at docker-py's boundary (``tests/unit/fake_engines.py``); the real engines are in
``tests/integration/test_podman.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from labctl import backends, docker_client
from labctl.backends.docker import BRIDGE_OPTION, DockerBackend
from labctl.backends.params import DockerParams, PodmanParams
from labctl.backends.podman import PodmanBackend
from labctl.errors import EngineError, ExitCode, HostError, NotFoundError, SpecError
from labctl.host import doctor, engines
from labctl.instance import naming
from labctl.instance.reservations import Reservations
from labctl.instance.state import GuestRecord, LabState
from labctl.lab import plan
from labctl.paths import LABS_DIR
from labctl.spec.model import PodmanGuest, load_lab
from tests.unit.fake_engines import FakeDockerClient

FULL = load_lab(LABS_DIR / "virtualization-full")
POOL = "10.210.0.0/16"


@pytest.fixture
def podman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], Path]]:
    """``podman(True)``: LABCTL_PODMAN_SOCKET names a listening socket (Podman is set up);
    ``podman(False)``: it names nothing. Returns the path it names."""
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "podman.sock"))

        def set_up(yes: bool) -> Path:
            path = tmp_path / ("podman.sock" if yes else "absent.sock")
            monkeypatch.setenv("LABCTL_PODMAN_SOCKET", str(path))
            return path

        yield set_up


def test_docker_and_podman_of_one_instance_keep_their_own_networks(state_root: Path) -> None:
    docker_fake, podman_fake = FakeDockerClient(), FakeDockerClient()
    docker, podman = DockerBackend(docker_fake), PodmanBackend(podman_fake)  # type: ignore[arg-type]
    state = LabState("apps", "t1", "x")
    book = Reservations()
    state = docker.prepare(docker.reserve_network(state, POOL, book))
    state = podman.prepare(podman.reserve_network(state, POOL, book))
    name = naming.network("apps", "t1")
    assert state.docker_network == state.podman_network == name
    assert state.docker_subnet and state.podman_subnet
    assert state.docker_subnet != state.podman_subnet  # one host-wide book for both engines
    assert list(docker_fake.networks.by_name) == list(podman_fake.networks.by_name) == [name]
    uses = {v["use"] for v in book.entries()["subnets"].values()}
    assert uses == {"docker", "podman"}


def test_podman_names_its_bridge_and_isolation_gets_that_name(
    state_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeDockerClient()
    created: dict[str, object] = {}
    create = fake.networks.create

    def spy(name: str, ipam: object, **kw: object) -> object:
        created.update(kw)
        return create(name, ipam, **kw)

    monkeypatch.setattr(fake.networks, "create", spy)
    podman = PodmanBackend(fake)  # type: ignore[arg-type]
    state = LabState("apps", "t1", "x")
    assert podman.bridges(state) == []
    state = podman.prepare(podman.reserve_network(state, POOL, Reservations()))
    bridge = naming.podman_bridge("apps", "t1")
    assert created["options"] == {BRIDGE_OPTION: bridge}
    assert podman.bridges(state) == [bridge] and len(bridge) <= 15


def test_the_registry_knows_podman_and_down_asks_it_only_where_it_is_set_up(
    podman: Callable[[bool], Path],
) -> None:
    assert "podman" in backends.engines()
    assert isinstance(backends.get("podman"), PodmanBackend)
    podman(True)
    assert "podman" in backends.engines_here()
    podman(False)
    assert backends.engines_here() == [e for e in backends.engines() if e != "podman"]


def test_a_podman_guest_is_handed_to_the_podman_backend() -> None:
    guest = FULL.guests["podman-app"]
    params = plan.params(guest)
    assert isinstance(params, PodmanParams) and params.engine == "podman"
    assert plan.params(FULL.guests["docker-app"]).engine == "docker"
    assert isinstance(params, DockerParams)  # the same container, in the same terms


def test_a_podman_guest_runs_a_podman_image(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(
        "name: apps\nguests:\n  p:\n    engine: podman\n    technique: app-container\n"
        "    image: docker-app\n"
    )
    with pytest.raises(SpecError, match="'docker-app' is a docker image, not a podman image"):
        load_lab(path)
    assert isinstance(FULL.guests["podman-app"], PodmanGuest)


def test_podman_images_are_built_by_default_only_where_podman_is_set_up(
    podman: Callable[[bool], Path],
) -> None:
    podman(True)
    assert "podman-app" in plan.lab_images()
    podman(False)
    assert "podman-app" not in plan.lab_images() and "docker-app" in plan.lab_images()


def test_a_lab_with_podman_guests_is_refused_with_exit_3_where_podman_is_not_set_up(
    podman: Callable[[bool], Path],
) -> None:
    no_podman = podman(False)
    with pytest.raises(HostError) as err:
        plan.check_engines(FULL)
    assert err.value.code == ExitCode.HOST
    assert "podman-app runs on Podman" in err.value.message and str(no_podman) in err.value.message
    assert err.value.hint and "labctl host setup" in err.value.hint
    plan.check_engines(load_lab(LABS_DIR / "virtualization"))  # no podman guest: nothing to ask


def test_podman_errors_and_commands_say_podman() -> None:
    backend = PodmanBackend(FakeDockerClient())  # type: ignore[arg-type]
    assert backend.destroy("labctl-apps-t1-gone") is False
    with pytest.raises(NotFoundError, match="^Podman could not"), backend._errors("inspect x"):
        raise docker_client.docker.errors.NotFound("gone")
    record = GuestRecord("podman-app", "podman", "labctl-apps-t1-podman-app")
    assert backend.connect(record, None).shell_argv()[:2] == ["podman", "exec"]  # type: ignore[arg-type]


def test_podman_that_does_not_answer_says_what_to_start(podman: Callable[[bool], Path]) -> None:
    podman(True)  # a socket, and nothing answering on it
    with pytest.raises(EngineError) as err:
        docker_client.connect(timeout=1, engine=docker_client.PODMAN)
    assert err.value.message.startswith("the Podman daemon does not answer")
    assert err.value.hint and "labctl host setup" in err.value.hint


def test_doctor_reports_podman_as_an_optional_engine(podman: Callable[[bool], Path]) -> None:
    podman(False)
    missing = engines.docker_probe(podman=True)
    assert not missing.reachable and not missing.set_up
    row = doctor.check_podman(missing)
    assert row.status is doctor.Status.WARN and row.passed
    assert row.hint and "labctl host setup" in row.hint
    down = doctor.check_podman(engines.DockerInfo(False, error="connection refused"))
    assert down.status is doctor.Status.WARN and "does not answer" in down.detail
    up = doctor.check_podman(engines.DockerInfo(True, "Podman Engine", "4.3.1", "1.41"))
    assert (up.status, up.detail) == (doctor.Status.OK, "Podman Engine 4.3.1 (API 1.41)")


def test_ansible_reaches_the_podman_app_through_the_docker_api_on_podmans_socket(
    podman: Callable[[bool], Path],
) -> None:
    from labctl.lab.inventory import build

    sock = podman(True)
    state = LabState("virtualization-full", "s1", "lab.yaml")
    rec = GuestRecord("podman-app", "podman", "labctl-virtualization-full-s1-podman-app")
    state = state.with_guest(replace(rec, stage="ready", address="127.0.0.1"))
    techniques = {"podman-app": "app-container"}
    inv = build(state, {"podman-app": "running"}, Path("k"), techniques, docker_api=True)
    assert inv.hosts["podman-app"] == {
        "ansible_connection": "community.docker.docker_api",
        "ansible_host": "labctl-virtualization-full-s1-podman-app",
        "ansible_docker_host": f"unix://{sock}",
    }
    assert inv.groups["containers"] == ("podman-app",) == inv.groups["podman"]
