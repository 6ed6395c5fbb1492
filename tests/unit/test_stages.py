"""The lifecycle executor: stages in order, reported, undone last-first whatever happens."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from labctl import cancel
from labctl.compare import runner as compare_runner
from labctl.errors import EngineError, ExitCode, LabctlError
from labctl.lab import down as lab_down
from labctl.lab import lifecycle
from labctl.stages import Stage, execute


@dataclass
class Ctx:
    log: list[str] = field(default_factory=list)


def step(name: str) -> Stage[Ctx]:
    return Stage(
        name, lambda c: c.log.append(f"run {name}"), lambda c: c.log.append(f"undo {name}")
    )


@contextmanager
def held(c: Ctx) -> Iterator[None]:
    c.log.append("take lock")
    try:
        yield
    finally:
        c.log.append("release lock")


def test_stages_run_in_order_and_are_undone_last_first() -> None:
    reported: list[tuple[str, str, str]] = []
    ctx = execute(
        [step("a"), Stage("lock", hold=held, silent=True), step("b")],
        Ctx(),
        lambda g, s, d: reported.append((g, s, d)),
    )
    assert ctx.log == [
        "run a", "take lock", "run b", "undo b", "release lock", "undo a",
    ]  # fmt: skip
    assert reported == [("", "a", ""), ("", "b", "")]  # the silent lock is not reported


def test_a_failing_stage_stops_the_list_and_what_completed_is_undone() -> None:
    def boom(c: Ctx) -> None:
        c.log.append("run boom")
        raise EngineError("the engine refused")

    ctx = Ctx()
    with pytest.raises(EngineError) as info:
        execute([step("a"), Stage("lock", hold=held), Stage("boom", boom), step("never")], ctx)
    assert info.value.code == ExitCode.ENGINE  # the error's type carries the exit code
    assert ctx.log == ["run a", "take lock", "run boom", "release lock", "undo a"]


def test_an_interrupt_between_stages_stops_and_undoes(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(c: Ctx) -> None:
        c.log.append("run a")
        cancel.CANCEL.set()

    ctx = Ctx()
    try:
        with pytest.raises(LabctlError) as info:
            execute([Stage("a", interrupt, lambda c: c.log.append("undo a")), step("b")], ctx)
    finally:
        cancel.CANCEL.clear()
    assert info.value.code == ExitCode.INTERRUPTED
    assert ctx.log == ["run a", "undo a"]


def test_ctrl_c_in_a_stage_is_the_interrupted_error_naming_it() -> None:
    def ctrl_c(c: Ctx) -> None:
        c.log.append("run b")
        raise KeyboardInterrupt

    ctx = Ctx()
    with pytest.raises(LabctlError) as info:
        execute([step("a"), Stage("lock", hold=held), Stage("b", ctrl_c), step("never")], ctx)
    assert (info.value.message, info.value.code) == ("interrupted at stage b", 130)
    assert info.value.hint == "run the same command again to resume"
    assert ctx.log == ["run a", "take lock", "run b", "release lock", "undo a"]


def test_describe_gives_the_detail_of_the_stage() -> None:
    reported: list[tuple[str, str, str]] = []
    execute(
        [Stage("network", lambda c: None, describe=lambda c: "lcbr1234")],
        Ctx(),
        lambda g, s, d: reported.append((g, s, d)),
    )
    assert reported == [("", "network", "lcbr1234")]


def test_lab_lifecycles_are_stage_lists() -> None:
    up = [s.name for s in lifecycle.UP_STAGES]
    assert up == ["validate", "lock", "preflight", "network", "identify", "guests"]
    assert [s.name for s in lab_down.DOWN_STAGES][0] == "lock"
    assert "destroy" in [s.name for s in lifecycle.RECREATE_STAGES]
    compare = [s.name for s in compare_runner.STAGES]
    assert compare[:3] == ["open", "lock", "host"] and compare[-1] == "claims"
    # a lock is held (released in finally), never taken by a stage that might not undo it
    stage_lists = (
        lifecycle.UP_STAGES,
        lab_down.DOWN_STAGES,
        lifecycle.RECREATE_STAGES,
        compare_runner.STAGES,
    )
    for stages in stage_lists:
        lock = next(s for s in stages if s.name == "lock")
        assert lock.hold is not None and lock.run is None


def test_verbose_shows_each_stage_and_host_command_with_its_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    from labctl import console, procs

    said = Console(record=True, width=200)
    monkeypatch.setattr(console, "err", said)
    monkeypatch.setattr(console, "VERBOSE", False)
    execute([step("a")], Ctx())
    procs.run(["true"])
    assert said.export_text() == ""  # not asked for: nothing
    monkeypatch.setattr(console, "VERBOSE", True)
    execute([step("a")], Ctx())
    procs.run(["sh", "-c", "exit 3"], check=False)
    lines = said.export_text().splitlines()
    assert re.fullmatch(r"stage a: \d+\.\d\d s", lines[0]), lines
    assert re.fullmatch(r"\$ sh -c 'exit 3': exit 3, \d+\.\d\d s", lines[1]), lines
