"""Running one of labctl's playbooks on this host through ansible-runner.

Progress comes from the runner's events (one :class:`TaskEvent` per task start and result);
the outcome is a frozen :class:`PlaybookResult` built from the final stats. A failed run
raises :class:`~labctl.errors.HostError` naming the task that failed and its message.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl import cancel
from labctl.errors import HostError
from labctl.procs import output

#: Inventory for "this machine", using the interpreter labctl runs in (it has ansible).
LOCAL_INVENTORY = "localhost ansible_connection=local ansible_python_interpreter={python}"


@dataclass(frozen=True)
class TaskEvent:
    """A task started (``start``) or finished (ok, changed, skipped, failed, ignored)."""

    task: str
    status: str
    message: str = ""


@dataclass(frozen=True)
class PlaybookResult:
    """Outcome of one playbook run, from the runner's final stats."""

    playbook: str
    ok: bool
    status: str  # ansible-runner's: successful, failed, canceled, timeout
    rc: int
    changed: int
    ok_tasks: int
    skipped: int
    failed_tasks: tuple[TaskEvent, ...]  # status failed, message: Ansible's words
    changed_tasks: tuple[str, ...]
    seconds: float
    log: str | None = None  # where the full Ansible output was written

    @property
    def nothing_changed(self) -> bool:
        """True for an idempotent re-run: success and ``changed=0``."""
        return self.ok and self.changed == 0


TaskCallback = Callable[[TaskEvent], None]


def failure_message(res: Mapping[str, Any]) -> str:
    """Ansible's own words for a failure: msg, then the command's stderr/stdout tail."""
    items = [r for r in res.get("results", []) if isinstance(r, dict) and r.get("failed")]
    if items:
        return "; ".join(failure_message(r) for r in items)
    parts = [str(res.get("msg", "")).strip()]
    output = str(res.get("stderr") or res.get("stdout") or "").strip()
    if output and output not in parts[0]:
        parts.append(" | ".join(output.splitlines()[-5:]))
    return ": ".join(p for p in parts if p) or "failed (no message)"


class _Collector:
    """Turns runner events into TaskEvents and remembers what changed and what failed."""

    def __init__(self, on_task: TaskCallback | None) -> None:
        self.on_task = on_task
        self.failed: list[TaskEvent] = []
        self.changed: list[str] = []

    def _emit(self, task: str, status: str, message: str = "") -> TaskEvent:
        event = TaskEvent(task, status, message)
        if self.on_task is not None:
            self.on_task(event)
        return event

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        task = str(data.get("task", "")).strip() or "(unnamed task)"
        res = data.get("res", {}) or {}
        if kind == "playbook_on_task_start":
            self._emit(task, "start")
        elif kind == "runner_on_ok":
            if res.get("changed"):
                self.changed.append(task)
            self._emit(task, "changed" if res.get("changed") else "ok")
        elif kind == "runner_on_skipped":
            self._emit(task, "skipped")
        elif kind in ("runner_on_failed", "runner_on_unreachable"):
            msg = failure_message(res)
            if data.get("ignore_errors"):
                self._emit(task, "ignored", msg)
            else:
                self.failed.append(self._emit(task, "failed", msg))
        return True


def _envvars() -> dict[str, str]:
    """The environment of every run: the venv's ansible first on PATH, no colour, no retries."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        # ansible-runner looks ansible-playbook up on PATH: the venv's bin comes first
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")]),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    }


def _count(stats: Mapping[str, Any] | None, key: str) -> int:
    return sum((stats or {}).get(key, {}).values())


def run_playbook(
    path: Path,
    extravars: Mapping[str, Any] | None = None,
    *,
    on_task: TaskCallback | None = None,
    log_path: Path | None = None,
    raise_on_failure: bool = True,
) -> PlaybookResult:
    """Run ``path`` against this machine; raise HostError naming the failing task."""
    import ansible_runner

    path = path.resolve()
    if not path.is_file():
        raise HostError(f"playbook {path} not found", "reinstall labctl from its repository")
    envvars = _envvars()
    collector = _Collector(on_task)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="labctl-ansible-") as private:
        runner = ansible_runner.run(
            private_data_dir=private,
            playbook=str(path),
            inventory=LOCAL_INVENTORY.format(python=sys.executable),
            extravars=dict(extravars or {}),
            envvars=envvars,
            quiet=True,
            event_handler=collector,
            cancel_callback=cancel.CANCEL.is_set,
        )
        stdout = runner.stdout  # a new open file on every access
        with stdout:
            output = stdout.read()
        # the runner reads stats from its artifacts: before the directory goes away
        stats = runner.stats
    seconds = time.monotonic() - started
    if log_path is not None:
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(output)
        except OSError:
            log_path = None
    ok = runner.status == "successful" and runner.rc == 0 and not collector.failed
    result = PlaybookResult(
        playbook=path.name,
        ok=ok,
        status=str(runner.status),
        rc=int(runner.rc or 0),
        changed=_count(stats, "changed"),
        ok_tasks=_count(stats, "ok"),
        skipped=_count(stats, "skipped"),
        failed_tasks=tuple(collector.failed),
        changed_tasks=tuple(collector.changed),
        seconds=round(seconds, 1),
        log=str(log_path) if log_path else None,
    )
    if not ok and raise_on_failure:
        raise _failure(result, output)
    return result


def _failure(result: PlaybookResult, output: str) -> HostError:
    """One error for a failed run: the last failing task and its message, or the output tail."""
    hint = f"full Ansible output: {result.log}" if result.log else None
    if result.status == "canceled":
        return HostError(f"{result.playbook} was interrupted", hint)
    if result.failed_tasks:
        last = result.failed_tasks[-1]
        return HostError(f"{result.playbook} failed at task {last.task!r}: {last.message}", hint)
    tail = " | ".join(line for line in output.strip().splitlines()[-5:] if line.strip())
    return HostError(
        f"{result.playbook} failed ({result.status}, exit code {result.rc}): {tail}", hint
    )


def has_plugin(kind: str, name: str) -> bool:
    """Whether this environment's Ansible finds plugin ``name`` of ``kind`` (e.g. a connection).

    Asked of ``ansible-doc``, which searches the collections exactly as a playbook run would
    (``ANSIBLE_COLLECTIONS_PATH``, ``~/.ansible/collections``, the Python path); it prints
    ``{}`` for a plugin it cannot find.
    """
    binary = Path(sys.executable).parent / "ansible-doc"
    text = output(
        [binary, "--json", "-t", kind, name],
        timeout=120,
        error=HostError,
        hint="reinstall labctl: pip install -e . (brings ansible-core)",
    )
    try:
        return name in json.loads(text)
    except ValueError as exc:
        raise HostError(f"ansible-doc answered something that is not JSON: {text[:200]!r}") from exc


@dataclass(frozen=True)
class HostOutcome:
    """What one run did on one host of an inventory."""

    host: str
    ok: bool
    unreachable: bool = False
    changed: int = 0
    message: str = ""  # the failure in Ansible's words ("" when ok)
    stdout: str = ""  # a command module's output (the last task's)

    @property
    def failure(self) -> str:
        """Why it failed, as reports say it ("unreachable: ..." when SSH did not get there)."""
        return ("unreachable: " if self.unreachable else "") + (self.message or "failed")


@dataclass(frozen=True)
class FanOut:
    """One playbook or module run over several hosts at once, host by host."""

    what: str
    hosts: dict[str, HostOutcome]
    seconds: float

    @property
    def failed(self) -> dict[str, HostOutcome]:
        """The hosts where it failed or which it could not reach."""
        return {name: o for name, o in self.hosts.items() if not o.ok}


class _PerHost:
    """Runner events folded into one :class:`HostOutcome` per host."""

    def __init__(self) -> None:
        self.changed: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self.dark: dict[str, str] = {}
        self.stdout: dict[str, str] = {}
        self.seen: set[str] = set()

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        host = str(data.get("host", ""))
        if not host:
            return True
        res = data.get("res", {}) or {}
        if kind == "runner_on_ok":
            self.seen.add(host)
            self.changed[host] = self.changed.get(host, 0) + int(bool(res.get("changed")))
            if "stdout" in res:
                self.stdout[host] = str(res.get("stdout") or "")
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            self.seen.add(host)
            self.failed.setdefault(
                host, f"{str(data.get('task', '')).strip()}: {failure_message(res)}"
            )
            if "stdout" in res:
                self.stdout[host] = str(res.get("stdout") or "")
        elif kind == "runner_on_unreachable":
            self.dark.setdefault(host, failure_message(res))
        return True

    def outcome(
        self, host: str, status: str, *, one_task: bool, timeout: int | None
    ) -> HostOutcome:
        """``host``'s outcome of a run that ended as ``status`` says.

        A run cut short (interrupted, out of time) leaves a playbook's host unfinished even
        when some of its tasks were seen; a module's one task seen is done.
        """
        if host in self.dark:
            return HostOutcome(host, ok=False, unreachable=True, message=self.dark[host])
        if host in self.failed:
            return HostOutcome(
                host, ok=False, message=self.failed[host], stdout=self.stdout.get(host, "")
            )
        cut_short = status in ("canceled", "timeout")
        if host not in self.seen or (cut_short and not one_task):
            why = {"canceled": "interrupted", "timeout": f"not done within {timeout} s"}
            return HostOutcome(host, ok=False, message=why.get(status, f"not run ({status})"))
        return HostOutcome(
            host, ok=True, changed=self.changed.get(host, 0), stdout=self.stdout.get(host, "")
        )


#: a host that stops answering mid-task (frozen, cut off) fails within a minute instead of
#: holding the whole run: OpenSSH's keepalives on top of Ansible's own defaults
FAN_OUT_SSH = {
    "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=60s "
    "-o ServerAliveInterval=10 -o ServerAliveCountMax=6",
    "ANSIBLE_TIMEOUT": "20",
}


def fan_out(
    inventory: Path,
    hosts: list[str],
    *,
    playbook: Path | None = None,
    module: str | None = None,
    args: str = "",
    extravars: Mapping[str, Any] | None = None,
    forks: int = 10,
    log_path: Path | None = None,
    timeout: int | None = None,
) -> FanOut:
    """Run a playbook (or one module) on ``hosts`` of ``inventory`` at once (``forks``).

    Never raises for a host's failure: each host's outcome says it (unreachable hosts are
    Ansible's "dark" ones), so the caller decides what one host's fault means for the rest.
    ``timeout`` (seconds) bounds the whole run: a host not done by then is said so, the
    others keep their outcome.
    """
    import ansible_runner

    if (playbook is None) == (module is None):
        raise ValueError("fan_out runs a playbook or a module")
    if not hosts:
        return FanOut(str(playbook.name if playbook else module), {}, 0.0)
    what = playbook.name if playbook is not None else f"{module} {args}".strip()
    folded = _PerHost()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="labctl-ansible-") as private:
        kwargs: dict[str, Any] = {
            "private_data_dir": private,
            "inventory": str(inventory.resolve()),
            "limit": ",".join(hosts),
            "forks": max(1, min(forks, len(hosts))),
            "extravars": dict(extravars or {}),
            "envvars": {**_envvars(), **FAN_OUT_SSH},
            "quiet": True,
            "event_handler": folded,
            "cancel_callback": cancel.CANCEL.is_set,
        }
        if timeout is not None:
            kwargs["timeout"] = timeout
        if playbook is not None:
            kwargs["playbook"] = str(playbook.resolve())
        else:
            kwargs.update(host_pattern="all", module=module, module_args=args)
        runner = ansible_runner.run(**kwargs)
        stdout = runner.stdout
        with stdout:
            output = stdout.read()
        status = str(runner.status)
    if log_path is not None and log_path.parent.is_dir():  # never makes a folder of its own
        try:
            with log_path.open("a") as log:
                log.write(f"=== {what}\n{output}\n")
        except OSError:
            pass
    return FanOut(
        what,
        {h: folded.outcome(h, status, one_task=module is not None, timeout=timeout) for h in hosts},
        round(time.monotonic() - started, 1),
    )
