"""An exercise counts for a lab file only when the lab has every guest it runs against.

``labs/virtualization-full`` holds two lab files over one folder of exercises: ``lab.yaml``
and ``s390x.yaml``, which adds the optional guest ``s390x`` that ``pv-canales`` needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.classroom import grades
from labctl.dashboard.data import exercises_of
from labctl.errors import ExitCode, LabctlError
from labctl.exercises import runner
from labctl.exercises.lab_exercises import for_guests, of_lab
from labctl.exercises.model import load_exercises
from labctl.paths import LABS_DIR
from tests.labs import exercise_yaml

FULL = LABS_DIR / "virtualization-full"


def test_a_lab_without_the_guest_leaves_its_exercise_out_and_says_which_guest() -> None:
    without, with_it = of_lab(FULL / "lab.yaml"), of_lab(FULL / "s390x.yaml")
    assert [(e.id, need) for e, need in without.left_out] == [("pv-canales", ("s390x",))]
    assert "pv-canales" not in {e.id for e in without.exercises}
    assert with_it.left_out == () and "pv-canales" in {e.id for e in with_it.exercises}
    assert len(with_it.exercises) == len(without.exercises) + 1
    default = of_lab(LABS_DIR / "virtualization")  # a directory: its lab.yaml
    every = list((LABS_DIR / "virtualization" / "exercises").glob("*.yaml"))
    assert default.left_out == () and len(default.exercises) == len(every) > 15
    assert without.missing("pv-canales") == ("s390x",) and without.missing("app-motores") == ()


def test_the_split_keeps_the_folders_order() -> None:
    found = load_exercises(FULL / "exercises")
    split = for_guests(found, {"kvm-full", "kvm-virtio", "arm-emulated"})
    assert [e.id for e in split.exercises] == [
        e.id for e in found if set(e.guests) <= {"kvm-full", "kvm-virtio", "arm-emulated"}
    ]
    assert len(split.exercises) + len(split.left_out) == len(found)


def test_a_student_is_told_which_lab_file_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABCTL_STATE", str(tmp_path))
    monkeypatch.chdir(LABS_DIR.parent)
    ws = runner.open_workspace(str(FULL / "lab.yaml"), "t")
    assert "pv-canales" not in {e.id for e in ws.exercises()}
    assert [(e.id, need) for e, need in ws.left_out()] == [("pv-canales", ("s390x",))]
    with pytest.raises(LabctlError) as err:
        ws.exercise("pv-canales")
    assert err.value.code == ExitCode.NOTHING_RAN
    assert err.value.message == (
        "exercise pv-canales needs the guest s390x, which this lab does not run"
    )
    assert err.value.hint == (
        "labctl up labs/virtualization-full/s390x.yaml brings up the lab with s390x"
    )
    with pytest.raises(LabctlError, match="no exercise 'nosuch' in lab virtualization-full") as no:
        ws.exercise("nosuch")
    assert no.value.hint == "labctl exercise list shows the lab's exercises"
    with pytest.raises(LabctlError) as typo:
        ws.exercise("app-motors")
    assert typo.value.hint == (
        "did you mean app-motores? labctl exercise list shows the lab's exercises"
    )
    assert runner.open_workspace(str(FULL / "s390x.yaml"), "t").exercise("pv-canales")


def test_grades_and_the_dashboard_count_only_the_labs_own_exercises() -> None:
    graded, _ = grades._exercises("virtualization-full", str(FULL / "lab.yaml"))
    shown = exercises_of(str(FULL / "lab.yaml"))
    assert "pv-canales" not in {e.id for e in graded} | {e.id for e in shown}
    assert (
        [e.id for e in graded]
        == [e.id for e in shown]
        == [e.id for e in of_lab(FULL / "lab.yaml").exercises]
    )
    graded, _ = grades._exercises("virtualization-full", str(FULL / "s390x.yaml"))
    assert "pv-canales" in {e.id for e in graded}


def test_lab_validate_reads_the_exercises_too(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from labctl.cli import app
    from labctl.errors import SpecError
    from tests.labs import APP, lab_yaml

    (tmp_path / "lab.yaml").write_text(lab_yaml("demo", APP))
    folder = tmp_path / "exercises"
    folder.mkdir()
    (folder / "10-uno.yaml").write_text(exercise_yaml("uno"))
    (folder / "20-dos.yaml").write_text(
        exercise_yaml("dos").replace("guests: [app]", "guests: [vm]")
    )
    said = CliRunner().invoke(app, ["lab", "validate", str(tmp_path / "lab.yaml"), "--json"])
    assert said.exit_code == 0, said.output
    data = json.loads(said.stdout)
    assert data["exercises"] == ["uno"]
    assert data["left_out"] == [{"exercise": "dos", "needs": ["vm"]}]
    (folder / "30-tres.yaml").write_text(exercise_yaml("tres").replace("technique:", "tecnica:"))
    said = CliRunner().invoke(app, ["lab", "validate", str(tmp_path / "lab.yaml")])
    assert isinstance(said.exception, SpecError), said.output
    assert f"{folder / '30-tres.yaml'}:2: tecnica: unknown key" in said.exception.message
