"""Progress files of older labctl versions move into the store once, nothing lost."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from labctl.errors import LabctlError
from labctl.exercises import legacy
from labctl.exercises.grading import score
from labctl.exercises.progress import ProgressStore, shared
from tests.unit.test_exercises_progress import EXERCISE

OLD = {
    "student": "ana",
    "lab": "lab",
    "instance": "main",
    "exercises": {
        "demo": {
            "started_at": "2026-02-01T10:00:00+00:00",
            "completed_at": None,
            "checks": 3,
            "last_check_at": "2026-02-01T10:20:00+00:00",
            "resets": 1,
            "steps": {
                "one": {
                    "passed_at": "2026-02-01T10:15:00+00:00",
                    "answer": "aarch64",
                    "answered_at": "2026-02-01T10:14:00+00:00",
                    "hints": 2,
                },
                "two": {"hints": 1, "answer": "si", "answered_at": "2026-02-01T10:19:00+00:00"},
            },
        }
    },
}


def write_old(tmp_path: Path, data: dict[str, object] = OLD, name: str = "ana") -> Path:
    folder = tmp_path / "lab-main" / "progress"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_an_old_progress_file_is_imported_on_first_use_and_kept_aside(tmp_path: Path) -> None:
    old = write_old(tmp_path)
    url = f"sqlite:///{tmp_path / 'labctl.db'}"
    progress = ProgressStore("lab", "main", "ana", root=tmp_path, store=shared(url))
    state = progress.state("demo")
    one, two = state.step("one"), state.step("two")
    assert str(one.first_passed_at) == "2026-02-01 10:15:00+00:00" and one.passes_now
    assert (one.answer, one.hints, two.hints, two.answer) == ("aarch64", 2, 1, "si")
    assert two.first_passed_at is None and state.resets == 1
    assert str(state.started_at) == "2026-02-01 10:00:00+00:00"
    assert state.started_at is not None
    sc = score(EXERCISE, state)
    assert (sc.passed, sc.hints, sc.state) == (1, 3, "in progress")
    assert not old.exists()
    kept = old.with_name("ana.json.migrated")
    assert json.loads(kept.read_text()) == OLD  # the original, untouched
    # a second use imports nothing again
    ProgressStore("lab", "main", "ana", root=tmp_path, store=shared(url))
    assert len(progress.store.attempts("lab")) == len(
        legacy.attempts_of(legacy._Progress.model_validate(OLD), state.started_at)
    )  # type: ignore[arg-type]
    assert stat.S_IMODE((tmp_path / "labctl.db").stat().st_mode) == 0o600


def test_a_file_imported_before_a_crash_is_only_renamed(tmp_path: Path) -> None:
    old = write_old(tmp_path)
    store = shared(f"sqlite:///{tmp_path / 'labctl.db'}")
    legacy.import_folder(store, old.parent)
    count = len(store.attempts("lab"))
    old.with_name("ana.json.migrated").rename(old)  # as if the rename had not happened
    legacy.import_folder(store, old.parent)
    assert len(store.attempts("lab")) == count and not old.exists()


def test_every_students_file_of_the_instance_is_imported(tmp_path: Path) -> None:
    write_old(tmp_path)
    write_old(tmp_path, {**OLD, "student": "bea"}, "bea")
    store = shared(f"sqlite:///{tmp_path / 'labctl.db'}")
    ProgressStore("lab", "main", "ana", root=tmp_path, store=store)
    assert {a.student for a in store.attempts("lab")} == {"ana", "bea"}


def test_a_damaged_file_is_explained_and_left_alone(tmp_path: Path) -> None:
    old = write_old(tmp_path)
    old.write_text("{not json")
    with pytest.raises(LabctlError, match="is damaged"):
        ProgressStore(
            "lab", "main", "ana", root=tmp_path, store=shared(f"sqlite:///{tmp_path}/x.db")
        )
    assert old.read_text() == "{not json"
