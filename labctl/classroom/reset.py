"""``class reset STUDENT``: one student's exercise, guest or whole lab put back as new.

Reuses what a student's own commands do: ``exercise reset``'s guest re-creation and
progress reset (``exercises.runner``), ``lab.lifecycle.recreate_guest`` for one guest, and
``down`` then ``up`` for the whole lab. The other students are never touched.
"""

from __future__ import annotations

from pathlib import Path

from labctl.classroom.state import ClassDir
from labctl.classroom.window import window_of
from labctl.errors import LabctlError
from labctl.exercises import runner
from labctl.exercises.progress import INSTRUCTOR, ProgressStore
from labctl.instance import naming
from labctl.lab import down as lab_down
from labctl.lab import lifecycle
from labctl.paths import known_labs
from labctl.spec.model import load_lab
from labctl.stages import Reporter, quiet


def passed_steps(folder: ClassDir, student: str, exercise: str) -> int:
    """Steps of ``exercise`` the student passed since it last started over: the points an
    exercise's reset takes back (0 for a student or an exercise not known: reset says so)."""
    state = folder.require()
    seat = state.seats.get(student)
    if seat is None:
        return 0
    judged = ProgressStore(state.lab, seat.instance, student, judge=window_of(state).judged)
    done = judged.state(exercise)
    return sum(1 for step in done.steps.values() if step.passed_once)


def reset(
    folder: ClassDir,
    student: str,
    exercise: str | None = None,
    guest: str | None = None,
    report: Reporter = quiet,
) -> str:
    """Reset one student's exercise (its guests and progress), one guest, or the whole lab.

    Returns a one-line summary of what was done.
    """
    if exercise is not None and guest is not None:
        raise LabctlError("give --exercise or --guest, not both", code=2)
    with folder.held("labctl class reset") as state:
        seat = state.seats.get(student)
        if seat is None:
            raise LabctlError(
                f"no student {student!r} in class {state.name}",
                f"students: {', '.join(state.seats)}",
                2,
            )
        spec_path = Path(state.spec_path)
        if exercise is not None:
            # the instructor's commands reach the student's lab: by name when labctl ships it
            lab_ref = state.lab if state.lab in known_labs() else str(spec_path)
            where = naming.options(lab_ref, seat.instance)
            ws = runner.open_workspace(str(spec_path), seat.instance, where)
            ex = ws.exercise(exercise)
            runner.recreate_guests(ws, ex, student, report)
            ProgressStore(state.lab, seat.instance, student, made_by=INSTRUCTOR).reset(ex.id)
            return f"{student}: exercise {ex.id} starts over ({', '.join(ex.guests)} fresh)"
        from labctl.host.accel import detect
        from labctl.images.registry import store

        lab = load_lab(spec_path)
        if guest is not None:
            lifecycle.recreate_guest(
                lab, spec_path, seat.instance, guest, store(), detect(), report
            )
            return f"{student}: {guest} fresh from its image"
        lab_down.down(lab.name, seat.instance, report)
        lifecycle.up(lab, spec_path, seat.instance, store(), detect(), report=report)
        return f"{student}: every guest fresh from its image (progress kept)"
