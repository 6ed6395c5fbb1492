"""The one door students have to root: a fixed entry point and the sudo rule that opens it.

``/usr/local/sbin/labctl-student`` (root's, 0755) runs ``python -I -m labctl.cli.student`` from
labctl's own interpreter with a clean environment; ``/etc/sudoers.d/labctl-students`` (0440)
lets the accounts labctl made for its classes run that, as root, without a password, and
nothing else. Both are written from the account registry whenever an account is added or
removed (:func:`sync`), and removed with the last account. ``/usr/local/bin/labctl`` is linked
to labctl's console script when nothing is there yet, so students can type ``labctl``.

A state directory other than the default (the test suite's) gets its own pair, suffixed by a
hash of the directory, so a test never rewrites a real class's rule.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import labctl
from labctl import procs
from labctl.errors import HostError
from labctl.paths import state_dir

DEFAULT_STATE = Path("/var/lib/labctl")
ENTRY_DIR = Path("/usr/local/sbin")
#: where students find ``labctl`` on their PATH (sshd's and login's default PATH have it)
COMMAND = Path("/usr/local/bin/labctl")
SUDOERS_DIR = Path("/etc/sudoers.d")
SUDOERS = Path("/etc/sudoers")
SUDO = "/usr/bin/sudo"
#: the module the entry point runs; its ``main`` confines the student to their own lab
MODULE = "labctl.cli.student"


@dataclass(frozen=True)
class Installation:
    """The entry point and sudo rule of one state directory."""

    state: Path
    entry: Path
    sudoers: Path
    alias: str  # the sudoers User_Alias naming the students
    command: Path | None = None  # the students' ``labctl`` (default installation only)

    @classmethod
    def of(cls, state: Path | None = None) -> Installation:
        """The pair for ``state`` (default: labctl's state directory)."""
        state = (state or state_dir()).absolute()
        if state == DEFAULT_STATE:
            suffix = ""
        else:
            suffix = "-" + hashlib.sha256(str(state).encode()).hexdigest()[:8]
        return cls(
            state,
            ENTRY_DIR / f"labctl-student{suffix}",
            # sudo skips files in sudoers.d whose name holds a dot or ends with ~
            SUDOERS_DIR / f"labctl-students{suffix}",
            f"LABCTL_STUDENTS{suffix.replace('-', '_').upper()}",
            None if suffix else COMMAND,
        )


def render_entry(inst: Installation, python: str) -> str:
    """The entry point script: labctl's student command, as root, with a clean environment.

    sudo already reset the environment; this sets again only what labctl needs, so nothing
    a student exports (PYTHONPATH, LABCTL_STATE, LD_PRELOAD) reaches root's Python, and
    ``-I`` keeps the current directory and user site-packages out of its path.
    """
    state = shlex.quote(str(inst.state))
    return (
        "#!/bin/sh\n"
        "# Written by labctl (class up) for the students of its classes; removed with the\n"
        f"# last student account. sudo runs it as root for the users of {inst.sudoers}.\n"
        "# The student and their lab come from SUDO_USER, never from an option.\n"
        "cd / || exit 1\n"
        "exec /usr/bin/env -i \\\n"
        f"  LABCTL_STATE={state} \\\n"
        "  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \\\n"
        '  TERM="${TERM:-dumb}" LANG="${LANG:-C.UTF-8}" LC_ALL="${LC_ALL:-}" \\\n'
        '  SUDO_USER="${SUDO_USER:-}" SUDO_UID="${SUDO_UID:-}" \\\n'
        f'  {shlex.quote(python)} -I -m {MODULE} "$@"\n'
    )


def render_rule(inst: Installation, users: Sequence[str]) -> str:
    """The sudoers file: the listed users may run the entry point as root, nothing else."""
    entry = str(inst.entry)
    return (
        f"# Written by labctl from {inst.state}/accounts: the students of labctl's classes\n"
        f"# may run {entry} as root (their own lab's commands), and nothing else.\n"
        "# labctl rewrites this file when it adds or removes a student account.\n"
        f"User_Alias {inst.alias} = {', '.join(users)}\n"
        f"Defaults!{entry} env_reset, !setenv\n"
        f"{inst.alias} ALL = (root) NOPASSWD:NOSETENV: {entry}\n"
    )


def check_trusted(paths: Sequence[Path]) -> None:
    """Refuse when root would run code that someone other than root can change.

    Each path, its resolved target and every directory above them must belong to root and
    not be writable by group or others (a sticky directory like /tmp excepted).
    """
    seen: set[Path] = set()
    for path in paths:
        for p in {path.absolute(), path.resolve()}:
            for q in [p, *p.parents]:
                if q in seen:
                    continue
                seen.add(q)
                st = os.lstat(q)
                if stat.S_ISLNK(st.st_mode):  # a link's own mode means nothing; its target
                    continue  # and its directory are checked
                sticky = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
                if st.st_uid != 0 or (st.st_mode & 0o022 and not sticky):
                    raise HostError(
                        f"{q} can be changed by a user other than root "
                        f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}); the "
                        "students' entry point would run code from it as root",
                        f"install labctl where only root can write (chown -R root {q}; "
                        "chmod go-w), then run class up again",
                    )


def _code_paths(python: str) -> list[Path]:
    """What the entry point runs: the interpreter, labctl's package and site-packages."""
    package = Path(labctl.__file__).parent
    return [
        Path(python),
        Path(sysconfig.get_paths()["purelib"]),
        package,
        *package.rglob("*.py"),
    ]


def _same(path: Path, text: str, mode: int) -> bool:
    """True when ``path`` is root's regular file with ``mode`` and exactly ``text``."""
    try:
        st = path.lstat()
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_uid == 0
            and stat.S_IMODE(st.st_mode) == mode
            and path.read_text() == text
        )
    except FileNotFoundError:
        return False


def _write(path: Path, text: str, mode: int) -> None:
    """Write ``text`` atomically as root's file with ``mode``."""
    tmp = path.with_name(f".{path.name}.labctl-tmp")  # sudo ignores names with a dot
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        os.fchown(f.fileno(), 0, 0)
        os.fchmod(f.fileno(), mode)
        f.write(text)
    os.replace(tmp, path)


def _visudo() -> str:
    """visudo's path; sudo missing is a :class:`HostError` saying how to get it."""
    visudo = shutil.which("visudo", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if visudo is None or not Path(SUDO).exists():
        raise HostError(
            "sudo is not installed: students cannot reach their labs without it",
            "run: labctl host setup (or apt-get install sudo)",
        )
    return visudo


def check_rule(path: Path) -> None:
    """``visudo -cf``: sudo must accept a rule file before it is installed."""
    procs.run([_visudo(), "-c", "-q", "-f", str(path)], error=HostError)


def _includes(directory: Path) -> bool:
    """True when sudo's main file reads the rules in ``directory``."""
    try:
        text = SUDOERS.read_text()
    except OSError:
        return False
    wanted = (["@includedir", str(directory)], ["#includedir", str(directory)])
    return any(line.split()[:2] in wanted for line in text.splitlines())


def _labctl(python: str) -> Path:
    """The ``labctl`` console script beside the interpreter labctl runs on."""
    return Path(python).parent / "labctl"


def _ours(command: Path, python: str) -> bool:
    """True when ``command`` is the symlink :func:`_link_command` made."""
    return command.is_symlink() and Path(os.readlink(command)) == _labctl(python)


def _link_command(command: Path | None, python: str) -> None:
    """Put ``labctl`` on students' PATH, unless something else already is there."""
    if command is None or command.exists() or command.is_symlink():
        return  # an instructor's own labctl (or ours from before) stays as it is
    target = _labctl(python)
    if target.is_file():
        command.parent.mkdir(parents=True, exist_ok=True)
        command.symlink_to(target)


def sync(users: Sequence[str], inst: Installation | None = None) -> None:
    """Make the entry point and sudo rule say exactly ``users``; remove both for none.

    Called by :mod:`labctl.classroom.accounts` with every account it made, after each change.
    """
    inst = inst or Installation.of()
    python = sys.executable
    if not users:
        inst.sudoers.unlink(missing_ok=True)  # the rule first: never a rule without its entry
        inst.entry.unlink(missing_ok=True)
        if inst.command is not None and _ours(inst.command, python):
            inst.command.unlink()
        return
    entry, rule = render_entry(inst, python), render_rule(inst, sorted(users))
    if _same(inst.entry, entry, 0o755) and _same(inst.sudoers, rule, 0o440):
        return  # one call per account of a class: most find nothing to change
    _visudo()
    check_trusted(_code_paths(python))
    rules = inst.sudoers.parent
    if not _includes(rules):
        raise HostError(
            f"{SUDOERS} does not read {rules}: the students' sudo rule would do nothing",
            f"add the line '@includedir {rules}' to {SUDOERS} (with visudo)",
        )
    _write(inst.entry, entry, 0o755)
    _link_command(inst.command, python)
    rules.mkdir(mode=0o750, exist_ok=True)
    tmp = inst.sudoers.with_name(f".{inst.sudoers.name}.check")
    try:
        _write(tmp, rule, 0o440)
        check_rule(tmp)
        _write(inst.sudoers, rule, 0o440)
    finally:
        tmp.unlink(missing_ok=True)
