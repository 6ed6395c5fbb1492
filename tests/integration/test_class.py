"""A two-student class on the real engines: up, status, verify (isolation holds), down, no leak.

Each student's lab has one guest per engine (the busybox VM, the system container, the app
container): cheap under TCG, and every kind of guest is probed towards the other student and
the host. The class and student names are random, so nothing of a user's own is touched; the
commands run in-process through the CLI, as an instructor types them.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.classroom.roster import account_exists
from labctl.classroom.state import classes
from labctl.cli import app
from labctl.instance.state import InstanceDir
from tests.integration.engines import inventory
from tests.integration.labs import write_lab
from tests.labs import CONTAINERS, VM, lab_yaml

LAB = lab_yaml("cls", CONTAINERS, VM)

cli = CliRunner()


def run(*args: str) -> str:
    result = cli.invoke(app, list(args), env={"COLUMNS": "80"})
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_a_two_student_class_is_isolated_and_leaves_nothing(
    tmp_path_factory: pytest.TempPathFactory, built_images: list[str], state_root: Path
) -> None:
    path, lab = write_lab(tmp_path_factory, "cls", LAB)
    name = "c" + secrets.token_hex(2)
    ids = ["t" + secrets.token_hex(3) for _ in range(2)]
    instances = [f"{name}-{i}" for i in ids]
    for i, instance in zip(ids, instances, strict=True):
        assert not account_exists(i) and inventory(lab.name, instance).empty
    roster = path.parent / "roster.csv"
    roster.write_bytes(
        b"\xef\xbb\xbfid,name,email\r\n"
        + f"{ids[0]},Ana García,ana@example.org\r\n{ids[1]},Bo Núñez,\r\n".encode()
    )
    try:
        up = json.loads(run("class", "up", str(roster), str(path), "--class", name, "--json"))
        assert [(s["student"], s["ok"]) for s in up["students"]] == [(i, True) for i in ids]
        # a rerun finds every lab up and changes nothing
        again = json.loads(run("class", "up", str(roster), str(path), "--class", name, "--json"))
        assert [(s["student"], s["ok"]) for s in again["students"]] == [(i, True) for i in ids]

        status = json.loads(run("class", "status", "--class", name, "--json"))
        rows = {r["student"]: r for r in status["students"]}
        assert rows[ids[0]]["name"] == "Ana García"
        assert all((r["guests_ready"], r["guests"]) == (3, 3) for r in rows.values())
        table = run("class", "status", "--class", name)
        assert all(len(line) <= 80 for line in table.splitlines()) and ids[1] in table
        # a student's instance is an ordinary lab instance for every other command
        run("status", "--lab", lab.name, "--instance", instances[0])

        report = json.loads(run("class", "verify", "--class", name, "--json"))
        probes = report["probes"]
        print(f"\nverify: {len(probes)} probes, leaks {report['leaks']}")
        assert report["isolated"] and not report["leaks"] and not report["errors"]
        # both directions, from every kind of guest, to every kind of guest of the other
        crossing = {
            (p["student"], p["source"], p["target"].split("/")[1], p["kind"])
            for p in probes
            if not p["expect_open"] and p["target"] != "host" and p["source"] != "account"
        }
        guests = ("vm", "lxc-system", "docker-app")
        assert crossing == {
            (s, src, dst, kind)
            for s in ids
            for src in guests
            for dst in guests
            for kind in ("ping", "tcp")
        }
        assert all(not p["reached"] for p in probes if not p["expect_open"])
        # each student's account on the server (its uid, labctl's firewall): own guests and
        # published port open, the other student's closed
        account = [p for p in probes if p["source"] == "account"]
        assert {(p["student"], p["target"], p["expect_open"]) for p in account} == {
            (s, f"{t}/{g}", s == t) for s in ids for t in ids for g in guests
        }
        assert all(p["reached"] == p["expect_open"] for p in account), account
        own = [p for p in probes if p["expect_open"] and p["source"] != "account"]
        assert len(own) == 2 * 6 and all(p["reached"] or p["known"] for p in own)
        # the one own path the engines block, as tests/integration/test_isolation.py knows
        assert {(p["source"], p["target"].split("/")[1]) for p in own if not p["reached"]} == {
            ("lxc-system", "vm")
        }
    finally:
        down = cli.invoke(app, ["class", "down", "--class", name], env={"COLUMNS": "80"})
    assert down.exit_code == 0, (down.output, down.exception)
    for i, instance in zip(ids, instances, strict=True):
        left = inventory(lab.name, instance)
        assert left.empty, f"left behind after class down: {left}"
        assert not InstanceDir(lab.name, instance).path.exists()
        assert not account_exists(i)
    assert name not in classes()
