"""Small exercises for unit tests: one guest (``box``), every text the same in both languages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from labctl.exercises.model import Exercise


def text(value: str) -> dict[str, str]:
    """``value`` in Spanish and in English."""
    return {"es": value, "en": value}


def step(step_id: str, *checks: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A step titled by its id, with ``checks`` and any other of its ``fields``."""
    return {
        "id": step_id,
        "title": text(step_id),
        "instructions": text("x"),
        "checks": list(checks),
        **fields,
    }


def fields(exercise_id: str, technique: str, *steps: dict[str, Any], **more: Any) -> dict[str, Any]:
    """An exercise file's fields: on the guest ``box``, titled by its id, with ``steps``."""
    return {
        "id": exercise_id,
        "technique": technique,
        "title": text(exercise_id),
        "instructions": text("x"),
        "guests": ["box"],
        "steps": list(steps),
        **more,
    }


def exercise(exercise_id: str, technique: str, *steps: dict[str, Any], **more: Any) -> Exercise:
    """An exercise on the guest ``box``, titled by its id, with ``steps`` and other fields."""
    return Exercise.model_validate(fields(exercise_id, technique, *steps, **more))


def write(
    path: Path, exercise_id: str, technique: str, *steps: dict[str, Any], **more: Any
) -> None:
    """The same exercise as a file, as a lab's ``exercises/`` folder holds it."""
    path.write_text(yaml.safe_dump(fields(exercise_id, technique, *steps, **more)))
