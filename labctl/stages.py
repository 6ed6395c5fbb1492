"""Lifecycles as data: a list of named stages and the one executor that runs them.

A stage is a name, what it does to a context, and optionally what undoes it (a temporary
object's removal), or a context manager it holds until the lifecycle ends (a lock). The
executor reports each stage as it starts, stops at the first error, checks for Ctrl-C
between stages, and always runs the undo steps of the stages that completed, last first, in
``finally``. Errors pass through unchanged: their type
carries the exit code (:mod:`labctl.errors`), rendered once at the CLI edge.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Generic, TypeVar

from labctl import cancel, console

C = TypeVar("C")

#: (guest, step, detail) -> None; guest "" means a lab-wide stage
Reporter = Callable[[str, str, str], None]


def quiet(_guest: str, _step: str, _detail: str) -> None:
    """A reporter that says nothing."""


@dataclass(frozen=True)
class Stage(Generic[C]):
    """One named step of a lifecycle."""

    name: str
    run: Callable[[C], None] | None = None
    undo: Callable[[C], None] | None = None  # run in ``finally`` once ``run`` succeeded
    hold: Callable[[C], AbstractContextManager[object]] | None = None  # entered, exited last
    describe: Callable[[C], str] | None = None  # the detail shown when the stage starts
    silent: bool = False  # not reported (a lock taken, say)


def execute(stages: Sequence[Stage[C]], ctx: C, report: Reporter = quiet) -> C:
    """Run ``stages`` in order on ``ctx``; undo what completed, last first, whatever happens.

    Ctrl-C is the interrupted error (exit 130, "run the same command again to resume"),
    naming the stage it came in: what each step did is saved, so a rerun goes on from there.
    """
    with ExitStack() as undo:
        for stage in stages:
            cancel.check()
            if not stage.silent:
                report("", stage.name, stage.describe(ctx) if stage.describe else "")
            try:
                if stage.hold is not None:
                    undo.enter_context(stage.hold(ctx))
                if stage.run is not None:
                    t0 = time.monotonic()
                    stage.run(ctx)
                    console.debug(f"stage {stage.name}: {time.monotonic() - t0:.2f} s")
            except KeyboardInterrupt as exc:
                raise cancel.interrupted(f"interrupted at stage {stage.name}") from exc
            if stage.undo is not None:
                undo.callback(stage.undo, ctx)
    return ctx
