"""How ``labctl exercise`` shows things: tables, instructions and check results, es/en."""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt
from rich.cells import cell_len
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
    "failing": "fallan",
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
    hints_taken: int = 0


#: rich's own Markdown parser, to split a text into the blocks rich renders
_PARSER = MarkdownIt().enable("strikethrough").enable("table")
#: inline code (it may go on over a line break of the text, which it reads as a space)
_INLINE_CODE = re.compile(r"`[^`]+`")
#: a space of inline code while rich lays a paragraph out (a private-use character: rich
#: breaks lines at any Unicode space, the no-break one too)
_HELD_SPACE = "\ue000"
#: the width rich lays such a block out at: each paragraph and list item on one line
UNBOUNDED = 100_000
#: the blocks rich lays out from the left, which can hold a command kept whole
_LEFT_ALIGNED = {"paragraph_open", "bullet_list_open", "ordered_list_open", "blockquote_open"}
#: a list item's number or bullet, as rich prints it: its other lines are indented as wide
_BULLET = re.compile(r"(?: *(?:\d+|•) )?")


def _blocks(text: str) -> list[tuple[str, str]]:
    """The text's top-level blocks in order, as (kind, source): ``fence`` for a fenced code
    block (its content), ``whole`` for one holding a command rich must not cut, ``prose``."""
    lines = text.splitlines(keepends=True)
    blocks: list[tuple[str, str]] = []
    for token in _PARSER.parse(text):
        if token.level != 0 or token.nesting == -1 or token.map is None:
            continue
        if token.type == "fence":
            blocks.append(("fence", token.content))
            continue
        source = "".join(lines[token.map[0] : token.map[1]])
        spaced = any(re.search(r"\s", m.group()) for m in _INLINE_CODE.finditer(source))
        left = token.type in _LEFT_ALIGNED  # a heading is centred: laid out as rich does
        blocks.append(("whole" if spaced and left else "prose", source))
    return blocks


def print_markdown(out: Console, text: str) -> None:
    """Markdown, but no command cut in two: rich wraps at the terminal's width, and a
    command copied in two pieces no longer runs (the terminal wraps a long line for the
    eye and copies it as one). A fenced code block's lines are printed whole; a paragraph
    or list whose inline code holds a command is wrapped between words, each command one
    word (:func:`_print_unwrapped`); other blocks are rich's."""
    for n, (kind, source) in enumerate(_blocks(text)):
        if n:
            out.print()
        if kind == "fence":
            for line in source.rstrip("\n").splitlines():
                out.print(Text(f"    {line}", style="bold"), soft_wrap=True)
        elif kind == "whole":
            _print_unwrapped(out, source)
        else:
            out.print(Markdown(source))


def _print_unwrapped(out: Console, source: str) -> None:
    """Markdown wrapped at the terminal's width, but never inside inline code: rich lays it
    out on unbounded lines, each command one word (its spaces held by a stand-in), and the
    lines are wrapped between words here; a command longer than a line is printed whole,
    the terminal wrapping it for the eye. A list item's lines hang under its text."""
    held = _INLINE_CODE.sub(_hold, source)
    unbounded = out.options.update_width(UNBOUNDED)
    lines = [
        Text.assemble(*((s.text, s.style or "") for s in segs if not s.control))
        for segs in out.render_lines(Markdown(held), unbounded, pad=False)
    ]
    for line in lines:
        line.rstrip()  # the layout's padding to its width
    while lines and not lines[-1].plain:
        lines.pop()
    while lines and not lines[0].plain:
        lines.pop(0)
    for line in lines:
        bullet = _BULLET.match(line.plain)
        hang = len(bullet.group()) if bullet else 0
        width = max(out.width - hang, 20)
        for n, part in enumerate(line.divide(_breaks(line.plain, width))):
            part.rstrip()
            part.plain = part.plain.replace(_HELD_SPACE, " ")  # as long: the styles stay put
            out.print(Text(" " * hang) + part if n else part, soft_wrap=True)


def _hold(code: re.Match[str]) -> str:
    """Inline code as one word: a line break in it is a space (as Markdown reads it), and
    each space is held."""
    return re.sub(r"\n[ \t]*", " ", code.group()).replace(" ", _HELD_SPACE)


def _breaks(text: str, width: int) -> list[int]:
    """Where ``text`` goes on a new line to fit ``width`` cells: before a word that would
    pass it, never inside one (a word wider than a line stands alone)."""
    breaks, used = [], 0
    for word in re.finditer(r"\S+\s*", text):
        size = cell_len(word.group().rstrip())
        if used and used + size > width:
            breaks.append(word.start())
            used = 0
        used += cell_len(word.group())
    return breaks


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
        out.print(escape(line), soft_wrap=True)  # a command, whole: it is copied
        if v.answer is not None:  # on a line of its own: the command's stays short
            out.print(escape(tr(lang, f"Tu respuesta: «{v.answer}»", f"Your answer: “{v.answer}”")))
        if s.answer_check.options is not None:
            choices = option_list(s.answer_check)
            out.print(escape(tr(lang, f"Opciones: {choices}", f"Options: {choices}")))
    # one command a line, never broken by rich: a student copies it whole
    for es, en, command in (
        ("Comprueba tu trabajo", "Check your work", "check"),
        # a step without hints, or whose hints were all taken: none
        *([("Pista", "Hint", "hint")] if v.hints_taken < len(s.hints) else []),
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
        ("id", "steps", "failing", "points", "hints", "time", "state"),
    )
    table.columns[5].no_wrap = True  # a time is never broken across lines
    for s in scores:
        time = duration(s.seconds) if s.started else "-"
        points = f"{s.points:g}"
        # steps passed once that fail now: never silently counted as passing
        failing = f"[red]{len(s.broken)}[/red]" if s.broken else ""
        steps = f"{s.passed}/{s.total}"
        row = (s.exercise, steps, failing, points, str(s.hints), time, state_word(s, lang))
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
    """The score, the exercises completed and the time, a line each; the steps failing now."""
    passed = sum(s.passed for s in scores)
    total = sum(s.total for s in scores)
    percent = round(100 * passed / total) if total else 0
    done = sum(s.completed for s in scores)
    time = duration(sum(s.seconds for s in scores))
    # a fact a line, each short enough for 80 columns: no figure is broken across two
    lines = tr(
        lang,
        f"Puntuación: {percent} % ({passed}/{total} pasos)\n"
        f"Ejercicios completados: {done} de {len(scores)}\nTiempo: {time}",
        f"Score: {percent}% ({passed}/{total} steps)\n"
        f"Exercises completed: {done} of {len(scores)}\nTime: {time}",
    )
    broken = [f"{s.exercise}/{step}" for s in scores for step in s.broken]
    if broken:
        where = ", ".join(broken)
        lines += tr(
            lang,
            f"\nPasaron una vez y ahora fallan: {where} (vuelve a comprobarlos).",
            f"\nPassed once and failing now: {where} (check them again).",
        )
    return lines
