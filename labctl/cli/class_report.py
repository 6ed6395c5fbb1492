"""``labctl class report``: the class's grades as CSV (an LMS gradebook), JSON or HTML.

CSV is what Moodle's gradebook imports: UTF-8, comma separated, an identifier column (the
student's email when every student has one, else the student id, Moodle's "ID number"), then
one column per grade item (each exercise's points, a point per step less penalties) and the
total. ``--attempts`` writes every attempt instead, one row each, for audits.
"""

from __future__ import annotations

import csv
import html
import io
import json
import sys
from pathlib import Path
from typing import Any, Literal

import typer

from labctl import console
from labctl.classroom import state as class_state
from labctl.classroom.grades import ClassGrades, class_grades
from labctl.cli.classroom import ClassOpt, class_app
from labctl.console import plural
from labctl.errors import LabctlError
from labctl.private import write_private
from labctl.store import Attempt

Format = Literal["csv", "json", "html"]


def _points(value: float) -> str:
    return f"{value:g}"


def to_csv(g: ClassGrades) -> str:
    """The gradebook CSV: identifier, name, one column per exercise, total."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([g.key, "name", *(e.id for e in g.exercises), "total"])
    for s in g.students:
        ident = s.email if g.key == "email" else s.student
        scores = [_points(s.scores[e.id].points) for e in g.exercises]
        w.writerow([ident, s.name or "", *scores, _points(s.total)])
    return out.getvalue()


def to_json(g: ClassGrades) -> dict[str, Any]:
    """Everything the report knows, for scripts."""
    return {
        "class": g.class_name,
        "lab": g.lab,
        "generated_at": g.generated_at.isoformat(timespec="seconds"),
        "max_total": g.max_total,
        "window": {
            "start": g.window.start.isoformat() if g.window.start else None,
            "end": g.window.end.isoformat() if g.window.end else None,
        },
        "exercises": [
            {"id": e.id, "title": e.title, "max": e.steps, "grading": e.grading.model_dump()}
            for e in g.exercises
        ],
        "students": [
            {
                "student": s.student,
                "name": s.name,
                "email": s.email,
                "instance": s.instance,
                "attempts": s.attempts,
                "late_attempts": s.late,
                "total": s.total,
                "exercises": {
                    k: {
                        "points": v.points,
                        "steps_passed": v.passed,
                        "steps_passing_now": v.now,
                        "broken": list(v.broken),
                        "hints": v.hints,
                        "wrong_answers": v.wrong,
                        "state": v.state,
                        "completed_at": v.completed_at.isoformat(timespec="seconds")
                        if v.completed_at
                        else None,
                    }
                    for k, v in s.scores.items()
                },
            }
            for s in g.students
        ],
    }


_STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}th,td{border:1px solid #bbb;padding:.3em .6em;text-align:right}
th{background:#eee}td.who,th.who{text-align:left}td.done{background:#dfd}
td.part{background:#ffd}td.broken{background:#fdd}caption{text-align:left;margin:.5em 0}"""


def to_html(g: ClassGrades) -> str:
    """One self-contained page: a table, its style inline, nothing fetched."""
    e = html.escape
    head = "".join(f'<th title="{e(x.title)}">{e(x.id)}<br>/{x.steps}</th>' for x in g.exercises)
    rows = []
    for s in g.students:
        cells = []
        for x in g.exercises:
            sc = s.scores[x.id]
            css = (
                "broken" if sc.broken else "done" if sc.completed else "part" if sc.started else ""
            )
            note = f"{sc.passed}/{sc.total} steps, {sc.hints} hints, {sc.wrong} wrong"
            if sc.broken:
                note += f"; failing now: {', '.join(sc.broken)}"
            cells.append(f'<td class="{css}" title="{e(note)}">{_points(sc.points)}</td>')
        ident = s.email if g.key == "email" else s.student
        rows.append(
            f'<tr><td class="who">{e(ident or "")}</td><td class="who">{e(s.name or "")}</td>'
            f"{''.join(cells)}<td><b>{_points(s.total)}</b></td><td>{s.late}</td></tr>"
        )
    when = g.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Class {e(g.class_name)}: grades</title><style>{_STYLE}</style></head><body>"
        f"<h1>Class {e(g.class_name)} · lab {e(g.lab)}</h1><table>"
        f"<caption>{plural(len(g.students), 'student')} · generated {e(when)} "
        "· red: passed once, failing now</caption>"
        f'<tr><th class="who">{e(g.key)}</th><th class="who">name</th>{head}'
        f"<th>total<br>/{g.max_total}</th><th>late</th></tr>{''.join(rows)}</table>"
        f"<p>Exam window: {e(g.window.summary)}; late attempts are kept, never scored.</p>"
        "</body></html>\n"
    )


ATTEMPT_COLUMNS = (
    "id", "at", "student", "instance", "exercise", "step", "kind", "answer", "passed",
    "answer_passed", "scored", "messages", "made_by",
)  # fmt: skip


def attempts_csv(attempts: list[Attempt]) -> str:
    """Every attempt, one row each, its checks' messages as JSON."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(ATTEMPT_COLUMNS)
    for a in attempts:
        msgs = json.dumps([m.__dict__ for m in a.messages], ensure_ascii=False)
        flags = ["" if v is None else str(v).lower() for v in (a.passed, a.answer_passed)]
        w.writerow(
            [a.id, a.at.isoformat(timespec="seconds"), a.student, a.instance, a.exercise]
            + [a.step or "", a.kind, a.answer or "", *flags, str(a.scored).lower(), msgs]
            + [a.made_by or ""]  # who did it for the student (an instructor's reset)
        )
    return out.getvalue()


def _class_name(name: str | None) -> str:
    try:
        return class_state.pick(name).name
    except LabctlError:
        if name is None:
            raise
        return name  # down already: the store still knows its seats


def _collect(name: str) -> None:
    """A class over lab hosts: bring every host's attempts here first (say which did not)."""
    from labctl.classroom.state import ClassDir
    from labctl.cli import class_fleet

    folder = ClassDir(name)
    spread = class_fleet.of(folder) if folder.load() is not None else None
    if spread is None:
        return
    for student, why in class_fleet.collect(folder, spread).items():
        console.err.print(f"[yellow]Warning:[/yellow] {student}: {why}; last collected attempts")


@class_app.command("report")
def report(
    class_name: str | None = ClassOpt,
    fmt: str = typer.Option("csv", "--format", "-f", help="csv (LMS gradebook), json or html."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here (root-only file)."),
    attempts: bool = typer.Option(
        False,
        "--attempts",
        help="Every attempt (for audits): CSV rows, or JSON with --format json.",
    ),
) -> None:
    """The class's grades: a row per student, a column per exercise, a total."""
    if fmt not in ("csv", "json", "html"):
        raise LabctlError(f"unknown format {fmt!r}", "use csv, json or html", 2)
    if attempts and fmt == "html":
        raise LabctlError(
            "--attempts writes CSV or JSON, not HTML",
            "use --attempts with --format csv or --format json",
            2,
        )
    name = _class_name(class_name)
    _collect(name)
    grades = class_grades(name)
    if attempts:
        from labctl.exercises.progress import shared
        from labctl.store.transfer import to_json as attempt_json

        found = shared().attempts(grades.lab, [s.instance for s in grades.students])
        if fmt == "json":  # what a controller collects from a lab host (labctl.fleet): as made
            text = json.dumps([attempt_json(a) for a in found], ensure_ascii=False) + "\n"
        else:  # for audits: scored as the grades count it (the window as it is now)
            text = attempts_csv(grades.judged(found))
    elif fmt == "csv":
        text = to_csv(grades)
    elif fmt == "json":
        text = json.dumps(to_json(grades), indent=2, ensure_ascii=False) + "\n"
    else:
        text = to_html(grades)
    if out is None:
        sys.stdout.write(text)
        return
    write_private(out, text)
    console.err.print(f"Grades of {plural(len(grades.students), 'student')} written to {out}")
