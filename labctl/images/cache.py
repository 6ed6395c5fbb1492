"""The image cache: build into a temporary directory, rename into place, manifest last.

A directory ``<cache>/images/<name>/`` with a ``manifest.json`` is a whole image; anything
else (``.<name>.tmp-<pid>`` left by an interrupted build) is removed on the next run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from labctl import procs
from labctl.errors import BuildError, EngineError, HostError
from labctl.images.recipe import MANIFEST, Artifact, BuildContext, Manifest, Recipe, Report
from labctl.paths import cache_dir

#: an image whose engine did not answer when asked whether it holds it
UNKNOWN = "unknown"

MIN_FREE_BYTES = 4 * 1024**3
#: Builds run side by side, at most this many (``LABCTL_BUILD_JOBS`` overrides): most of a
#: build is one process at a time (dpkg, qemu-user, gzip), so two use two cores.
BUILD_JOBS = 2


def build_jobs() -> int:
    """How many images build at once: ``LABCTL_BUILD_JOBS``, else 2, never above the cores."""
    raw = os.environ.get("LABCTL_BUILD_JOBS", "").strip()
    wanted = int(raw) if raw.isdigit() and int(raw) > 0 else BUILD_JOBS
    return max(1, min(wanted, os.cpu_count() or 1))


@dataclass(frozen=True)
class BuildOutcome:
    """What happened to one image in a ``build`` call."""

    name: str
    manifest: Manifest
    built: bool  # False: the cache was already up to date
    seconds: float

    @property
    def verb(self) -> str:
        """``built`` or ``cached``, for tables."""
        return "built" if self.built else "cached"


def _mounts_under(path: Path) -> list[Path]:
    """Mount points inside ``path`` (deepest first), from the kernel's mount table."""
    root = path.resolve()
    found = []
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        mountpoint = Path(line.split()[1].replace("\\040", " "))
        if mountpoint == root or root in mountpoint.parents:
            found.append(mountpoint)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_tree(path: Path) -> None:
    """Delete a build directory, unmounting first whatever a killed build left mounted in it.

    A chroot build killed hard can leave /proc or /dev mounted inside its tree; deleting
    through such a mount would delete the host's own files.
    """
    for mountpoint in _mounts_under(path):
        procs.run(["umount", "-l", str(mountpoint)], error=BuildError, check=False)
    if _mounts_under(path):
        raise BuildError(
            f"{path} still has file systems mounted inside; not deleting it",
            f"unmount them (see: grep {path} /proc/self/mounts), then run the build again",
        )
    shutil.rmtree(path, ignore_errors=True)


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks: the checksum a manifest lists per artifact."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stage_reporter(name: str, on_stage: Callable[[str, str], None] | None) -> Report:
    def report(stage: str) -> None:
        if on_stage is not None:
            on_stage(name, stage)

    return report


class ImageStore:
    """Builds recipes in dependency order and keeps what they produce."""

    def __init__(self, recipes: Iterable[Recipe], root: Path | None = None) -> None:
        self.recipes = {r.name: r for r in recipes}
        self.root = (root or cache_dir()) / "images"

    def path(self, name: str) -> Path:
        """Cache directory of image ``name``."""
        return self.root / name

    def manifest(self, name: str) -> Manifest | None:
        """The manifest of a finished image, or None."""
        path = self.path(name) / MANIFEST
        if not path.is_file():
            return None
        try:
            return Manifest.from_file(path)
        except (ValueError, TypeError, KeyError):
            return None

    def order(self, names: Iterable[str]) -> list[str]:
        """``names`` and everything they need, dependencies first."""
        seen: list[str] = []

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in chain:
                raise BuildError(f"image recipes depend on each other: {' -> '.join(chain)}")
            if name not in self.recipes:
                known = ", ".join(sorted(self.recipes))
                raise BuildError(f"unknown image {name!r}", f"known images: {known}")
            for dep in self.recipes[name].needs:
                visit(dep, (*chain, name))
            if name not in seen:
                seen.append(name)

        for n in names:
            visit(n, ())
        return seen

    def hashes(self, names: Iterable[str]) -> dict[str, str]:
        """Recipe hash of each image in dependency order."""
        result: dict[str, str] = {}
        for name in self.order(names):
            recipe = self.recipes[name]
            result[name] = recipe.recipe_hash({d: result[d] for d in recipe.needs})
        return result

    def is_current(self, name: str, recipe_hash: str) -> bool:
        """True if the cached image matches the recipe and is still usable."""
        manifest = self.manifest(name)
        return (
            manifest is not None
            and manifest.recipe_hash == recipe_hash
            and self.recipes[name].present(manifest)
        )

    def status(self, name: str, recipe_hash: str) -> str:
        """``ready``, ``missing``, ``outdated``, ``missing from engine``, or ``unknown`` when
        its engine does not answer (built, as far as the cache knows)."""
        manifest = self.manifest(name)
        if manifest is None:
            return "missing"
        if manifest.recipe_hash != recipe_hash:
            return "outdated"
        try:
            present = self.recipes[name].present(manifest)
        except EngineError:  # a daemon down: said by doctor and by what needs the engine
            return UNKNOWN
        return "ready" if present else "missing from engine"

    def clean_stale(self) -> None:
        """Remove temporary directories left by builds that were interrupted."""
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if entry.name.startswith(".") and ("tmp-" in entry.name or "old-" in entry.name):
                pid = entry.name.rsplit("-", 1)[-1]
                if not pid.isdigit() or not procs.alive(int(pid)):
                    remove_tree(entry)

    def build(
        self,
        names: Iterable[str],
        *,
        force: bool = False,
        on_stage: Callable[[str, str], None] | None = None,
        on_done: Callable[[BuildOutcome], None] | None = None,
    ) -> list[BuildOutcome]:
        """Bring each named image (and its dependencies) up to date; rebuild only on change."""
        names = list(names)
        hashes = self.hashes(names)
        self.root.mkdir(parents=True, exist_ok=True)
        # One build at a time per cache: a second `images build` waits, then finds it done.
        with FileLock(str(self.root.parent / "images.lock")):
            return self._build_locked(names, hashes, force, on_stage, on_done)

    def _build_locked(
        self,
        names: list[str],
        hashes: dict[str, str],
        force: bool,
        on_stage: Callable[[str, str], None] | None,
        on_done: Callable[[BuildOutcome], None] | None,
    ) -> list[BuildOutcome]:
        """Build what is not current, up to :func:`build_jobs` at once, each after its needs.

        If a build fails, the others already running finish (their images are whole), no new
        one starts, and the first error is raised; every image built before stays in use.
        """
        self.clean_stale()
        done: dict[str, BuildOutcome] = {}
        rebuilt: set[str] = set()
        pending = list(hashes)  # dependency order
        running: dict[Future[BuildOutcome], str] = {}
        failure: BaseException | None = None

        def finish(outcome: BuildOutcome) -> None:
            done[outcome.name] = outcome
            if on_done:
                on_done(outcome)

        with ThreadPoolExecutor(max_workers=build_jobs(), thread_name_prefix="build") as pool:
            while (pending and failure is None) or running:
                for name in list(pending):
                    if failure is not None or len(running) >= build_jobs():
                        break
                    recipe = self.recipes[name]
                    if any(d not in done for d in recipe.needs):
                        continue  # waits for an image it needs
                    pending.remove(name)
                    stale_dep = any(d in rebuilt for d in recipe.needs)
                    wanted = force and name in names
                    if not wanted and not stale_dep and self.is_current(name, hashes[name]):
                        manifest = self.manifest(name)
                        assert manifest is not None
                        finish(BuildOutcome(name, manifest, built=False, seconds=0.0))
                        continue
                    report = _stage_reporter(name, on_stage)
                    running[pool.submit(self._build_one, recipe, hashes[name], report)] = name
                if not running:
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    try:
                        outcome = future.result()
                    except BaseException as exc:  # re-raised below, once the others are done
                        failure = failure or exc
                        continue
                    rebuilt.add(name)
                    finish(outcome)
        if failure is not None:
            raise failure
        return [done[name] for name in hashes]

    def _check_space(self) -> None:
        free = shutil.disk_usage(self.root).free
        if free < MIN_FREE_BYTES:
            raise HostError(
                f"only {free / 1024**3:.1f} GiB free under {self.root}; image builds need "
                f"{MIN_FREE_BYTES / 1024**3:.0f} GiB",
                "free some disk space or point LABCTL_CACHE at a larger disk",
            )

    def _build_one(self, recipe: Recipe, recipe_hash: str, report: Report) -> BuildOutcome:
        self._check_space()
        final = self.path(recipe.name)
        tmp = self.root / f".{recipe.name}.tmp-{os.getpid()}"
        remove_tree(tmp)
        tmp.mkdir(parents=True)
        deps = {d: self.path(d) for d in recipe.needs}
        started = time.monotonic()
        old = self.manifest(recipe.name)
        try:
            engine_ref, facts = recipe.build(BuildContext(tmp, deps, report, recipe_hash))
            report("checksums")
            artifacts = tuple(
                Artifact(p.name, p.stat().st_size, file_sha256(p))
                for p in sorted(tmp.iterdir())
                if p.is_file()
            )
            manifest = Manifest(
                image=recipe.name,
                recipe_hash=recipe_hash,
                built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                build_seconds=round(time.monotonic() - started, 1),
                artifacts=artifacts,
                engine_ref=engine_ref,
                facts=dict(facts),
            )
            (tmp / MANIFEST).write_text(manifest.to_json())
            self._swap_in(tmp, final)
        finally:
            remove_tree(tmp)
        if old is not None and old.engine_ref and old.engine_ref != manifest.engine_ref:
            recipe.forget(old)
        return BuildOutcome(recipe.name, manifest, built=True, seconds=manifest.build_seconds)

    def _swap_in(self, tmp: Path, final: Path) -> None:
        old = self.root / f".{final.name}.old-{os.getpid()}"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def forget(self, name: str) -> None:
        """Remove an image from the cache and from its engine."""
        manifest = self.manifest(name)
        if manifest is not None:
            self.recipes[name].forget(manifest)
        shutil.rmtree(self.path(name), ignore_errors=True)
