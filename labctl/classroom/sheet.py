"""What the instructor hands each student: the access sheet and its ``ssh_config`` snippet."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.classroom.accounts import Account


def ssh_config(account: Account, server: str) -> str:
    """The ``ssh_config`` snippet a student adds to ``~/.ssh/config`` on their laptop.

    ``labctl-<class>`` logs in to this server, where ``labctl ssh GUEST`` opens a shell in a
    guest of the student's own lab.
    """
    host = f"labctl-{account.class_name}"
    lines = [
        f"# labctl class {account.class_name}: {account.full_name} ({account.user})",
        f"Host {host}",
        f"    HostName {server}",
        f"    User {account.user}",
    ]
    if account.key == "generated":  # a roster key is the student's own: ssh finds it
        lines += [f"    IdentityFile ~/.ssh/{host}", "    IdentitiesOnly yes"]
    lines.append(f"# A shell in one of your guests: ssh -t {host} labctl ssh GUEST")
    return "\n".join(lines) + "\n"


def render(account: Account, server: str, private_key: str | None) -> str:
    """The instructor's access sheet for one student; ``private_key`` when labctl made it."""
    host = f"labctl-{account.class_name}"
    lines = [
        f"labctl class {account.class_name}: access for {account.full_name}",
        "",
        f"Server:   {server}",
        f"User:     {account.user}",
        f"Lab:      {account.lab} (instance {account.instance})",
        "Password: none (SSH keys only)",
        "",
    ]
    if private_key is not None:
        lines += [
            f"Save the private key below as ~/.ssh/{host} (chmod 600):",
            "",
            private_key.rstrip(),
            "",
        ]
    else:
        lines += ["Key: the public key from the roster (use its private half).", ""]
    lines += [
        "Add to ~/.ssh/config:",
        "",
        ssh_config(account, server),
        f"Then: ssh {host}   and there: labctl exercise list",
    ]
    return "\n".join(lines) + "\n"
