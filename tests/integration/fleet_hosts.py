"""Simulated lab hosts for class mode across hosts: LXD system containers on this machine.

Each host is an unprivileged system container (``security.nesting=true``) of labctl's own
Debian 12 image (``labctl/system``: systemd as PID 1, sshd, python3), reached over SSH as root
with a key the caller made, exactly as the controller reaches a real lab host. Docker and
libvirt run inside it (HOST-NOTES section 9); the system-container engine is ``none`` there.

``prepare_image`` runs ``playbooks/host-setup.yml`` once over SSH on a throw-away host and
publishes the result as a local image whose alias carries a hash of its inputs (the base
image, the host playbooks, the extra vars): a new host is then a copy of a prepared one,
ready in seconds, and the image is rebuilt only when those inputs change.

Every container is named ``labctl-fleet-<run>-<n>`` and labelled ``user.labctl.lab=fleet``,
``user.labctl.instance=<run>``, so the leak inventory (``tests/integration/engines.py``,
lab ``fleet``, instance ``<run>``) finds them; :func:`destroy` removes them by exact name.
Used by ``tests/integration/test_fleet_hosts.py`` and by ``bench/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock

from labctl.fleet import ship
from labctl.fleet.inventory import LabHost
from labctl.host.ansible import failure_message
from labctl.images.cache import ImageStore
from labctl.keys import ensure_keypair
from labctl.paths import PLAYBOOKS_DIR, cache_dir, guest_apt_proxy, system_containers
from tests.interrupts import cancel_on_signals

LAB = "fleet"  # the leak inventory's lab name for every simulated host
BASE_ALIAS = "labctl/system"  # labctl's system container image (labctl images build lxd-system)
IMAGE_PREFIX = "labctl-fleet/host-"
#: a name the leak inventory reads as lab ``fleet``, instance ``<run>``
NAME = re.compile(r"^labctl-fleet-([a-z0-9]+)-([0-9]+)$")
#: each host's memory ceiling: Docker, libvirt and one small TCG VM fit with room to spare
MEMORY = "3GiB"
#: host-setup.yml and what it reads; any change to them makes a new prepared image
PLAYBOOK_INPUTS = (
    "host-setup.yml",
    "vars",
    "tasks/facts.yml",
    "tasks/start-daemon.yml",
    "tasks/stop-daemon.yml",
    "templates",
    "files",
)
#: what happens to a prepared host before it is published; change it to rebuild the image
PREPARE_VERSION = "1: host-setup.yml, then scrubbed of keys, machine-id and leases"
SETUP_PLAYBOOK = PLAYBOOKS_DIR / "host-setup.yml"
SSH_READY_SECONDS = 60
PYTHON = "/usr/bin/python3"  # Debian's, on every lab host
VM_PROFILE = "tiny"  # the VM images simulated hosts run (labctl.paths.vm_profile)


class SimHostError(RuntimeError):
    """A simulated host could not be made, reached or removed; carries the engine's words."""


@dataclass(frozen=True)
class HostStats:
    """One host's figures from a playbook run (Ansible's recap line)."""

    ok: int = 0
    changed: int = 0
    failures: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class PlayRun:
    """A playbook run against an inventory: per-host stats, what changed, what failed."""

    playbook: str
    status: str
    rc: int
    hosts: Mapping[str, HostStats]
    changed_tasks: tuple[tuple[str, str], ...]  # (host, task)
    failed_tasks: tuple[tuple[str, str, str], ...]  # (host, task, message)
    seconds: float
    output: str = field(repr=False, default="")

    @property
    def ok(self) -> bool:
        """Every host reached, nothing failed."""
        return self.status == "successful" and self.rc == 0 and not self.failed_tasks

    def changed(self, host: str) -> int:
        """How many tasks changed something on ``host``."""
        return self.hosts[host].changed if host in self.hosts else 0

    def explain(self) -> str:
        """The failures, or the tail of the output when there are none to name."""
        if self.failed_tasks:
            return "; ".join(f"{h}: {t}: {m}" for h, t, m in self.failed_tasks)
        return " | ".join(self.output.strip().splitlines()[-8:])


def client() -> str:
    """The command line client of the system-container engine host setup chose."""
    return "incus" if system_containers() == "incus" else "lxc"


def _cli(*args: str, stdin: str | None = None, timeout: float = 300) -> str:
    """Run the engine's client; raise SimHostError with its own words when it fails."""
    argv = [client(), *args]
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SimHostError(f"{shlex.join(argv)} took more than {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise SimHostError(f"{shlex.join(argv)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def host_names(run: str, count: int) -> list[str]:
    """``labctl-fleet-<run>-1`` ... ``-<count>``."""
    names = [f"labctl-fleet-{run}-{n}" for n in range(1, count + 1)]
    for name in names:
        _check_name(name)
    return names


def _check_name(name: str) -> str:
    """The run part of a simulated host's name; refuse names the leak inventory cannot see."""
    match = NAME.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a simulated host's name (labctl-fleet-<run>-<n>)")
    return match.group(1)


# -- the prepared image ------------------------------------------------------------------


def _playbook_files() -> list[Path]:
    files: list[Path] = []
    for entry in PLAYBOOK_INPUTS:
        path = PLAYBOOKS_DIR / entry
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return files


def recipe_hash(base_fingerprint: str, extravars: Mapping[str, Any]) -> str:
    """Hash of what a prepared host is made of: base image, host playbooks, vars, steps."""
    h = hashlib.sha256()
    h.update(f"{PREPARE_VERSION}\n{base_fingerprint}\n".encode())
    h.update(json.dumps(dict(extravars), sort_keys=True).encode())
    for path in _playbook_files():
        h.update(str(path.relative_to(PLAYBOOKS_DIR)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def setup_vars() -> dict[str, str]:
    """host-setup.yml's vars for a simulated host: apt through this machine's cache, tiny VMs.

    Nothing on the engine's bridge reaches the Debian mirror; the apt cache host setup runs
    for the guests (``/etc/labctl/guest-apt-proxy``) listens there and does. Hosts on two
    cores run the tiny VM images (busybox init), whatever this machine runs.
    """
    proxy = guest_apt_proxy()
    if not proxy:
        raise SimHostError(
            "this machine has no apt cache for its guests (/etc/labctl/guest-apt-proxy), "
            "so simulated hosts cannot install packages: run labctl host setup"
        )
    return {"labctl_apt_proxy": proxy, "labctl_vm_profile": VM_PROFILE}


def _image_fingerprint(alias: str) -> str | None:
    """The fingerprint an image alias points at, or None."""
    try:
        out = _cli("image", "alias", "list", "--format", "json", timeout=60)
    except SimHostError:
        return None
    for entry in json.loads(out):
        if entry.get("name") == alias:
            return str(entry["target"])
    return None


def prepare_image(
    extravars: Mapping[str, Any] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> str:
    """The alias of a prepared host image, made now only if its inputs changed."""
    say = on_step or (lambda _msg: None)
    base = _image_fingerprint(BASE_ALIAS)
    if base is None:
        raise SimHostError(f"no image {BASE_ALIAS}: run labctl images build lxd-system")
    values = dict(setup_vars() if extravars is None else extravars)
    digest = recipe_hash(base, values)
    alias = IMAGE_PREFIX + digest
    lock_path = cache_dir() / "fleet-host-image.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):  # one preparation at a time; the next one finds it made
        if _image_fingerprint(alias) is not None:
            return alias
        name = f"labctl-fleet-prep{digest[:8]}-1"
        destroy([name])
        with tempfile.TemporaryDirectory(prefix="labctl-fleet-prep-") as tmp_name:
            tmp = Path(tmp_name)
            key = ensure_keypair(tmp / "id_ed25519", "labctl fleet image preparation")
            try:
                say(f"launch {name} from {BASE_ALIAS}")
                (host,) = launch([name], key.public_line, image=BASE_ALIAS)
                inventory = write_inventory([host], tmp / "hosts.ini", key.private)
                say("host-setup.yml over SSH")
                run = run_playbook(SETUP_PLAYBOOK, inventory, values, tmp / "runner")
                if not run.ok:
                    raise SimHostError(f"host-setup.yml failed on {name}: {run.explain()}")
                say("scrub and publish")
                _scrub(name)
                _cli("stop", name, timeout=120)
                _cli(
                    "publish",
                    name,
                    "--alias",
                    alias,
                    "--compression",
                    "none",  # launching unpacks it again: no gzip either way
                    f"description=labctl simulated lab host {digest} (host-setup.yml done)",
                    timeout=1800,
                )
            finally:
                destroy([name])
        _forget_old_images(keep=alias)
    return alias


def _scrub(name: str) -> None:
    """Remove what must differ between hosts: SSH keys, machine-id, DHCP leases."""
    script = (
        "rm -f /root/.ssh/authorized_keys /etc/ssh/ssh_host_* /var/lib/dhcp/*.leases "
        "&& truncate -s 0 /etc/machine-id && apt-get clean"
    )
    _cli("exec", name, "--", "sh", "-c", script, timeout=120)


def _forget_old_images(keep: str) -> None:
    """Delete prepared host images other than ``keep``: their inputs changed."""
    out = _cli("image", "alias", "list", "--format", "json", timeout=60)
    for entry in json.loads(out):
        alias = str(entry.get("name", ""))
        if alias.startswith(IMAGE_PREFIX) and alias != keep:
            _cli("image", "delete", str(entry["target"]), timeout=120)


# -- hosts -----------------------------------------------------------------------------------


def launch(
    names: Sequence[str],
    pubkey: str,
    *,
    image: str | None = None,
    memory: str = MEMORY,
    timeout: float = SSH_READY_SECONDS,
) -> list[LabHost]:
    """Create and start one host per name from ``image`` (default: the prepared one).

    Root's ``authorized_keys`` holds ``pubkey``; each host is returned once its sshd answers
    with an SSH banner on its address, as the controller would reach it: a ``LabHost`` named
    as its container, at its address on the engine's bridge. A host that never gets there is
    removed again.
    """
    image = image or prepare_image()
    runs = [_check_name(n) for n in names]
    made: list[str] = []
    lock = threading.Lock()

    def create(name: str, run: str) -> None:
        with lock:  # before init: a container init made but failed to finish is still ours
            made.append(name)
        _cli(
            "init", image, name,
            "-c", "security.nesting=true",
            "-c", f"limits.memory={memory}",
            "-c", f"user.labctl.lab={LAB}",
            "-c", f"user.labctl.instance={run}",
            "-c", "user.labctl.role=simulated-lab-host",
            timeout=600,
        )  # fmt: skip
        _cli(
            "file", "push", "-", f"{name}/root/.ssh/authorized_keys",
            "--uid", "0", "--gid", "0", "--mode", "0600", "--create-dirs",
            stdin=pubkey.strip() + "\n",
        )  # fmt: skip
        _cli("start", name, timeout=120)

    try:
        # side by side: most of a launch is the engine unpacking the image to disk
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            for future in [pool.submit(create, n, r) for n, r in zip(names, runs, strict=True)]:
                future.result()
        deadline = time.monotonic() + timeout
        return [LabHost(n, _wait_ssh(n, deadline), vm_profile=VM_PROFILE) for n in names]
    except BaseException:
        destroy(made)
        raise


def address(name: str) -> str | None:
    """The host's IPv4 address on eth0, or None while it has none."""
    out = _cli("query", f"/1.0/instances/{name}/state", timeout=30)
    nets = (json.loads(out).get("network") or {}).get("eth0") or {}
    for addr in nets.get("addresses", []):
        if addr.get("family") == "inet" and addr.get("scope") == "global":
            return str(addr["address"])
    return None


def ssh_banner(addr: str, timeout: float = 3.0) -> str | None:
    """The SSH banner at ``addr``:22, or None (a bare TCP connect proves nothing here)."""
    try:
        with socket.create_connection((addr, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            line = sock.recv(256).decode(errors="replace")
    except OSError:
        return None
    return line.strip() if line.startswith("SSH-") else None


def _wait_ssh(name: str, deadline: float) -> str:
    last = "no address yet"
    while time.monotonic() < deadline:
        addr = address(name)
        if addr is not None:
            if ssh_banner(addr) is not None:
                return addr
            last = f"no SSH banner at {addr}:22"
        time.sleep(0.5)
    raise SimHostError(f"{name}: {last} after {SSH_READY_SECONDS} s")


def write_inventory(
    hosts: Iterable[LabHost],
    path: Path,
    key: Path,
    fmt: str = "ini",
    group: str = "lab_hosts",
    host_vars: Mapping[str, str] | None = None,
) -> Path:
    """An Ansible inventory of ``hosts`` (INI or YAML): root over SSH with ``key``.

    ``host_vars`` go to every host (by default :func:`setup_vars`, what host-setup.yml needs
    on a simulated host). Host keys are new with every host: each is accepted the first time
    and remembered in ``<path>.known_hosts``, beside the inventory, so a changed key on a
    rerun still fails.
    """
    known = path.with_name(path.name + ".known_hosts")
    ssh_args = f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known}"
    common = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key),
        "ansible_python_interpreter": PYTHON,
        "ansible_ssh_common_args": ssh_args,
        **(setup_vars() if host_vars is None else host_vars),
    }
    hosts = list(hosts)
    if fmt == "ini":
        lines = [f"[{group}]"]
        lines += [f"{h.name} ansible_host={h.address}" for h in hosts]
        lines += ["", f"[{group}:vars]"]
        lines += [f"{k}={shlex.quote(v) if ' ' in v else v}" for k, v in common.items()]
        text = "\n".join(lines) + "\n"
    elif fmt == "yaml":
        data = {
            "all": {
                "children": {
                    group: {
                        "hosts": {h.name: {"ansible_host": h.address} for h in hosts},
                        "vars": common,
                    }
                }
            }
        }
        text = yaml.safe_dump(data, sort_keys=False)
    else:
        raise ValueError(f"inventory format {fmt!r}: use ini or yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def exec_in(host: LabHost, *argv: str, timeout: float = 120) -> str:
    """Run ``argv`` in the host through the engine (not SSH); its output, or SimHostError."""
    return _cli("exec", host.name, "--", *argv, timeout=timeout)


def cut_off(host: LabHost, how: str = "freeze") -> None:
    """Make ``host`` unreachable mid-run.

    ``freeze`` pauses every process in the container (``lxc pause``): the kernel still
    accepts the TCP connection, but no SSH banner ever comes, so Ansible gives the host up
    as unreachable after its connect timeout, like a host that hangs. ``sshd`` stops its
    SSH service: connections are refused at once, like a host whose sshd died.
    """
    if how == "freeze":
        _cli("pause", host.name, timeout=60)
    elif how == "sshd":
        _cli("exec", host.name, "--", "systemctl", "stop", "ssh.socket", "ssh.service")
    else:
        raise ValueError(f"cut_off how={how!r}: use freeze or sshd")


def restore(host: LabHost) -> None:
    """Undo :func:`cut_off`: thaw the container and start its sshd."""
    if _state(host.name) == "Frozen":
        _cli("start", host.name, timeout=60)  # resumes a paused container
    _cli("exec", host.name, "--", "systemctl", "start", "ssh.service")


def _state(name: str) -> str | None:
    try:
        out = _cli("query", f"/1.0/instances/{name}/state", timeout=30)
    except SimHostError as exc:
        if "not found" in str(exc).lower():
            return None
        raise
    return str(json.loads(out).get("status"))


def destroy(hosts: Iterable[LabHost | str]) -> None:
    """Delete each host by its exact name (running, frozen or stopped); absent ones are fine."""
    for host in hosts:
        name = host.name if isinstance(host, LabHost) else host
        _check_name(name)
        state = _state(name)
        if state is None:
            continue
        if state == "Frozen":
            _cli("start", name, timeout=60)
        _cli("delete", "--force", name, timeout=300)


def leftovers(run: str | None = None) -> list[str]:
    """Containers labelled as simulated hosts (of ``run``, or of any run) that still exist."""
    out = _cli("list", "--format", "json", timeout=60)
    found = []
    for inst in json.loads(out):
        config = inst.get("config") or {}
        if config.get("user.labctl.lab") != LAB:
            continue
        if run is None or config.get("user.labctl.instance") == run:
            found.append(str(inst["name"]))
    return sorted(found)


def memory_mib(host: LabHost) -> float:
    """Memory the host's container uses now (its cgroup's figure, as LXD reports it)."""
    out = _cli("query", f"/1.0/instances/{host.name}/state", timeout=30)
    usage = (json.loads(out).get("memory") or {}).get("usage", 0)
    return round(int(usage) / 1024**2, 1)


# -- what fleet-images.yml is given ----------------------------------------------------------


def image_vars(store: ImageStore, names: Iterable[str]) -> list[dict[str, Any]]:
    """fleet-images.yml's ``labctl_images`` for ``names``, as ``class up --hosts`` gives it."""
    return [image.as_var() for image in ship.shipped(store, names)]


# -- Ansible against an inventory ------------------------------------------------------------


def run_playbook(
    playbook: Path,
    inventory: Path,
    extravars: Mapping[str, Any] | None,
    private_dir: Path,
    *,
    forks: int = 5,
    timeout: int = 30,
) -> PlayRun:
    """Run ``playbook`` against every host of ``inventory`` through ansible-runner.

    The test side's own runner, so the simulated hosts can be proven without the
    controller's code; it reads results from the runner's events and final stats (a failure
    in Ansible's words as :func:`labctl.host.ansible.failure_message` puts them).
    """
    import ansible_runner

    bin_dir = str(Path(sys.executable).parent)
    envvars = {
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "/usr/bin:/bin")]),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_TIMEOUT": str(timeout),
        "ANSIBLE_PIPELINING": "1",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(private_dir / "cp"),
    }
    changed: list[tuple[str, str]] = []
    failed: list[tuple[str, str, str]] = []

    def on_event(event: Mapping[str, Any]) -> bool:
        data = event.get("event_data", {})
        host, task = str(data.get("host", "")), str(data.get("task", "")).strip()
        res = data.get("res", {}) or {}
        kind = event.get("event", "")
        if kind == "runner_on_ok" and res.get("changed"):
            changed.append((host, task))
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get(
            "ignore_errors"
        ):
            failed.append((host, task, failure_message(res)[:500]))
        return True

    private_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with cancel_on_signals() as canceled:
        runner = ansible_runner.run(
            private_data_dir=str(private_dir),
            playbook=str(playbook.resolve()),
            inventory=str(inventory),
            extravars=dict(extravars or {}),
            envvars=envvars,
            forks=forks,
            quiet=True,
            event_handler=on_event,
            cancel_callback=canceled,
        )
    with runner.stdout as out:
        text = out.read()
    stats = runner.stats or {}
    names = set().union(*(set(v) for v in stats.values() if isinstance(v, dict)))
    hosts = {
        h: HostStats(
            ok=stats.get("ok", {}).get(h, 0),
            changed=stats.get("changed", {}).get(h, 0),
            failures=stats.get("failures", {}).get(h, 0),
            unreachable=stats.get("dark", {}).get(h, 0),
            skipped=stats.get("skipped", {}).get(h, 0),
        )
        for h in sorted(names)
    }
    return PlayRun(
        playbook=playbook.name,
        status=str(runner.status),
        rc=int(runner.rc or 0),
        hosts=hosts,
        changed_tasks=tuple(changed),
        failed_tasks=tuple(failed),
        seconds=round(time.monotonic() - started, 1),
        output=text,
    )
