"""labctl's data beside its package: playbooks, labs and image recipes.

Everything else about the package is in pyproject.toml. A wheel puts these directories under
``<prefix>/share/labctl/`` (``data_files``), which is where :mod:`labctl.paths` looks when
labctl runs from a wheel instead of a checkout (``pip install -e .`` keeps using the checkout's
own). Symbolic links are installed as the files they point to.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
#: the directories labctl reads at run time, relative to the checkout
DATA_DIRS = ("playbooks", "labs", "images")
DATA_PREFIX = Path("share") / "labctl"


def data_files() -> list[tuple[str, list[str]]]:
    """``(install directory, [files])`` for every file under DATA_DIRS, sorted."""
    found: dict[str, list[str]] = {}
    for top in DATA_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT)
            if path.is_file() and "__pycache__" not in rel.parts:
                found.setdefault(str(DATA_PREFIX / rel.parent), []).append(str(rel))
    return sorted(found.items())


if __name__ == "__main__":  # setuptools runs it so, also under PEP 517 (build_meta)
    setup(data_files=data_files())
