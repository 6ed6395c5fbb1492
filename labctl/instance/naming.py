"""Names of everything a lab creates: ``labctl-<lab>-<instance>-<guest>``.

Two instances of a lab (two students on one host) never share a name, and ``down`` finds
exactly what ``up`` made.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex

from labctl.errors import SpecError

PREFIX = "labctl"
NAME_RE = r"^[a-z][a-z0-9-]{0,23}$"  # lab and guest names
INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")
MAX_INSTANCE = 16
#: LXD instance names must be hostnames (one DNS label); libvirt and Docker take longer
#: names, but one limit for every engine lets a guest change engine without a new name.
MAX_RESOURCE = 63
DEFAULT_INSTANCE = "main"
DEFAULT_LAB = "virtualization"  # the lab under labs/ that commands use when none is named


def options(lab: str, instance: str, student: str | None = None) -> str:
    """The options after a printed command that reach this lab instance (and student) as
    given (`` --lab net -i walk``): none for the default lab's main instance."""
    given = [
        *(["--lab", lab] if lab != DEFAULT_LAB else []),
        *(["-i", instance] if instance != DEFAULT_INSTANCE else []),
        *(["-s", student] if student else []),
    ]
    return "".join(f" {shlex.quote(w)}" for w in given)


def matching(value: str, pattern: str | re.Pattern[str], problem: str, hint: str) -> str:
    """``value`` when ``pattern`` matches it, else a :class:`SpecError` saying ``problem``."""
    if not re.match(pattern, value):
        raise SpecError(problem, hint)
    return value


def check_instance(instance: str) -> str:
    """Validate an instance name (a student id, a seat number...)."""
    return matching(
        instance,
        INSTANCE_RE,
        f"instance name {instance!r} is not valid",
        "use 1-16 lowercase letters, digits and dashes, e.g. --instance alumno07",
    )


def check_lab_name(name: str) -> str:
    """Validate a lab name given on the command line (it names a state directory)."""
    return matching(
        name,
        NAME_RE,
        f"lab name {name!r} is not valid",
        "give the lab's name (1-24 lowercase letters, digits and dashes, starting with a "
        "letter), e.g. --lab virtualization",
    )


def longest_resource(lab: str, guest: str) -> str:
    """The longest engine-side name ``guest`` can get: with the longest instance name."""
    return resource(lab, "x" * MAX_INSTANCE, guest)


def resource(lab: str, instance: str, guest: str) -> str:
    """Engine-side name of one guest."""
    return f"{PREFIX}-{lab}-{instance}-{guest}"


def throwaway(lab: str, instance: str, guest: str) -> str:
    """A new name for a short-lived copy of ``guest``: its resource name plus a random suffix.

    Cut to fit :data:`MAX_RESOURCE`; the copy's labels say whose it is.
    """
    suffix = f"-cmp{secrets.token_hex(2)}"
    return resource(lab, instance, guest)[: MAX_RESOURCE - len(suffix)].rstrip("-") + suffix


def network(lab: str, instance: str) -> str:
    """Engine-side name of a lab instance's network."""
    return f"{PREFIX}-{lab}-{instance}"


def _short(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


def bridge(lab: str, instance: str) -> str:
    """Linux bridge name for the instance's VM network (at most 15 characters)."""
    return f"lcbr{_short(lab, instance)}"


def lxd_bridge(lab: str, instance: str) -> str:
    """LXD network (and Linux bridge) name for the instance's system containers."""
    return f"lclx{_short(lab, instance)}"


def podman_bridge(lab: str, instance: str) -> str:
    """Linux bridge of the instance's Podman network (Podman would pick podman1, podman2...)."""
    return f"lcpm{_short(lab, instance)}"


def mac(lab: str, instance: str, guest: str) -> str:
    """A stable locally administered MAC address in QEMU's 52:54:00 range."""
    h = _short(lab, instance, guest)
    return f"52:54:00:{h[0:2]}:{h[2:4]}:{h[4:6]}"
