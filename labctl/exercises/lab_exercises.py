"""Which exercises of a folder count for a lab file: those whose guests it runs.

A folder of exercises may serve several lab files (``virtualization-full/lab.yaml`` and
``s390x.yaml``, which adds the guest ``s390x``): an exercise counts for a lab only when the
lab has every guest it runs against. Listing, checking, progress, grades and the dashboard
all ask here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from labctl.errors import SpecError
from labctl.exercises.model import Exercise, load_exercises
from labctl.spec.model import Lab, load_lab


@dataclass(frozen=True)
class LabExercises:
    """A lab file's exercises: those whose guests it has, and those it leaves out."""

    exercises: tuple[Exercise, ...]
    #: each exercise left out, with the guests it needs that the lab lacks
    left_out: tuple[tuple[Exercise, tuple[str, ...]], ...] = ()

    def missing(self, exercise_id: str) -> tuple[str, ...]:
        """The guests the lab lacks for ``exercise_id`` (empty: it counts, or is unknown)."""
        return next((need for e, need in self.left_out if e.id == exercise_id), ())


def for_guests(exercises: list[Exercise], guests: Collection[str]) -> LabExercises:
    """Split ``exercises`` by whether ``guests`` has every guest each runs against."""
    kept, left = [], []
    for e in exercises:
        need = tuple(g for g in e.guests if g not in guests)
        if need:
            left.append((e, need))
        else:
            kept.append(e)
    return LabExercises(tuple(kept), tuple(left))


def of_lab(spec_path: Path, lab: Lab | None = None) -> LabExercises:
    """The exercises beside the lab file (``exercises/``) that count for that lab (a
    directory means its ``lab.yaml``)."""
    if spec_path.is_dir():
        spec_path = spec_path / "lab.yaml"
    lab = lab or load_lab(spec_path)
    return for_guests(load_exercises(spec_path.parent / "exercises"), lab.guests)


def labs_with(directory: Path, guests: Collection[str]) -> list[Path]:
    """The lab files in ``directory`` that have every one of ``guests``."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            lab = load_lab(path)
        except SpecError:
            continue  # not a lab file (or a broken one: lab validate says why)
        if all(g in lab.guests for g in guests):
            found.append(path)
    return found
