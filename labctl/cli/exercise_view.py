"""How ``labctl exercise`` shows things: tables, instructions and check results, es/en."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from labctl.cli import tables
from labctl.exercises.grading import Score, option_list
from labctl.exercises.model import Exercise
from labctl.exercises.runner import ExerciseResult
from labctl.i18n import Lang, tr

MARK = {"passed": "[green]✓[/green]", "failed": "[red]✗[/red]", "error": "[yellow]![/yellow]"}


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def state_word(s: Score, lang: Lang) -> str:
    """not started / in progress / completed, coloured, in ``lang``."""
    words = {
        "completed": tr(lang, "[green]completado[/green]", "[green]completed[/green]"),
        "in progress": tr(lang, "[yellow]en curso[/yellow]", "[yellow]in progress[/yellow]"),
        "not started": tr(lang, "sin empezar", "not started"),
    }
    return words[s.state]


def score_json(s: Score) -> dict[str, object]:
    """A score as JSON."""
    return {
        "exercise": s.exercise,
        "steps_passed": s.passed,
        "steps": s.total,
        "hints": s.hints,
        "seconds": round(s.seconds),
        "state": s.state,
        "steps_passing_now": s.now,
        "broken": list(s.broken),
        "wrong_answers": s.wrong,
        "points": s.points,
    }


#: the Spanish of each column the exercise tables show, by its English header
HEADERS_ES = {
    "id": "id",
    "title": "título",
    "steps": "pasos",
    "points": "puntos",
    "hints": "pistas",
    "time": "tiempo",
    "state": "estado",
}


def _table(lang: Lang, title: tuple[str, str], headers: tuple[str, ...]) -> Table:
    """A table whose title (es, en) and column headers (``HEADERS_ES``'s keys) say ``lang``.

    Borderless, as ``labctl status``: it reads in 80 columns. The first column holds the
    exercise ids students type, so it is never cut or wrapped; the others wrap.
    """
    table = tables.table(*(tr(lang, HEADERS_ES[h], h) for h in headers), title=tr(lang, *title))
    table.columns[0].no_wrap = True
    return table


#: a technique's name as the lesson says it (Spanish) and in English, by its id
TECHNIQUE_NAMES: dict[str, tuple[str, str]] = {
    "emulation": ("emulación", "emulation"),
    "full-virtualization": ("virtualización completa", "full virtualization"),
    "paravirtualization": ("paravirtualización", "paravirtualization"),
    "system-container": ("contenedor de sistema", "system container"),
    "app-container": ("contenedor de aplicación", "application container"),
}


def exercises_table(
    rows: list[tuple[Exercise, Score]], lab: str, student: str, lang: Lang
) -> Table:
    """``labctl exercise list``: the exercises under a line naming their technique."""
    table = _table(
        lang,
        (f"Ejercicios de {lab} ({student})", f"Exercises of {lab} ({student})"),
        ("id", "title", "steps", "state"),
    )
    technique = None
    for e, s in rows:
        if e.technique != technique:
            technique = e.technique
            table.add_row(f"[bold]{escape(tr(lang, *TECHNIQUE_NAMES[technique]))}[/bold]")
        table.add_row(
            f"  {escape(e.id)}", escape(e.title.get(lang)), f"{s.passed}/{s.total}",
            state_word(s, lang),
        )  # fmt: skip
    return table


@dataclass(frozen=True)
class StepView:
    """One step as ``show`` prints it, placeholders already filled in."""

    exercise: Exercise
    index: int
    title: str
    introduction: str | None  # shown at the start of an exercise only
    instructions: str
    passed: bool
    answer: str | None


#: a fenced code block of Markdown: its lines
_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)


def print_markdown(out: Console, text: str) -> None:
    """Markdown, but each line of a fenced code block printed whole: rich wraps a code block
    at the terminal's width, and a command copied in two pieces no longer runs (the
    terminal wraps a long line for the eye and copies it as one)."""
    at = 0
    for block in _FENCE.finditer(text):
        if text[at : block.start()].strip():
            out.print(Markdown(text[at : block.start()]))
            out.print()
        for line in block.group(1).rstrip("\n").splitlines():
            out.print(Text(f"    {line}", style="bold"), soft_wrap=True)
        out.print()
        at = block.end()
    if text[at:].strip():
        out.print(Markdown(text[at:]))


def print_step(out: Console, v: StepView, lang: Lang, naming: str = "") -> None:
    """``labctl exercise show``: title, introduction, the step, and what to do next
    (``naming``: the options that reach this lab instance, after each command)."""
    ex, s = v.exercise, v.exercise.steps[v.index]
    out.print(Markdown(f"# {ex.title.get(lang)}"))
    if v.introduction:
        print_markdown(out, v.introduction)
    done = "✓ " if v.passed else ""
    n = len(ex.steps)
    head = tr(lang, f"Paso {v.index + 1} de {n}", f"Step {v.index + 1} of {n}")
    out.print(Markdown(f"## {done}{head}: {v.title}"))
    print_markdown(out, v.instructions)
    out.print()
    if s.answer_check is not None:
        line = tr(
            lang,
            f"Responde con: labctl exercise answer {ex.id} {s.id} VALOR{naming}",
            f"Answer with: labctl exercise answer {ex.id} {s.id} VALUE{naming}",
        )
        if v.answer is not None:
            line += tr(lang, f"  (tu respuesta: «{v.answer}»)", f"  (your answer: “{v.answer}”)")
        out.print(escape(line), soft_wrap=True)
        if s.answer_check.options is not None:
            choices = option_list(s.answer_check)
            out.print(escape(tr(lang, f"Opciones: {choices}", f"Options: {choices}")))
    # one command a line, never broken by rich: a student copies it whole
    for es, en, command in (
        ("Comprueba tu trabajo", "Check your work", "check"),
        *([("Pista", "Hint", "hint")] if s.hints else []),  # a step without hints: none
    ):
        line = f"{tr(lang, es, en)}: labctl exercise {command} {ex.id}{naming}"
        out.print(escape(line), soft_wrap=True)


def print_check(
    out: Console, ex: Exercise, result: ExerciseResult, sc: Score, student: str, lang: Lang
) -> None:
    """``labctl exercise check``: one line per check, the teacher's note under a failure."""
    out.print(f"[bold]{escape(ex.title.get(lang))}[/bold] ({escape(student)})")
    for step in result.steps:
        mark = MARK["passed"] if step.passed else MARK["failed"]
        word = tr(lang, "Paso", "Step")
        out.print(f"{mark} [bold]{word} {step.number}: {escape(step.title)}[/bold]")
        for r in step.results:
            out.print(f"    {MARK[r.status]} {escape(r.what)}: {escape(r.detail)}", soft_wrap=True)
            if r.note:
                out.print(f"      [italic]{escape(r.note)}[/italic]", soft_wrap=True)
    results = [r for s in result.steps for r in s.results]
    good = sum(r.passed for r in results)
    out.print(
        tr(
            lang,
            f"{good} de {len(results)} comprobaciones correctas; pasos: {steps_done(sc, lang)}.",
            f"{good} of {len(results)} checks passed; steps: {steps_done(sc, lang)}.",
        )
    )
    if sc.completed and result.passed:
        out.print(
            tr(lang, "[green]¡Ejercicio completado![/green]", "[green]Exercise completed![/green]")
        )
    elif result.exit_code == 2:
        out.print(
            tr(
                lang,
                "[yellow]No se pudo comprobar nada: ¿está el laboratorio en marcha?[/yellow]",
                "[yellow]Nothing could be checked: is the lab up?[/yellow]",
            )
        )


def progress_table(scores: list[Score], student: str, lang: Lang) -> Table:
    """``labctl exercise progress``: one row per exercise."""
    table = _table(
        lang,
        (f"Progreso de {student}", f"Progress of {student}"),
        ("id", "steps", "points", "hints", "time", "state"),
    )
    for s in scores:
        time = duration(s.seconds) if s.started else "-"
        points = f"{s.points:g}"
        row = (s.exercise, steps_done(s, lang), points, str(s.hints), time, state_word(s, lang))
        table.add_row(*row)
    return table


def steps_done(s: Score, lang: Lang) -> str:
    """Steps passed of all (markup), and how many of them fail now: a step that passed once
    and fails now is never silently counted as passing."""
    steps = f"{s.passed}/{s.total}"
    if s.broken:
        n = len(s.broken)
        steps += tr(
            lang,
            f" [red]({n} {'falla' if n == 1 else 'fallan'} ahora)[/red]",
            f" [red]({n} failing now)[/red]",
        )
    return steps


def progress_line(scores: list[Score], lang: Lang) -> str:
    """The score, in one sentence."""
    passed = sum(s.passed for s in scores)
    total = sum(s.total for s in scores)
    percent = round(100 * passed / total) if total else 0
    done = sum(s.completed for s in scores)
    time = duration(sum(s.seconds for s in scores))
    line = tr(
        lang,
        f"Puntuación: {percent} % ({passed}/{total} pasos); {done} de {len(scores)} ejercicios "
        f"completados; tiempo: {time}.",
        f"Score: {percent}% ({passed}/{total} steps); {done} of {len(scores)} exercises "
        f"completed; time: {time}.",
    )
    broken = [f"{s.exercise}/{step}" for s in scores for step in s.broken]
    if broken:
        where = ", ".join(broken)
        line += tr(
            lang,
            f" Pasaron una vez y ahora fallan: {where} (vuelve a comprobarlos).",
            f" Passed once and failing now: {where} (check them again).",
        )
    return line
