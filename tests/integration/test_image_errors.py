"""A package list naming a package Debian does not have: the real mmdebstrap and apt say so.

The error names the package and the list line asking for it; nothing is left half-built and
the image built before stays in use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from labctl.errors import BuildError
from labctl.images.cache import ImageStore
from labctl.images.debian import SUITE, mmdebstrap, read_list
from labctl.images.recipe import BuildContext, Recipe


class ListedPackages(Recipe):
    """Unpacks the packages a list file names (no maintainer scripts: a few seconds)."""

    name = "labctl-test-listed"
    description = "test image"

    def __init__(self, listing: Path) -> None:
        self.listing = listing

    def inputs(self) -> Mapping[str, object]:
        return {"packages": self.listing.read_text()}

    def build(self, ctx: BuildContext) -> tuple[str | None, Mapping[str, str]]:
        mmdebstrap(
            ctx.out / "root",
            arch="amd64",
            packages=read_list(self.listing),
            variant="extract",
            lists=[self.listing],
        )
        return None, {}


def test_an_unknown_package_is_named_at_its_line_and_the_good_image_stays(tmp_path: Path) -> None:
    listing = tmp_path / "packages.txt"
    listing.write_text("# the test image\nhostname\n")
    store = ImageStore([ListedPackages(listing)], root=tmp_path / "cache")
    store.build([ListedPackages.name])
    good = store.manifest(ListedPackages.name)
    assert good is not None

    listing.write_text("# the test image\nhostname\nno-such-package-labctl   # a typo\n")
    with pytest.raises(BuildError) as err:
        store.build([ListedPackages.name])
    assert err.value.message == (
        f"{listing}:3: no package 'no-such-package-labctl' in Debian {SUITE} for amd64"
    )
    assert "stays in use" in (err.value.hint or "")
    assert store.manifest(ListedPackages.name) == good  # the previous image is untouched
    images = tmp_path / "cache" / "images"
    assert sorted(p.name for p in images.iterdir()) == [ListedPackages.name]  # no leftovers
