"""Small lab files the tests write into a temporary folder, put together from guest stanzas."""

from __future__ import annotations

# A paravirtualized VM on the busybox image; the accelerator is chosen by the host.
VM = """\
  vm:
    engine: libvirt
    technique: paravirtualization
    image: vm-amd64
    accel: auto
"""

BOX = """\
  box:
    engine: lxd
    technique: system-container
    image: lxd-system
"""

APP = """\
  app:
    engine: docker
    technique: app-container
    image: docker-app
"""

# The default lab's two containers under their names there; the app serves on port 8080.
CONTAINERS = """\
  lxc-system:
    engine: lxd
    technique: system-container
    image: lxd-system
  docker-app:
    engine: docker
    technique: app-container
    image: docker-app
    port: 8080
"""


def lab_yaml(name: str, *guests: str, title: str | None = None) -> str:
    """The text of a lab file named ``name`` with the given guest stanzas, in that order."""
    head = f"name: {name}\n" + (f"title: {title}\n" if title is not None else "")
    return head + "guests:\n" + "".join(guests)


def exercise_yaml(exercise_id: str, *, instructions: str = "I", params: str = "") -> str:
    """An exercise of the app guest whose one step passes (``true`` on the host).

    ``params`` are the lines of its ``params:`` block, if any.
    """
    return (
        f"id: {exercise_id}\n"
        "technique: app-container\n"
        "title: {es: T, en: T}\n"
        f"instructions: {{es: {instructions}, en: I}}\n"
        "guests: [app]\n"
        + (f"params:\n{params}\n" if params else "")
        + """steps:
  - id: s1
    title: {es: S, en: S}
    instructions: {es: I, en: I}
    checks:
      - {kind: command, what: {es: W, en: W}, target: host, run: "true"}
"""
    )
