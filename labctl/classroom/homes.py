"""A student's SSH key in their home, written by root without following the student's links."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from labctl.errors import HostError

if TYPE_CHECKING:
    from labctl.classroom.accounts import PasswdEntry


def authorize(entry: PasswdEntry, public_key: str) -> None:
    """Put ``public_key`` in ``~/.ssh/authorized_keys``, owned by the student.

    A rerun writes into a home the student controls: every step opens the next directory
    relative to the last with O_NOFOLLOW, so a planted symlink makes it fail instead of
    making root write somewhere else.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        _install_key(os.open(entry.home, flags), entry, public_key)
    except OSError as exc:
        raise HostError(
            f"cannot install the SSH key in {entry.home}/.ssh: {exc}",
            "check that the home and its .ssh are plain directories (not symlinks)",
        ) from exc


def _install_key(home: int, entry: PasswdEntry, public_key: str) -> None:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        os.fchmod(home, 0o700)
        try:
            os.mkdir(".ssh", 0o700, dir_fd=home)
        except FileExistsError:
            pass
        ssh = os.open(".ssh", flags, dir_fd=home)
        try:
            os.fchown(ssh, entry.uid, entry.gid)
            os.fchmod(ssh, 0o700)
            try:
                fd = os.open("authorized_keys", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=ssh)
                with os.fdopen(fd) as f:
                    lines = f.read().splitlines()
            except FileNotFoundError:
                lines = []
            if public_key in (line.strip() for line in lines):
                return
            tmp = f".authorized_keys.labctl.{os.getpid()}"
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=ssh
            )
            with os.fdopen(fd, "w") as f:
                f.write("".join(f"{line}\n" for line in [*lines, public_key]))
                os.fchown(f.fileno(), entry.uid, entry.gid)
            os.replace(tmp, "authorized_keys", src_dir_fd=ssh, dst_dir_fd=ssh)
        finally:
            os.close(ssh)
    finally:
        os.close(home)
