"""``labctl images list`` at 80 columns: one line per image, --wide adds the description."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from labctl import console
from labctl.backends.base import VmTemplate
from labctl.cli import app
from labctl.cli import images as images_cli
from labctl.images.cache import ImageStore
from labctl.images.recipe import BuildContext, Recipe


class Named(Recipe):
    def __init__(self, name: str) -> None:
        self.name = name
        self.description = (
            f"{name}: a Debian bookworm image with a long description of its contents"
        )

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        (ctx.out / "disk").write_bytes(b"x" * 1024)
        return None, {}


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImageStore:
    store = ImageStore([Named("vm-amd64"), Named("vm-arm64-tiny"), Named("docker-app")], tmp_path)
    store.build(["vm-amd64", "docker-app"])
    monkeypatch.setattr(images_cli, "store", lambda: store)
    monkeypatch.setattr(images_cli, "keeper", lambda: Keeper([]))  # not this host's cache
    monkeypatch.setattr(console, "out", Console(width=80, highlight=False))
    return store


def run(*args: str) -> list[str]:
    result = CliRunner().invoke(app, ["images", "list", *args], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_images_list_is_one_line_per_image_in_80_columns(images: ImageStore) -> None:
    lines = run()
    assert max(len(line) for line in lines) <= 80
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["vm-amd64"][1] == "ready" and rows["vm-arm64-tiny"][1:3] == ["missing", "-"]
    assert len(lines) == 2 + 3  # header, rule, one line each: nothing wrapped
    assert "description" not in lines[0]


def test_images_list_wide_adds_the_description(images: ImageStore) -> None:
    lines = run("--wide")
    assert max(len(line) for line in lines) <= 80  # the prose wraps within the terminal
    words = " ".join(" ".join(lines).split())
    assert "description" in lines[0] and "long description of its contents" in words


class Keeper:
    """The libvirt backend's template calls, on a list."""

    def __init__(self, made: list[VmTemplate]) -> None:
        self.made = made
        self.asked: list[Mapping[str, str]] = []

    def templates(self, recipes: Mapping[str, str]) -> list[VmTemplate]:
        self.asked.append(recipes)
        return list(self.made)

    def prune_templates(self, recipes: Mapping[str, str]) -> list[VmTemplate]:
        gone = [t for t in self.made if t.stale and not t.busy]
        self.made = [t for t in self.made if t not in gone]
        return gone


def made(name: str, devices: str, stale: str | None = None) -> VmTemplate:
    return VmTemplate(
        name, "vm-amd64", devices, "tcg", 139 * 2**20, "2026-12-04T03:55:00+00:00", 15.0, stale
    )


@pytest.fixture
def keeper(images: ImageStore, monkeypatch: pytest.MonkeyPatch) -> Keeper:
    k = Keeper(
        [
            made("vm-amd64-ffff-aaaa", "IDE + e1000 (emulated)"),
            made(
                "vm-amd64-0000-bbbb",
                "virtio-blk + virtio-net (paravirtual)",
                "vm-amd64 was rebuilt since",
            ),
        ]
    )
    monkeypatch.setattr(images_cli, "keeper", lambda: k)
    return k


def test_images_list_shows_the_templates_and_which_are_stale(
    keeper: Keeper, images: ImageStore
) -> None:
    lines = run()
    assert max(len(line) for line in lines) <= 80
    text = " ".join(" ".join(lines).split())
    assert "VM templates" in text and "IDE + e1000 (emulated)" in text
    assert "vm-amd64 (vm-amd64-0000-bbbb): stale, vm-amd64 was rebuilt since" in text
    assert "labctl images prune removes 1 stale template (139 MiB)" in text
    # judged by the builds in the cache (vm-arm64-tiny is not built), not by the recipes
    built = images.hashes(["vm-amd64", "docker-app"])
    assert keeper.asked == [built]


def test_images_prune_removes_only_the_stale_and_says_so(keeper: Keeper) -> None:
    held = made("vm-amd64-1111-cccc", "IDE + e1000 (emulated)", "vm-amd64 was rebuilt since")
    keeper.made.append(replace(held, busy=True))  # another labctl holds it: prune leaves it
    result = CliRunner().invoke(app, ["images", "prune", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [t["name"] for t in out["removed"]] == ["vm-amd64-0000-bbbb"]
    assert [t["name"] for t in out["left"]] == ["vm-amd64-1111-cccc"]
    result = CliRunner().invoke(app, ["images", "templates", "--json"])
    assert [t["name"] for t in json.loads(result.stdout)] == [
        "vm-amd64-ffff-aaaa",
        "vm-amd64-1111-cccc",
    ]
    keeper.made.pop()
    result = CliRunner().invoke(app, ["images", "prune"])
    assert result.exit_code == 0 and "0 stale templates removed, 0 MiB freed." in result.stderr
