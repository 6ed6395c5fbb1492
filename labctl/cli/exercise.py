"""``labctl exercise list/show/check/hint/answer/reset/progress/schema``."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, get_type_hints

import typer
from rich.markup import escape

from labctl import console
from labctl.classroom.window import Window, class_of, require_open, window_of
from labctl.cli import commands, tables
from labctl.cli import exercise_view as view
from labctl.cli.app import app
from labctl.cli.lab import options_of
from labctl.cli.options import InstanceOpt, LabOpt, LangOpt, StudentOpt
from labctl.errors import ExitCode, LabctlError, SpecError
from labctl.exercises import grading, runner, template
from labctl.exercises.grading import Score, current_step
from labctl.exercises.model import Exercise, json_schema
from labctl.exercises.progress import INSTRUCTOR, ProgressStore, check_student
from labctl.i18n import Lang, detect, tr
from labctl.instance.naming import DEFAULT_LAB, check_instance, check_lab_name
from labctl.instance.state import up_command
from labctl.store import ExerciseState

exercise_app = typer.Typer(
    help="Guided exercises: instructions, checks against the real guests, hints, progress.",
    no_args_is_help=True,
)
app.add_typer(exercise_app, name="exercise")

IdArg = typer.Argument(..., metavar="ID", help="Exercise id (see `labctl exercise list`).")
JsonOpt = tables.JsonOpt


@dataclass(frozen=True)
class _Ctx:
    """What every exercise command works with."""

    ws: runner.Workspace
    student: str
    lang: Lang
    store: ProgressStore
    #: the end of the class's exam window, if it has one (after it, attempts do not score)
    ends: datetime | None = None
    #: the lab as typed (a name, file or folder) and the student's ``-s`` (or None), for
    #: ``commands``
    typed: tuple[str, str | None] = (DEFAULT_LAB, None)

    def cmd(self, words: str) -> str:
        """``labctl WORDS`` with the options naming this lab instance and student."""
        return f"labctl {words}{self.naming}"

    @property
    def naming(self) -> str:
        """The options that named this lab, instance and student, as typed (`` -i walk``),
        put after each command labctl prints; none for a confined student (labctl adds
        theirs)."""
        return self.ws.naming

    def score(self, exercise: Exercise, state: ExerciseState) -> Score:
        """The exercise's score under the lab's grading."""
        return grading.score(exercise, state, self.ws.grading_of(exercise))

    def scores(self) -> list[tuple[Exercise, Score]]:
        """Every exercise of the lab with the student's score, in order (one store read)."""
        states = self.store.states()
        return [(e, self.score(e, self.store.of(e.id, states))) for e in self.ws.exercises()]

    def values(self, exercise: Exercise) -> dict[str, str]:
        return runner.values(self.ws, exercise, self.student)

    def text(self, exercise: Exercise, text: str) -> str:
        """Placeholders filled in (those without a value yet, lab down, stay visible); the
        labctl commands it names reach this lab instance (``cli.commands``)."""
        return self.commands(template.render(text, self.values(exercise), strict=False))

    def commands(self, text: str) -> str:
        """The labctl commands ``text`` names, with the options that reach this instance."""
        lab_ref, student = self.typed
        return commands.in_text(text, self.ws.lab, self.ws.instance, student, lab_ref)


def _ctx(lab: str, instance: str, student: str | None, lang: str | None) -> _Ctx:
    if not Path(lab).exists():  # not a lab file or directory: then a lab's name
        check_lab_name(lab)
    check_instance(instance)
    who = check_student(student or os.environ.get("LABCTL_STUDENT") or instance)
    ws = runner.open_workspace(lab, instance, options_of(lab, instance, student))
    require_open(ws.lab, instance)  # a class's exam window hides the exercises until it starts
    # after the window's end attempts are still recorded, as not scoring
    cls = class_of(ws.lab, instance)
    window = window_of(cls) if cls is not None else Window(None, None)
    scored = window.scores(datetime.now(timezone.utc))
    # in a student's class lab, root is the instructor (a student's commands run confined)
    by = INSTRUCTOR if cls is not None and not console.CONFINED else None
    judge = window.judged if cls is not None else list  # a class's window, none else
    store = ProgressStore(ws.lab, instance, who, scored=scored, judge=judge, made_by=by)
    return _Ctx(ws, who, detect(lang), store, window.end, (lab, student))


def _exam_line(c: _Ctx) -> str | None:
    """When the class's exam window ends, or that it has (what is recorded now never scores)."""
    if c.ends is None:
        return None
    end = c.ends.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if c.store.scored:
        return tr(c.lang, f"El examen termina el {end}.", f"The exam ends at {end}.")
    return tr(
        c.lang,
        f"[yellow]El examen terminó el {end}: lo que hagas se registra, pero no puntúa.[/yellow]",
        f"[yellow]The exam ended at {end}: what you do is recorded but does not score.[/yellow]",
    )


#: the options every exercise command takes, in this order after its own
_KW = inspect.Parameter.KEYWORD_ONLY
_SHARED = [
    inspect.Parameter("lab", _KW, default=LabOpt, annotation=str),
    inspect.Parameter("instance", _KW, default=InstanceOpt, annotation=str),
    inspect.Parameter("student", _KW, default=StudentOpt, annotation=str | None),
    inspect.Parameter("lang", _KW, default=LangOpt, annotation=str | None),
]

Command = Callable[..., None]


def _command(name: str | None = None) -> Callable[[Command], Command]:
    """Register an exercise command; it receives the :class:`_Ctx` the shared options make.

    The decorated function's first parameter is that context; its other parameters are its
    own arguments and options, and ``--lab``, ``--instance``, ``--student`` and ``--lang``
    are added once, here.
    """

    def decorate(fn: Command) -> Command:
        hints = get_type_hints(fn)
        own = list(inspect.signature(fn).parameters.values())[1:]
        params = [p.replace(annotation=hints[p.name]) for p in own] + _SHARED

        @functools.wraps(fn)
        def command(
            *args: Any,
            lab: str,
            instance: str,
            student: str | None,
            lang: str | None,
            **kwargs: Any,
        ) -> None:
            with contextlib.suppress(SpecError):  # an unknown --lang is said by _ctx, in English
                console.LANG = detect(lang)  # the language errors are shown in too
            fn(_ctx(lab, instance, student, lang), *args, **kwargs)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        exercise_app.command(name)(command)
        return fn

    return decorate


@_command("list")
def list_(
    c: _Ctx,
    json_out: bool = JsonOpt,
) -> None:
    """Every exercise of the lab, with the student's progress."""
    rows = c.scores()
    if json_out:
        console.print_json(
            [
                {
                    **view.score_json(s),
                    "technique": e.technique,
                    "title": e.title.get(c.lang),
                    "unavailable": c.ws.unavailable(e),
                }
                for e, s in rows
            ]
        )
        return
    console.out.print(view.exercises_table(rows, c.ws.lab, c.student, c.lang))
    elsewhere = c.ws.left_out()
    if elsewhere:
        said = ", ".join(f"{e.id} ({', '.join(need)})" for e, need in elsewhere)
        console.out.print(
            tr(
                c.lang,
                f"Necesitan un invitado que este laboratorio no tiene: {said}",
                f"These need a guest this lab does not run: {said}",
            )
        )
    refused = [e.id for e, _ in rows if c.ws.unavailable(e)]
    if refused:
        console.out.print(
            tr(
                c.lang,
                f"Necesitan las máquinas virtuales Debian (este laboratorio usa otras): "
                f"{', '.join(refused)}",
                f"These need the Debian VM images (this lab runs others): {', '.join(refused)}",
            )
        )
    console.out.print(
        escape(tr(c.lang, "Empieza con: ", "Start with: ") + c.cmd("exercise show ID")),
        soft_wrap=True,
    )


def _prepare(c: _Ctx, ex: Exercise) -> None:
    """Run the exercise's setup if the lab is up; if a guest is missing, say so and go on."""
    if c.ws.state is None:
        up = (
            tr(c.lang, "el labctl class up de tu profesor", "your instructor's labctl class up")
            if console.CONFINED
            else up_command(c.ws.lab, c.ws.instance)
        )
        said = tr(c.lang, "el laboratorio no está en marcha", "the lab is not up")
        note = tr(c.lang, "[yellow]Nota:[/yellow]", "[yellow]Note:[/yellow]")
        console.err.print(f"{note} {escape(said)} ({escape(up)}).", soft_wrap=True)
        return
    try:
        runner.ensure_setup(ex, runner.Connections(c.ws), c.values(ex), c.naming)
    except LabctlError as exc:
        console.err.print(f"[yellow]Note:[/yellow] {escape(exc.message)}")


@_command()
def show(
    c: _Ctx,
    exercise_id: str = IdArg,
    step: str | None = typer.Option(None, "--step", help="Step id or number; default: current."),
    json_out: bool = JsonOpt,
) -> None:
    """The instructions of the current step (starts the exercise's clock once the lab is up)."""
    ex = c.ws.exercise(exercise_id)
    # reading ahead while the lab is down records nothing: the clock starts with the lab
    p = c.store.start(ex.id) if c.ws.state is not None else c.store.state(ex.id)
    _prepare(c, ex)
    on = current_step(ex, p)
    index = on if step is None else ex.steps.index(ex.step(step))
    s, L = ex.steps[index], c.lang
    begun = any(p.step(x.id).reached_at for x in ex.steps)  # a step passed, late ones too
    v = view.StepView(
        exercise=ex,
        index=index,
        title=c.text(ex, s.title.get(L)),
        introduction=c.text(ex, ex.instructions.get(L)) if index == 0 or not begun else None,
        instructions=c.text(ex, s.instructions.get(L)),
        passed=p.step(s.id).passed_once,
        answer=p.step(s.id).answer,
        # `exercise hint` gives the current step's hints: offered there, while some are left
        hints_taken=p.step(s.id).hints if index == on else len(s.hints),
    )
    if not json_out:
        view.print_step(console.out, v, L, c.naming)
        if (exam := _exam_line(c)) is not None:
            console.out.print(exam)
        return
    console.print_json(
        {
            "exercise": ex.id,
            "title": ex.title.get(L),
            "introduction": c.text(ex, ex.instructions.get(L)),
            "step": {
                "id": s.id,
                "number": index + 1,
                "of": len(ex.steps),
                "title": v.title,
                "instructions": v.instructions,
                "asks_answer": s.answer_check is not None,
                "options": s.answer_check.spellings() if s.answer_check else {},
                "answer": v.answer,
                "passed": v.passed,
            },
            "progress": view.score_json(c.score(ex, p)),
        }
    )


@_command()
def check(
    c: _Ctx,
    exercise_id: str = IdArg,
    step: str | None = typer.Option(None, "--step", help="Only this step (id or number)."),
    json_out: bool = JsonOpt,
) -> None:
    """Run the checks on the real guests; exit 0: all passed, 1: some failed, 2: none ran."""
    ex = c.ws.exercise(exercise_id)
    connect = runner.Connections(c.ws)  # exit 2 when the lab is not up
    vals = c.values(ex)
    runner.ensure_setup(ex, connect, vals, c.naming)
    before = c.store.state(ex.id)
    answers = {sid: sp.answer for sid, sp in before.steps.items()}
    steps = [ex.step(step)] if step is not None else None
    result = runner.run_checks(ex, connect, vals, c.lang, answers, steps, c.naming)
    result = result.with_notes(c.commands)  # a teacher's note may name a command too
    after = before
    if result.exit_code != 2:  # nothing ran: nothing to record
        after = c.store.record_checks(ex, result, before)
    sc = c.score(ex, after)
    if json_out:
        console.print_json(
            {
                "exercise": ex.id,
                "student": c.student,
                "passed": result.passed,
                "exit_code": result.exit_code,
                "steps": result.steps,
                "scored": c.store.scored,  # False: after the exam's end, recorded only
                "progress": view.score_json(sc),
            }
        )
    else:
        view.print_check(console.out, ex, result, sc, c.student, c.lang)
        if not c.store.scored and (exam := _exam_line(c)) is not None:
            console.out.print(exam)
    raise typer.Exit(result.exit_code)


@_command()
def hint(
    c: _Ctx,
    exercise_id: str = IdArg,
) -> None:
    """The next hint for the current step (hints taken are recorded)."""
    ex = c.ws.exercise(exercise_id)
    L = c.lang
    p = c.store.start(ex.id)
    index = current_step(ex, p)
    s = ex.steps[index]
    given = p.step(s.id).hints
    if given < len(s.hints):
        c.store.hint(ex.id, s.id)
        given += 1
    head = tr(L, f"Paso {index + 1}", f"Step {index + 1}")
    if not s.hints:
        console.out.print(tr(L, f"{head}: este paso no tiene pistas.", f"{head}: no hints here."))
        return
    console.out.print(f"[bold]{head}, {tr(L, 'pista', 'hint')} {given}/{len(s.hints)}[/bold]")
    view.print_markdown(console.out, c.text(ex, s.hints[given - 1].get(L)))
    if given == len(s.hints):
        console.out.print(tr(L, "(no quedan más pistas)", "(no more hints)"))


@_command()
def answer(
    c: _Ctx,
    exercise_id: str = IdArg,
    step: str = typer.Argument(..., metavar="STEP", help="Step id or number."),
    value: str = typer.Argument(..., metavar="VALUE"),
) -> None:
    """Record the answer to a step; `check` compares it with what the lab measures."""
    ex = c.ws.exercise(exercise_id)
    s = ex.step(step)
    if s.answer_check is None:
        asks = ", ".join(x.id for x in ex.steps if x.answer_check is not None) or "none"
        raise SpecError(
            tr(
                c.lang,
                f"el paso {s.id} de {ex.id} no pide ninguna respuesta",
                f"step {s.id} of {ex.id} does not ask for an answer",
            ),
            tr(c.lang, f"pasos que la piden: {asks}", f"steps that do: {asks}"),
            lang=c.lang,
        )
    value = value.strip()
    if not value:
        raise SpecError(
            tr(c.lang, "la respuesta está vacía", "the answer is empty"),
            tr(
                c.lang,
                "escribe el valor tras el paso: " + c.cmd(f"exercise answer {ex.id} {s.id} VALOR"),
                "give the value after the step: " + c.cmd(f"exercise answer {ex.id} {s.id} VALUE"),
            ),
            lang=c.lang,
        )
    grading.require_answerable(ex, s, value, c.lang)
    p = c.store.start(ex.id)
    if c.store.scored:  # after an exam's end nothing scores: answering again is practice
        grading.require_attempt_left(ex, s, p.step(s.id), c.ws.grading_of(ex), c.lang)
    c.store.answer(ex.id, s.id, value)
    n = ex.steps.index(s) + 1  # as show and check number the steps
    saved = tr(
        c.lang,
        f"Respuesta del paso {n} ({s.id}) guardada: «{value}». Compruébala con: ",
        f"Answer to step {n} ({s.id}) recorded: “{value}”. Check it with: ",
    )
    console.out.print(escape(saved + c.cmd(f"exercise check {ex.id}")), soft_wrap=True)
    if not c.store.scored and (exam := _exam_line(c)) is not None:
        console.out.print(exam)  # it is recorded, and scores nothing


@_command()
def reset(
    c: _Ctx,
    exercise_id: str = IdArg,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Recreate the exercise's guests from their images and start the exercise again."""
    ex = c.ws.exercise(exercise_id)
    c.ws.require_up(("reset", "reiniciar"))
    L, guests = c.lang, ", ".join(ex.guests)
    if not yes and not (sys.stdin is not None and sys.stdin.isatty()):
        raise LabctlError(  # a script's empty stdin is no answer
            tr(
                L,
                f"exercise reset borra lo hecho en {guests} y no hay terminal donde preguntar",
                f"exercise reset removes what was done in {guests}, and there is no terminal "
                "to ask",
            ),
            tr(L, "añade --yes: ", "add --yes: ") + c.cmd(f"exercise reset {ex.id} --yes"),
            ExitCode.USAGE,
            lang=L,
        )
    if not yes:
        tables.confirm(
            tr(
                L,
                f"Se borrará todo lo hecho en {guests} (también para otros ejercicios). ¿Seguir?",
                f"Everything done in {guests} will be lost (for other exercises too). Go on?",
            ),
            tr(L, "No se ha reiniciado nada.", "Nothing reset."),
            L,
        )

    def report(guest: str, step: str, detail: str) -> None:
        console.err.print(f"▸ {guest} {step} {detail}".rstrip())

    runner.recreate_guests(c.ws, ex, c.student, report)
    c.store.reset(ex.id)
    fresh = (
        "vuelve a estar como recién creado"
        if len(ex.guests) == 1
        else ("vuelven a estar como recién creados")
    )
    console.out.print(
        tr(
            L,
            f"{ex.id}: {guests} {fresh}; el ejercicio empieza de nuevo (las pistas que pediste "
            "y las respuestas incorrectas siguen contando).",
            f"{ex.id}: {guests} fresh again; the exercise starts over (the hints you took and "
            "your wrong answers still count).",
        )
    )


@_command("progress")
def progress_(
    c: _Ctx,
    json_out: bool = JsonOpt,
) -> None:
    """Every exercise: steps passed (once and now), hints, time, points; the overall score."""
    scores = [s for _, s in c.scores()]
    if not json_out:
        console.out.print(view.progress_table(scores, c.student, c.lang))
        console.out.print(view.progress_line(scores, c.lang))
        if (exam := _exam_line(c)) is not None:
            console.out.print(exam)  # what counts: the attempts made before the exam's end
        return
    passed = sum(s.passed for s in scores)
    total = sum(s.total for s in scores)
    console.print_json(
        {
            "student": c.student,
            "lab": c.ws.lab,
            "instance": c.ws.instance,
            "score": round(100 * passed / total) if total else 0,
            "steps_passed": passed,
            "steps": total,
            "completed": sum(s.completed for s in scores),
            "steps_passing_now": sum(s.now for s in scores),
            "points": round(sum(s.points for s in scores), 2),
            "seconds": round(sum(s.seconds for s in scores)),
            "exercises": [view.score_json(s) for s in scores],
        }
    )


@exercise_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of exercise files (for editors)."""
    console.print_json(json_schema())
