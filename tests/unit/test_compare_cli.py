"""``labctl compare`` in-process: registered, documented, and refusing a lab that is not up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.backends.host_side import replaced_images
from labctl.cli import app
from labctl.compare import results
from labctl.errors import LabctlError
from labctl.instance.state import InstanceDir
from tests.unit.compare_data import fig, report

runner = CliRunner()


def test_compare_is_a_command_with_its_options() -> None:
    result = runner.invoke(app, ["compare", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--quick", "--json", "--html", "--lab", "--instance", "--restart-guests"):
        assert option in result.output


def test_compare_refuses_a_lab_that_is_not_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABCTL_STATE", str(tmp_path))
    result = runner.invoke(app, ["compare", "--quick", "-i", "nobody"])
    assert isinstance(result.exception, LabctlError)
    assert "is not up" in result.exception.message


def test_results_are_kept_outside_run_and_latest_is_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABCTL_STATE", str(tmp_path))
    inst = InstanceDir("virtualization", "t1")
    first = report([fig("cpu", "host", [1.0, 1.0, 1.0])])
    path = results.save(first, inst)
    assert path.parent == inst.path / "compare" and inst.run not in path.parents
    assert path.name == "20260101T000000+0000.json"
    assert results.load_latest(inst) == first
    assert results.load_latest(InstanceDir("virtualization", "t2")) is None


def test_replaced_base_images_of_a_running_qemu_are_found(tmp_path: Path) -> None:
    fd = tmp_path / "123" / "fd"
    fd.mkdir(parents=True)
    live = tmp_path / "overlay.qcow2"
    live.write_bytes(b"qcow")
    os.symlink(live, fd / "10")
    os.symlink("/var/cache/labctl/images/.vm-amd64.old-9/disk.qcow2 (deleted)", fd / "11")
    os.symlink("/dev/null", fd / "12")
    assert replaced_images(123, proc=tmp_path) == [
        "/var/cache/labctl/images/.vm-amd64.old-9/disk.qcow2"
    ]


@pytest.mark.parametrize("given", [False, True])
def test_compare_writes_its_html_beside_the_results_unless_told_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: bool
) -> None:
    from labctl.compare import runner as compare_runner

    saved = tmp_path / "compare" / "20260101T000000+0000.json"
    saved.parent.mkdir()
    done = report([fig("cpu", "host", [1.0, 1.0, 1.0])])
    monkeypatch.setattr(compare_runner, "run", lambda *a, **kw: (done, saved))
    chosen = tmp_path / "elsewhere" / "mine.html"
    chosen.parent.mkdir()
    args = ["compare", "--quick", *(["--html", str(chosen)] if given else [])]
    result = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    html = chosen if given else saved.with_suffix(".html")
    assert html.read_text().startswith("<!DOCTYPE html>")
    if not given:  # beside the results it is root's, as they are
        assert html.stat().st_mode & 0o777 == 0o600
    assert not (saved.with_suffix(".html").exists() and given)
    # Each path whole on its own line, however long, so it can be pasted into a browser.
    assert f"HTML report: {html}" in result.stderr.splitlines()
    assert f"Saved: {saved}" in result.stderr.splitlines()
