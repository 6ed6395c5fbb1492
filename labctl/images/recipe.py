"""The contract every image recipe follows, and the manifest a finished build leaves."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labctl.paths import IMAGES_DIR

MANIFEST = "manifest.json"

Report = Callable[[str], None]
"""Called by a recipe with a short stage name ("debootstrap", "initramfs", ...)."""


@dataclass(frozen=True)
class Artifact:
    """One file an image build produced, inside the image's cache directory."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a finished build left: written last, so its presence means the image is whole."""

    image: str
    recipe_hash: str
    built_at: str
    build_seconds: float
    artifacts: tuple[Artifact, ...] = ()
    engine_ref: str | None = None  # docker image id or LXD fingerprint, for engine images
    facts: Mapping[str, str] = field(default_factory=dict)  # e.g. kernel version

    @property
    def total_size(self) -> int:
        """Bytes used by the image's files in the cache."""
        return sum(a.size for a in self.artifacts)

    def to_json(self) -> str:
        """Serialise for ``manifest.json``."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> Manifest:
        """Read a ``manifest.json``."""
        data = json.loads(path.read_text())
        data["artifacts"] = tuple(Artifact(**a) for a in data.get("artifacts", ()))
        return cls(**data)


@dataclass(frozen=True)
class BuildContext:
    """What a recipe gets while it builds."""

    out: Path  # temporary directory that becomes the image's cache directory on success
    deps: Mapping[str, Path]  # finished cache directories of the images it needs
    report: Report
    recipe_hash: str


class Recipe(ABC):
    """An image labctl can build. Subclasses are small and declarative where they can be."""

    #: cache name, e.g. ``vm-amd64``
    name: str
    #: one line shown by ``labctl images list``
    description: str
    #: other images whose cache directories this build reads
    needs: tuple[str, ...] = ()
    #: folder under ``images/`` whose files are part of the recipe
    recipe_dir: str | None = None
    #: extra code modules whose source is part of the recipe (the class's own module always is)
    code_deps: tuple[str, ...] = ()
    #: built only when named (``labctl images build NAME``) or a lab being brought up runs it,
    #: never by ``--all``, the test suite or the benchmarks (the s390x VM: minutes of emulation)
    optional: bool = False

    def inputs(self) -> Mapping[str, object]:
        """Values besides files that change the result (package lists, sizes...)."""
        return {}

    @abstractmethod
    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        """Build into ``ctx.out``; return ``(engine_ref, facts)``."""

    def present(self, manifest: Manifest) -> bool:
        """True if the built image is still usable (engine images check the engine)."""
        return True

    def forget(self, manifest: Manifest) -> None:  # noqa: B027 - optional hook
        """Remove what the image put into an engine (docker image, LXD image)."""

    def recipe_hash(self, dep_hashes: Mapping[str, str]) -> str:
        """Hash of everything that defines the result: files, inputs, code, dependencies."""
        h = hashlib.sha256()
        h.update(self.name.encode())
        for module in (type(self).__module__, *self.code_deps):
            source = inspect.getsourcefile(importlib.import_module(module))
            if source:
                h.update(Path(source).read_bytes())
        h.update(json.dumps(self.inputs(), sort_keys=True, default=str).encode())
        for dep in sorted(dep_hashes):
            h.update(f"{dep}={dep_hashes[dep]}".encode())
        if self.recipe_dir:
            root = IMAGES_DIR / self.recipe_dir
            # a README explains the recipe; editing it must not rebuild the image
            files = (p for p in root.rglob("*") if p.is_file() and p.name != "README.md")
            for path in sorted(files):
                h.update(str(path.relative_to(root)).encode())
                h.update(path.read_bytes())
        return h.hexdigest()[:16]
