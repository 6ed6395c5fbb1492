"""``class down --forget``: a class's records removed from the progress store once its labs are.

``class down`` keeps every student's attempts and the class's seats for grading; with
``--forget`` the instructor removes them too (after exporting grades): the seats, every attempt
of the students' instances, the students' own rows where no other class names them, and the
progress files an older labctl kept in the instances' folders. The store's part is one
transaction (``Store.forget``); the files go after it commits, so a failure leaves the store
whole. Only students whose labs are gone are forgotten: the caller says which.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace

from labctl.console import plural
from labctl.instance.state import InstanceDir
from labctl.store import Forgotten, Store, own_url


@dataclass(frozen=True)
class Target:
    """One student's seat to forget: their instance of the class's lab."""

    student: str
    lab: str
    instance: str


def _store(store: Store | None) -> Store:
    from labctl.exercises.progress import shared

    return store or shared()


def went_before(
    class_name: str, only: str | None = None, here: Iterable[str] = (), store: Store | None = None
) -> list[Target]:
    """The class's seats in the store whose labs went before (a ``class down`` without
    ``--forget``): all but the students ``here`` (this command's own), ``only``: that student.

    None when the store is not this host's own file: a database shared with other servers
    (``LABCTL_DB``) holds their seats too, whose labs may still run; there only the labs a
    command removes itself are forgotten.
    """
    if store is None and not own_url():
        return []
    mine = set(here)
    return [
        Target(r.student, r.lab, r.instance)
        for r in _store(store).seats(class_name)
        if only in (None, r.student) and r.student not in mine
    ]


def forget(class_name: str, targets: Iterable[Target], store: Store | None = None) -> Forgotten:
    """Remove the targets' seats and attempts (one transaction), then their progress files."""
    targets = list(targets)
    pairs = {(t.lab, t.instance) for t in targets}
    folders = [InstanceDir(lab, instance).path / "progress" for lab, instance in sorted(pairs)]
    under = [str(f.resolve()) + os.sep for f in folders]
    done = _store(store).forget(class_name, {t.student for t in targets}, pairs, under)
    files = sum(_remove_files(InstanceDir(lab, instance)) for lab, instance in sorted(pairs))
    return replace(done, files=files)


def _remove_files(inst: InstanceDir) -> int:
    """An older labctl's progress files of a removed instance (``exercises.legacy``: each
    ``<student>.json``, imported or not, and its ``.migrated`` copy), and the folder left."""
    progress = inst.path / "progress"
    if not progress.is_dir():
        return 0
    files = sorted(progress.glob("*.json*"))
    for f in files:
        f.unlink()
    if inst.load() is None:  # no lab of that name was made again since: its folder's leftovers
        inst.remove_leftovers()
    elif not any(progress.iterdir()):
        progress.rmdir()
    return len(files)


def said(f: Forgotten) -> str:
    """What was forgotten, in a sentence (or that there was nothing)."""
    if f.nothing:
        return f"Nothing of class {f.class_name} to forget: the progress store holds none of it."
    line = (
        f"Forgot {plural(f.attempts, 'attempt')} of {plural(len(f.students), 'student')} "
        f"of class {f.class_name} (their seats and records in the progress store"
    )
    files = f", and {plural(f.files, 'older progress file')})." if f.files else ")."
    return line + files


__all__ = ["Target", "forget", "said", "went_before"]
