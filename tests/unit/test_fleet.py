"""A class over several lab hosts, with Ansible faked at its boundary (``fleet.Runner``).

The fake answers each remote step as a lab host would (its distribution, ``class plan``'s
JSON, ``class up``'s JSON for the roster the controller shipped to it, a tar of access
sheets), and can make a host fail or stop answering at any step. Everything above it
(inventory checks, placement, state files, faults, reruns, collection) is the real code.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import shlex
import tarfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from labctl.classroom import roster
from labctl.classroom.state import FAILED, UP, ClassDir
from labctl.errors import ExitCode, HostError, LabctlError, SpecError
from labctl.exercises.progress import shared
from labctl.fleet import down, inventory, place, remote, ship, status
from labctl.fleet import state as fleet_state
from labctl.fleet import up as fleet_up
from labctl.fleet import window as fleet_window
from labctl.host.ansible import FanOut, HostOutcome
from labctl.images.cache import ImageStore
from labctl.spec.model import load_lab
from labctl.store import NewAttempt
from labctl.store.transfer import from_json, replace_instances, to_json
from tests.labs import APP, VM, lab_yaml
from tests.unit.test_recovery import Empty

# -- inventory ------------------------------------------------------------------------------


def _inv(tmp_path: Path, text: str, name: str = "hosts.ini") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_an_ini_inventory_gives_each_host_its_address_port_and_user(tmp_path: Path) -> None:
    p = _inv(
        tmp_path,
        "[lab]\nh1 ansible_host=192.0.2.11\nh2 ansible_host=192.0.2.12 ansible_port=2222\n"
        "[lab:vars]\nansible_user=root\n",
    )
    inv = inventory.load(p, resolves=lambda _a: True)
    assert inv.hosts == (
        inventory.LabHost("h1", "192.0.2.11", 22, "root"),
        inventory.LabHost("h2", "192.0.2.12", 2222, "root"),
    )


def test_a_yaml_inventory_is_read_by_ansible_too(tmp_path: Path) -> None:
    p = _inv(
        tmp_path,
        "all:\n  hosts:\n    a:\n      ansible_host: 192.0.2.1\n"
        "    b:\n      ansible_host: 192.0.2.2\n",
        "hosts.yml",
    )
    assert inventory.load(p, resolves=lambda _a: True).names == ["a", "b"]


def test_a_host_twice_in_one_ini_group_is_refused_at_its_line(tmp_path: Path) -> None:
    p = _inv(tmp_path, "[lab]\nh1 ansible_host=192.0.2.1\nh2 ansible_host=192.0.2.2\nh1\n")
    with pytest.raises(SpecError, match=r"hosts.ini:4: host h1 is listed twice .*line 2"):
        inventory.load(p, resolves=lambda _a: True)


def test_a_host_twice_in_yaml_is_refused_at_its_line(tmp_path: Path) -> None:
    text = "all:\n  hosts:\n    a:\n      ansible_host: 192.0.2.1\n    a:\n      ansible_port: 2\n"
    with pytest.raises(SpecError, match=r"hosts.yml:5: a is listed twice"):
        inventory.load(_inv(tmp_path, text, "hosts.yml"), resolves=lambda _a: True)


def test_two_names_for_one_machine_are_refused(tmp_path: Path) -> None:
    p = _inv(tmp_path, "h1 ansible_host=192.0.2.1\nh2 ansible_host=192.0.2.1\n")
    with pytest.raises(SpecError, match=r"hosts.ini:2: hosts h1 and h2 are the same machine"):
        inventory.load(p, resolves=lambda _a: True)


def test_a_name_that_does_not_resolve_is_an_unknown_host(tmp_path: Path) -> None:
    p = _inv(tmp_path, "h1 ansible_host=192.0.2.1\nnowhere.invalid\n")
    with pytest.raises(SpecError, match=r"hosts.ini:2: unknown host nowhere.invalid"):
        inventory.load(p)


def test_an_empty_inventory_and_this_machine_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="has no hosts"):
        inventory.load(_inv(tmp_path, "# nothing\n"), resolves=lambda _a: True)
    with pytest.raises(SpecError, match="is this machine"):
        inventory.load(_inv(tmp_path, "localhost\n"), resolves=lambda _a: True)
    with pytest.raises(SpecError, match="not found"):
        inventory.load(tmp_path / "missing.ini")


# -- placement ------------------------------------------------------------------------------


def test_students_spread_in_proportion_to_each_hosts_room() -> None:
    got = place.place([f"s{i}" for i in range(6)], {"a": 4, "b": 2}, {})
    # the host the least full after taking the student, as a share of its room (ties: by name)
    assert got.hosts == {"s0": "a", "s1": "a", "s2": "b", "s3": "a", "s4": "a", "s5": "b"}


def test_hosts_of_about_the_same_room_take_turns() -> None:
    # measured room differs by a little from host to host: each still gets its share
    got = place.place(["s1", "s2", "s3", "s4"], {"h1": 30, "h2": 30, "h3": 29}, {})
    assert got.hosts == {"s1": "h1", "s2": "h2", "s3": "h3", "s4": "h1"}


def test_a_placed_student_stays_and_a_failed_hosts_students_move_only_when_asked() -> None:
    current = {"s0": "a", "s1": "b"}
    kept = place.place(["s0", "s1"], {"a": 3}, current, frozenset({"b"}))
    assert kept.hosts == {"s0": "a", "s1": "b"} and kept.moved == ()
    moved = place.place(["s0", "s1"], {"a": 3}, current, frozenset({"b"}), replace_failed=True)
    assert moved.hosts == {"s0": "a", "s1": "a"} and moved.moved == ("s1",)


def test_more_students_than_room_is_refused_with_each_hosts_room() -> None:
    with pytest.raises(
        place.OverCommit, match=r"3 students need a lab .* fit 2 more \(a: 1, b: 1\)"
    ):
        place.place(["x", "y", "z"], {"a": 1, "b": 1}, {})


# -- the lifecycle, on fake hosts ------------------------------------------------------------


@dataclass
class FakeHosts:
    """Lab hosts as Ansible would report them; ``fail[host] = (what, unreachable)``."""

    files: Path
    fit: dict[str, int]
    fail: dict[str, tuple[str, bool]] = field(default_factory=dict)
    os_release: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    up_on: dict[str, list[str]] = field(default_factory=dict)  # host -> students it runs
    downed: list[str] = field(default_factory=list)
    attempts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: "host@command" -> the error its labctl prints under --json (and exits non-zero: "; true")
    refuse: dict[str, str] = field(default_factory=dict)
    windows: dict[str, tuple[str, str]] = field(default_factory=dict)  # host -> start, end
    no_class: set[str] = field(default_factory=set)  # hosts whose class was never made
    bounds: dict[str, int | None] = field(default_factory=dict)  # what -> its timeout

    def __call__(self, hosts: list[str], **how: Any) -> FanOut:
        """A fan-out as ``fleet.Runner`` asks for it: a playbook, or a module and its args."""
        playbook = how.get("playbook")
        what = playbook.name if playbook else f"{how.get('module')} {how.get('args', '')}"
        self.calls.append((what, tuple(hosts)))
        self.bounds[what] = how.get("timeout")
        return FanOut(what, {h: self.one(h, what) for h in hosts}, 0.1)

    def one(self, host: str, what: str) -> HostOutcome:
        for needle, (message, dark) in self.fail.items():
            if needle.split("@")[0] == host and needle.split("@")[1] in what:
                return HostOutcome(host, ok=False, unreachable=dark, message=message)
        for needle, message in self.refuse.items():
            if needle.split("@")[0] == host and needle.split("@")[1] in what:
                error = {"message": message, "hint": "run labctl doctor", "exit_code": 3}
                return HostOutcome(host, True, stdout=json.dumps({"error": error}, indent=2))
        if "os-release" in what:
            return HostOutcome(host, True, stdout=self.os_release.get(host, "debian:12\n0\n"))
        if "class plan" in what:
            # as a host's labctl: without the class's name, a rerun's own accounts are refused
            if " --class " not in what:
                return HostOutcome(host, False, message="id 's0' is an existing account")
            return HostOutcome(host, True, stdout=json.dumps({"fit": self.fit[host]}))
        if "class up" in what:
            rows = list(csv.DictReader(io.StringIO((self.files / f"{host}.csv").read_text())))
            self.up_on[host] = [r["id"] for r in rows]
            said = [{"student": r["id"], "ok": True, "error": None, "seconds": 1.0} for r in rows]
            return HostOutcome(host, True, stdout=json.dumps({"students": said}))
        if "tar -C" in what:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                for s in self.up_on.get(host, []):
                    data = f"sheet of {s} on {host}\n".encode()
                    info = tarfile.TarInfo(f"./{s}.txt")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            return HostOutcome(host, True, stdout=base64.b64encode(buf.getvalue()).decode())
        if "class down" in what:
            self.downed.append(host)
            self.up_on.pop(host, None)
        if "class window" in what:  # both ends given, "-" for an open one (shlex-quoted)
            if host in self.no_class:
                return HostOutcome(host, True, stdout=fleet_window.ABSENT + "\n")
            words = shlex.split(what.split("then ")[1].split(";")[0])
            ends = {w: words[i + 1] for i, w in enumerate(words) if w in ("--start", "--end")}
            self.windows[host] = (ends["--start"], ends["--end"])
            said = {
                k: None if v == "-" else v
                for k, v in zip(("start", "end"), self.windows[host], strict=True)
            }
            return HostOutcome(host, True, stdout=json.dumps(said))
        if "class status" in what:
            students = [
                {
                    "student": s,
                    "guests_ready": 2,
                    "guests": 2,
                    "exercises_done": 0,
                    "exercises": 0,
                    "last_activity": None,
                    "outcome": "up",
                    "error": None,
                    # a host's labctl of before outdated gives no such key
                    **({"outdated": ["vm: CPUs 1 -> 1 of 2"]} if s == "s0" else {}),
                }
                for s in self.up_on.get(host, [])
            ]
            out = json.dumps({"students": students}) + f"\n{status.CUT}\n"
            return HostOutcome(host, True, stdout=out + json.dumps(self.attempts.get(host, [])))
        return HostOutcome(host, True)


THREE_HOSTS = "h1 ansible_host=192.0.2.1\nh2 ansible_host=192.0.2.2\nh3 ansible_host=192.0.2.3\n"
SIX = "id,name\n" + "".join(f"s{i},Student {i}\n" for i in range(6))


@dataclass
class Fleet:
    tmp: Path
    hosts: FakeHosts
    inv: inventory.Inventory

    def up(self, roster_text: str = SIX, **kw: Any) -> fleet_up.FleetUpResult:
        (self.tmp / "r.csv").write_text(roster_text)
        lab_path = self.tmp / "lab" / "lab.yaml"
        store = ImageStore([Empty("vm-amd64"), Empty("docker-app")], root=self.tmp / "cache")
        store.build(["vm-amd64", "docker-app"])
        return fleet_up.up(
            roster.load(self.tmp / "r.csv"),
            self.inv,
            "fl",
            load_lab(lab_path),
            lab_path,
            store,
            self.hosts,
            **kw,
        )


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    monkeypatch.setenv("LABCTL_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("LABCTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ship, "wheelhouse", lambda: (tmp_path / "wheels", "k1"))
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "lab.yaml").write_text(lab_yaml("flab", VM, APP))
    files = tmp_path / "state" / "classes" / "fl" / "fleet-files"
    hosts = FakeHosts(files, {"h1": 4, "h2": 2, "h3": 4})
    inv = inventory.load(_inv(tmp_path, THREE_HOSTS), resolves=lambda _a: True)
    # a command line test reaches the fake hosts too, never Ansible and SSH
    monkeypatch.setattr(remote, "ansible_runner_for", lambda *_a: hosts)
    return Fleet(tmp_path, hosts, inv)


def test_a_class_is_spread_over_the_hosts_by_their_room_and_sheets_come_back(
    fleet: Fleet,
) -> None:
    result = fleet.up()
    assert [h.status for h in result.hosts] == ["ready"] * 3
    where = {s.student: s.host for s in result.seats}
    assert sorted(set(where.values())) == ["h1", "h2", "h3"]
    assert all(s.outcome == UP for s in result.seats)
    # each host ran class up for exactly its own students, and each sheet came back
    assert sorted(s for v in fleet.hosts.up_on.values() for s in v) == sorted(where)
    for s, h in where.items():
        sheet = ClassDir("fl").root / "access" / f"{s}.txt"
        assert sheet.read_text() == f"sheet of {s} on {h}\n"
        assert sheet.stat().st_mode & 0o777 == 0o600
    # the order of the stages on the hosts
    kinds = [w.split()[0] if " " in w else w for w, _ in fleet.hosts.calls]
    assert kinds[:4] == ["raw", "host-setup.yml", "fleet-install.yml", "fleet-images.yml"]
    # then each host makes what lives in its engines from what was shipped (LXD's image)
    assert fleet.hosts.calls[4] == (
        f"command {remote.REMOTE_LABCTL} images build docker-app vm-amd64",
        ("h1", "h2", "h3"),
    )


def test_one_student_on_one_host_is_said_in_the_singular(fleet: Fleet) -> None:
    said: list[tuple[str, str, str]] = []
    fleet.inv = inventory.load(_inv(fleet.tmp, "h1 ansible_host=192.0.2.1\n"), lambda _a: True)
    fleet.up("id,name\ns0,Student 0\n", report=lambda *a: said.append(a))
    assert ("", "validate", "1 student, 1 lab host") in said
    assert ("h1", "placed", "1 student") in said


def test_a_class_over_hosts_keeps_its_lab_and_another_is_a_usage_error(fleet: Fleet) -> None:
    fleet.up()
    calls = len(fleet.hosts.calls)
    (fleet.tmp / "lab" / "lab.yaml").write_text(lab_yaml("flab2", VM, APP))
    with pytest.raises(LabctlError, match="class fl runs lab flab, not flab2") as err:
        fleet.up()
    assert err.value.code == ExitCode.USAGE and len(fleet.hosts.calls) == calls


def test_a_host_that_cannot_be_used_stops_the_first_run_before_anything_exists(
    fleet: Fleet,
) -> None:
    fleet.hosts.os_release["h2"] = "centos:9\n0\n"
    fleet.hosts.fail["h3@os-release"] = ("ssh: connect to host 192.0.2.3 port 22: refused", True)
    with pytest.raises(HostError) as err:
        fleet.up()
    assert "h2: runs centos:9" in err.value.message and "h3: no SSH" in err.value.message
    assert [w for w, _ in fleet.hosts.calls] == [fleet.hosts.calls[0][0]]  # only the probe
    assert not ClassDir("fl").root.exists()  # not even the class's folder


def test_a_host_failing_setup_gets_no_students_and_the_others_go_on(fleet: Fleet) -> None:
    fleet.hosts.fail["h2@host-setup.yml"] = ("Install the engines: no space left", False)
    result = fleet.up()
    by = {h.name: h for h in result.hosts}
    assert by["h2"].status == "failed" and by["h2"].stage == "setup"
    assert "no space left" in (by["h2"].error or "")
    assert {s.host for s in result.seats} == {"h1", "h3"}
    assert all(s.outcome == UP for s in result.seats)
    # the failed host was asked nothing after setup
    after = [hosts for w, hosts in fleet.hosts.calls if "host-setup" not in w and "raw" not in w]
    assert all("h2" not in hosts for hosts in after)


def test_a_hosts_labctl_refusing_is_said_in_its_own_words(fleet: Fleet) -> None:
    fleet.hosts.refuse["h2@class up"] = "dockerd does not answer"
    fleet.hosts.refuse["h3@class status"] = "the class state is damaged"
    result = fleet.up()
    by = {h.name: h for h in result.hosts}
    assert by["h2"].status == "failed" and by["h2"].error == (
        "class up failed there: dockerd does not answer (hint: run labctl doctor)"
    )
    assert all(s.outcome == FAILED for s in result.seats if s.host == "h2")
    assert all(s.outcome == UP for s in result.seats if s.host != "h2")
    folder = ClassDir("fl")
    spread = fleet_state.load(folder)
    assert spread is not None
    rows = status.status(folder, spread, fleet.hosts)
    on_h3 = [r for r in rows if r.host == "h3"]
    assert on_h3 and all(
        r.error == "host h3: class status failed there: the class state is damaged "
        "(hint: run labctl doctor)"
        for r in on_h3
    )


def test_when_no_host_is_left_the_refusal_says_why_each_is_out(fleet: Fleet) -> None:
    for host in ("h1", "h2", "h3"):
        fleet.hosts.fail[f"{host}@host-setup.yml"] = (f"{host}: libvirtd is masked", False)
    with pytest.raises(place.OverCommit) as refused:
        fleet.up()
    said = refused.value.message
    assert "fit 0 more (none)" in said
    for host in ("h1", "h2", "h3"):
        assert f"{host} failed at setup: {host}: libvirtd is masked" in said, said


def test_a_host_lost_mid_run_reports_its_students_and_replace_failed_moves_them(
    fleet: Fleet,
) -> None:
    fleet.hosts.fail["h2@class up"] = ("Failed to connect to the host via ssh", True)
    first = fleet.up()
    lost = [s for s in first.seats if s.host == "h2"]
    assert lost and all(s.outcome == FAILED and "h2" in (s.error or "") for s in lost)
    assert all(s.outcome == UP for s in first.seats if s.host != "h2")
    # a rerun without --replace-failed leaves them there (the host still does not answer)
    fleet.hosts.fail["h2@os-release"] = ("unreachable", True)
    again = fleet.up()
    assert [s.host for s in again.seats] == [s.host for s in first.seats]
    assert {h.name for h in again.hosts if h.status == "failed"} == {"h2"}
    # --replace-failed moves them, without moving anyone else
    moved = fleet.up(replace_failed=True)
    assert sorted(moved.moved) == sorted(s.student for s in lost)
    assert all(s.outcome == UP and s.host in ("h1", "h3") for s in moved.seats)
    same = {s.student: s.host for s in first.seats if s.host != "h2"}
    assert all(dict((s.student, s.host) for s in moved.seats)[k] == v for k, v in same.items())


def test_a_host_lost_before_its_roster_arrives_fails_its_students_with_the_reason(
    fleet: Fleet,
) -> None:
    fleet.hosts.fail["h3@inventory_hostname }}.csv"] = (
        "Failed to connect to the host via ssh: timeout",
        True,
    )
    result = fleet.up()
    lost = [s for s in result.seats if s.host == "h3"]
    assert lost and all(s.outcome == FAILED and "timeout" in (s.error or "") for s in lost)
    assert {h.name: h.stage for h in result.hosts if h.status == "failed"} == {"h3": "labs"}


def test_a_rerun_places_nobody_anew_and_a_too_small_fleet_refuses(fleet: Fleet) -> None:
    first = fleet.up()
    second = fleet.up()
    assert [s.host for s in second.seats] == [s.host for s in first.seats]
    fleet.hosts.fit = {"h1": 0, "h2": 0, "h3": 0}
    # nobody new: the placed students keep their hosts even when no host has room left
    assert [s.host for s in fleet.up().seats] == [s.host for s in first.seats]
    with pytest.raises(place.OverCommit):
        fleet.up(SIX + "s9,New\n")


def test_status_merges_every_host_and_collects_attempts_into_this_store(fleet: Fleet) -> None:
    fleet.up()
    folder = ClassDir("fl")
    spread = fleet_state.load(folder)
    assert spread is not None
    s0 = folder.require().seats["s0"]
    at = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)
    attempt = NewAttempt("flab", s0.instance, "s0", "ex1", "check", step="a", passed=True, at=at)
    recorded = shared().record(attempt)  # as the host's store would hold it
    fleet.hosts.attempts[str(s0.host)] = [to_json(recorded[0])]
    replace_instances(shared(), [("flab", s0.instance)], [])  # the controller had none
    fleet.hosts.fail[f"{'h2' if s0.host != 'h2' else 'h3'}@class status"] = ("unreachable", True)
    rows = status.status(folder, spread, fleet.hosts, status.collect)
    assert len(rows) == 6
    dark = [r for r in rows if r.error and "unreachable" in r.error]
    assert dark and all(r.guests == 0 and not r.answered for r in dark)
    assert all(r.answered for r in rows if r not in dark)
    assert all(r.guests_ready == 2 for r in rows if not r.error)
    assert [(r.student, r.outdated) for r in rows if r.outdated] == [
        ("s0", ("vm: CPUs 1 -> 1 of 2",))
    ]
    got = shared().attempts("flab", [s0.instance])
    assert [(a.student, a.exercise, a.passed, a.at) for a in got] == [("s0", "ex1", True, at)]
    # collecting again replaces, never doubles
    status.status(folder, spread, fleet.hosts, status.collect)
    assert len(shared().attempts("flab", [s0.instance])) == 1


def test_status_bounds_its_wait_and_a_host_past_it_is_named_not_answered(fleet: Fleet) -> None:
    fleet.up()
    folder = ClassDir("fl")
    spread = fleet_state.load(folder)
    assert spread is not None
    # as fan_out says a host its labctl hangs on (an engine that stopped answering)
    fleet.hosts.fail["h2@class status"] = (f"not done within {status.STATUS_SECONDS} s", False)
    rows = status.status(folder, spread, fleet.hosts)
    asked = [what for what, _ in fleet.hosts.calls if "class status" in what]
    assert [fleet.hosts.bounds[what] for what in asked] == [status.STATUS_SECONDS]
    late = [r for r in rows if r.host == "h2"]
    assert late and all(not r.answered for r in late)
    assert all(r.error == f"host h2: not done within {status.STATUS_SECONDS} s" for r in late)
    assert all(r.answered and r.guests_ready == 2 for r in rows if r.host != "h2")


def test_down_cleans_every_host_and_forgets_the_class_only_when_all_are_clean(
    fleet: Fleet,
) -> None:
    fleet.up()
    folder = ClassDir("fl")
    spread = fleet_state.load(folder)
    assert spread is not None
    fleet.hosts.fail["h3@class down"] = ("unreachable", True)
    partial = down.down(folder, spread, fleet.hosts)
    assert partial.cleaned == ("h1", "h2") and list(partial.left) == ["h3"]
    kept = fleet_state.load(folder)
    assert kept is not None and list(kept.hosts) == ["h3"]
    assert {s.host for s in folder.require().seats.values()} == {"h3"}
    del fleet.hosts.fail["h3@class down"]
    (folder.root / remote.ANSIBLE_LOG).write_text("=== the runs' output\n")
    (folder.root / "dashboard-tokens.json").write_text("{}")  # class serve was run
    done = down.down(folder, kept, fleet.hosts)
    assert done.complete and fleet.hosts.downed.count("h3") == 1
    assert folder.load() is None and not folder.root.exists()


def test_down_forget_runs_on_every_host_and_forgets_the_copy_here_once_its_host_is_clean(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from labctl.cli import app

    fleet.up()
    folder = ClassDir("fl")
    seats = folder.require().seats
    for seat in seats.values():  # the attempts class status collected here
        shared().record(NewAttempt("flab", seat.instance, seat.student, "ex1", "start"))
    on_h3 = sorted(s for s, seat in seats.items() if seat.host == "h3")
    assert on_h3 and len(on_h3) < len(seats)
    fleet.hosts.fail["h3@class down"] = ("unreachable", True)
    spread = fleet_state.load(folder)
    assert spread is not None
    partial = down.down(folder, spread, fleet.hosts, forget=True)
    downs = [what for what, _ in fleet.hosts.calls if "class down" in what]
    assert downs and all("class down --class fl --yes --forget" in what for what in downs)
    assert partial.forgotten is not None and partial.forgotten.attempts == len(seats) - len(on_h3)
    assert sorted({a.student for a in shared().attempts("flab")}) == on_h3
    assert [r.student for r in shared().seats("fl")] == on_h3
    del fleet.hosts.fail["h3@class down"]
    monkeypatch.setattr(inventory, "load", lambda _p: fleet.inv)
    monkeypatch.setattr(remote, "ansible_runner_for", lambda *_a: fleet.hosts)
    said = CliRunner().invoke(app, ["class", "down", "--class", "fl", "--forget", "--json"])
    assert said.exit_code == 0, said.output
    doc = json.loads(said.stdout)
    assert doc["cleaned"] == ["h3"] and doc["forgotten"]["students"] == on_h3
    assert shared().attempts("flab") == [] and shared().seats("fl") == []
    assert folder.load() is None
    assert "--forget" not in down.script("fl") and "--forget" in down.script("fl", True)


def test_attempts_survive_the_trip_as_json() -> None:
    from labctl.store.model import Attempt, Message

    at = datetime(2026, 12, 3, 9, 30, 5, tzinfo=timezone.utc)
    same: dict[str, Any] = {
        "lab": "l", "instance": "c-ana", "student": "ana", "exercise": "e", "kind": "check",
        "step": "s", "answer": "x", "passed": False, "answer_passed": True,
        "messages": (Message("w", "failed", "d", "n"),), "scored": False, "at": at,
        "made_by": "instructor",
    }  # fmt: skip
    a = Attempt(id=7, **same)
    assert from_json(json.loads(json.dumps(to_json(a)))) == NewAttempt(**same)
    with pytest.raises(ValueError):
        from_json({**to_json(a), "kind": "bogus"})


def test_a_class_on_one_host_is_not_taken_over_by_a_fleet(fleet: Fleet) -> None:
    from labctl.classroom.state import ClassState

    ClassDir("fl").save(ClassState("fl", "flab", "x", "y"))
    with pytest.raises(LabctlError, match="runs on this host alone") as err:
        fleet.up()
    assert err.value.code == ExitCode.USAGE  # nothing was done


def test_the_dashboard_asks_every_host_of_a_spread_class(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labctl.dashboard.data import Health
    from labctl.dashboard.health import ask_engines

    fleet.up()
    monkeypatch.setattr(inventory, "load", lambda _p: fleet.inv)
    monkeypatch.setattr(remote, "ansible_runner_for", lambda *_a: fleet.hosts)
    cls = ClassDir("fl").require()
    seen = ask_engines(cls)
    assert seen == {s: Health(2, 2, None, seat.host) for s, seat in cls.seats.items()}
    assert any("class status" in w for w, _ in fleet.hosts.calls)


def test_a_rerun_keeps_the_progress_page_part_below_each_sheet_it_brings_back(
    fleet: Fleet,
) -> None:
    from labctl.dashboard.auth import with_section

    result = fleet.up()
    seat = result.seats[0]
    sheet = ClassDir("fl").root / "access" / f"{seat.student}.txt"
    sheet.write_text(with_section(sheet.read_text(), "http://ctl:8765/", "tok-123"))
    fleet.up()
    said = sheet.read_text()
    assert said.startswith(f"sheet of {seat.student} on {seat.host}\n")
    assert said.endswith("Progress page token: tok-123\n")


def test_a_host_given_nobody_is_ready_all_the_same(fleet: Fleet) -> None:
    result = fleet.up("id,name\nana,Ana\n")
    assert [s.host for s in result.seats] == ["h1"]
    assert [h.status for h in result.hosts] == ["ready"] * 3


def test_the_exam_window_reaches_every_host_and_stays_on_the_controller(fleet: Fleet) -> None:
    from labctl.classroom import window as exam

    start = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
    end = datetime(2026, 12, 7, 11, 0, tzinfo=timezone.utc)
    fleet.up(window=exam.Window(start, end), max_parallel=3)
    ups = [what for what, _ in fleet.hosts.calls if "class up" in what]
    assert len(ups) == 1 and ups[0].endswith(
        " --lang en --max-parallel 3 --window-start 2026-12-07T09:00:00+00:00"
        " --window-end 2026-12-07T11:00:00+00:00; true"
    )
    kept = ClassDir("fl").require()
    assert exam.window_of(kept) == exam.Window(start, end)  # the dashboard and grades read it
    # a rerun that names only a new end keeps the start, and tells the hosts both ends again;
    # each host's own cores decide how many labs at once when --max-parallel is not given
    later = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
    fleet.up(window=exam.Window(None, later))
    again = [what for what, _ in fleet.hosts.calls if "class up" in what][-1]
    assert "--max-parallel" not in again
    assert again.endswith(
        " --window-start 2026-12-07T09:00:00+00:00 --window-end 2026-12-07T12:00:00+00:00; true"
    )
    with pytest.raises(SpecError, match="before it starts"):
        fleet.up(window=exam.Window(datetime(2026, 12, 7, 13, 0, tzinfo=timezone.utc), None))


def test_the_sheets_language_reaches_every_host_and_a_rerun_keeps_it(fleet: Fleet) -> None:
    fleet.up(lang="es")
    fleet.up()
    ups = [what for what, _ in fleet.hosts.calls if "class up" in what]
    assert len(ups) == 2 and all(" --lang es" in what for what in ups)
    assert ClassDir("fl").require().lang == "es"  # the progress page's section follows it


def test_a_progress_page_of_a_class_over_hosts_names_no_tunnel_through_a_lab_host(
    fleet: Fleet,
) -> None:
    from labctl.cli.class_serve import tunnel_host

    fleet.up()
    assert tunnel_host(ClassDir("fl")) is None  # the sheets' Host is each student's lab host
    fleet_state.forget(ClassDir("fl"))  # the same class on this server alone
    assert tunnel_host(ClassDir("fl")) == "labctl-fl"


def test_a_window_set_while_class_up_reaches_the_hosts_is_kept(fleet: Fleet) -> None:
    from labctl.classroom import window as exam

    fleet.up()
    end = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
    real = fleet.hosts.one

    def one(host: str, what: str) -> HostOutcome:
        if "os-release" in what:  # meanwhile, class window (before class up takes the lock)
            folder = ClassDir("fl")
            folder.save(exam.with_window(folder.require(), None, end))
        return real(host, what)

    fleet.hosts.one = one  # type: ignore[method-assign]
    fleet.up()  # a rerun: it read the class before reaching the hosts
    assert ClassDir("fl").require().window_end == "2026-12-07T12:00:00+00:00"
    last = [what for what, _ in fleet.hosts.calls if "class up" in what][-1]
    assert "--window-end 2026-12-07T12:00:00+00:00" in last


def test_class_window_of_a_class_over_hosts_is_set_on_every_host_and_here(fleet: Fleet) -> None:
    from typer.testing import CliRunner

    from labctl.cli import app

    def window(*args: str) -> Any:
        return CliRunner().invoke(app, ["class", "window", "--class", "fl", *args])

    fleet.up()
    hosts = sorted({s.host for s in ClassDir("fl").require().seats.values() if s.host})
    assert len(hosts) == 3
    said = window("--end", "2026-12-07T12:00", "--json")
    assert said.exit_code == 0, said.output
    end = "2026-12-07T12:00:00+00:00"
    shown = json.loads(said.stdout)
    assert (shown["start"], shown["end"], sorted(shown["set_on"])) == (None, end, hosts)
    assert fleet.hosts.windows == {h: ("-", end) for h in hosts}
    assert ClassDir("fl").require().window_end == end  # the dashboard and grades read it
    # a start added keeps the end, on every host too (each is given the whole window)
    assert window("--start", "2026-12-07T09:00").exit_code == 0
    start = "2026-12-07T09:00:00+00:00"
    assert fleet.hosts.windows == {h: (start, end) for h in hosts}
    # a host that does not answer keeps its window: named, exit 1; the others are cleared
    fleet.hosts.fail["h2@class window"] = ("ssh: connect to host h2: timed out", True)
    said = window("--clear")
    assert said.exit_code == ExitCode.FAILED
    assert "h2" in said.output and "timed out" in said.output
    assert fleet.hosts.windows["h2"] == (start, end)
    assert {fleet.hosts.windows[h] for h in hosts if h != "h2"} == {("-", "-")}
    assert ClassDir("fl").require().window_end is None
    del fleet.hosts.fail["h2@class window"]
    assert window("--clear").exit_code == 0 and fleet.hosts.windows["h2"] == ("-", "-")
    # one end opened: the other kept, on every host alike
    assert window("--start", "2026-12-07T09:00", "--end", "2026-12-07T12:00").exit_code == 0
    assert window("--start", "-").exit_code == 0
    assert set(fleet.hosts.windows.values()) == {("-", end)}
    # a host whose labs failed before it held the class has nothing to set: not an error
    fleet.hosts.no_class.add("h3")
    said = window("--end", "2026-12-07T13:00", "--json")
    assert said.exit_code == 0, said.output
    assert json.loads(said.stdout)["set_on"] == ["h1", "h2"] and fleet.hosts.windows["h3"] == (
        "-",
        end,
    )
    # class status over the hosts says the window too, under its table
    shown = CliRunner().invoke(app, ["class", "status", "--class", "fl"], env={"COLUMNS": "80"})
    closes = datetime(2026, 12, 7, 13, 0, tzinfo=timezone.utc)
    said_now = "open" if datetime.now(timezone.utc) <= closes else "ended"  # any day it runs
    last = shown.stdout.splitlines()[-1]
    assert last == f"Exam window … → 2026-12-07 13:00 UTC ({said_now})."


def test_a_roster_longer_than_max_students_is_refused_before_any_host_is_asked(
    fleet: Fleet,
) -> None:
    with pytest.raises(LabctlError, match="the roster has 6 students, --max-students is 5"):
        fleet.up(max_students=5)
    assert fleet.hosts.calls == [] and ClassDir("fl").load() is None


# -- the CLI's summary of class up -------------------------------------------------------------


def test_class_up_summary_names_each_failed_lab_and_counts_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    from labctl import console
    from labctl.cli.class_fleet import print_labs_up

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(console, "out", Console(file=out, width=80, no_color=True))
    monkeypatch.setattr(console, "err", Console(file=err, width=80, no_color=True))
    print_labs_up("c1", 3, [("bo (lab-b)", "no disk [full]"), ("cy", None)], " on 1 of 2 hosts")
    assert out.getvalue().splitlines() == ["bo (lab-b): no disk [full]", "cy"]
    assert err.getvalue().strip() == "Class c1: 1 of 3 labs up on 1 of 2 hosts."


def test_a_hosts_window_answer_is_read_whichever_labctl_wrote_it() -> None:
    # this labctl says an open end null; one of before said "-": both are open
    assert fleet_window._ends({"start": "-", "end": "2030-01-07T12:00:00+00:00"}) == {
        "start": None,
        "end": "2030-01-07T12:00:00+00:00",
    }
    assert fleet_window._ends({"class": "c", "start": None, "end": None}) == {
        "start": None,
        "end": None,
    }
