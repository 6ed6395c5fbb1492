"""``labctl exercise list/show/check/hint/answer/reset/progress/schema``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from labctl import console
from labctl.cli.app import app
from labctl.cli.lab import DEFAULT_LAB
from labctl.errors import SpecError
from labctl.exercises import runner, template
from labctl.exercises.i18n import Lang, detect, tr
from labctl.exercises.model import Exercise, json_schema
from labctl.exercises.progress import (
    ExerciseProgress,
    ProgressStore,
    Score,
    check_student,
    current_step,
    now,
    score,
)
from labctl.lab.naming import DEFAULT_INSTANCE, check_instance

exercise_app = typer.Typer(
    help="Guided exercises: instructions, checks against the real guests, hints, progress.",
    no_args_is_help=True,
)
app.add_typer(exercise_app, name="exercise")

LabOpt = typer.Option(DEFAULT_LAB, "--lab", "-l", help="Lab name or directory.")
InstanceOpt = typer.Option(DEFAULT_INSTANCE, "--instance", "-i", help="Lab instance.")
StudentOpt = typer.Option(
    None, "--student", "-s", help="Student id; default: $LABCTL_STUDENT or the instance name."
)
LangOpt = typer.Option(None, "--lang", help="es or en; default: from LC_ALL / LANG.")
JsonOpt = typer.Option(False, "--json", help="Print as JSON.")

MARK = {"passed": "[green]✓[/green]", "failed": "[red]✗[/red]", "error": "[yellow]![/yellow]"}


@dataclass(frozen=True)
class _Ctx:
    ws: runner.Workspace
    student: str
    lang: Lang
    store: ProgressStore

    def values(self, exercise: Exercise) -> dict[str, str]:
        return runner.values(self.ws, exercise, self.student)

    def text(self, exercise: Exercise, text: str) -> str:
        """Placeholders filled in; those without a value yet (lab down) stay visible."""
        return template.render(text, self.values(exercise), strict=False)


def _ctx(lab: str, instance: str, student: str | None, lang: str | None) -> _Ctx:
    check_instance(instance)
    who = check_student(student or os.environ.get("LABCTL_STUDENT") or instance)
    ws = runner.open_workspace(lab, instance)
    return _Ctx(ws, who, detect(lang), ProgressStore(ws.lab, instance, who))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _state_word(s: Score, lang: Lang) -> str:
    words = {
        "completed": tr(lang, "[green]completado[/green]", "[green]completed[/green]"),
        "in progress": tr(lang, "[yellow]en curso[/yellow]", "[yellow]in progress[/yellow]"),
        "not started": tr(lang, "sin empezar", "not started"),
    }
    return words[s.state]


def _score_json(s: Score) -> dict[str, object]:
    return {
        "exercise": s.exercise,
        "steps_passed": s.passed,
        "steps": s.total,
        "hints": s.hints,
        "seconds": round(s.seconds),
        "state": s.state,
    }


@exercise_app.command("list")
def list_(
    lab: str = LabOpt,
    instance: str = InstanceOpt,
    student: str | None = StudentOpt,
    lang: str | None = LangOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Every exercise of the lab, with the student's progress."""
    c = _ctx(lab, instance, student, lang)
    progress = c.store.load()
    exercises = c.ws.exercises()
    rows = [(e, score(e, progress.of(e.id))) for e in exercises]
    if json_out:
        console.print_json(
            [
                {**_score_json(s), "technique": e.technique, "title": e.title.get(c.lang)}
                for e, s in rows
            ]
        )
        return
    L = c.lang
    table = Table(
        "id",
        tr(L, "técnica", "technique"),
        tr(L, "título", "title"),
        tr(L, "pasos", "steps"),
        tr(L, "estado", "state"),
        title=tr(
            L, f"Ejercicios de {c.ws.lab} ({c.student})", f"Exercises of {c.ws.lab} ({c.student})"
        ),
    )
    for e, s in rows:
        table.add_row(e.id, e.technique, e.title.get(L), f"{s.passed}/{s.total}", _state_word(s, L))
    console.out.print(table)
    console.out.print(
        tr(L, "Empieza con: labctl exercise show ID", "Start with: labctl exercise show ID")
    )


def _step_ref(exercise: Exercise, ref: str | None, progress: ExerciseProgress) -> int:
    if ref is None:
        return current_step(exercise, progress)
    return exercise.steps.index(exercise.step(ref))


@exercise_app.command()
def show(
    exercise_id: str = typer.Argument(..., metavar="ID"),
    step: str | None = typer.Option(None, "--step", help="Step id or number; default: current."),
    lab: str = LabOpt,
    instance: str = InstanceOpt,
    student: str | None = StudentOpt,
    lang: str | None = LangOpt,
    json_out: bool = JsonOpt,
) -> None:
    """The instructions of the current step (starts the exercise's clock)."""
    c = _ctx(lab, instance, student, lang)
    ex = c.ws.exercise(exercise_id)
    with c.store.update() as progress:
        p = progress.of(ex.id)
        p.start()
    if c.ws.state is not None:
        runner.ensure_setup(ex, runner.Targets(c.ws), c.values(ex))
    index = _step_ref(ex, step, p)
    s = ex.steps[index]
    sc = score(ex, p)
    L = c.lang
    answer = p.step(s.id).answer
    if json_out:
        console.print_json(
            {
                "exercise": ex.id,
                "title": ex.title.get(L),
                "introduction": c.text(ex, ex.instructions.get(L)),
                "step": {
                    "id": s.id,
                    "number": index + 1,
                    "of": len(ex.steps),
                    "title": c.text(ex, s.title.get(L)),
                    "instructions": c.text(ex, s.instructions.get(L)),
                    "asks_answer": s.answer_check is not None,
                    "answer": answer,
                    "passed": bool(p.step(s.id).passed_at),
                },
                "progress": _score_json(sc),
            }
        )
        return
    out = console.out
    out.print(Markdown(f"# {ex.title.get(L)}"))
    if index == 0 or step is None and sc.passed == 0:
        out.print(Markdown(c.text(ex, ex.instructions.get(L))))
    done = "✓ " if p.step(s.id).passed_at else ""
    head = tr(L, f"Paso {index + 1} de {len(ex.steps)}", f"Step {index + 1} of {len(ex.steps)}")
    out.print(Markdown(f"## {done}{head}: {c.text(ex, s.title.get(L))}"))
    out.print(Markdown(c.text(ex, s.instructions.get(L))))
    out.print()
    if s.answer_check is not None:
        line = tr(
            L,
            f"Responde con: labctl exercise answer {ex.id} {s.id} VALOR",
            f"Answer with: labctl exercise answer {ex.id} {s.id} VALUE",
        )
        if answer is not None:
            line += tr(L, f"  (tu respuesta ahora: «{answer}»)", f"  (your answer now: “{answer}”)")
        out.print(escape(line))
    out.print(
        escape(
            tr(
                L,
                f"Comprueba tu trabajo: labctl exercise check {ex.id}   ·   "
                f"pista: labctl exercise hint {ex.id}",
                f"Check your work: labctl exercise check {ex.id}   ·   "
                f"hint: labctl exercise hint {ex.id}",
            )
        )
    )
    if c.ws.state is None:
        console.err.print(
            tr(
                L,
                "[yellow]Nota:[/yellow] el laboratorio no está en marcha (labctl up).",
                "[yellow]Note:[/yellow] the lab is not up (labctl up).",
            )
        )


@exercise_app.command()
def check(
    exercise_id: str = typer.Argument(..., metavar="ID"),
    step: str | None = typer.Option(None, "--step", help="Only this step (id or number)."),
    lab: str = LabOpt,
    instance: str = InstanceOpt,
    student: str | None = StudentOpt,
    lang: str | None = LangOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Run the checks on the real guests; exit 0: all passed, 1: some failed, 2: none ran."""
    c = _ctx(lab, instance, student, lang)
    ex = c.ws.exercise(exercise_id)
    targets = runner.Targets(c.ws)  # exit 2 when the lab is not up
    vals = c.values(ex)
    runner.ensure_setup(ex, targets, vals)
    answers = {sid: sp.answer for sid, sp in c.store.load().of(ex.id).steps.items()}
    steps = [ex.step(step)] if step is not None else None
    result = runner.run_checks(ex, targets, vals, c.lang, answers, steps)
    if result.exit_code != 2:
        with c.store.update() as progress:
            runner.record(ex, progress.of(ex.id), result)
            sc = score(ex, progress.of(ex.id))
    else:
        sc = score(ex, c.store.load().of(ex.id))
    if json_out:
        console.print_json(
            {
                "exercise": ex.id,
                "student": c.student,
                "passed": result.passed,
                "exit_code": result.exit_code,
                "steps": result.steps,
                "progress": _score_json(sc),
            }
        )
        raise typer.Exit(result.exit_code)
    L = c.lang
    out = console.out
    out.print(f"[bold]{escape(ex.title.get(L))}[/bold] ({escape(c.student)})")
    for sr in result.steps:
        state = MARK["passed"] if sr.passed else MARK["failed"]
        out.print(f"{state} [bold]{tr(L, 'Paso', 'Step')} {sr.number}: {escape(sr.title)}[/bold]")
        for r in sr.results:
            out.print(f"    {MARK[r.status]} {escape(r.what)}: {escape(r.detail)}", soft_wrap=True)
            if r.note:
                out.print(f"      [italic]{escape(r.note)}[/italic]", soft_wrap=True)
    results = [r for s in result.steps for r in s.results]
    good = sum(r.passed for r in results)
    summary = tr(
        L,
        f"{good} de {len(results)} comprobaciones correctas; pasos: {sc.passed}/{sc.total}.",
        f"{good} of {len(results)} checks passed; steps: {sc.passed}/{sc.total}.",
    )
    out.print(summary)
    if sc.completed and result.passed:
        out.print(
            tr(L, "[green]¡Ejercicio completado![/green]", "[green]Exercise completed![/green]")
        )
    elif result.exit_code == 2:
        out.print(
            tr(
                L,
                "[yellow]No se pudo comprobar nada: ¿está el laboratorio en marcha?[/yellow]",
                "[yellow]Nothing could be checked: is the lab up?[/yellow]",
            )
        )
    raise typer.Exit(result.exit_code)


@exercise_app.command()
def hint(
    exercise_id: str = typer.Argument(..., metavar="ID"),
    lab: str = LabOpt,
    instance: str = InstanceOpt,
    student: str | None = StudentOpt,
    lang: str | None = LangOpt,
) -> None:
    """The next hint for the current step (hints taken are recorded)."""
    c = _ctx(lab, instance, student, lang)
    ex = c.ws.exercise(exercise_id)
    L = c.lang
    with c.store.update() as progress:
        p = progress.of(ex.id)
        p.start()
        index = current_step(ex, p)
        s = ex.steps[index]
        sp = p.step(s.id)
        if sp.hints < len(s.hints):
            sp.hints += 1
        given = sp.hints
    head = tr(L, f"Paso {index + 1}", f"Step {index + 1}")
    if not s.hints:
        console.out.print(tr(L, f"{head}: este paso no tiene pistas.", f"{head}: no hints here."))
        return
    text = c.text(ex, s.hints[given - 1].get(L))
    console.out.print(f"[bold]{head}, {tr(L, 'pista', 'hint')} {given}/{len(s.hints)}[/bold]")
    console.out.print(Markdown(text))
    if given == len(s.hints):
        console.out.print(tr(L, "(no quedan más pistas)", "(no more hints)"))


@exercise_app.command()
def answer(
    exercise_id: str = typer.Argument(..., metavar="ID"),
    step: str = typer.Argument(..., metavar="STEP", help="Step id or number."),
    value: str = typer.Argument(..., metavar="VALUE"),
    lab: str = LabOpt,
    instance: str = InstanceOpt,
    student: str | None = StudentOpt,
    lang: str | None = LangOpt,
) -> None:
    """Record the answer to a step; `check` compares it with what the lab measures."""
    c = _ctx(lab, instance, student, lang)
    ex = c.ws.exercise(exercise_id)
    s = ex.step(step)
    if s.answer_check is None:
        asks = ", ".join(x.id for x in ex.steps if x.answer_check is not None) or "none"
        raise SpecError(
            f"step {s.id} of {ex.id} does not ask for an answer",
            f"steps that do: {asks}",
        )
    if not value.strip():
        raise SpecError("the answer is empty", "give a value, e.g. aarch64")
    with c.store.update() as progress:
        p = progress.of(ex.id)
        p.start()
        p.step(s.id).answer = value.strip()
        p.step(s.id).answered_at = now()
    L = c.lang
    console.out.print(
        escape(
            tr(
                L,
                f"Respuesta del paso {s.id} guardada: «{value.strip()}». "
                f"Compruébala con: labctl exercise check {ex.id}",
                f"Answer to step {s.id} recorded: “{value.strip()}”. "
                f"Check it with: labctl exercise check {ex.id}",
            )
        )
    )


@exercise_app.command()
def reset(
    exercise_id: str = typer.Argument(..., metavar="ID"),
    lab: str = LabOpt,
    instance: str = InstanceOpt,
    student: str | None = StudentOpt,
    lang: str | None = LangOpt,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Recreate the exercise's guests from their images and start the exercise again."""
    from labctl.host.accel import detect as detect_kvm
    from labctl.images.registry import store
    from labctl.lab import lifecycle
    from labctl.spec.model import load_lab

    c = _ctx(lab, instance, student, lang)
    ex = c.ws.exercise(exercise_id)
    state = c.ws.require_up()
    L = c.lang
    guests = ", ".join(ex.guests)
    if not yes:
        typer.confirm(
            tr(
                L,
                f"Se borrará todo lo hecho en {guests} (también para otros ejercicios). ¿Seguir?",
                f"Everything done in {guests} will be lost (for other exercises too). Go on?",
            ),
            abort=True,
        )
    spec_path = Path(state.spec_path)
    spec = load_lab(spec_path)

    def report(guest: str, step: str, detail: str) -> None:
        console.err.print(f"▸ {guest} {step} {detail}".rstrip())

    probe = detect_kvm()
    for guest in ex.guests:
        lifecycle.recreate_guest(spec, spec_path, instance, guest, store(), probe, report)
    fresh = _ctx(lab, instance, c.student, L)
    runner.ensure_setup(ex, runner.Targets(fresh.ws), fresh.values(ex))
    with c.store.update() as progress:
        runner.reset_progress(progress.of(ex.id))
    console.out.print(
        tr(
            L,
            f"{ex.id}: {guests} como recién creado; el ejercicio empieza de nuevo.",
            f"{ex.id}: {guests} fresh again; the exercise starts over.",
        )
    )


@exercise_app.command("progress")
def progress_(
    lab: str = LabOpt,
    instance: str = InstanceOpt,
    student: str | None = StudentOpt,
    lang: str | None = LangOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Every exercise: steps passed, hints taken, time spent; and the overall score."""
    c = _ctx(lab, instance, student, lang)
    progress = c.store.load()
    scores = [score(e, progress.of(e.id)) for e in c.ws.exercises()]
    passed = sum(s.passed for s in scores)
    total = sum(s.total for s in scores)
    percent = round(100 * passed / total) if total else 0
    seconds = sum(s.seconds for s in scores)
    if json_out:
        console.print_json(
            {
                "student": c.student,
                "lab": c.ws.lab,
                "instance": instance,
                "score": percent,
                "steps_passed": passed,
                "steps": total,
                "completed": sum(s.completed for s in scores),
                "seconds": round(seconds),
                "exercises": [_score_json(s) for s in scores],
            }
        )
        return
    L = c.lang
    table = Table(
        "id",
        tr(L, "pasos", "steps"),
        tr(L, "pistas", "hints"),
        tr(L, "tiempo", "time"),
        tr(L, "estado", "state"),
        title=tr(L, f"Progreso de {c.student}", f"Progress of {c.student}"),
    )
    for s in scores:
        time = _duration(s.seconds) if s.started else "-"
        table.add_row(s.exercise, f"{s.passed}/{s.total}", str(s.hints), time, _state_word(s, L))
    console.out.print(table)
    done = sum(s.completed for s in scores)
    console.out.print(
        tr(
            L,
            f"Nota: {percent} % ({passed}/{total} pasos); {done} de {len(scores)} ejercicios "
            f"completados; tiempo: {_duration(seconds)}.",
            f"Score: {percent}% ({passed}/{total} steps); {done} of {len(scores)} exercises "
            f"completed; time: {_duration(seconds)}.",
        )
    )


@exercise_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of exercise files (for editors)."""
    console.print_json(json_schema())
