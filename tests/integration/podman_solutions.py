"""The scripted solution of the Docker/Podman exercise (labs/virtualization-full), as a student.

Apart from ``exercise_solutions.py`` because it runs on the short two-engine lab of
``test_podman.py``, not on the default lab's session.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from tests.integration.exercise_solutions import Student


def _first_layer(s: Student, cli: str) -> str:
    """The first layer's digest of labctl/webapp:latest in ``cli``'s store, without sha256:."""
    layers = json.loads(s.host(f"{cli} image inspect labctl/webapp:latest"))[0]["RootFS"]["Layers"]
    return str(layers[0]).removeprefix("sha256:")


def _parent(s: Student, cli: str, guest: str) -> str:
    """The name of the parent process of ``guest``'s first process, seen from the host."""
    pid = s.host(f"{cli} inspect -f '{{{{.State.Pid}}}}' {s.resource(guest)}").strip()
    ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    return Path(f"/proc/{ppid}/comm").read_text().strip()


def app_motores(s: Student) -> None:
    """Compare the layers, find the parents, start a copy with the podman command."""
    podman_layer = _first_layer(s, "podman")
    assert podman_layer == _first_layer(s, "docker")  # what the step shows: the same bytes
    s.answer("capa", podman_layer[:12])
    assert _parent(s, "docker", "docker-app").startswith("containerd-shim")
    s.answer("padre", _parent(s, "podman", "podman-app"))
    port = s.p("port")
    s.host(f"podman run -d --name web-{s.student} -p 127.0.0.1:{port}:8080 labctl/webapp:latest")
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"web-{s.student} never answered on {port}"
        time.sleep(0.2)


def app_motores_cleanup(s: Student) -> None:
    """The student's own Podman container (the lab's down does not know it)."""
    s.host(f"podman rm -f --ignore web-{s.student} > /dev/null")


#: a wrong answer to each answer step
WRONG = {"capa": "0123456789ab", "padre": "containerd-shim"}
