"""A student runs labctl on their own lab instance only: who they are comes from their account.

Students are not root. Logged in as the account ``class up`` made, a student types
``labctl exercise check ID``, ``labctl ssh GUEST`` or ``labctl exec GUEST -- CMD``; labctl sees
it is not root and runs itself again as ``sudo -n <entry point> ARGS`` (:func:`reexec_argv`),
the one command the class's sudo rule allows (``sudo.py``). As root, the entry point:

1. finds the student from ``SUDO_USER``/``SUDO_UID``, which sudo sets and the student cannot,
   and labctl's own record of the account (:func:`identify`): no record, no lab;
2. allows only the student's commands: ``exercise list/show/check/hint/answer/progress``,
   ``ssh``, ``exec``, ``status`` and ``app build/history/run/ls/rm`` (their own images and
   containers, ``cli/apps.py``); ``--lab``, ``--instance`` and ``--student`` may only
   repeat the student's own values, and are then replaced by them (:func:`confine`);
3. runs labctl's usual command. Progress files, state and the lab's key stay root's (0600 in
   0700 directories): a student never reads them, not even their own, and ``labctl ssh`` runs
   ssh as root with the lab's key, hardened so the session cannot open forwardings from the
   host (:func:`harden_ssh`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labctl import procs
from labctl.classroom import accounts, sudo
from labctl.classroom.accounts import Account
from labctl.errors import ExitCode, HostError, LabctlError

#: what a student may run, and for ``exercise`` which subcommands (``reset`` is the
#: instructor's: ``labctl class reset``)
EXERCISE = frozenset({"list", "show", "check", "hint", "answer", "progress"})
APP = frozenset({"build", "history", "run", "ls", "rm"})
#: the commands with subcommands, and which of them a student may run
GROUPS = {"exercise": EXERCISE, "app": APP}
COMMANDS = frozenset({"exercise", "ssh", "exec", "status", "app"})
#: the options that name whose lab a command works on: the account decides them
OWN = {"--lab": "lab", "-l": "lab", "--instance": "instance", "-i": "instance"}
OWN |= {"--student": "student", "-s": "student"}
GLOBAL = frozenset({"-v", "--verbose"})
USAGE = (
    "as a student you can run: labctl exercise list|show|check|hint|answer|progress, "
    "labctl ssh GUEST, labctl exec GUEST -- CMD, labctl status, "
    "labctl app build|history|run|ls|rm"
)


class Refused(LabctlError):
    """A student asked for something that is not theirs to do. Exit 2: nothing ran."""

    code = ExitCode.USAGE


# ---- who is asking --------------------------------------------------------------------------


def identify(
    environ: Mapping[str, str], euid: int, system: accounts.System | None = None
) -> Account:
    """The student behind this sudo call, from ``SUDO_USER`` and labctl's account record.

    ``SUDO_UID`` must be that user's uid and the record's: a user deleted and made again by
    someone else is not the student labctl recorded.
    """
    if euid != 0:
        raise HostError(
            "the students' entry point only works as root, through sudo",
            "run labctl as usual: it calls sudo itself",
        )
    user, uid = environ.get("SUDO_USER", ""), environ.get("SUDO_UID", "")
    if not user or not uid.isdigit():
        raise Refused(
            "the students' entry point is for students' accounts, through sudo",
            "as root, use labctl itself (labctl exercise ... --instance NAME)",
        )
    entry = (system or accounts.System()).lookup(user)
    account = accounts.record(user) if accounts.USER_RE.match(user) else None
    if entry is None or entry.uid != int(uid) or account is None or account.uid != entry.uid:
        raise Refused(
            f"{user} is not a student account of a labctl class on this server",
            "ask your instructor: class up makes one account per student of the roster",
            es=(
                f"{user} no es una cuenta de alumno de ninguna clase de labctl en este servidor",
                "pregunta a tu profesor: class up crea una cuenta por alumno de la lista",
            ),
        )
    return account


# ---- what they may run ----------------------------------------------------------------------


@dataclass(frozen=True)
class Confined:
    """A student's command line, made to work on their own lab only."""

    command: str  # exercise, ssh, exec, status or app
    words: list[str]  # the command and, for exercise, its subcommand
    given: list[str]  # the student's own arguments after the command (and subcommand)
    argv: list[str]  # for labctl's own command line (``labctl`` left out)


def _override(token: str, following: str | None) -> tuple[str, str | None, int] | None:
    """``(field, value, tokens used)`` when ``token`` sets the lab, instance or student."""
    if token in OWN:
        return OWN[token], following, 2
    name, eq, value = token.partition("=")
    if eq and name in OWN and name.startswith("--"):
        return OWN[name], value, 1
    if len(token) > 2 and token[0] == "-" and token[1] != "-":
        if token[1] in "lis":  # -iNAME: click reads the rest as the value
            return OWN["-" + token[1]], token[2:], 1
        if any(c in "lis" for c in token[2:]):  # -xi NAME: click reads -i inside a cluster
            return OWN["-" + next(c for c in token[2:] if c in "lis")], None, 1
    return None


def confine(args: Sequence[str], account: Account) -> Confined:
    """The student's arguments with their own lab, instance (and student id) in force.

    Raises :class:`Refused` for a command students may not run, or an option naming another
    lab, instance or student; everything after ``--`` (``exec``'s command) is left alone.
    """
    args = list(args)
    n = 0
    while n < len(args) and args[n] in GLOBAL:
        n += 1
    head, rest = args[:n], args[n:]
    if not rest or rest[0] not in COMMANDS:
        asked = f"labctl {rest[0]}" if rest else "labctl without a command"
        raise _not_for_students(asked)
    command, rest = rest[0], rest[1:]
    words = [command]
    if command in GROUPS:
        rest = rest or ["--help"]  # what typer shows for the group alone
        if rest[0] not in GROUPS[command] and rest[0] != "--help":
            raise _not_for_students(f"labctl {command} {rest[0]}")
        words.append(rest.pop(0))
    cut = rest.index("--") if "--" in rest else len(rest)
    options, tail = rest[:cut], rest[cut:]
    own = {"lab": account.lab, "instance": account.instance, "student": account.student}
    kept: list[str] = []
    i = 0
    while i < len(options):
        found = _override(options[i], options[i + 1] if i + 1 < len(options) else None)
        if found is None:
            kept.append(options[i])
            i += 1
            continue
        field, value, used = found
        if value != own[field]:
            raise _not_yours(account, field, value, command)
        i += used
    forced = ["--lab", account.lab, "--instance", account.instance]
    if command in GROUPS:
        forced += ["--student", account.student]
    return Confined(command, words, [*kept, *tail], [*head, *words, *kept, *forced, *tail])


#: what the instructor does for a student, by the command the student may not run
INSTRUCTORS = {
    "exercise reset": (
        "your instructor resets an exercise for you (labctl class reset)",
        "tu profesor reinicia un ejercicio por ti (labctl class reset)",
    ),
}


def _not_for_students(asked: str) -> Refused:
    usage_es = USAGE.replace("as a student you can run", "como alumno puedes usar")
    theirs = INSTRUCTORS.get(asked.removeprefix("labctl "))
    return Refused(
        f"{asked} is not for students",
        f"{theirs[0]}; {USAGE}" if theirs else USAGE,
        es=(f"{asked} no es para alumnos", f"{theirs[1]}; {usage_es}" if theirs else usage_es),
    )


def _not_yours(account: Account, field: str, value: str | None, command: str) -> Refused:
    lab, instance = account.lab, account.instance
    hint = (
        f"leave --{field} out: labctl knows you are {account.user}, whose lab is {lab} "
        f"(instance {instance})"
    )
    hint_es = (
        f"quita --{field}: labctl sabe que eres {account.user} y que tu laboratorio es {lab} "
        f"(instancia {instance})"
    )
    if value is None:
        if command == "exec":
            hint = "put the command after --, e.g. labctl exec GUEST -- ls -l"
            hint_es = "pon la orden tras --, por ejemplo labctl exec GUEST -- ls -l"
        return Refused(
            f"--{field} (or -{field[0]}) needs a value, and only yours is allowed",
            hint,
            es=(f"--{field} (o -{field[0]}) necesita un valor, y solo vale el tuyo", hint_es),
        )
    return Refused(
        f"you ({account.user}) can only work on your own lab: --{field} {value} is not yours",
        hint,
        es=(
            f"tú ({account.user}) solo puedes trabajar en tu laboratorio: --{field} {value} no "
            "es tuyo",
            hint_es,
        ),
    )


# ---- ssh as root, for a student ------------------------------------------------------------

#: ssh options that keep a root ssh run for a student to one shell in their guest: no escape
#: sequences (``~C`` would open forwardings), no forwardings, no config file of root's.
SSH_HARDENING = [
    "-F",
    "/dev/null",
    "-o",
    "EscapeChar=none",
    "-o",
    "ClearAllForwardings=yes",
    "-o",
    "ForwardAgent=no",
    "-o",
    "ForwardX11=no",
    "-o",
    "PermitLocalCommand=no",
    "-o",
    "Tunnel=no",
]


def harden_ssh(argv: Sequence[str]) -> list[str]:
    """A guest's shell command line, with :data:`SSH_HARDENING` when it is ssh."""
    if argv and os.path.basename(argv[0]) == "ssh":
        return [argv[0], *SSH_HARDENING, *argv[1:]]
    return list(argv)


# ---- from the student's own labctl to the entry point -------------------------------------


def reexec_argv(args: Sequence[str], euid: int) -> list[str] | None:
    """``sudo -n <entry point> ARGS`` for a student's command, or None (labctl goes on).

    None when root runs labctl, no command is given, or no class is set up here (no entry
    point): labctl then goes on as it always did, and so it does for a non-root user who
    is no student (an instructor) and asks for another command. A student's account (labctl
    made it) asking for the instructor's commands is :class:`Refused`, but for ``lab``
    (schema, validate: they read no lab state); a non-root user the rule does not name gets
    a :class:`HostError` for a student's command instead of sudo's password prompt.
    """
    if euid == 0:
        return None
    words = [a for a in args if a not in GLOBAL]
    if not words or words[0].startswith("-"):
        return None
    entry = sudo.Installation.of().entry
    if not entry.exists():
        return None
    allowed = procs.run([sudo.SUDO, "-n", "-l", str(entry)], check=False).returncode
    if words[0] not in COMMANDS:
        if allowed == 0 and words[0] != "lab" and accounts.made_by_labctl(euid):
            raise _not_for_students(f"labctl {words[0]}")
        return None
    if allowed != 0:
        raise HostError(
            f"labctl {words[0]} needs root, and this account is not a student of a labctl "
            "class on this server",
            f"as a student, log in with the account your instructor gave you; as the "
            f"instructor: sudo labctl {words[0]} ...",
        )
    return [sudo.SUDO, "-n", str(entry), *_absolute_context(args)]


#: the options of ``labctl app build`` that take a value (the rest of its line is DIR)
_BUILD_VALUED = frozenset({"--tag", "-t", *OWN})


def _absolute_context(args: Sequence[str]) -> list[str]:
    """``args`` with ``app build``'s DIR made absolute: the entry point runs in ``/``, so a
    directory the student names relative to where they are is resolved here, as them."""
    args = list(args)
    words = [(i, a) for i, a in enumerate(args) if a not in GLOBAL]
    if [a for _, a in words[:2]] != ["app", "build"]:
        return args
    i = words[1][0] + 1
    while i < len(args):
        token = args[i]
        if token == "--":
            i += 1
            break
        if token in _BUILD_VALUED:
            i += 2
        elif token.startswith("-"):
            i += 1
        else:
            break
    if i < len(args):
        args[i] = os.path.abspath(args[i])
    return args
