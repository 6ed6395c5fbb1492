"""Two students without root, logged in for real: each works on their own lab only.

Two Linux accounts are made by ``classroom.accounts`` (random ids, removed in ``finally``),
each bound to a containers-only lab instance that is really up. Then, as each student
(``su - USER -c ...``), labctl re-executes itself through sudo and the class's entry point:
the student's own lab works (exercise list and check, exec, ssh), another student's instance
or id is refused with a clear message, and the other's progress file and the lab's key cannot
be read. The state directory is world-traversable, as /var/lib/labctl is, so it is labctl's
own modes that keep students out. From the server's shell a student reaches their own guests
and published port, never the other's (labctl's firewall matches their uid); from a "laptop"
(the access sheet's ssh_config against a private sshd on loopback), plain OpenSSH with
ProxyJump lands in their own system container and nowhere else. At the end no account, home,
sudo rule, entry point or engine object is left.
"""

from __future__ import annotations

import functools
import json
import pwd
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from labctl import backends
from labctl.classroom import accounts, reach, sheet, sudo
from labctl.classroom.roster import account_exists
from labctl.exercises.progress import shared
from labctl.exercises.runner import open_workspace, values
from labctl.host.accel import detect
from labctl.images.registry import store
from labctl.instance.state import InstanceDir
from labctl.keys import KeyPair
from labctl.lab import down as lab_down
from labctl.lab import lifecycle
from labctl.paths import LABS_DIR
from tests.integration.labs import taken_down, write_lab
from tests.labs import CONTAINERS, lab_yaml

LAB = lab_yaml("stu", CONTAINERS)
EXERCISE = LABS_DIR / "virtualization" / "exercises" / "51-app-contenido.yaml"
#: its second step checks a key the student makes in their home on the server
HOME_FILES = LABS_DIR / "virtualization" / "exercises" / "41-lxc-usuario.yaml"
LABCTL = shutil.which("labctl", path=str(Path(__file__).parents[2] / ".venv" / "bin")) or "labctl"


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A state directory others may traverse (as /var/lib/labctl), removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="labctl-students-", dir="/var/tmp"))
    root.chmod(0o755)
    monkeypatch.setenv("LABCTL_STATE", str(root))
    yield root
    shutil.rmtree(root)


def as_student(
    user: str, state: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``labctl ARGS`` typed by ``user`` in a login shell (LABCTL_STATE names the test's)."""
    # the words the test reads are English whatever the server's locale
    env = f"LABCTL_STATE={shlex.quote(str(state))} COLUMNS=200 LC_ALL=C.UTF-8"
    line = f"{env} {shlex.join([LABCTL, *args])}"
    return shell(user, line, stdin)


def shell(user: str, line: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["su", "-", user, "-c", line],
        capture_output=True,
        text=True,
        input=stdin if stdin is not None else "",
        timeout=300,
    )


def refused(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert words in result.stderr, result.stderr


@pytest.fixture(scope="module")
def images() -> None:
    """The two container images (built here if missing), not every image of the suite."""
    store().build(["lxd-system", "docker-app"])


def test_students_work_on_their_own_lab_and_nobody_else_s(
    tmp_path_factory: pytest.TempPathFactory, images: None, state: Path
) -> None:
    # like a missing engine, a missing sudo is a failure: host setup installs it
    assert shutil.which("sudo", path="/usr/bin"), "sudo is not installed: labctl host setup"
    path, lab = write_lab(tmp_path_factory, "stu", LAB)
    (path.parent / "exercises").mkdir()
    shutil.copy(EXERCISE, path.parent / "exercises")
    shutil.copy(HOME_FILES, path.parent / "exercises")
    tag = secrets.token_hex(2)
    cls = "s" + tag
    ana, bob = f"lt{tag}a", f"lt{tag}b"
    inst = {ana: f"{cls}-{ana}", bob: f"{cls}-{bob}"}
    entry = sudo.Installation.of(state)
    for user in inst:
        assert not account_exists(user)
    assert not entry.entry.exists() and not entry.sudoers.exists()
    try:
        for user, instance in inst.items():  # as class up does: account, admit, up, admit
            accounts.ensure_account(
                user, f"Test {user}", None, cls, lab=lab.name, instance=instance
            )
            reach.admit(user, cls)
        assert entry.entry.exists() and entry.sudoers.exists()
        with taken_down(lab, list(inst.values())):
            for instance in inst.values():
                lifecycle.up(lab, path, instance, store(), detect())
            for user in inst:
                reach.admit(user, cls)
            _own_lab_works(ana, inst[ana], state)
            _own_lab_works(bob, inst[bob], state)
            _home_files_are_checked_as_the_student(ana, inst[ana], state, path)
            _others_are_refused(bob, ana, InstanceDir(lab.name, inst[ana]), state)
            _host_paths_lead_to_their_own_lab_only(bob, inst[bob], inst[ana], lab.name)
            # the whole lab again, as `class reset bob` does: bob stays confined to it
            lab_down.down(lab.name, inst[bob])
            lifecycle.up(lab, path, inst[bob], store(), detect())
            _host_paths_lead_to_their_own_lab_only(bob, inst[bob], inst[ana], lab.name)
            _proxyjump_from_a_laptop(bob, cls, inst[bob], inst[ana], lab.name, tmp_path_factory)
            _files_stay_root_s(bob, state, InstanceDir(lab.name, inst[ana]), ana)
            _sudo_opens_one_door_only(bob, state, entry)
    finally:
        for user in inst:
            accounts.remove_account(user, cls, kill_processes=True)
    for user in inst:
        assert not account_exists(user) and not Path(f"/home/{user}").exists()
    assert not entry.entry.exists() and not entry.sudoers.exists()
    assert accounts.records() == []


def _own_lab_works(user: str, instance: str, state: Path) -> None:
    listed = as_student(user, state, "exercise", "list")
    assert listed.returncode == 0, listed.stderr
    assert "app-contenido" in listed.stdout and f"({user})" in listed.stdout
    hello = as_student(user, state, "exec", "docker-app", "--", "echo", f"hello {user}")
    assert (hello.returncode, hello.stdout) == (0, f"hello {user}\n"), hello.stderr
    # labctl ssh: ssh run as root with the lab's key; the student never reads the key
    shell_in = as_student(user, state, "ssh", "lxc-system", stdin="echo in-$((6*7))\nexit\n")
    assert shell_in.returncode == 0, shell_in.stderr
    assert "in-42" in shell_in.stdout
    checked = as_student(user, state, "exercise", "check", "app-contenido", "--json")
    assert checked.returncode == 1, checked.stderr  # a fresh lab: checks run, and fail
    status = as_student(user, state, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["instance"] == instance


def _home_files_are_checked_as_the_student(
    user: str, instance: str, state: Path, path: Path
) -> None:
    """A check of a file the student made in their home (``target: student``) looks in their
    home, as them: root's home and rights are not the student's (the walkthrough found
    lxc-usuario's key looked for in /root/.ssh)."""
    ws = open_workspace(str(path), instance)
    name = values(ws, ws.exercise("lxc-usuario"), user)["param.user"]

    def key_check() -> dict[str, str]:
        done = as_student(
            user, state, "exercise", "check", "lxc-usuario", "--step", "clave", "--json"
        )
        assert done.returncode == 1, done.stderr  # authorized_keys in the guest: not done
        (step,) = json.loads(done.stdout)["steps"]
        return step["results"][-1]  # the step's last check: "the private key is on the host"

    missing = key_check()
    assert missing["status"] == "failed", missing
    made = shell(user, f"mkdir -p ~/.ssh && ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/labctl_{name}")
    assert made.returncode == 0, made.stderr
    assert key_check()["status"] == "passed"
    home = pwd.getpwnam(user).pw_dir
    assert Path(home, ".ssh", f"labctl_{name}").stat().st_uid == pwd.getpwnam(user).pw_uid
    assert not Path("/root/.ssh", f"labctl_{name}").exists()


def _others_are_refused(user: str, other: str, theirs: InstanceDir, state: Path) -> None:
    other_instance = theirs.instance
    not_yours = f"can only work on your own lab: --instance {other_instance} is not yours"
    refused(as_student(user, state, "exercise", "list", "--instance", other_instance), not_yours)
    refused(
        as_student(user, state, "exec", "docker-app", "-i", other_instance, "--", "id"), not_yours
    )
    refused(as_student(user, state, "status", f"--instance={other_instance}"), not_yours)
    refused(
        as_student(user, state, "exercise", "progress", "--student", other),
        f"--student {other} is not yours",
    )
    refused(as_student(user, state, "exercise", "reset", "app-contenido", "-y"), "not for students")
    # the instructor's commands are not sent to sudo: a student is told so, nothing runs
    for command in (["down", "--instance", other_instance], ["class", "status"], ["doctor"]):
        refused(as_student(user, state, *command), f"labctl {command[0]} is not for students")
    assert theirs.load() is not None  # the other student's lab is still up


def _files_stay_root_s(user: str, state: Path, other: InstanceDir, other_student: str) -> None:
    progress = shared()
    done = progress.attempts(other.lab, [other.instance], other_student)
    assert done  # the other student's check was recorded ... in the store, root's file
    db = state / "labctl.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for secret in (
        db,
        db.with_name("labctl.db-wal"),
        other.key,
        other.state_file,
        state / "accounts" / f"{other_student}.json",
    ):
        read = shell(user, f"cat {shlex.quote(str(secret))}")
        assert read.returncode != 0 and "Permission denied" in read.stderr, (secret, read)
    write = shell(user, f"echo x >> {shlex.quote(str(db))}")
    assert write.returncode != 0
    assert len(progress.attempts(other.lab, [other.instance], other_student)) == len(done)


def _tcp(user: str, address: str, port: int) -> bool:
    """Can ``user``, in a shell on the server, open a TCP connection to ``address:port``?"""
    probe = shell(user, f"timeout 5 bash -c 'exec 3<>/dev/tcp/{address}/{port}' && echo open")
    return probe.stdout.strip() == "open"


def _host_paths_lead_to_their_own_lab_only(user: str, own: str, other: str, lab: str) -> None:
    """From the server's shell, a student reaches their own guests and published port only:
    labctl's firewall matches the packets of their uid (instance/isolation.py)."""
    for instance, expected in ((own, True), (other, False)):
        state = InstanceDir(lab, instance).load()
        assert state is not None
        app, box = state.guests["docker-app"], state.guests["lxc-system"]
        assert app.host_port is not None and box.address is not None
        assert _tcp(user, "127.0.0.1", app.host_port) is expected, (instance, "app port")
        assert _tcp(user, box.address, 22) is expected, (instance, "system container's SSH")
    assert _tcp("root", "127.0.0.1", app.host_port)  # root (labctl itself) is not confined


@contextmanager
def _sshd(tmp: Path) -> Iterator[int]:
    """A private sshd on 127.0.0.1 as the class server's (keys only, PAM for accounts)."""
    key = tmp / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile none\nUsePAM yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nAllowTcpForwarding yes\n"
        "AuthorizedKeysFile .ssh/authorized_keys\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation's empty dir
    log = tmp / "sshd.log"
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(log)])
    try:
        for _ in range(50):
            if _tcp("root", "127.0.0.1", port):
                break
            time.sleep(0.1)
        yield port
    finally:
        sshd.terminate()  # by its PID
        sshd.wait(timeout=10)


def _proxyjump_from_a_laptop(
    user: str, cls: str, own: str, other: str, lab: str, tmp_factory: pytest.TempPathFactory
) -> None:
    """The access sheet's ssh_config, as a laptop uses it: plain OpenSSH through the server
    into the student's own system container (the guest has their key), and through to their
    own published port; the other student's guest and port stay closed."""
    assert shutil.which("sshd", path="/usr/sbin"), "openssh-server: labctl host setup --test-tools"
    account = accounts.record(user)
    assert account is not None and account.key == "generated"
    tmp = tmp_factory.mktemp("laptop")
    key = tmp / "id"
    shutil.copy(account.private_key, key)
    key.chmod(0o600)
    mine, theirs = InstanceDir(lab, own).load(), InstanceDir(lab, other).load()
    assert mine is not None and theirs is not None
    with _sshd(tmp) as port:
        hops, forwards = reach.routes(mine)
        snippet = sheet.ssh_config(account, "127.0.0.1", hops, forwards)
        snippet = snippet.replace(f"~/.ssh/labctl-{cls}", str(key)).replace(
            "    HostName 127.0.0.1\n",
            f"    HostName 127.0.0.1\n    Port {port}\n    StrictHostKeyChecking no\n"
            "    UserKnownHostsFile /dev/null\n",
        )
        config = tmp / "ssh_config"
        config.write_text(snippet)
        ssh = ["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
        run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=60)
        inside = run([*ssh, f"labctl-{cls}-lxc-system", "cat /etc/hostname"])
        assert inside.returncode == 0, inside.stderr
        rec = mine.guests["lxc-system"]
        seen = backends.connect(rec, KeyPair(InstanceDir(lab, own).key)).run("cat /etc/hostname")
        assert inside.stdout == seen.stdout != ""  # the same guest labctl itself reaches
        # the other student's container: the server refuses to open the channel (firewall)
        box = theirs.guests["lxc-system"].address
        across = run([*ssh, "-J", f"labctl-{cls}", f"root@{box}", "true"])
        assert across.returncode != 0 and "open failed" in across.stderr, across.stderr
        # ports: own app answers through the server (what LocalForward does), theirs does not
        get = "GET / HTTP/1.0\r\n\r\n"
        for state, expected in ((mine, True), (theirs, False)):
            app_port = state.guests["docker-app"].host_port
            web = run([*ssh, "-W", f"127.0.0.1:{app_port}", f"labctl-{cls}"], input=get)
            assert (" 200 " in web.stdout.split("\r\n", 1)[0]) is expected, (state.instance, web)


def _sudo_opens_one_door_only(user: str, state: Path, entry: sudo.Installation) -> None:
    assert shell(user, "sudo -n /bin/sh -c id").returncode != 0
    assert shell(user, "sudo -n /usr/bin/id").returncode != 0
    direct = shell(user, shlex.quote(str(entry.entry)) + " exercise list")
    assert direct.returncode != 0 and "only works as root" in direct.stderr, direct.stderr
    # the student's environment does not reach root's Python: a labctl package of their own
    # on PYTHONPATH, which would leave a root-owned file behind if it were imported
    home = Path(pwd.getpwnam(user).pw_dir)
    marker = home / "imported-as-root"
    code = shlex.quote(f'open("{marker}", "w")\n')
    planted = (
        f"mkdir -p ~/evil/labctl && printf %s {code} > ~/evil/labctl/__init__.py && "
        "cp ~/evil/labctl/__init__.py ~/evil/sitecustomize.py && cd ~/evil && "
        f"PYTHONPATH=~/evil sudo -n {shlex.quote(str(entry.entry))} exercise list"
    )
    listed = shell(user, planted)
    assert listed.returncode == 0, listed.stderr
    assert not marker.exists()
