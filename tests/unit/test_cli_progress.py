"""Progress of long work: live lines on a terminal, a plain line per change in a log."""

from __future__ import annotations

import io

from rich.console import Console

from labctl.cli.progress import Steps


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=80, color_system=None), out


def test_in_a_log_each_change_is_a_line_of_its_own_as_it_happens() -> None:
    con, out = console(terminal=False)
    with Steps(con) as steps:
        steps.say("▸ network 10.210.3.0/24")
        steps.step("kvm-full", "create")
        steps.step("kvm-full", "start")
        written = out.getvalue()  # before the work ends, not all at once at its end
        steps.step("kvm-full", "done restored, 9.2 s", done=True)
    lines = written.splitlines()
    assert lines[0] == "▸ network 10.210.3.0/24"
    assert [line.split(maxsplit=1)[1] for line in lines[1:]] == [
        "kvm-full: create",
        "kvm-full: start",
    ]
    assert all(line.split()[0].endswith("s") for line in lines[1:])  # seconds since the start
    assert out.getvalue().splitlines()[-1].endswith("kvm-full: done restored, 9.2 s")
    with Steps(con) as steps:  # a long line is never broken: a log is read by grep
        steps.step("kvm-full", "create " + "x" * 100)
    assert out.getvalue().splitlines()[-1].endswith("kvm-full: create " + "x" * 100)


def test_on_a_terminal_an_item_keeps_one_line() -> None:
    con, out = console(terminal=True)
    with Steps(con, width=14) as steps:
        steps.step("kvm-full", "create")
        steps.step("kvm-full", "done restored, 9.2 s", done=True)
        steps.step("docker-app", "done booted, 1.0 s", done=True)
    # a live display clears its lines (ESC [2K) and draws them again: the last frame is last
    last = out.getvalue().rsplit("\x1b[2K", 1)[-1].splitlines()[:-1]
    assert [line.split()[0] for line in last] == ["kvm-full", "docker-app"]  # one line each
    assert "done restored, 9.2 s" in last[0] and "done booted, 1.0 s" in last[1]
    assert "kvm-full: create" not in out.getvalue()  # no plain log lines on a terminal


def test_quiet_shows_nothing() -> None:
    for terminal in (False, True):
        con, out = console(terminal)
        with Steps(con, quiet=True) as steps:
            steps.say("▸ network")
            steps.step("kvm-full", "create", done=True)
        assert out.getvalue() == ""
