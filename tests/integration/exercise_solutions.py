"""Scripted solutions of every exercise: what a student would do, step by step.

Kept with the tests, never shipped to students. Each solution works the way the exercise
asks: it runs commands in the guests (through their connections, as the checks do) and on
the host, and records answers it *measured itself* with ``labctl exercise answer``; it never
reads the checks' truth commands. ``CLEANUP`` removes what a solution left outside the lab's
guests (host files, Docker images and containers) so the session's leak check stays exact.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from labctl.cli import app
from labctl.exercises import facts, runner
from labctl.exercises.model import Exercise

cli = CliRunner()


@dataclass
class Student:
    """One student working on one exercise in the test lab."""

    ws: runner.Workspace
    exercise: Exercise
    student: str
    home: Path  # the student's $HOME on the host (host commands see it as ~)

    @classmethod
    def new(cls, lab_dir: str | Path, instance: str, exercise_id: str, home: Path) -> Student:
        """A student of a fresh id (``t<hex>``) on one exercise of the lab's instance."""
        ws = runner.open_workspace(str(lab_dir), instance)
        return cls(ws, ws.exercise(exercise_id), "t" + secrets.token_hex(3), home)

    @property
    def values(self) -> dict[str, str]:
        return runner.values(self.ws, self.exercise, self.student)

    def p(self, name: str) -> str:
        """A per-student parameter of the exercise."""
        return self.values[f"param.{name}"]

    def guest(self, guest: str, command: str) -> str:
        """Run in a guest (as the exercise's checks do); it must succeed."""
        result = runner.Connections(self.ws)(guest).run(command)
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

    @property
    def _whose(self) -> list[str]:
        """The options naming this student's lab, instance and id."""
        return ["-l", str(self.ws.exercises_dir.parent), "-i", self.ws.instance, "-s", self.student]

    def answer(self, step: str, value: object) -> None:
        """``labctl exercise answer``, in-process."""
        args = ["exercise", "answer", self.exercise.id, step, str(value), *self._whose]
        result = cli.invoke(app, args)
        assert result.exit_code == 0, result.output

    def check(self, *extra: str) -> tuple[int, list[str]]:
        """``labctl exercise check --json`` in-process: exit code and every check's status."""
        args = ["exercise", "check", self.exercise.id, *self._whose, "--json", "--lang", "en"]
        result = cli.invoke(app, [*args, *extra])
        assert result.exit_code in (0, 1), (result.output, result.exception)
        report = json.loads(result.stdout)
        return result.exit_code, [r["status"] for st in report["steps"] for r in st["results"]]

    def resource(self, guest: str) -> str:
        return self.values[f"guest.{guest}.resource"]


def fails_untouched_passes_solved_refuses_wrong(
    s: Student, solve: Callable[[Student], None], wrong: Mapping[str, str], checks: int
) -> None:
    """The exercise's ``checks`` all fail as the guest is, all pass once ``solve`` ran, and
    each of the ``wrong`` answers (step: value) fails its step again."""
    code, before = s.check()
    assert code == 1 and before == ["failed"] * checks, before
    solve(s)
    code, after = s.check()
    assert code == 0 and after == ["passed"] * checks, after
    for step, value in wrong.items():
        s.answer(step, value)
        code, results = s.check("--step", step)
        assert code == 1 and results == ["failed"], (step, results)


def _timed(action: Callable[[], object]) -> float:
    t0 = time.monotonic()
    action()
    return time.monotonic() - t0


# ---- emulation -----------------------------------------------------------------------------

LOOP = "sh -c 'i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done'"
TIMED = shlex.quote(f"time {LOOP}")


def _real_seconds(time_output: str) -> float:
    """Seconds of bash's `time` (``real 0m3.872s``)."""
    found = re.search(r"real\s+(\d+)m([\d.]+)s", time_output)
    assert found, time_output
    return int(found.group(1)) * 60 + float(found.group(2))


def _qemu_pid(s: Student, guest: str) -> int:
    return int(s.host(f"cat /run/libvirt/qemu/{s.resource(guest)}.pid").strip())


def _qemu_accel(s: Student, guest: str) -> str:
    args = s.host(f"ps -ww -o args= -p {_qemu_pid(s, guest)}")
    found = re.search(r"-accel (\w+)|accel=(\w+)", args)
    assert found, args
    return found.group(1) or found.group(2)


def emu_arquitecturas(s: Student) -> None:
    s.answer("invitado", s.guest("arm-emulated", "uname -m").strip())
    s.answer("anfitrion", s.host("arch").strip())
    args = s.host(f"ps -ww -o args= -p {_qemu_pid(s, 'arm-emulated')}")
    cpu = re.search(r"-cpu ([\w-]+)", args)
    assert cpu, args
    s.answer("modelo", cpu.group(1))


def emu_binario(s: Student) -> None:
    # as the exercise says: labctl exec passes cat's output byte for byte
    folder = s.home / f"labctl-{s.student}"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "busybox-arm64").open("wb") as copy:
        exe = ["exec", "--lab", s.ws.lab, "-i", s.ws.instance, "arm-emulated", "--"]
        done = subprocess.run(
            [sys.executable, "-m", "labctl", *exe, "cat", "/bin/busybox"],
            stdout=copy,
            stderr=subprocess.PIPE,
            timeout=600,  # exec itself waits as long as the command runs
            check=False,
        )
    assert done.returncode == 0, done.stderr
    ran = subprocess.run(
        ["sh", "-c", f"chmod +x {folder}/busybox-arm64 && {folder}/busybox-arm64 uname -m"],
        capture_output=True,
        check=False,
    )
    s.answer("ejecuta", "si" if ran.returncode == 0 else "no")


def emu_rendimiento(s: Student) -> None:
    # the best of a few runs, as the exercise asks: a busy host only ever adds time
    guest = min(_real_seconds(s.guest("arm-emulated", f"bash -c {TIMED} 2>&1")) for _ in range(3))
    host = min(_real_seconds(s.host(f"bash -c {TIMED} 2>&1")) for _ in range(5))
    s.answer("invitado", f"{guest:.2f}")
    s.answer("factor", f"{guest / host:.1f}")


def emu_proceso(s: Student) -> None:
    pid = _qemu_pid(s, "arm-emulated")
    s.answer("pid", pid)
    s.answer("acelerador", _qemu_accel(s, "arm-emulated"))
    s.answer("memoria", int(s.host(f"ps -o rss= -p {pid}").strip()) // 1024)


# ---- full virtualization -------------------------------------------------------------------


def full_dispositivos(s: Student) -> None:
    driver = re.search(r"^driver: (\S+)", s.guest("kvm-full", "ethtool -i eth0"), re.M)
    assert driver
    s.answer("red", driver.group(1))
    link = re.search(r"link/ether (\S+)", s.guest("kvm-full", "ip link show eth0"))
    assert link
    s.answer("mac", link.group(1))
    lspci = s.guest("kvm-full", "lspci -k -s 00:01.1")
    disk = re.search(r"Kernel driver in use: (\S+)", lspci)
    assert disk, lspci
    s.answer("disco", disk.group(1))
    s.guest("kvm-full", f"lspci -k > /root/dispositivos-{s.student}.txt")


def full_soporte(s: Student) -> None:
    flags = subprocess.run(["grep", "-c", "-wE", "vmx|svm", "/proc/cpuinfo"], capture_output=True)
    has_flags = flags.returncode == 0
    s.answer("flags", "si" if has_flags else "no")
    modules = set(s.host("ls /sys/module").split())
    module = next((m for m in ("kvm_intel", "kvm_amd", "kvm_pvm") if m in modules), "ninguno")
    s.answer("modulo", module)
    s.answer("acelerador", _qemu_accel(s, "kvm-full"))
    vendor = module in ("kvm_intel", "kvm_amd")
    s.answer("explica", _explanation(_qemu_accel(s, "kvm-full"), has_flags, vendor))


def _explanation(accel: str, has_flags: bool, vendor: bool) -> str:
    """full-soporte's letter: a (KVM in use), b (no VT-x/AMD-V), c (no vendor module), d."""
    if accel == "kvm":
        return "a"
    if not has_flags:
        return "b"
    return "d" if vendor else "c"


def full_invitado(s: Student) -> None:
    lscpu = s.guest("kvm-full", "lscpu")
    model = re.search(r"^Model name:\s+(.+)$", lscpu, re.M)
    assert model, lscpu
    s.answer("cpu", model.group(1).strip())
    s.answer("fabricante", s.guest("kvm-full", "dmidecode -s system-manufacturer").strip())
    s.answer("identidad", s.guest("kvm-full", "cat /sys/class/dmi/id/product_uuid").strip())
    s.answer("virt-what", s.guest("kvm-full", "virt-what").splitlines()[0])


# ---- paravirtualization --------------------------------------------------------------------


def pv_dispositivos(s: Student) -> None:
    s.answer("bus", len(s.guest("kvm-virtio", "ls /sys/bus/virtio/devices").split()))
    driver = re.search(r"^driver: (\S+)", s.guest("kvm-virtio", "ethtool -i eth0"), re.M)
    assert driver
    s.answer("drivers", driver.group(1))
    s.guest("kvm-virtio", f"lsmod | grep virtio > /root/virtio-{s.student}.txt")
    s.answer("pila", s.guest("kvm-virtio", "lsblk -dn -o NAME | head -1").strip())


UNITS = {"kB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9}


def _dd_speed(s: Student, guest: str) -> float:
    out = s.guest(
        guest,
        "dd if=/dev/zero of=/root/prueba.img bs=4k count=2000 oflag=direct"
        f" 2> /root/dd-{s.student}.txt; rm /root/prueba.img; cat /root/dd-{s.student}.txt",
    )
    found = re.search(r"([\d.,]+) ([kMG]B/s)$", out.strip())
    assert found, out
    return float(found.group(1).replace(",", ".")) * UNITS[found.group(2)]


def pv_disco(s: Student) -> None:
    full = _dd_speed(s, "kvm-full")  # the last run of each machine is the one kept
    virtio = _dd_speed(s, "kvm-virtio")
    s.answer("cociente", f"{virtio / full:.2f}")


def pv_interfaz(s: Student) -> None:
    lspci = s.guest("kvm-virtio", "lspci -nn")
    nic = re.search(r"Ethernet controller.*\[([0-9a-f]{4}):[0-9a-f]{4}\]", lspci)
    assert nic, lspci
    s.answer("fabricante", nic.group(1))
    bits = s.guest("kvm-virtio", "cat /sys/class/net/eth0/device/features").strip()
    s.answer("funciones", bits.count("1"))
    irq = re.search(r"(virtio\d+-input\.0)", s.guest("kvm-virtio", "cat /proc/interrupts"))
    assert irq
    s.answer("colas", irq.group(1))


#: The lesson's classification, as ``pv-hipervisores`` asks for it (product: category).
PLACES = {
    "virtualbox": "tipo2",
    "vmware-workstation": "tipo2",
    "vmware-player": "type2",
    "parallels": "tipo2",
    "xen": "tipo1",
    "xen-pv": "pv",
    "zvm": "pv",
    "hyper-v": "drivers-pv",
    "vmware-esxi": "pv-drivers",
}


def pv_hipervisores(s: Student) -> None:
    """Evidence from the host and kvm-virtio, then each product written in its place."""
    exe = Path(f"/proc/{_qemu_pid(s, 'kvm-full')}/exe").readlink()
    s.answer("donde", exe.name)
    boot = re.search(r"Booting paravirtualized kernel on (.+)", s.guest("kvm-virtio", "dmesg"))
    assert boot, "no paravirt_ops line in kvm-virtio's kernel messages"
    s.answer("xen-pv", boot.group(1).strip())
    found = s.guest("kvm-virtio", "ls /lib/modules/$(uname -r)/kernel/drivers/net/hyperv/")
    (driver,) = found.split()
    s.answer("hyper-v", driver.split(".ko")[0])
    aliases = s.guest("kvm-virtio", "modinfo -F alias vmxnet3")
    vendor = re.search(r"^pci:v0000([0-9A-F]{4})d", aliases, re.M)
    assert vendor, aliases
    s.answer("vmware", vendor.group(1).lower())
    devices = s.host("qemu-system-s390x -device help")
    bus = re.search(r'bus ([^,]+), alias "virtio-net"', devices)
    assert bus, devices
    s.answer("zvm", bus.group(1))
    placed = "".join(f"{product}: {category}\n" for product, category in PLACES.items())
    (s.home / f"hipervisores-{s.student}.txt").write_text(placed)


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
    # No password (key login only): sudo must not ask for one, as the step explains.
    rule = shlex.quote(f"{user} ALL=(ALL:ALL) NOPASSWD: ALL")
    s.guest(
        "lxc-system",
        f"echo {rule} > /etc/sudoers.d/{user} && chmod 440 /etc/sudoers.d/{user}"
        f" && visudo -cf /etc/sudoers.d/{user}",
    )
    s.guest("lxc-system", f"su - {user} -c 'sudo -n true'")


def lxc_usuario_cleanup(s: Student) -> None:
    user = s.p("user")
    for path in (s.home / ".ssh" / f"labctl_{user}", s.home / ".ssh" / f"labctl_{user}.pub"):
        path.unlink(missing_ok=True)


def apt_reaches_mirror(s: Student) -> bool:
    """What the hint teaches: run apt-get update and read its output, not its exit code.

    The decision is the lab's own (:func:`labctl.exercises.facts.apt_reached_mirror`), so
    the scripted student and the lab cannot disagree about this machine's network.
    """
    apt = runner.Connections(s.ws)("lxc-system").run("LC_ALL=C timeout 60 apt-get update")
    return apt.rc == 0 and facts.apt_reached_mirror(apt.stdout + "\n" + apt.stderr)


def lxc_servicio(s: Student) -> None:
    port, token = s.p("port"), s.p("token")
    s.answer("mirror", "si" if apt_reaches_mirror(s) else "no")
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
    lxc = runner.Connections(s.ws)("lxc-system")
    for _ in range(50):  # python needs a moment to bind the port
        if lxc.run(f"ss -ltnH 'sport = :{port}' | grep -q .").succeeded:
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
    # The smallest fix (744): the check wants the service's user to execute it, not one mode.
    s.guest("lxc-system", "chmod u+x /usr/local/bin/reloj && systemctl enable --now reloj")
    s.guest("lxc-system", "for i in $(seq 30); do [ -s /run/reloj ] && break; sleep 0.2; done")


# ---- a virtual machine beside a system container ------------------------------------------

BOTH = ("kvm-virtio", "lxc-system")


def _wait_listening(s: Student, guest: str, port: str) -> None:
    conn = runner.Connections(s.ws)(guest)
    for _ in range(100):  # python needs a moment to bind the port (longer in a VM under TCG)
        if conn.run(f"ss -ltnH 'sport = :{port}' | grep -q .").succeeded:
            return
        time.sleep(0.2)
    raise AssertionError(f"{guest}: nothing listens on {port}")


def _host_processes(pattern: str) -> int:
    """What `ps -eo args | grep PATTERN` shows on the host, without grep itself."""
    args = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True)
    return sum(1 for line in args.stdout.splitlines() if re.search(pattern, line))


def lxc_gemelos(s: Student) -> None:
    port, token = s.p("port"), s.p("token")
    unit = (
        "[Unit]\nDescription=Gemelo\n\n[Service]\n"
        f"ExecStart=/usr/bin/python3 -m http.server {port} --directory /srv/gemelo\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    for guest in BOTH:  # the very same commands in the VM and in the container
        s.guest(
            guest,
            f'mkdir -p /srv/gemelo && echo "<h1>{token} $(hostname)</h1>"'
            " > /srv/gemelo/index.html"
            f" && printf %s {shlex.quote(unit)} > /etc/systemd/system/gemelo.service"
            " && systemctl daemon-reload && systemctl enable --now gemelo",
        )
    for guest in BOTH:
        _wait_listening(s, guest, port)
    s.answer("nucleo", s.guest("kvm-virtio", "uname -r").strip())
    link = s.guest("lxc-system", "ip -d link show eth0")
    kind = re.search(r"^\s+(veth|macvlan|ipvlan)\b", link, re.M)
    assert kind, link
    s.answer("red", kind.group(1))
    s.answer("anfitrion", _host_processes(rf"-m http\.server {port} "))


def lxc_modulos(s: Student) -> None:
    iface = s.p("iface")
    s.guest("kvm-virtio", f"modprobe dummy && ip link add {iface} type dummy")
    s.answer("fichero", s.guest("kvm-virtio", "modinfo -n dummy").strip())
    s.guest("lxc-system", f"modprobe dummy 2> /root/modprobe-{s.student}.txt; true")
    release, *modules = s.guest("lxc-system", "uname -r; ls /lib/modules 2>/dev/null; true").split()
    s.answer("directorio", "si" if release in modules else "no")
    s.answer("capacidad", "si" if _container_has_sys_module(s) else "no")
    s.answer("raiz", _container_root_on_host(s))


def _container_root_on_host(s: Student) -> int:
    """The host UID of the container's root, from its /proc/self/uid_map."""
    for line in s.guest("lxc-system", "cat /proc/self/uid_map").splitlines():
        inside, outside, _count = line.split()
        if inside == "0":
            return int(outside)
    raise AssertionError("lxc-system maps no UID 0")


def _container_has_sys_module(s: Student) -> bool:
    caps = s.guest("lxc-system", "capsh --print")
    bounding = re.search(r"^Bounding set =(.*)$", caps, re.M)
    assert bounding, caps
    return "cap_sys_module" in bounding.group(1).split(",")


def _seconds(value: str) -> float:
    """A systemd time span (``1min 2.345s``, ``850ms``, ``3.1s``) in seconds."""
    units = {"min": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6}
    parts = re.findall(r"([\d.]+)(min|ms|us|µs|s)", value)
    assert parts, value
    return sum(float(n) * units[u] for n, u in parts)


def _phases(analyze: str) -> dict[str, float]:
    """``Startup finished in 2.1s (kernel) + 9.8s (userspace) = ...`` as {phase: seconds}."""
    spans = re.findall(r"((?:[\d.]+(?:min|ms|us|µs|s)\s*)+)\((\w+)\)", analyze)
    return {phase: _seconds(span) for span, phase in spans}


def lxc_diario(s: Student) -> None:
    kernel_log = s.guest("kvm-virtio", "journalctl -b -k --no-pager")
    bios = re.search(r"DMI: .* BIOS (\S+)", kernel_log)
    assert bios, kernel_log[:2000]
    s.answer("firmware", bios.group(1))
    freed = re.search(r"Freeing initrd memory: (\d+)K", kernel_log)
    assert freed, kernel_log[:2000]
    s.answer("initramfs", freed.group(1))
    vm = _phases(s.guest("kvm-virtio", "systemd-analyze"))
    s.answer("fases", f"{vm['kernel']:.3f}")
    container = _phases(s.guest("lxc-system", "systemd-analyze"))
    missing = sorted(set(vm) - set(container))
    s.answer("contenedor", missing[0] if missing else "ninguna")
    s.answer("mensajes", s.guest("lxc-system", "journalctl -b -k -q --no-pager | wc -l").strip())


# ---- application container -----------------------------------------------------------------


def app_contenido(s: Student) -> None:
    token, name = s.p("token"), s.resource("docker-app")
    page = f"<h1>Version de {s.student}: {token}</h1>"
    # as a student without Docker does it: labctl exec, which enters as root
    s.guest("docker-app", f"printf %s {shlex.quote(page)} > /srv/www/index.html")
    s.answer("pid1", s.guest("docker-app", "cat /proc/1/comm").strip())
    s.answer("pid-anfitrion", s.host(f"docker inspect -f '{{{{.State.Pid}}}}' {name}").strip())


def _v2(s: Student) -> str:
    return f"labctl/webapp:v2-{s.student}"


def _app(s: Student, *args: str, check: bool = True) -> str:
    """``labctl app ARGS`` for the student, in-process (a class's student types the same)."""
    lab = str(s.ws.exercises_dir.parent)
    result = cli.invoke(
        app, ["app", *args, "-l", lab, "-i", s.ws.instance, "-s", s.student], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0 or not check, result.output
    return result.stdout


def _history(s: Student, image: str) -> list[int]:
    """The sizes of an image's history rows, newest first (``labctl app history``)."""
    return [row["size"] for row in json.loads(_app(s, "history", image, "--json"))["rows"]]


def app_imagen(s: Student) -> None:
    work = s.home / "web-v2"
    work.mkdir(parents=True, exist_ok=True)
    (work / "index.html").write_text(f"<h1>v2 {s.p('token')}</h1>\n")
    (work / "Dockerfile").write_text(
        "FROM labctl/webapp:latest\nCOPY index.html /srv/www/index.html\n"
    )
    _app(s, "build", str(work), "--tag", _v2(s))
    mine, base = _history(s, _v2(s)), _history(s, "labctl/webapp:latest")
    added = [size for size in mine[: len(mine) - len(base)] if size != 0]
    s.answer("capas", len(added))
    _app(s, "run", _v2(s), "--name", f"web-{s.student}", "--port", s.p("port"))
    s.host(
        f"for i in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:{s.p('port')}/"
        " && exit 0; sleep 0.1; done; exit 1"
    )


def app_imagen_cleanup(s: Student) -> None:
    _app(s, "rm", f"web-{s.student}", check=False)
    _app(s, "rm", _v2(s), check=False)


def app_arranque(s: Student) -> None:
    port, name = s.p("port"), f"prueba-{s.student}"
    try:
        out = _app(s, "run", "labctl/webapp:latest", "--name", name, "--port", port, "--wait")
    finally:
        _app(s, "rm", name, check=False)
    answered = re.search(r"answered ([0-9.]+) s", out)
    assert answered is not None, out
    seconds = float(answered.group(1))
    s.answer("contenedor", f"{seconds:.2f}")
    status = cli.invoke(app, ["status", "--json", "-l", s.ws.lab, "-i", s.ws.instance])
    assert status.exit_code == 0, status.output
    rows = {g["guest"]: g for g in json.loads(status.stdout)["guests"]}
    vm = rows["kvm-full"]["boot_seconds"]  # a whole boot, also when up restored it
    s.answer("comparacion", f"{vm / seconds:.1f}")


def _opposite_yes_no(correct: bool) -> str:
    return "no" if correct else "si"


def _binary_runs_here(_s: Student) -> str:
    # Only with qemu-user registered in binfmt_misc does an aarch64 binary run on this host.
    registered = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists()
    return _opposite_yes_no(registered)


def _host_has_vmx(_s: Student) -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    return _opposite_yes_no(bool(re.search(r"\b(vmx|svm)\b", cpuinfo)))


def _other_accel(s: Student) -> str:
    return "kvm" if _qemu_accel(s, "kvm-full") == "tcg" else "tcg"


def _wrong_explanation(s: Student) -> str:
    # the letter of this host, shifted: wrong wherever it runs
    has_flags = bool(re.search(r"\b(vmx|svm)\b", Path("/proc/cpuinfo").read_text()))
    vendor = any(os.path.isdir(f"/sys/module/{m}") for m in ("kvm_intel", "kvm_amd"))
    right = _explanation(_qemu_accel(s, "kvm-full"), has_flags, vendor)
    return {"a": "b", "b": "c", "c": "d", "d": "a"}[right]


def _four_times_the_saved_ratio(s: Student) -> str:
    # The real ratio depends on the accelerator (near 1 under TCG, larger under KVM).
    def saved(guest: str) -> float:
        found = re.search(r"([\d.,]+) ([kMG]B/s)$", s.guest(guest, f"cat /root/dd-{s.student}.txt"))
        assert found
        return float(found.group(1).replace(",", ".")) * UNITS[found.group(2)]

    return f"{4 * saved('kvm-virtio') / saved('kvm-full'):.2f}"


def _host_cpu_model(_s: Student) -> str:
    found = re.search(r"^model name\s*: (.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    return found.group(1) if found else "Intel(R) Xeon(R) CPU"


def _not_on_this_host(candidates: tuple[str, ...], real: str | set[str]) -> str:
    """The first candidate that is wrong on this host (test data must not depend on it)."""
    taken = {real} if isinstance(real, str) else real
    return next(c for c in candidates if c not in taken)


def _other_host_arch(_s: Student) -> str:
    return _not_on_this_host(("aarch64", "x86_64"), os.uname().machine)


def _kvm_module_not_loaded(_s: Student) -> str:
    return _not_on_this_host(("kvm_amd", "kvm_intel"), set(os.listdir("/sys/module")))


def _other_kernel(_s: Student) -> str:
    return _not_on_this_host(("6.1.0-25-amd64", "5.10.0-30-amd64"), os.uname().release)


def _kernel_not_the_vms(s: Student) -> str:
    # The host's own release is the misconception; on a host running the VM's very kernel
    # package it would be right, so another release stands in.
    vm = s.guest("kvm-virtio", "uname -r").strip()
    return _not_on_this_host((os.uname().release, "5.10.0-30-amd64", "6.1.0-25-amd64"), vm)


def _one_more_host_process(s: Student) -> str:
    return str(_host_processes(rf"-m http\.server {s.p('port')} ") + 1)


def _module_of_another_kernel(s: Student) -> str:
    vm = s.guest("kvm-virtio", "modinfo -n dummy").strip()
    candidates = tuple(
        f"/lib/modules/{release}/kernel/drivers/net/dummy.ko"
        for release in (os.uname().release, "5.10.0-30-amd64", "6.1.0-25-amd64")
    )
    return _not_on_this_host(candidates, vm)


def _modules_dir_opposite(s: Student) -> str:
    release, *modules = s.guest("lxc-system", "uname -r; ls /lib/modules 2>/dev/null; true").split()
    return _opposite_yes_no(release in modules)


def _sys_module_opposite(s: Student) -> str:
    return _opposite_yes_no(_container_has_sys_module(s))


def _host_root(s: Student) -> str:
    # "root is root": the host's root, unless the container really is mapped onto it.
    return "0" if _container_root_on_host(s) != 0 else "1000000"


def _bios_not_the_vms(s: Student) -> str:
    vm = s.guest("kvm-virtio", "dmidecode -s bios-version").strip()
    host = Path("/sys/class/dmi/id/bios_version")
    mine = host.read_text().strip() if host.is_file() else ""
    return _not_on_this_host(tuple(c for c in (mine, "1.0", "2.0") if c), vm)


def _kernel_phase_tripled(s: Student) -> str:
    kernel = _phases(s.guest("kvm-virtio", "systemd-analyze"))["kernel"]
    return f"{3 * kernel + 1:.2f}"


def _container_phase_wrong(s: Student) -> str:
    # "none" is the misconception; were the container to show a kernel phase, "kernel" is wrong.
    container = _phases(s.guest("lxc-system", "systemd-analyze"))
    return "kernel" if "kernel" in container else "ninguna"


def _kernel_messages_of_the_vm(s: Student) -> str:
    count = "journalctl -b -k -q --no-pager | wc -l"
    vm, container = (int(s.guest(g, count).strip()) for g in BOTH)
    return str(vm if vm != container else container + 1)


def _apt_opposite(s: Student) -> str:
    return _opposite_yes_no(apt_reaches_mirror(s))


#: A wrong answer to every answer step: mostly the misconception the step is about (the PID
#: a container process has inside, "no slowdown", the host's CPU model...).
WRONG: dict[str, dict[str, str | Callable[[Student], str]]] = {
    "emu-arquitecturas": {
        "invitado": "x86_64",
        "anfitrion": _other_host_arch,
        "modelo": "cortex-a72",
    },
    "emu-binario": {"ejecuta": _binary_runs_here},
    "emu-rendimiento": {"invitado": "60", "factor": "1"},
    "emu-proceso": {"pid": "1", "acelerador": "kvm", "memoria": "40000"},
    "full-dispositivos": {
        "red": "virtio_net",
        "mac": "52:54:00:00:00:01",  # nobody's
        "disco": "virtio",
    },
    "full-soporte": {
        "flags": _host_has_vmx,
        "modulo": _kvm_module_not_loaded,
        "acelerador": _other_accel,
        "explica": _wrong_explanation,
    },
    "full-invitado": {
        "cpu": _host_cpu_model,
        "fabricante": "Intel",
        "identidad": "00000000-0000-4000-8000-000000000000",  # nobody's
        "virt-what": "vmware",
    },
    "pv-dispositivos": {"bus": "0", "drivers": "e1000", "pila": "sda"},
    "pv-disco": {"cociente": _four_times_the_saved_ratio},
    "pv-interfaz": {"fabricante": "8086", "funciones": "64", "colas": "eth0"},
    "pv-hipervisores": {
        "donde": "VirtualBox",  # the misconception: some other hypervisor
        "xen-pv": "Xen PV",
        "hyper-v": "virtio_net",
        "vmware": "8086",
        "zvm": "PCI",
    },
    "lxc-servicio": {"mirror": _apt_opposite},
    "lxc-nucleo": {"nucleo": _other_kernel, "init": "sshd", "desde-fuera": "1"},
    "lxc-averia": {"diagnostico": "127"},
    "lxc-gemelos": {
        "nucleo": _kernel_not_the_vms,
        "red": "virtio_net",
        "anfitrion": _one_more_host_process,
    },
    "lxc-modulos": {
        "fichero": _module_of_another_kernel,
        "directorio": _modules_dir_opposite,
        "capacidad": _sys_module_opposite,
        "raiz": _host_root,
    },
    "lxc-diario": {
        "firmware": _bios_not_the_vms,
        "initramfs": "0",
        "fases": _kernel_phase_tripled,
        "contenedor": _container_phase_wrong,
        "mensajes": _kernel_messages_of_the_vm,
    },
    "app-contenido": {"pid1": "systemd", "pid-anfitrion": "1"},
    "app-imagen": {"capas": "14"},
    "app-arranque": {"contenedor": "30", "comparacion": "1"},
}


def wrong_answer(s: Student, step: str) -> str:
    """The wrong answer to ``step`` of the student's exercise."""
    value = WRONG[s.exercise.id][step]
    return value if isinstance(value, str) else value(s)


SOLUTIONS: dict[str, Callable[[Student], None]] = {
    "emu-arquitecturas": emu_arquitecturas,
    "emu-binario": emu_binario,
    "emu-rendimiento": emu_rendimiento,
    "emu-proceso": emu_proceso,
    "full-dispositivos": full_dispositivos,
    "full-soporte": full_soporte,
    "full-invitado": full_invitado,
    "pv-dispositivos": pv_dispositivos,
    "pv-disco": pv_disco,
    "pv-interfaz": pv_interfaz,
    "pv-hipervisores": pv_hipervisores,
    "lxc-usuario": lxc_usuario,
    "lxc-servicio": lxc_servicio,
    "lxc-nucleo": lxc_nucleo,
    "lxc-averia": lxc_averia,
    "lxc-gemelos": lxc_gemelos,
    "lxc-modulos": lxc_modulos,
    "lxc-diario": lxc_diario,
    "app-contenido": app_contenido,
    "app-imagen": app_imagen,
    "app-arranque": app_arranque,
}

CLEANUP: dict[str, Callable[[Student], None]] = {
    "lxc-usuario": lxc_usuario_cleanup,
    "app-imagen": app_imagen_cleanup,
}
