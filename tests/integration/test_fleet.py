"""A class over three lab hosts, for real: ``labctl class up --hosts`` as an instructor runs it.

The lab hosts are simulated (``fleet_hosts``: LXD system containers with systemd, sshd,
Docker and libvirt inside, reached over SSH as real servers are) and run the reduced lab
``fleet-mini`` (one VirtIO VM under the host's own accelerator, and the web app's container):
three full default labs do not fit three nested hosts on a 2-core machine. The controller is
this machine's labctl, with its own state directory.

One run, in order: bad inventories refused with nothing created anywhere; the class placed over
three hosts while the third is frozen mid-run (its students reported with the reason, the others
up); ``class status`` over every host; a student logs in to their host with their access
sheet's key and runs a check, which reaches the controller's store and ``class report``; the
dashboard shows every host's students; ``--replace-failed`` moves the frozen host's students to
the other two; ``class down`` leaves every host as it was before the class (compared).
Then a host whose libvirt cannot start fails host setup for real: it is reported at that
stage with systemd's reason, the class goes to the other host, and a rerun once it is
mended makes it ready without moving anyone.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labctl.fleet.inventory import LabHost
from labctl.fleet.remote import REMOTE_LABCTL
from labctl.keys import ensure_keypair
from tests import browser
from tests.integration import fleet_hosts

pytestmark = pytest.mark.integration

LAB = "fleet-mini"
CLASS = "fl"
ROSTER = "id,name\nana,Ana García\nbo,Bo Ruiz\ncy,Cy Pérez\ndi,Di Soto\n"
#: what a lab host holds of a class, listed before the class and after ``class down``
INVENTORY_SCRIPT = (
    "virsh -q list --all --name | sort; "
    "docker ps -a --format '{{.Names}}' | sort; "
    "docker network ls --format '{{.Name}}' | sort; "
    "getent passwd | cut -d: -f1 | sort; "
    "find /var/lib/labctl/classes /var/lib/labctl/fleet -mindepth 1 2>/dev/null | sort; "
    # labctl's own firewall entries, each commented with its lab/instance or account (the
    # engines' own empty tables, made the first time they add a rule, are not the class's)
    'nft list table inet labctl 2>/dev/null | grep -o \'comment "labctl [^"]*"\' | sort'
)


OS_RELEASE_KEPT = "/root/os-release.labctl-test"
OLD_DEBIAN = shlex.quote('s/^VERSION_ID=.*/VERSION_ID="11"/')


@dataclass
class Sims:
    base: Path
    hosts: list[LabHost]
    inventory: Path
    key: Path
    state: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "LABCTL_STATE": str(self.state)}

    def labctl(self, *args: str, code: int | None = 0, timeout: float = 1800) -> str:
        """What ``labctl ARGS`` printed, stdout then stderr (for messages)."""
        done = self.run(*args, code=code, timeout=timeout)
        return done.stdout + done.stderr

    def json(self, *args: str, code: int | None = 0) -> Any:
        """``labctl ARGS`` whose stdout is JSON (warnings go to stderr)."""
        done = self.run(*args, code=code)
        assert done.stdout.strip(), (args, done.returncode, done.stderr)
        return json.loads(done.stdout)

    def run(
        self, *args: str, code: int | None = 0, timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "labctl", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if code is not None:
            assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        return done

    def on(self, host: LabHost, script: str) -> str:
        done = subprocess.run(
            [fleet_hosts.client(), "exec", host.name, "--", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout


@pytest.fixture(scope="module")
def sims(built_images: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sims]:
    # the hosts are labctl/system containers, and class up wants the lab's images built here
    base = tmp_path_factory.mktemp("fleet")
    run = f"t{os.getpid() % 100000}"
    key = ensure_keypair(base / "id_ed25519", "labctl fleet test")
    hosts = fleet_hosts.launch(fleet_hosts.host_names(run, 3), key.public_line)
    try:
        inventory = fleet_hosts.write_inventory(hosts, base / "hosts.ini", key.private)
        yield Sims(base, hosts, inventory, key.private, base / "controller-state")
    finally:
        fleet_hosts.destroy(hosts)
        assert fleet_hosts.leftovers(run) == []


def _roster(sims: Sims) -> Path:
    path = sims.base / "roster.csv"
    path.write_text(ROSTER)
    return path


def test_bad_inventories_are_refused_before_anything_exists(sims: Sims) -> None:
    roster = _roster(sims)
    good = sims.inventory.read_text()
    cases = {
        "unknown": (
            good.replace("[lab_hosts]\n", "[lab_hosts]\nnowhere.invalid\n"),
            2,
            "unknown host nowhere.invalid",
        ),
        "twice": (
            good.replace(
                "[lab_hosts]\n",
                f"[lab_hosts]\n{sims.hosts[1].name}-b ansible_host={sims.hosts[0].address}\n",
            ),
            2,
            "are the same machine",
        ),
        "no-ssh": (
            good.replace(
                f"{sims.hosts[2].name} ansible_host={sims.hosts[2].address}",
                f"{sims.hosts[2].name} ansible_host={sims.hosts[2].address} ansible_port=2",
            ),
            3,
            f"{sims.hosts[2].name}: no SSH",
        ),
    }
    before = [sims.on(h, INVENTORY_SCRIPT) for h in sims.hosts]
    for name, (text, code, said) in cases.items():
        bad = sims.base / f"{name}.ini"
        bad.write_text(text)
        out = sims.labctl(
            "class", "up", str(roster), LAB, "--class", CLASS, "--hosts", str(bad), code=code
        )
        assert said in out, (name, out)
        assert not (sims.state / "classes" / CLASS).exists(), name
    # a host of a system labctl does not set up: its os-release says Debian 11 for a while
    odd = sims.hosts[1]
    sims.on(odd, f"cp -P /etc/os-release {OS_RELEASE_KEPT} && sed -i {OLD_DEBIAN} /etc/os-release")
    try:
        out = sims.labctl(
            "class", "up", str(roster), LAB, "--class", CLASS, "--hosts", str(sims.inventory),
            code=3,
        )  # fmt: skip
    finally:
        sims.on(odd, f"rm /etc/os-release && mv {OS_RELEASE_KEPT} /etc/os-release")
    assert f"{odd.name}: runs debian:11, not one of debian:12" in out, out
    assert not (sims.state / "classes" / CLASS).exists()
    assert [sims.on(h, INVENTORY_SCRIPT) for h in sims.hosts] == before


def _wait_placed(sims: Sims, proc: subprocess.Popen[str], timeout: float = 1200) -> dict[str, str]:
    """Who is placed where, once ``class up`` has placed the class (read from its state)."""
    path = sims.state / "classes" / CLASS / "class.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            seats = json.loads(path.read_text())["seats"]
        except (OSError, ValueError, KeyError):
            seats = {}
        if seats and all(s.get("host") for s in seats.values()):
            return {k: v["host"] for k, v in seats.items()}
        time.sleep(0.5)
    raise AssertionError("class up placed nobody in time")


def test_a_class_over_three_hosts_one_lost_mid_run(sims: Sims) -> None:
    roster = _roster(sims)
    before = {h.name: sims.on(h, INVENTORY_SCRIPT) for h in sims.hosts}
    lost = sims.hosts[2]
    up = ["class", "up", str(roster), LAB, "--class", CLASS, "--hosts", str(sims.inventory)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl", *up, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=sims.env(),
    )
    try:
        placed = _wait_placed(sims, proc)
        assert set(placed.values()) <= {h.name for h in sims.hosts}
        fleet_hosts.cut_off(lost)  # mid-run: its students' labs are being brought up
        out, err = proc.communicate(timeout=1800)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    said = json.loads(out)
    hosts = {h["name"]: h for h in said["hosts"]}
    assert hosts[lost.name]["status"] == "failed" and hosts[lost.name]["stage"] == "labs"
    assert all(hosts[h.name]["status"] == "ready" for h in sims.hosts[:2]), hosts
    seats = {s["student"]: s for s in said["students"]}
    on_lost = [s for s, h in placed.items() if h == lost.name]
    assert on_lost, f"nobody was placed on {lost.name}: {placed}"
    for s in on_lost:
        assert seats[s]["outcome"] == "failed" and lost.name in seats[s]["error"], seats[s]
    for s, seat in seats.items():
        if s not in on_lost:
            assert seat["outcome"] == "up", seat

    # status over every host: the lost host's students say so, the others are ready
    status = sims.json("class", "status", "--class", CLASS, "--json")
    rows = {r["student"]: r for r in status["students"]}
    for s, r in rows.items():
        if s in on_lost:
            assert not r["answered"] and "unreachable" in (r["error"] or ""), r
        else:
            assert r["guests"] == 2 and r["guests_ready"] == 2, r

    # a student of a working host: their sheet points at their host, its key logs them in,
    # and the check they run there reaches this controller's store and report
    student = next(s for s in seats if s not in on_lost)
    host = next(h for h in sims.hosts if h.name == placed[student])
    access = sims.state / "classes" / CLASS / "access"
    sheet = (access / f"{student}.txt").read_text()
    assert f"HostName {host.address}" in sheet
    key = access / f"{student}_ed25519"
    ssh = [
        "ssh",
        "-i",
        str(key),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        f"{student}@{host.address}",
    ]
    done = subprocess.run(
        [*ssh, "labctl", "exercise", "check", "app-contenido"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert "app-contenido" in done.stdout + done.stderr, done
    report = sims.json("class", "report", "--class", CLASS, "--attempts", "--format", "json")
    assert any(a["student"] == student and a["exercise"] == "app-contenido" for a in report)

    # the dashboard: every host's students in one grid
    _dashboard(sims, {s: placed[s] for s in seats})

    # the exam window: each host that answers takes it, the lost one is named (exit 1)
    end = "2030-01-07T12:00:00+00:00"
    window = sims.json("class", "window", "--class", CLASS, "--end", end, "--json", code=1)
    assert set(window["left"]) == {lost.name} and window["end"] == end, window
    for h in sims.hosts[:2]:
        if h.name in placed.values():
            there = sims.on(h, f"{REMOTE_LABCTL} class window --class {CLASS} --json")
            assert json.loads(there)["end"] == end, (h.name, there)

    # --replace-failed: the frozen host's students move to the others, nobody else moves
    moved = sims.json(*up, "--replace-failed", "--json")
    now = {s["student"]: s for s in moved["students"]}
    assert all(s["outcome"] == "up" for s in now.values()), now
    assert all(now[s]["host"] != lost.name for s in on_lost)
    assert all(now[s]["host"] == placed[s] for s in placed if s not in on_lost)

    # down: the lost host back first (a class down cannot clean a host it cannot reach)
    fleet_hosts.restore(lost)
    sims.labctl("class", "down", "--class", CLASS)
    assert not (sims.state / "classes" / CLASS).exists()
    for h in sims.hosts:
        after = sims.on(h, INVENTORY_SCRIPT).splitlines()
        was = before[h.name].splitlines()
        assert after == was, (h.name, sorted(set(after) ^ set(was)))


#: a lab host whose libvirt cannot start: host setup fails there for real (systemd says so)
BREAK_LIBVIRT = (
    "systemctl stop libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket"
    " && systemctl mask --runtime libvirtd.service"
)
MEND_LIBVIRT = (
    "systemctl unmask --runtime libvirtd.service"
    " && systemctl start libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket"
)


def test_a_host_failing_setup_is_reported_and_the_others_go_on(sims: Sims) -> None:
    # after the class above went down on these hosts: a second class reuses their install
    # (labctl's link in /usr/local/bin went with that class's last account; its venv stays)
    good, bad = sims.hosts[0], sims.hosts[1]
    inventory = fleet_hosts.write_inventory([good, bad], sims.base / "two.ini", sims.key)
    roster = sims.base / "two.csv"
    roster.write_text("id,name\neve,Eve Núñez\nfin,Fin Gil\n")
    up = ["class", "up", str(roster), LAB, "--class", "fs", "--hosts", str(inventory), "--json"]
    before = {h.name: sims.on(h, INVENTORY_SCRIPT) for h in (good, bad)}
    sims.on(bad, BREAK_LIBVIRT)
    try:
        said = sims.json(*up, code=1)
    finally:
        sims.on(bad, MEND_LIBVIRT)
    hosts = {h["name"]: h for h in said["hosts"]}
    assert hosts[bad.name]["status"] == "failed" and hosts[bad.name]["stage"] == "setup", hosts
    assert "libvirtd" in hosts[bad.name]["error"], hosts[bad.name]
    assert hosts[good.name]["status"] == "ready", hosts[good.name]
    # nobody waits for the broken host: the class is placed on the one that works
    assert {(s["outcome"], s["host"]) for s in said["students"]} == {("up", good.name)}

    # mended, a rerun does what is missing: the host passes setup, nobody moves
    again = sims.json(*up)
    hosts = {h["name"]: h for h in again["hosts"]}
    assert hosts[bad.name]["status"] == "ready", hosts[bad.name]
    assert {(s["outcome"], s["host"]) for s in again["students"]} == {("up", good.name)}

    sims.labctl("class", "down", "--class", "fs")
    for h in (good, bad):
        after = sims.on(h, INVENTORY_SCRIPT).splitlines()
        was = before[h.name].splitlines()
        assert after == was, (h.name, sorted(set(after) ^ set(was)))


def _dashboard(sims: Sims, placed: dict[str, str]) -> None:
    port = browser.free_port()
    server, token = browser.class_serve(CLASS, port, sims.env())
    try:
        base = f"http://127.0.0.1:{port}/"
        with browser.chromium() as b:
            browser.log_in(b, base, token)

            def every_host() -> bool:
                page = str(b.page_source)  # type: ignore[attr-defined]
                return all(h in page for h in set(placed.values()))

            # the health thread asks every host over SSH; the live grid (not reloaded here)
            # names each student's host once it has the answer
            try:
                browser.wait_for(every_host, 180, "every host in the grid")
            except AssertionError:  # what the page and the server said, for the next reader
                text = b.find_element("tag name", "body").text  # type: ignore[attr-defined]
                err = _stop(server)
                raise AssertionError(f"hosts {sorted(set(placed.values()))} not all in:\n"
                                     f"{text}\nclass serve's stderr:\n{err}") from None  # fmt: skip
            browser.shoot(b, "fleet-grid")
            page = str(b.page_source)  # type: ignore[attr-defined]
            assert all(f"row-{s}" in page for s in placed), page
    finally:
        if server.poll() is None:
            _stop(server)


def _stop(server: subprocess.Popen[str]) -> str:
    """Stop ``class serve`` (killed if it does not end on SIGTERM); what it said on stderr."""
    server.terminate()
    try:
        return server.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        server.kill()
        return server.communicate()[1]
