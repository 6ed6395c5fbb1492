"""Scripted solutions of every exercise: what a student would do, step by step.

Kept with the tests, never shipped to students. Each solution works the way the exercise
asks: it runs commands in the guests (through the lab's own exec path) and on the host, and
records answers it *measured itself* with ``labctl exercise answer``; it never reads the
checks' truth commands. ``CLEANUP`` removes what a solution left outside the lab's guests
(host files, Docker images and containers) so the session's leak check stays exact.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from labctl.cli import app
from labctl.exercises import runner
from labctl.exercises.model import Exercise

cli = CliRunner()


@dataclass
class Student:
    """One student working on one exercise in the test lab."""

    ws: runner.Workspace
    exercise: Exercise
    student: str
    home: Path  # the student's $HOME on the host (host commands see it as ~)

    @property
    def values(self) -> dict[str, str]:
        return runner.values(self.ws, self.exercise, self.student)

    def p(self, name: str) -> str:
        """A per-student parameter of the exercise."""
        return self.values[f"param.{name}"]

    def guest(self, guest: str, command: str) -> str:
        """Run in a guest (as the exercise's checks do); it must succeed."""
        result = runner.Targets(self.ws)(guest)(command)
        assert result.succeeded, f"{guest}: {command}: {result.detail}"
        return result.stdout

    def host(self, command: str, input: str | None = None) -> str:
        """Run on the host with the student's $HOME; it must succeed."""
        proc = subprocess.run(
            ["sh", "-c", command],
            capture_output=True,
            text=True,
            input=input,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.home)},
            check=False,
        )
        assert proc.returncode == 0, f"host: {command}: {proc.stderr or proc.stdout}"
        return proc.stdout

    def answer(self, step: str, value: object) -> None:
        """``labctl exercise answer``, in-process."""
        result = cli.invoke(
            app,
            [
                "exercise", "answer", self.exercise.id, step, str(value),
                "-l", str(self.ws.exercises_dir.parent), "-i", self.ws.instance,
                "-s", self.student,
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output

    def address(self, guest: str) -> str:
        return self.values[f"guest.{guest}.address"]

    def resource(self, guest: str) -> str:
        return self.values[f"guest.{guest}.resource"]


def _timed(action: Callable[[], object]) -> float:
    t0 = time.monotonic()
    action()
    return time.monotonic() - t0


# ---- system container ----------------------------------------------------------------------


def lxc_usuario(s: Student) -> None:
    user = s.p("user")
    s.guest("lxc-system", f"useradd -m -s /bin/bash {user}")
    key = s.home / ".ssh" / f"labctl_{user}"
    s.host(f"mkdir -p ~/.ssh && ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/labctl_{user}")
    public = key.with_suffix(".pub").read_text().strip()
    s.guest(
        "lxc-system",
        f"mkdir -p ~{user}/.ssh && echo {shlex.quote(public)} > ~{user}/.ssh/authorized_keys"
        f" && chown -R {user}: ~{user}/.ssh && chmod 700 ~{user}/.ssh"
        f" && chmod 600 ~{user}/.ssh/authorized_keys",
    )
    s.guest("lxc-system", f"usermod -aG sudo {user}")


def lxc_usuario_cleanup(s: Student) -> None:
    user = s.p("user")
    for path in (s.home / ".ssh" / f"labctl_{user}", s.home / ".ssh" / f"labctl_{user}.pub"):
        path.unlink(missing_ok=True)


def lxc_servicio(s: Student) -> None:
    port, token = s.p("port"), s.p("token")
    apt = runner.Targets(s.ws)("lxc-system")("timeout 60 apt-get update")
    s.answer("mirror", "si" if apt.succeeded and "Err:" not in apt.stdout else "no")
    unit = (
        "[Unit]\nDescription=Mi web\n\n[Service]\n"
        f"ExecStart=/usr/bin/python3 -m http.server {port} --directory /srv/miweb\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    s.guest(
        "lxc-system",
        f"mkdir -p /srv/miweb && echo '<h1>Hola {token}</h1>' > /srv/miweb/index.html"
        f" && printf %s {shlex.quote(unit)} > /etc/systemd/system/miweb.service"
        " && systemctl daemon-reload && systemctl enable --now miweb",
    )
    for _ in range(50):  # python needs a moment to bind the port
        if runner.Targets(s.ws)("lxc-system")(f"ss -ltnH 'sport = :{port}' | grep -q .").succeeded:
            break
        time.sleep(0.2)


def lxc_nucleo(s: Student) -> None:
    s.answer("nucleo", s.guest("lxc-system", "uname -r").strip())
    s.answer("init", s.guest("lxc-system", "ps -p 1 -o comm=").strip())
    info = s.host(f"lxc info {s.resource('lxc-system')}")
    pid = re.search(r"^PID: (\d+)$", info, re.MULTILINE)
    assert pid, info
    s.answer("desde-fuera", pid.group(1))


def lxc_averia(s: Student) -> None:
    journal = s.guest("lxc-system", "journalctl -u reloj --no-pager")
    status = re.search(r"status=(\d+)/(\w+)", journal)
    assert status, journal
    s.answer("diagnostico", f"{status.group(1)}/{status.group(2)}")
    s.guest("lxc-system", "chmod 755 /usr/local/bin/reloj && systemctl enable --now reloj")
    s.guest("lxc-system", "for i in $(seq 30); do [ -s /run/reloj ] && break; sleep 0.2; done")


# ---- application container -----------------------------------------------------------------


def app_contenido(s: Student) -> None:
    token, name = s.p("token"), s.resource("docker-app")
    page = f"<h1>Version de {s.student}: {token}</h1>"
    s.host(f"docker exec -i -u root {name} sh -c 'cat > /srv/www/index.html'", input=page)
    s.answer("pid1", s.host(f"docker exec {name} cat /proc/1/comm").strip())
    s.answer("pid-anfitrion", s.host(f"docker inspect -f '{{{{.State.Pid}}}}' {name}").strip())


def _v2(s: Student) -> str:
    return f"labctl/webapp:v2-{s.student}"


def app_imagen(s: Student) -> None:
    work = s.home / "web-v2"
    work.mkdir(parents=True, exist_ok=True)
    (work / "index.html").write_text(f"<h1>v2 {s.p('token')}</h1>\n")
    (work / "Dockerfile").write_text(
        "FROM labctl/webapp:latest\nCOPY index.html /srv/www/index.html\n"
    )
    s.host(f"docker build -q -t {_v2(s)} {shlex.quote(str(work))}")
    history = s.host(f"docker history --format '{{{{.Size}}}}' {_v2(s)}").split()
    base = s.host("docker history --format '{{.Size}}' labctl/webapp:latest").split()
    added = [size for size in history[: len(history) - len(base)] if size != "0B"]
    s.answer("capas", len(added))
    s.host(
        f"docker run -d --name web-{s.student} -p 127.0.0.1:{s.p('port')}:8080"
        f" --label labctl.lab={s.ws.lab} --label labctl.instance={s.ws.instance} {_v2(s)}"
    )
    s.host(
        f"for i in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:{s.p('port')}/"
        " && exit 0; sleep 0.1; done; exit 1"
    )


def app_imagen_cleanup(s: Student) -> None:
    subprocess.run(["docker", "rm", "-f", f"web-{s.student}"], capture_output=True, check=False)
    subprocess.run(["docker", "rmi", "-f", _v2(s)], capture_output=True, check=False)


def app_arranque(s: Student) -> None:
    port, name = s.p("port"), f"prueba-{s.student}"

    def start() -> None:
        s.host(f"docker run -d --rm --name {name} -p 127.0.0.1:{port}:8080 labctl/webapp:latest")
        s.host(
            f"until curl -fs -o /dev/null http://127.0.0.1:{port}/; do sleep 0.1; done",
        )

    try:
        seconds = _timed(start)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    s.answer("contenedor", f"{seconds:.2f}")
    status = cli.invoke(app, ["status", "--json", "-l", s.ws.lab, "-i", s.ws.instance])
    assert status.exit_code == 0, status.output
    rows = {g["guest"]: g for g in json.loads(status.stdout)["guests"]}
    vm = rows["kvm-full"]["ready_seconds"]
    s.answer("comparacion", f"{vm / seconds:.1f}")


SOLUTIONS: dict[str, Callable[[Student], None]] = {
    "lxc-usuario": lxc_usuario,
    "lxc-servicio": lxc_servicio,
    "lxc-nucleo": lxc_nucleo,
    "lxc-averia": lxc_averia,
    "app-contenido": app_contenido,
    "app-imagen": app_imagen,
    "app-arranque": app_arranque,
}

CLEANUP: dict[str, Callable[[Student], None]] = {
    "lxc-usuario": lxc_usuario_cleanup,
    "app-imagen": app_imagen_cleanup,
}
