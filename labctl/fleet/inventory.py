"""The lab hosts of a class spread over several servers: an Ansible inventory, checked.

Ansible itself reads the file (``ansible-inventory --list``, INI or YAML, whatever the
instructor already uses); labctl then refuses, before anything is created anywhere, what
Ansible lets through but a class cannot use: no hosts, a host listed twice (the same name
twice in one group, or two names for one address and port), a name that does not resolve.
Errors name the host and, where it can be found, the file's line.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl.errors import SpecError
from labctl.procs import output


@dataclass(frozen=True)
class LabHost:
    """One lab host as the controller reaches it."""

    name: str  # the inventory's name for it (what Ansible's --limit takes)
    address: str  # ansible_host, else the name: what students' sheets point at
    port: int = 22
    user: str = "root"
    vm_profile: str | None = None  # labctl_vm_profile: the VM images this host runs (tiny)


@dataclass(frozen=True)
class Inventory:
    """The inventory file and its hosts, in file order."""

    path: Path
    hosts: tuple[LabHost, ...]

    @property
    def names(self) -> list[str]:
        """The hosts' inventory names."""
        return [h.name for h in self.hosts]

    def host(self, name: str) -> LabHost:
        """One host by name."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise SpecError(f"no host {name!r} in the inventory {self.path}")


def line_of(path: Path, name: str) -> int | None:
    """The first line of ``path`` that names ``name`` as a word (for messages)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for number, line in enumerate(lines, 1):
        words = line.replace(":", " ").replace("=", " ").split()
        if name in words:
            return number
    return None


def _where(path: Path, name: str) -> str:
    line = line_of(path, name)
    return f"{path}:{line}" if line else str(path)


def _ini_duplicates(path: Path, text: str) -> None:
    """The same host twice in one INI group: Ansible merges it silently, labctl refuses."""
    group, seen = "ungrouped", {}  # type: ignore[var-annotated]
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
            continue
        if ":vars" in group or "=" in line.split()[0]:
            continue
        name = line.split()[0]
        key = (group.split(":")[0], name)
        if key in seen:
            raise SpecError(
                f"{path}:{number}: host {name} is listed twice in group {key[0]} "
                f"(first at line {seen[key]})",
                "list each lab host once",
            )
        seen[key] = number


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping with the same key twice."""


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    where = getattr(loader, "path", loader.name)
    keys: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise SpecError(
                f"{where}:{key_node.start_mark.line + 1}: {key} is listed twice "
                f"(first at line {keys[key]})",
                "list each lab host once",
            )
        keys[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _yaml_duplicates(path: Path, text: str) -> None:
    try:
        loader = _Loader(text)
        loader.path = str(path)  # type: ignore[attr-defined]
        try:
            loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SpecError(f"{where}: not valid YAML: {exc}", "fix the inventory") from exc


def _is_yaml(path: Path, text: str) -> bool:
    if path.suffix in (".yml", ".yaml"):
        return True
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first == "---" or (first.endswith(":") and not first.startswith("["))


def _ansible_inventory(path: Path) -> dict[str, Any]:
    """``ansible-inventory --list`` of the file; a file Ansible cannot parse is an error."""
    binary = Path(sys.executable).parent / "ansible-inventory"
    env = {
        **os.environ,
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "1",
        "ANSIBLE_NOCOLOR": "1",
    }
    text = output(
        [str(binary), "-i", str(path), "--list"],
        timeout=60,
        error=SpecError,
        hint=f"check {path} with: ansible-inventory -i {path} --list",
        env=env,
    )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SpecError(f"{path}: ansible-inventory did not answer JSON: {text[:200]!r}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: ansible-inventory answered {type(data).__name__}, not a dict")
    return data


def _resolves(name: str) -> bool:
    try:
        socket.getaddrinfo(name, None)
    except (socket.gaierror, UnicodeError):
        return False
    return True


def parse(
    path: Path,
    listed: dict[str, Any],
    resolves: Callable[[str], bool] = _resolves,
) -> Inventory:
    """The inventory from ``ansible-inventory --list``'s answer, checked (see the module)."""
    hostvars: dict[str, dict[str, Any]] = listed.get("_meta", {}).get("hostvars", {})
    names: list[str] = []

    def walk(group: str, seen: set[str]) -> None:
        if group in seen:
            return
        seen.add(group)
        entry = listed.get(group, {})
        for h in entry.get("hosts", []):
            if h not in names:
                names.append(h)
        for child in entry.get("children", []):
            walk(child, seen)

    walk("all", set())
    for h in hostvars:
        if h not in names:
            names.append(h)
    if not names:
        raise SpecError(
            f"{path}: the inventory has no hosts",
            "list the lab hosts, one per line (INI) or under all: hosts: (YAML)",
        )
    hosts: list[LabHost] = []
    by_address: dict[tuple[str, int], str] = {}
    for name in names:
        v = hostvars.get(name, {})
        address = str(v.get("ansible_host") or name)
        try:
            port = int(v.get("ansible_port") or 22)
        except (TypeError, ValueError) as exc:
            raise SpecError(
                f"{_where(path, name)}: host {name} has ansible_port {v.get('ansible_port')!r}",
                "give a port number",
            ) from exc
        if v.get("ansible_connection") == "local" or address in ("localhost", "127.0.0.1", "::1"):
            raise SpecError(
                f"{_where(path, name)}: host {name} is this machine",
                "the controller is not a lab host: list the servers it reaches over SSH",
            )
        other = by_address.get((address, port))
        if other is not None:
            raise SpecError(
                f"{_where(path, name)}: hosts {other} and {name} are the same machine "
                f"({address} port {port})",
                "list each lab host once",
            )
        if not resolves(address):
            raise SpecError(
                f"{_where(path, name)}: unknown host {name}: {address} does not resolve",
                "check the name (or give ansible_host=ADDRESS)",
            )
        by_address[(address, port)] = name
        profile = v.get("labctl_vm_profile")
        hosts.append(
            LabHost(
                name,
                address,
                port,
                str(v.get("ansible_user") or "root"),
                str(profile) if profile else None,
            )
        )
    return Inventory(path, tuple(hosts))


def load(path: Path, resolves: Callable[[str], bool] = _resolves) -> Inventory:
    """Read and check an inventory file (INI or YAML)."""
    path = path.resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(f"inventory {path} not found", "give an Ansible inventory file") from exc
    except (OSError, UnicodeError) as exc:
        raise SpecError(f"cannot read the inventory {path}: {exc}") from exc
    if _is_yaml(path, text):
        _yaml_duplicates(path, text)
    else:
        _ini_duplicates(path, text)
    return parse(path, _ansible_inventory(path), resolves)
