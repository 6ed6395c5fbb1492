"""Progress files of labctl before the store, imported once: nothing lost, the file kept aside.

``<state>/<lab>-<instance>/progress/<student>.json`` held, per exercise, when it started and
completed, resets, and per step when it first passed, the last answer and the hints taken.
Each file becomes attempts in the store (in one transaction, with the file's path noted as
imported) and is then renamed ``<student>.json.migrated``; a crash between the two leaves
the path noted, so the next run only renames it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labctl.errors import LabctlError
from labctl.store import NewAttempt, Store

SUFFIX = ".migrated"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Step(_Model):
    passed_at: str | None = None
    answer: str | None = None
    answered_at: str | None = None
    hints: int = 0


class _Exercise(_Model):
    started_at: str | None = None
    completed_at: str | None = None
    last_check_at: str | None = None
    resets: int = 0
    steps: dict[str, _Step] = Field(default_factory=dict)


class _Progress(_Model):
    student: str
    lab: str
    instance: str
    exercises: dict[str, _Exercise] = Field(default_factory=dict)


def _time(text: str | None, fallback: datetime) -> datetime:
    if not text:
        return fallback
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at


def attempts_of(progress: _Progress, mtime: datetime) -> list[NewAttempt]:
    """The attempts that give back the same state: resets, start, hints, answers, passes."""
    out: list[NewAttempt] = []
    base = {"lab": progress.lab, "instance": progress.instance, "student": progress.student}
    for ex_id, ex in progress.exercises.items():

        def new(
            kind: str, at: datetime, step: str | None = None, exercise: str = ex_id
        ) -> NewAttempt:
            return NewAttempt(**base, exercise=exercise, kind=kind, step=step, at=at)  # type: ignore[arg-type]

        start = _time(ex.started_at, mtime)
        out += [new("reset", start) for _ in range(ex.resets)]  # the last one started the clock
        out.append(new("start", start))
        for sid, st in ex.steps.items():
            out += [new("hint", start, sid) for _ in range(st.hints)]
        events: list[tuple[datetime, int, NewAttempt]] = []
        for sid, st in ex.steps.items():
            if st.answer is not None:
                at = _time(st.answered_at, start)
                events.append((at, 0, replace(new("answer", at, sid), answer=st.answer)))
            if st.passed_at is not None:
                at = _time(st.passed_at, start)
                check = replace(new("check", at, sid), passed=True)
                if st.answer is not None:
                    check = replace(check, answer=st.answer, answer_passed=True)
                events.append((at, 1, check))
        out += [a for _, _, a in sorted(events, key=lambda e: (e[0], e[1]))]
    return out


def import_folder(store: Store, folder: Path) -> list[Path]:
    """Import every ``*.json`` progress file of an instance's ``progress/`` folder; renamed."""
    done = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            progress = _Progress.model_validate_json(path.read_text())
        except (ValidationError, ValueError) as exc:
            raise LabctlError(
                f"progress file {path} is damaged and cannot be moved into the store: {exc}",
                f"fix it, or rename it to {path.name}.damaged to start from zero",
            ) from exc
        mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        source = str(path.resolve())
        with store.write() as conn:
            if not store.was_imported(source, conn):
                store.record(*attempts_of(progress, mtime), conn=conn)
                store.mark_imported(source, conn)
        path.rename(path.with_name(path.name + SUFFIX))
        done.append(path)
    return done
