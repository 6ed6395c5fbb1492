"""What the instructor hands each student: the access sheet and its ``ssh_config`` snippet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from labctl.i18n import tr

if TYPE_CHECKING:
    from labctl.classroom.accounts import Account

#: Sections added to a sheet after ``class up`` (the dashboard's) start with this; a sheet
#: written anew keeps them.
APPENDIX = "--- "


def ssh_host(class_name: str) -> str:
    """The ``Host`` of the server in a student's ssh_config snippet."""
    return f"labctl-{class_name}"


@dataclass(frozen=True)
class Hop:
    """A guest the student logs in to with SSH, through the server (``ProxyJump``)."""

    guest: str
    address: str


@dataclass(frozen=True)
class Forward:
    """A port a guest publishes on the server's loopback, forwarded to the student's laptop."""

    guest: str
    port: int


def ssh_config(
    account: Account, server: str, hops: tuple[Hop, ...] = (), forwards: tuple[Forward, ...] = ()
) -> str:
    """The ``ssh_config`` snippet a student adds to ``~/.ssh/config`` on their laptop.

    ``labctl-<class>`` logs in to this server, where ``labctl ssh GUEST`` opens a shell in a
    guest of the student's own lab; ``labctl-<class>-<guest>`` reaches a guest directly with
    plain OpenSSH through the server (the guest has the student's key), or forwards the port
    an application container publishes.
    """
    host, lang = ssh_host(account.class_name), account.lang
    ident = []
    if account.key == "generated":  # a roster key is the student's own: ssh finds it
        ident = [f"    IdentityFile ~/.ssh/{host}", "    IdentitiesOnly yes"]
    lines = [
        f"# labctl class {account.class_name}: {account.full_name} ({account.user})",
        f"Host {host}",
        f"    HostName {server}",
        f"    User {account.user}",
        *ident,
    ]
    for hop in hops:
        lines += [
            f"Host {host}-{hop.guest}",
            f"    HostName {hop.address}",
            "    User root",
            f"    ProxyJump {host}",
            *ident,
            tr(
                lang,
                "    # cada reset lo crea de nuevo, con otra clave de host: no merece guardarla",
                "    # made anew by every reset, with a new host key: not worth remembering",
            ),
            "    StrictHostKeyChecking no",
            "    UserKnownHostsFile /dev/null",
            "    LogLevel ERROR",
        ]
    for fwd in forwards:
        lines += [
            f"Host {host}-{fwd.guest}",
            f"    HostName {server}",
            f"    User {account.user}",
            *ident,
            f"    LocalForward 127.0.0.1:{fwd.port} 127.0.0.1:{fwd.port}",
        ]
    lines.append(
        tr(
            lang,
            f"# Una shell en uno de tus invitados: ssh -t {host} labctl ssh INVITADO",
            f"# A shell in one of your guests: ssh -t {host} labctl ssh GUEST",
        )
    )
    lines += [
        tr(lang, "#   o directo: ", "#   or straight in: ") + f"ssh {host}-{hop.guest}"
        for hop in hops
    ]
    lines += [
        tr(
            lang,
            f"# {fwd.guest} en tu portátil: ssh -N {host}-{fwd.guest}, y abre ",
            f"# {fwd.guest} on your laptop: ssh -N {host}-{fwd.guest}, then open ",
        )
        + f"http://127.0.0.1:{fwd.port}/"
        for fwd in forwards
    ]
    return "\n".join(lines) + "\n"


def render(
    account: Account,
    server: str,
    private_key: str | None,
    hops: tuple[Hop, ...] = (),
    forwards: tuple[Forward, ...] = (),
) -> str:
    """The instructor's access sheet for one student; ``private_key`` when labctl made it."""
    host, lang = ssh_host(account.class_name), account.lang
    lines = [
        tr(
            lang,
            f"labctl class {account.class_name}: acceso de {account.full_name}",
            f"labctl class {account.class_name}: access for {account.full_name}",
        ),
        "",
        tr(lang, "Servidor:    ", "Server:   ") + server,
        tr(lang, "Usuario:     ", "User:     ") + account.user,
        tr(
            lang,
            f"Laboratorio: {account.lab} (instancia {account.instance})",
            f"Lab:      {account.lab} (instance {account.instance})",
        ),
        tr(lang, "Contraseña:  ninguna (solo claves SSH)", "Password: none (SSH keys only)"),
        "",
    ]
    if private_key is not None:
        lines += [
            tr(
                lang,
                f"Guarda esta clave privada como ~/.ssh/{host} (chmod 600):",
                f"Save the private key below as ~/.ssh/{host} (chmod 600):",
            ),
            "",
            private_key.rstrip(),
            "",
        ]
    else:
        lines += [
            tr(
                lang,
                "Clave: la clave pública de la lista de clase (usa su mitad privada).",
                "Key: the public key from the roster (use its private half).",
            ),
            "",
        ]
    lines += [
        tr(lang, "Añade a ~/.ssh/config:", "Add to ~/.ssh/config:"),
        "",
        ssh_config(account, server, hops, forwards),
        tr(
            lang,
            f"Después: ssh {host}   y allí: labctl exercise list",
            f"Then: ssh {host}   and there: labctl exercise list",
        ),
    ]
    return "\n".join(lines) + "\n"


def appendix(text: str) -> str:
    """What was added below a sheet after it was written (from the first ``--- `` line)."""
    at = next((i for i, line in enumerate(text.splitlines()) if line.startswith(APPENDIX)), None)
    return "" if at is None else "\n" + "\n".join(text.splitlines()[at:]) + "\n"
