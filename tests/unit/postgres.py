"""A throwaway PostgreSQL cluster for the store's tests: initdb, postgres on a unix socket, stop.

initdb refuses root, so as root the cluster belongs to the ``postgres`` account (setpriv runs
the server itself, so the PID we hold is the server's and we stop exactly that process).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def find_bin() -> Path | None:
    """The newest PostgreSQL server's bin directory, or None."""
    for d in BIN_DIRS:
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


@contextmanager
def cluster(bindir: Path) -> Iterator[str]:
    """Start a cluster in a temporary directory; yield its admin URL; stop it by its PID."""
    base = Path(tempfile.mkdtemp(prefix="labctl-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [*_as_owner(), str(bindir / "initdb"), "-D", str(data), "-U", "postgres"]
            + ["--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
            check=True,
            capture_output=True,
        )
        port = _free_port()
        log = open(base / "server.log", "wb")  # noqa: SIM115  closed with the cluster
        proc = subprocess.Popen(
            [*_as_owner(), str(bindir / "postgres"), "-D", str(data), "-k", str(sock)]
            + ["-p", str(port), "-c", "listen_addresses=", "-c", "fsync=off"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while not (sock / f".s.PGSQL.{port}").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((base / "server.log").read_text()[-2000:])
            time.sleep(0.1)
        yield f"postgresql+psycopg://postgres@/postgres?host={sock}&port={port}"
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown, by the PID we started
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """A new, empty database in the cluster; its URL."""
    import psycopg
    import sqlalchemy as sa

    url = sa.make_url(admin_url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        dbname="postgres", user="postgres", host=url.query["host"], port=url.query["port"]
    ) as conn:
        conn.autocommit = True
        conn.execute(f"CREATE DATABASE {name}")
    return url.set(database=name).render_as_string(hide_password=False)
