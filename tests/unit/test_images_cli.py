"""``labctl images list`` at 80 columns: one line per image, --wide adds the description."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from labctl import console
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
