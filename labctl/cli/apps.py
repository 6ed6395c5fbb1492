"""``labctl app build/history/run/ls/rm``: a student's own images and containers, no Docker group.

The rules are the backend's (``backends/apps.py``); here the scope is found (the lab
instance, the student, in class mode the instance's owner whose rights read a build
context), the ports a student may publish are those their exercises give them, and a
published port joins labctl's firewall before the container listens on it.
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import asdict
from pathlib import Path

import typer
from rich.markup import escape

from labctl import backends, console
from labctl.backends.apps import AppScope, NotYours, Reader, read_context
from labctl.cli import tables
from labctl.cli.app import app
from labctl.cli.options import InstanceOpt, LabOpt, StudentOpt
from labctl.exercises import runner
from labctl.exercises.progress import check_student
from labctl.i18n import tr
from labctl.instance import isolation
from labctl.instance.naming import check_instance, check_lab_name
from labctl.instance.state import Owner

app_app = typer.Typer(
    help="Your own application images and containers (docker build/history/run, for you).",
    no_args_is_help=True,
)
app.add_typer(app_app, name="app")

JsonOpt = tables.JsonOpt
#: how long ``run --wait`` waits for the first HTTP answer
WAIT_SECONDS = 60.0


class _Where:
    """The scope of one ``labctl app`` command, and what class mode adds to it."""

    def __init__(self, lab: str, instance: str, student: str | None) -> None:
        if not Path(lab).exists():
            check_lab_name(lab)
        check_instance(instance)
        who = check_student(student or os.environ.get("LABCTL_STUDENT") or instance)
        self.ws = runner.open_workspace(lab, instance)
        self.owner: Owner | None = self.ws.inst.owner()
        if self.owner is not None and self.owner.student != who:
            raise NotYours(
                f"instance {instance} is {self.owner.student}'s, not {who}'s",
                f"leave --student out, or give --student {self.owner.student}",
            )
        state = self.ws.state
        self.scope = AppScope(
            self.ws.lab,
            instance,
            who,
            self.owner.class_name if self.owner is not None else None,
            state.docker_network if state is not None else None,
        )

    def reader(self) -> Reader | None:
        """Whose rights read a build context: the instance's student in class mode."""
        if self.owner is None or self.owner.uid is None:
            return None
        entry = pwd.getpwuid(self.owner.uid)
        return Reader(entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))

    def ports(self) -> dict[int, str]:
        """The ports the student's exercises give them: port -> ``exercise (param)``."""
        found: dict[int, str] = {}
        for exercise in self.ws.exercises():
            values = runner.parameters(self.ws, exercise, self.scope.student)
            for name, spec in exercise.params.items():
                if spec.kind == "port":
                    found[int(values[name])] = f"{exercise.id} (its {name})"
        return found

    def publish(self, port: int) -> None:
        """Only the student reaches ``port`` from the server (class mode: their uid)."""
        isolation.publish(self.scope.lab, self.scope.instance, [port])
        if self.owner is not None and self.owner.uid is not None:
            isolation.admit(self.scope.lab, self.scope.instance, self.owner.uid)


def _port(spec: str, where: _Where) -> tuple[int, int | None]:
    m = re.fullmatch(r"([0-9]{1,5})(?::([0-9]{1,5}))?", spec)
    if m is None or not all(1 <= int(p) <= 65535 for p in m.groups() if p is not None):
        raise NotYours(f"--port {spec}: give HOST or HOST:CONTAINER, ports 1-65535")
    outer, inner = m.group(1), m.group(2)
    allowed = where.ports()
    if int(outer) not in allowed:
        yours = ", ".join(f"{p} for {what}" for p, what in sorted(allowed.items())) or "none"
        raise NotYours(
            f"port {outer} is not one of yours ({where.scope.student})",
            f"your exercises give you: {yours} (always on 127.0.0.1)",
        )
    mine = f"{where.scope.lab}/{where.scope.instance}"
    others = [o for o in isolation.port_owners(int(outer)) if o != mine]
    if others:
        # a class's students never share a port (their seat slots); a student of another
        # class, or a lab of one's own, may have been given it: the first to publish keeps it
        raise NotYours(
            f"port {outer} is already published for {', '.join(others)} on this server",
            "another lab on this server was given the same port: ask your instructor",
        )
    return int(outer), int(inner) if inner else None


@app_app.command()
def build(
    directory: str = typer.Argument(..., metavar="DIR", help="Directory with a Dockerfile."),
    tag: str = typer.Option(..., "--tag", "-t", help="labctl/NAME:WORD-<you>."),
    lab: str = LabOpt,
    instance: str = InstanceOpt,
    student: str | None = StudentOpt,
) -> None:
    """Build DIR's Dockerfile into your image TAG (DIR read with your own rights)."""
    where = _Where(lab, instance, student)
    where.scope.tag(tag)  # refused before anything is read
    context = read_context(directory, where.reader())
    image = backends.app_engine().build(where.scope, context, tag)
    said = f"{escape(image.tag)} ({image.short_id}, {_layers(image.layers)})"
    console.out.print(tr(console.LANG, f"Construida {said}.", f"Built {said}."))


@app_app.command()
def history(
    image: str = typer.Argument(..., metavar="IMAGE", help="Your image, or the lab's."),
    lab: str = LabOpt,
    instance: str = InstanceOpt,
    student: str | None = StudentOpt,
    json_out: bool = JsonOpt,
) -> None:
    """One row per instruction of IMAGE, newest first, and its filesystem layers."""
    found = backends.app_engine().history(_Where(lab, instance, student).scope, image)
    if json_out:
        console.print_json(asdict(found))
        return
    L = console.LANG
    t = tables.table(
        tr(L, "imagen", "image"), tr(L, "tamaño", "size"), tr(L, "creada por", "created by")
    )
    for row in found.rows:
        created_by = " ".join(row.created_by.split())[:200]
        t.add_row(escape(row.short_id), _size(row.size), escape(created_by))
    console.out.print(t)
    console.out.print(f"{escape(found.tag)}: {_layers(found.layers)} (RootFS.Layers)")


@app_app.command()
def run(
    image: str = typer.Argument(..., metavar="IMAGE", help="Your image, or the lab's."),
    name: str = typer.Option(..., "--name", help="Container name: WORD-<you>."),
    port: str = typer.Option(
        ..., "--port", "-p", help="HOST[:CONTAINER]: a port your exercise gives you."
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Wait until it answers HTTP; say how long it took."
    ),
    lab: str = LabOpt,
    instance: str = InstanceOpt,
    student: str | None = StudentOpt,
) -> None:
    """Start container NAME from IMAGE on your lab's network, on 127.0.0.1:PORT."""
    where = _Where(lab, instance, student)
    where.scope.container(name)
    outer, inner = _port(port, where)
    where.publish(outer)  # in the firewall before anything listens on it
    c = backends.app_engine().run(
        where.scope, image, name, outer, inner, WAIT_SECONDS if wait else 0
    )
    L, name, image = console.LANG, escape(c.name), escape(c.image)
    console.out.print(
        tr(L, f"{name} ejecuta {image} en {c.url}", f"{name} runs {image} on {c.url}")
    )
    if c.answered_after is not None:
        after = f"{c.answered_after:.2f} s"
        console.out.print(
            tr(
                L,
                f"Respondió {after} después de que labctl lo arrancara.",
                f"It answered {after} after labctl asked for it.",
            )
        )


@app_app.command("ls")
def ls(
    lab: str = LabOpt,
    instance: str = InstanceOpt,
    student: str | None = StudentOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Your images and containers."""
    found = backends.app_engine().listing(_Where(lab, instance, student).scope)
    if json_out:
        console.print_json(asdict(found))
        return
    L = console.LANG
    if found.images:
        t = tables.table(
            tr(L, "imagen", "image"), "id", tr(L, "capas", "layers"), tr(L, "tamaño", "size")
        )
        for i in found.images:
            t.add_row(escape(i.tag), i.short_id, str(i.layers), _size(i.size))
        console.out.print(t)
    if found.containers:
        t = tables.table(
            tr(L, "contenedor", "container"),
            tr(L, "imagen", "image"),
            tr(L, "estado", "state"),
            tr(L, "publicado en", "published on"),
        )
        for c in found.containers:
            t.add_row(escape(c.name), escape(c.image), escape(c.status), c.url)
        console.out.print(t)
    if not found.images and not found.containers:
        console.out.print(
            tr(
                L,
                "No tienes imágenes ni contenedores tuyos (labctl app build, run).",
                "You have no images or containers of your own (labctl app build, run).",
            )
        )


@app_app.command("rm")
def rm(
    names: list[str] = typer.Argument(..., metavar="NAME", help="Containers or image tags."),
    lab: str = LabOpt,
    instance: str = InstanceOpt,
    student: str | None = StudentOpt,
) -> None:
    """Remove your containers (by name) and images (by tag)."""
    scope = _Where(lab, instance, student).scope
    for name in names:
        gone = backends.app_engine().remove(scope, name)
        what = escape(gone.name)
        es = (
            f"Eliminada la imagen {what}."
            if gone.kind == "image"
            else f"Eliminado el contenedor {what}."
        )
        console.out.print(tr(console.LANG, es, f"Removed {gone}."))


def _layers(n: int) -> str:
    """How many filesystem layers, in the command's language."""
    return tr(console.LANG, f"{n} capas de sistema de ficheros", f"{n} filesystem layers")


def _size(n: int) -> str:
    """Bytes as ``docker history`` shows them (0 B: no filesystem layer)."""
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
