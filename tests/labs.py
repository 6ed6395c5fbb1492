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
