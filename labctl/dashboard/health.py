"""The guests' health per student, asked of the engines in the background.

``class status`` asks every engine about every guest of every student: seconds for a class,
too slow for a page that refreshes itself. A thread asks every ``every`` seconds and the pages
read its last answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from labctl.classroom.state import ClassDir, ClassState
from labctl.dashboard.data import Health
from labctl.errors import LabctlError


def ask_engines(state: ClassState) -> dict[str, Health]:
    """Every student's guests as ``class status`` sees them now.

    A class over several lab hosts is asked of every host at once (``fleet.status``), which
    also brings each host's attempts into this store: the pages then show the whole class.
    """
    from labctl.classroom.status import status
    from labctl.fleet import state as fleet_state

    folder = ClassDir(state.name)
    spread = fleet_state.load(folder)
    if spread is not None:
        from labctl.fleet import inventory, remote
        from labctl.fleet import status as fleet_status

        run = remote.ansible_runner_for(inventory.load(Path(spread.inventory)), 10, None)
        rows = fleet_status.status(folder, spread, run, fleet_status.collect)
        return {r.student: Health(r.guests_ready, r.guests, r.error, r.host) for r in rows}
    return {r.student: Health(r.guests_ready, r.guests, r.error) for r in status(state)}


#: an answer taking this long (seconds) is said above the grid, which shows an older one
SLOW = 60.0


class Watch:
    """The last answer of ``ask``, refreshed by a daemon thread."""

    def __init__(
        self,
        load: Callable[[], ClassState],
        ask: Callable[[ClassState], Mapping[str, Health]] = ask_engines,
        every: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load, self._ask, self.every, self._clock = load, ask, every, clock
        self._last: Mapping[str, Health] = {}
        self.error: str | None = None
        self._asking_since: float | None = None
        self._answered_at: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """Ask once now."""
        self._asking_since = self._clock()
        try:
            self._last = dict(self._ask(self._load()))
            self.error = None
            self._answered_at = datetime.now(timezone.utc)
        except (LabctlError, OSError) as exc:  # an engine down: say so on the page, go on
            self.error = str(exc)
        except Exception as exc:  # anything else must not end the thread: the page says it
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._asking_since = None

    def snapshot(self) -> Mapping[str, Health]:
        """The last answer (empty before the first)."""
        return self._last

    def notice(self) -> str | None:
        """What the pages say above the grid of the guests' health: why it is unknown, or that
        an answer is slow (a lab host or an engine that hangs) and which one the grid shows."""
        if self.error:
            return f"Guests' health unknown: {self.error}"
        since = self._asking_since
        if since is None or (waited := self._clock() - since) < SLOW:
            return None
        shown = (
            f"the grid shows the answer of {self._answered_at:%H:%M:%S} UTC"
            if self._answered_at
            else "none has come yet"
        )
        return (
            f"Asking for the guests' health for {int(waited)} s: a lab host or an engine is "
            f"slow to answer; {shown}."
        )

    def start(self) -> None:
        """Ask in the background until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                self.refresh()
                self._stop.wait(self.every)

        self._thread = threading.Thread(target=loop, name="labctl-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop asking."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
