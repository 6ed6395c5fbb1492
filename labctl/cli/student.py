"""``python -m labctl.cli.student ARGS``: what the class's sudo rule lets a student run as root.

Only the entry point script of ``classroom/sudo.py`` runs this, through sudo; the design is in
``classroom/access.py``. The student comes from the account, the lab from labctl's record of
it; then labctl's usual command runs, or, for ``ssh``, a hardened ssh with the lab's key.
"""

from __future__ import annotations

import os
import sys

from labctl import console
from labctl.classroom import access
from labctl.classroom.accounts import Account
from labctl.cli import main as labctl_main
from labctl.cli import render_error
from labctl.errors import HostError, LabctlError
from labctl.i18n import FALLBACK_VAR, of_args
from labctl.instance.state import NotUp
from labctl.lab import status as lab_status

#: commands that need the student's lab up (ssh finds out itself): a student hears how
#: labs come up in a class, not `labctl up`, which is the instructor's
NEEDS_LAB = {("exec",), ("status",), ("exercise", "check"), ("app", "build"), ("app", "run")}
NOT_UP_HINT = "your instructor brings the class's labs up (labctl class up): ask them"
NOT_UP_HINT_ES = "tu profesor levanta los laboratorios de la clase (labctl class up): pídeselo"


def _ssh(account: Account, guest: str) -> None:
    """Replace this process with a shell in the student's own guest (ssh run as root)."""
    from labctl import backends
    from labctl.keys import KeyPair

    inst, state = lab_status.load(account.lab, account.instance)
    rec = lab_status.record(state, guest)
    argv = access.harden_ssh(backends.connect(rec, KeyPair(inst.key)).shell_argv())
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise HostError(f"cannot run {argv[0]}: {exc.strerror}") from exc


def main() -> None:
    """Identify the student, confine the command to their lab, run it."""
    console.LANG = of_args(sys.argv[1:])  # for the refusals below, and as JSON if asked
    asked = sys.argv[1 : sys.argv.index("--")] if "--" in sys.argv else sys.argv[1:]
    console.json_asked("--json" in asked)
    try:
        account = access.identify(os.environ, os.geteuid())
        # a locale naming no language (C, POSIX: many a server's default) gets the class's
        os.environ[FALLBACK_VAR] = account.lang
        console.LANG = of_args(sys.argv[1:])
        confined = access.confine(sys.argv[1:], account)
        if tuple(confined.words) in NEEDS_LAB and "--help" not in confined.given:
            lab_status.load(account.lab, account.instance)
        if confined.command == "ssh" and "--help" not in confined.given:
            if len(confined.given) != 1 or confined.given[0].startswith("-"):
                raise access.Refused(
                    "labctl ssh takes one guest name", "e.g. labctl ssh GUEST; see labctl status"
                )
            _ssh(account, confined.given[0])
    except LabctlError as exc:
        if isinstance(exc, NotUp):
            exc.hint = NOT_UP_HINT
            exc.es = (exc.said("es")[0], NOT_UP_HINT_ES)
        render_error(exc)
        sys.exit(exc.code)
    sys.argv = ["labctl", *confined.argv]
    console.CONFINED = True
    # Click would name it python -m labctl.cli.labctl (run with -m): the student typed labctl
    labctl_main(prog_name="labctl")


if __name__ == "__main__":
    main()
