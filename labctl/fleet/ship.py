"""What the controller builds once and ships to every lab host: labctl itself and the images.

- **labctl**: a wheelhouse (labctl's own wheel and every dependency's, libvirt-python
  compiled here) built with pip into the cache, keyed by a hash of labctl's files; a host
  whose install carries that key gets nothing (``playbooks/fleet-install.yml``).
- **images**: the lab's images and the images they are built from, as the cache holds them
  (``<cache>/images/<name>/``: files and a manifest listing each file's sha256); an image
  inside Docker or Podman travels as the engine's archive with its id. A host whose
  manifest has the same sha256 gets nothing (``playbooks/fleet-images.yml``). LXD's image is
  made on the host from the shipped rootfs by ``labctl images build`` there.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from labctl import procs
from labctl.errors import BuildError
from labctl.images.cache import ImageStore, file_sha256, remove_tree
from labctl.images.recipe import MANIFEST
from labctl.paths import REPO_ROOT, cache_dir

#: what a labctl install on a host is made of (the key changes when any of it does)
INSTALLED = ("pyproject.toml", "setup.py", "labctl", "playbooks", "labs", "images")
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
    """One image as ``fleet-images.yml`` takes it (its ``labctl_images`` entry)."""

    name: str
    manifest_sha256: str
    files: tuple[tuple[str, str], ...]  # (path in the image directory, sha256)
    engine: str | None = None  # docker or podman: the image travels as the engine's archive
    engine_ref: str | None = None  # its id there, checked on the host
    tags: tuple[str, ...] = ()

    def as_var(self) -> dict[str, object]:
        """The playbook's ``labctl_images`` entry."""
        entry: dict[str, object] = {
            "name": self.name,
            "manifest_sha256": self.manifest_sha256,
            "files": [{"path": p, "sha256": s} for p, s in self.files],
        }
        if self.engine is not None:
            entry.update(engine=self.engine, engine_ref=self.engine_ref, tags=list(self.tags))
        return entry


def shipped(store: ImageStore, names: Iterable[str]) -> list[ShippedImage]:
    """The images among ``names`` and their bases, bases first, as they travel.

    Files come with the sha256 the manifest already lists (the cache's own check), which the
    host checks after the copy. An image inside Docker or Podman travels as the engine's
    archive with its id and tags; one inside LXD does not travel (the host makes it from the
    shipped rootfs, in a second, if it has LXD at all).
    """
    out = []
    for name in store.order(names):
        manifest = store.manifest(name)
        if manifest is None:
            raise BuildError(f"image {name} is not built", f"run: labctl images build {name}")
        files = tuple((a.name, a.sha256) for a in manifest.artifacts if a.name not in NOT_SHIPPED)
        missing = [f for f, _ in files if not (store.path(name) / f).is_file()]
        if missing:
            raise BuildError(
                f"image {name} lacks {', '.join(missing)} that its manifest lists",
                f"rebuild it: labctl images build --force {name}",
            )
        engine = None
        tags: tuple[str, ...] = ()
        if manifest.engine_ref:
            api = getattr(store.recipes[name], "api", None)
            if api is None:
                continue  # LXD's: made on the host from the shipped rootfs
            engine = str(api.name).lower()
            tags = tuple(t for t in (manifest.facts.get("tag"), manifest.facts.get("latest")) if t)
        out.append(
            ShippedImage(
                name,
                file_sha256(store.path(name) / MANIFEST),
                files,
                engine,
                manifest.engine_ref if engine else None,
                tags,
            )
        )
    return out
