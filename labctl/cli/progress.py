"""Progress of long work, one line per item (a guest, an image).

On a terminal each item has a live line with a spinner and its time. Where the output is a log
(Vagrant's provisioner, CI, ``| tee``), a live display is only drawn when it stops, minutes
later; there every change is printed as a plain line of its own as it happens, as
``docker build --progress=plain`` does.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column


class Steps:
    """Items and what each is doing now; ``quiet`` shows nothing (``--json``)."""

    def __init__(self, con: Console, width: int = 0, quiet: bool = False) -> None:
        self.console = con
        self.plain = not quiet and not con.is_terminal
        self.quiet = quiet
        self.started = time.monotonic()
        self.tasks: dict[str, TaskID] = {}
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn(
                "[bold]{task.fields[item]}[/bold]",
                table_column=Column(min_width=width, no_wrap=True),
            ),
            TextColumn(
                "{task.description}", table_column=Column(overflow="ellipsis", no_wrap=True)
            ),
            TimeElapsedColumn(),
            console=con,
            disable=quiet or self.plain,
        )

    def __enter__(self) -> Steps:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def step(self, item: str, text: str, done: bool = False) -> None:
        """``item`` is doing ``text`` now (``done``: it has finished)."""
        if self.plain:
            at = time.monotonic() - self.started
            self.console.print(
                f"{at:6.1f}s {escape(item)}: {escape(text)}", highlight=False, soft_wrap=True
            )
            return
        if item not in self.tasks:
            self.tasks[item] = self.progress.add_task(text, item=item, total=None)
        self.progress.update(self.tasks[item], description=text)
        if done:
            self.progress.update(self.tasks[item], total=1, completed=1)

    def say(self, markup: str) -> None:
        """A line of its own, above the items' lines."""
        if not self.quiet:
            self.progress.console.print(markup)
