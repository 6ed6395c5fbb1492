"""Backends are the only door to an engine: the layers above them import no engine library.

Every module of ``labctl/cli``, ``labctl/classroom``, ``labctl/compare``, ``labctl/dashboard``,
``labctl/exercises``, ``labctl/fleet`` and ``labctl/lab`` is parsed (imports anywhere in the
file, a function's lazy import too) and checked against the engine libraries, the concrete
backends and the engines' client modules; and none of them downcasts a backend with ``isinstance``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import labctl

ROOT = Path(labctl.__file__).parent
LAYERS = ("cli", "classroom", "compare", "dashboard", "exercises", "fleet", "lab")
#: libraries that talk to an engine
ENGINE_LIBRARIES = {"libvirt", "libvirt_qemu", "docker", "pylxd", "paramiko"}
#: labctl modules that hold an engine's client or a concrete backend
ENGINE_MODULES = {
    "labctl.backends.libvirt",
    "labctl.backends.libvirt_measure",
    "labctl.backends.libvirt_repair",
    "labctl.backends.vm_files",
    "labctl.backends.vm_templates",
    "labctl.backends.vm_template_cache",
    "labctl.backends.vm_clones",
    "labctl.backends.vm_connection",
    "labctl.backends.libvirt_save",
    "labctl.backends.lxd",
    "labctl.backends.docker",
    "labctl.backends.docker_apps",
    "labctl.backends.podman",
    "labctl.backends.domain_xml",
    "labctl.backends.host_side",
    "labctl.libvirt_client",
    "labctl.lxd_client",
    "labctl.docker_client",
    "labctl.ssh",  # paramiko's
}
BACKEND_CLASSES = {"LibvirtBackend", "LxdBackend", "DockerBackend", "PodmanBackend"}
#: the lab file's models: a backend receives an engine's own parameters instead
SPEC_MODELS = {"Lab", "GuestBase", "LibvirtGuest", "LxdGuest", "DockerGuest", "PodmanGuest"}


def modules() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name) of every import; ``from a import b`` gives ``a`` and ``a.b``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def forbidden(name: str) -> bool:
    if name.split(".")[0] in ENGINE_LIBRARIES:
        return True
    return any(name == m or name.startswith(m + ".") for m in ENGINE_MODULES)


def downcasts(tree: ast.AST, wanted: set[str] = BACKEND_CLASSES) -> list[int]:
    """Lines of ``isinstance(x, C)`` where ``C`` is one of ``wanted`` (concrete backends)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            classes = node.args[1] if len(node.args) == 2 else None
            names = classes.elts if isinstance(classes, ast.Tuple) else [classes]
            for n in names:
                name = n.id if isinstance(n, ast.Name) else getattr(n, "attr", None)
                if name in wanted:
                    lines.append(node.lineno)
    return lines


def test_the_layers_exist() -> None:
    assert len(modules()) > 20
    for layer in LAYERS:
        assert (ROOT / layer / "__init__.py").is_file()


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_engine_library_or_concrete_backend_above_the_backends(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(ROOT)
    bad = [f"{where}:{line}: {name}" for line, name in imported(tree) if forbidden(name)]
    assert bad == [], "ask the backend contract (labctl/backends/base.py) instead"
    assert downcasts(tree) == [], "no isinstance downcast of a backend: use the contract"


#: rooms that reach an engine only through its client module (``labctl.<engine>_client``)
CLIENT_USERS = ("images", "host")


@pytest.mark.parametrize(
    "path",
    sorted(p for room in CLIENT_USERS for p in (ROOT / room).rglob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_image_builders_and_the_doctor_reach_engines_through_the_client_modules(
    path: Path,
) -> None:
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(ROOT)
    bad = [
        f"{where}:{line}: {name}"
        for line, name in imported(tree)
        if name.split(".")[0] in ENGINE_LIBRARIES
    ]
    assert bad == [], "use labctl.libvirt_client, labctl.lxd_client or labctl.docker_client"


def test_the_checker_sees_what_it_must_refuse() -> None:
    source = """
import libvirt
from docker.errors import APIError
def f(backend):
    from labctl.backends.lxd import LxdBackend
    import labctl.lxd_client
    assert isinstance(backend, LxdBackend)
    return isinstance(backend, (int, backends.docker.DockerBackend))
"""
    tree = ast.parse(source)
    names = [name for _, name in imported(tree) if forbidden(name)]
    assert names == [
        "libvirt",
        "docker.errors",
        "docker.errors.APIError",
        "labctl.backends.lxd",
        "labctl.backends.lxd.LxdBackend",
        "labctl.lxd_client",
    ]
    assert downcasts(tree) == [7, 8]
    assert not forbidden("labctl.backends.base") and not forbidden("labctl.backends")
    assert not forbidden("dockerfile") and not forbidden("labctl.docker")


#: each lower room and the rooms above it that it must never import (layers point down);
#: a backend receives a resolved plan (labctl/backends/params.py), never the lab file's model
UPPER = ("labctl.lab", "labctl.exercises", "labctl.compare", "labctl.classroom", "labctl.cli")
BELOW = {
    "instance": ("labctl.backends", "labctl.spec", *UPPER),
    "backends": ("labctl.spec", *UPPER),
    "images": ("labctl.backends", "labctl.spec", *UPPER),
    "spec": ("labctl.backends", *UPPER),
    # the progress store sits on paths/private/errors only: exercises and classroom use it
    "store": ("labctl.backends", "labctl.spec", "labctl.instance", "labctl.images", *UPPER),
    # class mode on one server knows nothing of a class spread over several (fleet drives it)
    "classroom": ("labctl.fleet", "labctl.dashboard", "labctl.cli"),
    "fleet": ("labctl.dashboard", "labctl.cli"),
}


def lower_modules() -> list[Path]:
    return sorted(p for room in BELOW for p in (ROOT / room).rglob("*.py"))


@pytest.mark.parametrize("path", lower_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_lower_rooms_never_import_the_rooms_above_them(path: Path) -> None:
    room = path.relative_to(ROOT).parts[0]
    above = BELOW[room]
    tree = ast.parse(path.read_text(), str(path))
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for line, name in imported(tree)
        if any(name == a or name.startswith(a + ".") for a in above)
    ]
    assert bad == [], f"labctl/{room} sits below {', '.join(above)}"


def test_the_room_checker_sees_a_spec_import_in_a_backend() -> None:
    source = "def f():\n    from labctl.spec.model import LxdGuest\n    import labctl.spec\n"
    names = [n for _, n in imported(ast.parse(source))]
    above = BELOW["backends"]
    assert [n for n in names if any(n == a or n.startswith(a + ".") for a in above)] == [
        "labctl.spec.model",
        "labctl.spec.model.LxdGuest",
        "labctl.spec",
    ]


@pytest.mark.parametrize(
    "path", sorted((ROOT / "backends").glob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_backends_never_downcast_a_spec_model(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    assert downcasts(tree, SPEC_MODELS) == [], "a backend reads its GuestPlan's params"


def test_the_downcast_checker_sees_a_spec_model() -> None:
    source = "def f(plan):\n    assert isinstance(plan.spec, LxdGuest)\n    g = model.DockerGuest\n"
    source += "    return isinstance(g, (int, model.DockerGuest))\n"
    assert downcasts(ast.parse(source), SPEC_MODELS) == [2, 4]


def test_instance_records_know_no_engine() -> None:
    for path in sorted((ROOT / "instance").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        assert [n for _, n in imported(tree) if forbidden(n)] == [], path
