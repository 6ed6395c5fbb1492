"""``python -I -m labctl.backends.docker_context DIR [HOME]``: a build context, as a tar.

Run by :func:`labctl.backends.apps.read_context` under the student's own uid (never as root
for a student), so the kernel decides what it reads. With ``HOME``, ``DIR`` (links followed)
must be a directory inside it that the caller owns. Links inside are kept as links, never
followed; devices, pipes and sockets are left out. The tar goes to stdout, a refusal to stderr
with exit code 2.
"""

from __future__ import annotations

import os
import sys
import tarfile
from pathlib import Path


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Files, directories and links only, owned by nobody in particular."""
    if not (info.isfile() or info.isdir() or info.issym() or info.islnk()):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def check(path: str, home: str | None) -> Path:
    """The real directory ``path`` names, when the caller may build from it."""
    real = Path(os.path.realpath(path))
    if not real.is_dir():
        raise ValueError(f"{path} is not a directory")
    if home is not None:
        root = Path(os.path.realpath(home))
        if real != root and root not in real.parents:
            raise ValueError(f"{path} is not inside your home ({home})")
        if real.stat().st_uid != os.getuid():
            raise ValueError(f"{path} is not yours")
    if not (real / "Dockerfile").is_file():
        raise ValueError(f"{path} has no Dockerfile")
    return real


def write(real: Path, out: object) -> None:
    """The tar of ``real`` (its contents at the tar's root) onto the binary stream ``out``."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for entry in sorted(os.listdir(real)):
            tar.add(real / entry, arcname=entry, recursive=True, filter=_plain)


def main(argv: list[str]) -> int:
    """Write the tar of ``argv[0]`` to stdout; 2 and a line on stderr when refused."""
    try:
        real = check(argv[0], argv[1] if len(argv) > 1 else None)
        write(real, sys.stdout.buffer)
    except (OSError, ValueError) as exc:
        text = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) else str(exc)
        print(f"cannot build from {argv[0]}: {text}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
