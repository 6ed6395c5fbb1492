"""What the controller builds once and ships to every lab host: labctl itself and the images.

- **labctl**: a wheelhouse (labctl's own wheel and every dependency's, libvirt-python
  compiled here) built with pip into the cache, keyed by a hash of labctl's files; a host
  whose install carries that key gets nothing (``playbooks/fleet-install.yml``).
- **images**: the lab's images and the images they are built from, as the cache holds them
  (``<cache>/images/<name>/``: files and a manifest listing each file's sha256). Only images
  made of files travel; an image that lives inside an engine (Docker's, LXD's) is made on
  the host by ``labctl images build`` there (LXD's from the shipped rootfs). A host
  whose manifest has the same sha256 gets nothing (``playbooks/fleet-images.yml``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from labctl import procs
from labctl.errors import BuildError
from labctl.images.cache import ImageStore, remove_tree
from labctl.images.recipe import MANIFEST
from labctl.paths import REPO_ROOT, cache_dir

#: what a labctl install on a host is made of (the key changes when any of it does)
INSTALLED = ("pyproject.toml", "labctl", "playbooks", "labs", "images")
#: files of an image directory that are the build's record, not the image
NOT_SHIPPED = ("build.log",)


def _digest(paths: Iterable[Path], root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def install_key(root: Path = REPO_ROOT) -> str:
    """A hash of every file a labctl install is made of."""
    files: list[Path] = []
    for name in INSTALLED:
        p = root / name
        files.extend([p] if p.is_file() else p.rglob("*"))
    return _digest(files, root)


def wheelhouse(root: Path = REPO_ROOT) -> tuple[Path, str]:
    """labctl's wheelhouse for this version of it, built once into the cache."""
    key = install_key(root)
    target = cache_dir() / "fleet" / f"wheelhouse-{key}"
    done = target / ".complete"
    if done.exists():
        return target, key
    tmp = target.with_name(f".{target.name}.tmp")
    remove_tree(tmp) if tmp.exists() else None
    tmp.mkdir(parents=True)
    procs.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", tmp, root],
        timeout=1800,
        error=BuildError,
        hint="pip builds labctl and its dependencies here (PyPI and libvirt-dev needed)",
    )
    (tmp / ".complete").write_text(key + "\n")
    if target.exists():
        remove_tree(target)
    tmp.rename(target)
    for old in target.parent.glob("wheelhouse-*"):
        if old != target:
            remove_tree(old)
    return target, key


@dataclass(frozen=True)
class ShippedImage:
    """One image as ``fleet-images.yml`` takes it."""

    name: str
    manifest_sha256: str
    files: tuple[tuple[str, str], ...]  # (path in the image directory, sha256)

    def as_var(self) -> dict[str, object]:
        """The playbook's ``labctl_images`` entry."""
        return {
            "name": self.name,
            "manifest_sha256": self.manifest_sha256,
            "files": [{"path": p, "sha256": s} for p, s in self.files],
        }


def closure(names: Iterable[str], recipes: Mapping[str, object]) -> list[str]:
    """``names`` and every image they are built from, bases first."""
    out: list[str] = []

    def visit(name: str) -> None:
        if name in out:
            return
        for dep in getattr(recipes[name], "needs", ()):
            visit(dep)
        out.append(name)

    for n in sorted(names):
        visit(n)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shipped(store: ImageStore, names: Iterable[str]) -> list[ShippedImage]:
    """The images among ``names`` (and their bases) that are files, checksummed.

    The manifest already lists each artifact's sha256 (the cache's own check); that is what
    is shipped and what the host verifies after the copy.
    """
    out = []
    for name in closure(names, store.recipes):
        folder = store.root / name
        manifest = folder / MANIFEST
        if not manifest.is_file():
            raise BuildError(f"image {name} is not built", f"run: labctl images build {name}")
        data = json.loads(manifest.read_text())
        files = tuple(
            (a["name"], a["sha256"])
            for a in data.get("artifacts", [])
            if a["name"] not in NOT_SHIPPED and (folder / a["name"]).is_file()
        )
        if data.get("engine_ref"):
            continue  # lives in an engine: ``labctl images build`` makes it on the host
        out.append(ShippedImage(name, _sha256(manifest), files))
    return out
