"""Where comparison results live: next to the lab instance's key, not under ``run/``.

``<state>/<lab>-<instance>/compare/<timestamp>.json`` for every run and ``latest.json`` for
the last one, so exercises can compare a student's numbers and ``labctl down`` (which removes
``run/``) keeps them.
"""

from __future__ import annotations

from pathlib import Path

from labctl.compare.model import Report
from labctl.errors import LabctlError
from labctl.instance.state import InstanceDir
from labctl.private import private_dir, write_private

LATEST = "latest.json"


def directory(inst: InstanceDir) -> Path:
    """The instance's comparison directory."""
    return inst.path / "compare"


def save(report: Report, inst: InstanceDir) -> Path:
    """Write the report as ``<timestamp>.json`` and ``latest.json``; return the first."""
    out = private_dir(directory(inst))
    stamp = report.started.replace("-", "").replace(":", "").split(".")[0]
    text = report.to_json()
    path = out / f"{stamp}.json"
    write_private(path, text)
    write_private(out / LATEST, text)
    return path


def load_latest(inst: InstanceDir) -> Report | None:
    """The last comparison of the instance, or None if it never ran."""
    path = directory(inst) / LATEST
    try:
        return Report.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise LabctlError(f"comparison results {path} are damaged: {exc}") from exc
