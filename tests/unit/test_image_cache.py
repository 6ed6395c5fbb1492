"""The image cache: rebuild only on change, nothing half-built left, dependencies first."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from labctl.errors import BuildError
from labctl.images.cache import ImageStore
from labctl.images.recipe import BuildContext, Recipe


class FileRecipe(Recipe):
    """Writes one file; counts its builds; can be told to fail half-way."""

    description = "test image"

    def __init__(self, name: str, needs: tuple[str, ...] = (), content: str = "v1") -> None:
        self.name = name
        self.needs = needs
        self.content = content
        self.builds = 0
        self.fail = False

    def inputs(self) -> Mapping[str, object]:
        return {"content": self.content}

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        self.builds += 1
        ctx.report("writing")
        (ctx.out / "data.bin").write_text(self.content)
        for dep, path in ctx.deps.items():
            assert (path / "manifest.json").is_file(), f"{dep} must be finished first"
        if self.fail:
            raise BuildError("boom")
        return None, {"content": self.content}


def test_build_once_then_cached(tmp_path: Path) -> None:
    r = FileRecipe("a")
    store = ImageStore([r], root=tmp_path)
    first = store.build(["a"])
    second = store.build(["a"])
    assert [o.built for o in first] == [True]
    assert [o.built for o in second] == [False]
    assert r.builds == 1
    manifest = store.manifest("a")
    assert manifest is not None and manifest.artifacts[0].name == "data.bin"
    assert manifest.artifacts[0].size == 2 and len(manifest.artifacts[0].sha256) == 64


def test_recipe_change_and_force_rebuild(tmp_path: Path) -> None:
    r = FileRecipe("a")
    store = ImageStore([r], root=tmp_path)
    store.build(["a"])
    r.content = "v2"
    assert store.build(["a"])[0].built
    assert (store.path("a") / "data.bin").read_text() == "v2"
    assert store.build(["a"], force=True)[0].built
    assert r.builds == 3


def test_dependency_rebuild_rebuilds_dependents(tmp_path: Path) -> None:
    base, app = FileRecipe("base"), FileRecipe("app", needs=("base",))
    store = ImageStore([app, base], root=tmp_path)
    assert [o.name for o in store.build(["app"])] == ["base", "app"]
    base.content = "v2"
    assert [o.built for o in store.build(["app"])] == [True, True]


def test_failed_build_keeps_the_old_image_and_leaves_no_temp(tmp_path: Path) -> None:
    r = FileRecipe("a")
    store = ImageStore([r], root=tmp_path)
    store.build(["a"])
    r.content, r.fail = "v2", True
    with pytest.raises(BuildError):
        store.build(["a"])
    assert (store.path("a") / "data.bin").read_text() == "v1"
    assert sorted(p.name for p in store.root.iterdir()) == ["a"]


def test_interrupted_build_leftovers_are_cleaned(tmp_path: Path) -> None:
    r = FileRecipe("a")
    store = ImageStore([r], root=tmp_path)
    dead = store.root / ".a.tmp-999999999"  # a pid that cannot exist
    dead.mkdir(parents=True)
    (dead / "data.bin").write_text("half")
    mine = store.root / f".a.tmp-{os.getpid()}x"  # not a pid: removed as well
    mine.mkdir()
    store.build(["a"])
    assert sorted(p.name for p in store.root.iterdir()) == ["a"]


def test_unknown_image_and_cycles_are_errors(tmp_path: Path) -> None:
    store = ImageStore(
        [FileRecipe("a", needs=("b",)), FileRecipe("b", needs=("a",))], root=tmp_path
    )
    with pytest.raises(BuildError, match="unknown image 'zzz'"):
        store.build(["zzz"])
    with pytest.raises(BuildError, match="depend on each other"):
        store.build(["a"])


def test_leftover_mounts_are_unmounted_not_deleted_through(tmp_path: Path) -> None:
    import subprocess

    from labctl.images.cache import remove_tree

    # Needs root, like the whole suite (README: the tests run as root).
    outside = tmp_path / "host-files"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    tree = tmp_path / ".a.tmp-1" / "rootfs" / "dev"
    tree.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(outside), str(tree)], check=True)
    remove_tree(tmp_path / ".a.tmp-1")
    assert not (tmp_path / ".a.tmp-1").exists()
    assert (outside / "precious").read_text() == "keep me"


class SlowRecipe(FileRecipe):
    """Records when it ran, and how many builds ran at the same time."""

    active = 0
    peak = 0
    log: list[tuple[str, str]] = []

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        with _LOCK:
            SlowRecipe.active += 1
            SlowRecipe.peak = max(SlowRecipe.peak, SlowRecipe.active)
            SlowRecipe.log.append(("start", self.name))
        try:
            time.sleep(0.2)
            assert threading.current_thread().name.startswith("build")
            return super().build(ctx)
        finally:
            with _LOCK:
                SlowRecipe.active -= 1
                SlowRecipe.log.append(("end", self.name))


_LOCK = threading.Lock()


def test_independent_images_build_side_by_side_dependencies_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABCTL_BUILD_JOBS", "2")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    SlowRecipe.peak, SlowRecipe.log = 0, []
    recipes = [SlowRecipe("base"), SlowRecipe("app", needs=("base",)), SlowRecipe("other")]
    store = ImageStore(recipes, root=tmp_path)
    outcomes = store.build(["app", "other"])
    assert [o.name for o in outcomes] == ["base", "app", "other"]  # dependency order kept
    assert all(o.built for o in outcomes)
    assert SlowRecipe.peak == 2  # base and other at once, never more
    log = SlowRecipe.log
    assert log.index(("end", "base")) < log.index(("start", "app"))


def test_a_failed_build_starts_nothing_new_and_keeps_what_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABCTL_BUILD_JOBS", "1")
    base, app, other = FileRecipe("base"), FileRecipe("app", needs=("base",)), FileRecipe("z")
    base.fail = True
    store = ImageStore([base, app, other], root=tmp_path)
    with pytest.raises(BuildError, match="boom"):
        store.build(["app", "z"])
    assert app.builds == 0 and other.builds == 0  # nothing started after the failure
    assert store.manifest("base") is None
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
