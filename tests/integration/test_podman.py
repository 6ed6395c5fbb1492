"""Podman beside Docker on the real engines: the same app image, both up at once, both answering.

A short lab of its own (the two application containers only), so it costs seconds, not the
default lab's VMs; its instance must leave nothing in either engine after ``down``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from labctl import backends
from labctl.docker_client import PODMAN
from labctl.docker_client import connect as docker_connect
from labctl.errors import EngineError
from labctl.images.registry import store
from labctl.instance.state import InstanceDir
from labctl.keys import ensure_keypair
from labctl.paths import LABS_DIR
from tests.integration.engines import inventory
from tests.integration.exercise_solutions import (
    Student,
    fails_untouched_passes_solved_refuses_wrong,
)
from tests.integration.labs import One, one_instance, up
from tests.integration.podman_solutions import WRONG, app_motores, app_motores_cleanup

pytestmark = pytest.mark.integration

APPS_LAB = """\
name: apps
title: the application container under Docker and Podman
guests:
  docker-app:
    engine: docker
    technique: app-container
    image: docker-app
  podman-app:
    engine: podman
    technique: app-container
    image: podman-app
"""


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory, state_root: Path, in_ci: bool) -> Iterator[One]:
    """Both app containers up in one instance, for the module; down and leak-checked after."""
    for api in (None, PODMAN):
        try:
            docker_connect() if api is None else docker_connect(engine=api)
        except EngineError as exc:
            if in_ci:
                raise
            pytest.skip(f"{exc.message} ({exc.hint})")
    store().build(["docker-app", "podman-app"])
    # the full lab's Docker/Podman exercise names only these two guests
    exercises = sorted((LABS_DIR / "virtualization-full" / "exercises").glob("*.yaml"))
    with one_instance(tmp_path_factory, "apps", APPS_LAB, exercises) as apps:
        yield apps


def test_both_engines_publish_their_port_and_answer_at_once(apps: One) -> None:
    docker_rec, podman_rec = (apps.state.guests[n] for n in ("docker-app", "podman-app"))
    assert (docker_rec.engine, podman_rec.engine) == ("docker", "podman")
    assert docker_rec.stage == podman_rec.stage == "ready"
    assert docker_rec.host_port != podman_rec.host_port
    pages = []
    for rec in (docker_rec, podman_rec):
        answer = requests.get(f"http://127.0.0.1:{rec.host_port}/", timeout=5)
        assert answer.status_code == 200, (rec.name, answer.status_code)
        pages.append(answer.text)
    assert pages[0] == pages[1]  # the same image, so the same site


def test_each_engine_keeps_its_own_network_bridge_and_subnet(apps: One) -> None:
    state = apps.state
    assert state.docker_subnet and state.podman_subnet
    assert state.docker_subnet != state.podman_subnet
    docker_bridges = backends.get("docker").bridges(state)
    podman_bridges = backends.get("podman").bridges(state)
    links = json.loads(
        subprocess.run(["ip", "-j", "link", "show", "type", "bridge"], capture_output=True).stdout
    )
    up = {link["ifname"] for link in links}
    assert docker_bridges and podman_bridges and set(docker_bridges).isdisjoint(podman_bridges)
    assert set(docker_bridges) | set(podman_bridges) <= up
    held = inventory(apps.lab.name, apps.instance)
    assert held.containers == {"labctl-apps-" + apps.instance + "-docker-app"}
    assert held.podman_containers == {"labctl-apps-" + apps.instance + "-podman-app"}


def test_a_check_runs_in_the_podman_guest_through_its_connection(apps: One) -> None:
    rec = apps.state.guests["podman-app"]
    key = ensure_keypair(InstanceDir(apps.lab.name, apps.instance).key, "test")
    conn = backends.connect(rec, key)
    result = conn.run("grep -c 'labctl webapp' /srv/www/index.html")
    assert result.rc == 0 and int(result.stdout) >= 1, result.detail
    assert conn.shell_argv()[:2] == ["podman", "exec"]
    given = conn.run("wc -c; echo read >&2", stdin=b"x" * 300_000)  # an attached exec
    assert (given.rc, given.stdout.strip(), given.stderr) == (0, "300000", "read\n")
    binary = bytes(range(256)) * 400  # NULs, no UTF-8: comes back byte for byte
    assert conn.run("cat", stdin=binary).raw_stdout == binary


def test_status_names_the_podman_guest_and_its_engine(apps: One) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "labctl", "status", "-l", "apps", "-i", apps.instance, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert out.returncode == 0, out.stderr
    rows = {g["guest"]: g for g in json.loads(out.stdout)["guests"]}
    assert rows["podman-app"]["engine"] == "podman" and rows["podman-app"]["state"] == "running"
    assert rows["docker-app"]["engine"] == "docker" and rows["docker-app"]["state"] == "running"


def test_the_podman_container_has_no_daemon_above_it(apps: One) -> None:
    """Docker's container runs under containerd's shim; Podman's under conmon, no daemon."""
    parents = {}
    for name, cli in (("docker-app", "docker"), ("podman-app", "podman")):
        resource = apps.state.guests[name].resource
        pid = subprocess.run(
            [cli, "inspect", "-f", "{{.State.Pid}}", resource], capture_output=True, text=True
        ).stdout.strip()
        ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        parents[name] = Path(f"/proc/{ppid}/comm").read_text().strip()
    assert parents["podman-app"] == "conmon"
    assert parents["docker-app"].startswith("containerd-shim")


def test_the_engines_exercise_fails_untouched_passes_solved_and_refuses_wrong_answers(
    apps: One, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Student.new(apps.path.parent, apps.instance, "app-motores", tmp_path)
    try:
        fails_untouched_passes_solved_refuses_wrong(s, app_motores, WRONG, checks=4)
    finally:
        app_motores_cleanup(s)


def test_a_podman_network_pruned_while_its_container_was_stopped_comes_back_with_it(
    apps: One,
) -> None:
    """As with Docker (test_recovery): made again, the network has another id, and up
    attaches the stopped container to it before starting it."""
    rec = apps.state.guests["podman-app"]
    client = docker_connect(engine=PODMAN)
    client.containers.get(rec.resource).stop(timeout=1)
    assert apps.state.podman_network
    client.networks.get(apps.state.podman_network).remove()
    again = up(apps.lab, apps.path, apps.instance)
    assert backends.get("podman").state(rec.resource) == "running"
    assert requests.get(again.guests["podman-app"].connect or "", timeout=10).ok
