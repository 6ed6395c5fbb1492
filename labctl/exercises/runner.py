"""Run an exercise against the real lab: find its guests, prepare them, check, record.

Checks reach a guest through its backend's connection, the one ``labctl exec`` uses (SSH for
VMs, the engine's exec for containers), and the host through a local ``sh -c``. Exercise
commands come from the lab's exercise files; their placeholders expand to values labctl made
(parameters of ``[a-z0-9-]``, checked student ids, guest names, addresses and ports), and a
student's answers are compared in Python, so nothing a student types reaches a shell.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from labctl import backends
from labctl.backends.base import up_again
from labctl.connection import Account, Connection, LocalConnection
from labctl.errors import ExitCode, HostError, LabctlError, SpecError
from labctl.exercises import params, template
from labctl.exercises.checks import CheckResult, Connect, evaluate
from labctl.exercises.lab_exercises import LabExercises, for_guests, labs_with
from labctl.exercises.model import (
    HOST,
    STUDENT,
    AnswerCheck,
    Exercise,
    Step,
    load_exercises,
)
from labctl.i18n import Lang, tr
from labctl.instance import netguard
from labctl.instance.state import InstanceDir, LabState, NotUp, up_command
from labctl.keys import KeyPair
from labctl.paths import shown
from labctl.spec.model import Grading, find_lab, load_lab
from labctl.stages import Reporter

HOST_TIMEOUT = 300.0
#: a guest's engine state in Spanish
STATE_ES = {"stopped": "parado", "paused": "en pausa", "absent": "no existe"}
SETUP_MARK = "/var/tmp/.labctl-exercise-{id}.setup"


class GuestUnavailable(LabctlError):
    """A check names a guest that is not in the lab, or not running."""

    code = ExitCode.NOTHING_RAN


# ---- the lab and its exercises -------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    """A lab instance as the exercises see it: its exercise files and, when up, its state."""

    lab: str
    instance: str
    exercises_dir: Path
    inst: InstanceDir
    state: LabState | None
    grading: Grading = Grading.model_validate({})
    #: the lab file's guests: an exercise needing another guest is not this lab's (None: all)
    guests: frozenset[str] | None = None
    #: the options after a printed command that reach this lab instance (`` -i walk``)
    naming: str = ""

    def grading_of(self, exercise: Exercise) -> Grading:
        """The exercise's own grading, else the lab's."""
        return exercise.grading or self.grading

    @cached_property
    def _folder(self) -> LabExercises:
        """The folder's exercises, read once: the lab file's, and those it leaves out."""
        found = load_exercises(self.exercises_dir)
        if not found:
            raise SpecError(
                f"lab {self.lab} has no exercises in {self.exercises_dir}",
                "exercises live in <lab dir>/exercises/*.yaml",
            )
        return LabExercises(tuple(found)) if self.guests is None else for_guests(found, self.guests)

    def exercises(self) -> list[Exercise]:
        """Every exercise of the lab, in order: those whose guests the lab file has."""
        return list(self._folder.exercises)

    def left_out(self) -> list[tuple[Exercise, tuple[str, ...]]]:
        """The exercises of the folder this lab file leaves out, with the guests they need."""
        return list(self._folder.left_out)

    def _needing_another_lab(self, exercise_id: str) -> LabctlError | None:
        """The error for an exercise of the folder that this lab file leaves out."""
        need = self._folder.missing(exercise_id)
        if not need:
            return None
        names = ", ".join(need)
        files = [shown(p) for p in labs_with(self.exercises_dir.parent, need)]
        ups = " or ".join(f"labctl up {p}" for p in files)
        hint = (
            f"{ups} brings up the lab with {names}"
            if files
            else f"no lab file beside it has {names}"
        )
        hint_es = (
            f"{ups.replace(' or ', ' o ')} levanta el laboratorio con {names}"
            if files
            else f"ningún fichero de laboratorio a su lado tiene {names}"
        )
        return LabctlError(
            f"exercise {exercise_id} needs the guest {names}, which this lab does not run",
            hint,
            code=ExitCode.NOTHING_RAN,
            es=(
                f"el ejercicio {exercise_id} necesita {names}, que este laboratorio no tiene",
                hint_es,
            ),
        )

    def unavailable(self, exercise: Exercise) -> str | None:
        """Why ``exercise`` cannot run on this instance (its VM images), or None."""
        running = (self.state.vm_profile or "debian") if self.state is not None else None
        if exercise.vm_profile is None or running in (None, exercise.vm_profile):
            return None
        return f"it needs the {exercise.vm_profile} VM images; this lab runs the {running} ones"

    def exercise(self, exercise_id: str) -> Exercise:
        """One exercise by id; refused (exit 2) when this instance cannot run it."""
        exercises = self.exercises()
        for exercise in exercises:
            if exercise.id == exercise_id:
                why = self.unavailable(exercise)
                if why is not None:
                    profile = exercise.vm_profile
                    up = f"labctl down, then LABCTL_VM_PROFILE={profile} labctl up"
                    raise LabctlError(
                        f"exercise {exercise.id}: {why}",
                        f"bring the lab up with the {profile} VM images: {up}",
                        code=2,
                        es=(
                            f"el ejercicio {exercise.id} necesita las imágenes de VM {profile} "
                            "y este laboratorio usa otras",
                            f"levanta el laboratorio con las imágenes {profile}: "
                            + up.replace(", then ", " y luego "),
                        ),
                    )
                return exercise
        elsewhere = self._needing_another_lab(exercise_id)
        if elsewhere is not None:
            raise elsewhere
        close = difflib.get_close_matches(exercise_id, [e.id for e in exercises], n=1)
        raise SpecError(
            f"no exercise {exercise_id!r} in lab {self.lab}",
            (f"did you mean {close[0]}? " if close else "")
            + f"labctl exercise list{self.naming} shows the lab's exercises",
            es=(
                f"no hay ningún ejercicio {exercise_id!r} en el laboratorio {self.lab}",
                (f"¿querías decir {close[0]}? " if close else "")
                + f"labctl exercise list{self.naming} muestra los ejercicios del laboratorio",
            ),
        )

    @cached_property
    def seat(self) -> params.Seat | None:
        """In class mode, where the student's ports come from: the instance owner's seat slot
        (written by ``class up``, never given on the command line); None for a lab of one's own.
        """
        owner = self.inst.owner()
        if owner is None:
            return None
        ports = params.port_keys(load_exercises(self.exercises_dir))
        return params.Seat(owner.class_name, owner.student, owner.slot, ports)

    def require_up(self, to: tuple[str, str] = ("check", "comprobar")) -> LabState:
        """The lab state; exit code 2 (nothing could run) when the lab is not up (``to``: what
        there is nothing to do then, in English and Spanish)."""
        if self.state is None:
            raise NotUp(
                self.lab, self.instance, (f": nothing to {to[0]}", f": no hay nada que {to[1]}")
            )
        return self.state


def open_workspace(lab_ref: str, instance: str, naming: str = "") -> Workspace:
    """A lab by file or directory, or by name (then the running instance's own lab file);
    ``naming``: the options printed commands need to reach it (see ``Workspace.naming``)."""
    if Path(lab_ref).exists():
        spec = find_lab(lab_ref)
        lab = load_lab(spec)
        inst = InstanceDir(lab.name, instance)
        folder = spec.parent / "exercises"
        guests = frozenset(lab.guests)
        state = inst.load()
        return Workspace(inst.lab, instance, folder, inst, state, lab.grading, guests, naming)
    inst = InstanceDir(lab_ref, instance)
    state = inst.load()
    spec = find_lab(lab_ref, recorded=state.spec_path if state is not None else None)
    lab = load_lab(spec)
    folder = spec.parent / "exercises"
    guests = frozenset(lab.guests)
    return Workspace(lab_ref, instance, folder, inst, state, lab.grading, guests, naming)


def parameters(ws: Workspace, exercise: Exercise, student: str) -> dict[str, str]:
    """The exercise's parameters for ``student``: ports from their seat in class mode."""
    needs_seat = any(spec.kind == "port" for spec in exercise.params.values())
    seat = ws.seat if needs_seat else None
    return params.derive(exercise.params, ws.lab, exercise.id, student, seat)


def values(ws: Workspace, exercise: Exercise, student: str) -> dict[str, str]:
    """Placeholder values for one student: ids, parameters, and the guests as they are now."""
    result = {"student": student, "instance": ws.instance, "lab": ws.lab}
    derived = parameters(ws, exercise, student)
    result.update({f"param.{k}": v for k, v in derived.items()})
    if ws.state is not None:
        for guest, rec in ws.state.guests.items():
            for field in template.GUEST_FIELDS:
                value = getattr(rec, field)
                if value is not None:
                    result[f"guest.{guest}.{field}"] = str(value)
    return result


# ---- where commands run --------------------------------------------------------------------


class Connections:
    """The connection of each guest of a running instance (checked once to run) and the host.

    Call it with a guest's name, or ``host``: the :data:`~labctl.exercises.checks.Connect`
    that checks and setup take.
    """

    def __init__(self, ws: Workspace) -> None:
        self.state = ws.require_up()
        self.key = KeyPair(ws.inst.key)
        owner = ws.inst.owner()
        self._student_uid = owner.uid if owner is not None else None
        host = LocalConnection(HOST, timeout=HOST_TIMEOUT, allow=self._lab_address)
        self._open: dict[str, Connection] = {HOST: host}

    def __call__(self, name: str) -> Connection:
        if name not in self._open:
            self._open[name] = self._student() if name == STUDENT else self._guest(name)
        return self._open[name]

    def _student(self) -> Connection:
        """The host as the student: their account in class mode (their home, never root's
        rights on what their paths point at); the host's own connection otherwise."""
        if self._student_uid is None:
            return self._open[HOST]
        if os.geteuid() != 0:
            raise HostError(
                "a check on the host as the student runs as their account, which needs root",
                "run labctl as root (a student's labctl does so through sudo by itself)",
            )
        account = Account.of_uid(self._student_uid)
        return LocalConnection(HOST, HOST_TIMEOUT, self._lab_address, account=account)

    def _lab_address(self, host: str) -> None:
        """A check on the host fetches only from loopback or a guest behind the lab's bridges."""
        if host == "localhost":
            return
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise netguard.NotOurNetwork(
                f"labctl will not fetch from {host}: checks reach the lab's guests by address",
                "use {guest.NAME.address} in the exercise's URL",
            ) from None
        engines = {rec.engine for rec in self.state.guests.values()}
        bridges = [b for e in sorted(engines) for b in backends.get(e).bridges(self.state)]
        netguard.require_lab_bridge(host, bridges, f"{HOST} → {host}")

    def _guest(self, name: str) -> Connection:
        rec = self.state.guests.get(name)
        up = up_command(self.state.lab, self.state.instance, self.state.spec_path)
        if rec is None:
            lab, instance = self.state.lab, self.state.instance
            raise GuestUnavailable(
                f"guest {name} is not in lab {lab} (instance {instance})",
                f"this exercise needs the full lab: {up}",
                es=(
                    f"{name} no está en el laboratorio {lab} (instancia {instance})",
                    f"este ejercicio necesita el laboratorio completo: {up}",
                ),
            )
        backend = backends.get(rec.engine)
        live = backend.state(rec.resource)
        if live != "running":
            raise GuestUnavailable(
                f"guest {name} is {live}",
                up_again("starts it again", up),
                es=(
                    f"{name} no está en marcha ({STATE_ES.get(live, live)})",
                    f"{up} lo arranca otra vez (si eres alumno de una clase, lo hace el "
                    "labctl class up de tu profesor)",
                ),
            )
        return backend.connect(rec, self.key)


# ---- setup, checks, results ----------------------------------------------------------------


def ensure_setup(
    exercise: Exercise, connect: Connect, vals: Mapping[str, str], naming: str = ""
) -> bool:
    """Prepare the guests once per guest lifetime (a mark file in the guest); True if it ran.

    ``naming``: the options that reach this lab instance, for the command an error names."""
    ran = False
    mark = SETUP_MARK.format(id=exercise.id)
    for target in dict.fromkeys(cmd.target for cmd in exercise.setup):
        conn = connect(target)
        if conn.run(f"test -e {mark}").succeeded:
            continue
        for cmd in exercise.setup:
            if cmd.target != target:
                continue
            result = conn.run(template.render(cmd.run, vals))
            if not result.succeeded:
                raise LabctlError(
                    f"preparing {target} for exercise {exercise.id} failed: {result.detail}",
                    f"run `labctl exercise reset {exercise.id}{naming}` to start from a fresh "
                    "guest",
                    es=(
                        f"no se pudo preparar {target} para el ejercicio {exercise.id}: "
                        f"{result.detail}",
                        f"`labctl exercise reset {exercise.id}{naming}` vuelve a empezar con un "
                        "invitado recién creado",
                    ),
                )
        conn.run(f"touch {mark}")
        ran = True
    return ran


@dataclass(frozen=True)
class StepResult:
    """The checks of one step."""

    step: str
    number: int
    title: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """Every check passed."""
        return all(r.passed for r in self.results)


@dataclass(frozen=True)
class ExerciseResult:
    """The checks of an exercise, step by step."""

    exercise: str
    steps: tuple[StepResult, ...]

    @property
    def passed(self) -> bool:
        """Every step passed."""
        return all(s.passed for s in self.steps)

    @property
    def exit_code(self) -> int:
        """0: all passed; 1: some failed; 2: nothing could run."""
        results = [r for s in self.steps for r in s.results]
        if results and all(r.status == "error" for r in results):
            return ExitCode.NOTHING_RAN
        return ExitCode.OK if self.passed else ExitCode.FAILED

    def with_notes(self, change: Callable[[str], str]) -> ExerciseResult:
        """A copy with ``change`` applied to every teacher's note."""
        steps = tuple(
            replace(s, results=tuple(replace(r, note=r.note and change(r.note)) for r in s.results))
            for s in self.steps
        )
        return replace(self, steps=steps)


def run_checks(
    exercise: Exercise,
    connect: Connect,
    vals: Mapping[str, str],
    lang: Lang,
    answers: Mapping[str, str | None],
    steps: list[Step] | None = None,
    naming: str = "",
) -> ExerciseResult:
    """Every check of ``steps`` (default: all), each rendered for the student, in order
    (``naming``: the options that reach this lab instance, for the commands it names)."""
    chosen = steps if steps is not None else exercise.steps
    out = []
    for step in chosen:
        results = []
        for check in step.checks:
            try:
                rendered = template.render_model(check, vals)
            except LabctlError as exc:
                what = template.render(check.what.get(lang), vals, strict=False)
                results.append(CheckResult(what, "error", exc.message, exc.hint))
                continue
            given = answers.get(step.id)
            if isinstance(rendered, AnswerCheck) and given is None:
                answer = f"labctl exercise answer {exercise.id} {step.id}"
                results.append(_unanswered(rendered, answer, naming, lang))
                continue
            results.append(evaluate(rendered, connect, lang, given))
        number = exercise.steps.index(step) + 1
        title = template.render(step.title.get(lang), vals, strict=False)
        out.append(StepResult(step.id, number, title, tuple(results)))
    return ExerciseResult(exercise.id, tuple(out))


def _unanswered(check: AnswerCheck, answer: str, naming: str, lang: Lang) -> CheckResult:
    """No answer yet: nothing to measure; say how to answer (``answer``: the command)."""
    return CheckResult(
        check.what.get(lang),
        "failed",
        tr(
            lang,
            f"todavía no has respondido: {answer} VALOR{naming}",
            f"no answer yet: {answer} VALUE{naming}",
        ),
    )


def recreate_guests(ws: Workspace, exercise: Exercise, student: str, report: Reporter) -> None:
    """Put the exercise's guests back as their images made them, then prepare them again.

    Each guest is destroyed with its disk and brought up afresh (``labctl exercise reset``);
    the other guests of the lab are not touched.
    """
    from labctl.host.accel import detect
    from labctl.images.registry import store
    from labctl.lab import lifecycle

    state = ws.require_up()
    spec_path = Path(state.spec_path)
    spec = load_lab(spec_path)
    probe = detect()
    for guest in exercise.guests:
        lifecycle.recreate_guest(spec, spec_path, ws.instance, guest, store(), probe, report)
    fresh = open_workspace(str(spec_path), ws.instance)  # new addresses and ports
    ensure_setup(exercise, Connections(fresh), values(fresh, exercise, student))
