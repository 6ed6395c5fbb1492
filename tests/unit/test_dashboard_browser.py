"""The dashboard in headless Chromium, on a synthetic class: log in, every page, screenshots.

Fast (no engines): the pages a person sees, the live refresh, a student kept to their own
page, a reset confirmed through its form. Screenshots: tests/artifacts/screenshots/unit-*.png.
"""

from __future__ import annotations

from labctl.dashboard.app import Settings, create_app
from labctl.dashboard.data import Attempt, ListSource
from tests import browser
from tests.unit import dashboard_data as d


class Growing:
    """Attempts that keep coming, as in a class."""

    def __init__(self, items: list[Attempt]) -> None:
        self.items = items

    def attempts(self, student: str | None = None, exercise: str | None = None) -> list[Attempt]:
        return ListSource(self.items).attempts(student, exercise)


def test_the_dashboard_in_chromium() -> None:
    from selenium.webdriver.common.by import By

    items = list(d.attempts())
    source = Growing(items)
    done: list[tuple[str, str | None, str | None]] = []

    def reset(student: str, exercise: str | None, guest: str | None) -> str:
        done.append((student, exercise, guest))
        return f"{student}: exercise {exercise} starts over"

    settings = Settings(
        load=lambda: d.DATA, source=source, tokens=d.TOKENS, health=lambda: d.HEALTH,
        now=lambda: d.NOW, rules=d.RULES, reset=reset, guests=("vm", "box"),
        refresh_seconds=1,
    )  # fmt: skip
    with browser.served(create_app(settings), browser.free_port()) as base, browser.chromium() as b:
        b.get(base)  # type: ignore[attr-defined]
        assert "Log in" in b.page_source  # type: ignore[attr-defined]
        browser.log_in(b, base, d.INSTRUCTOR)
        browser.wait_for(lambda: "row-ana" in b.page_source, what="the grid")  # type: ignore[attr-defined]
        grid = b.find_element(By.ID, "grid").text  # type: ignore[attr-defined]
        assert "Ana García" in grid and "Cy <script>" in grid and "2/2" in grid
        assert b.find_elements(By.CSS_SELECTOR, "td.cell.done")  # type: ignore[attr-defined]
        assert b.find_elements(By.CSS_SELECTOR, "td.cell.stuck")  # type: ignore[attr-defined]
        browser.shoot(b, "unit-grid")

        # the live refresh: a new attempt shows up without reloading the page
        items.append(Attempt("bo", "kvm", "accel", "check", d.at(29.5), True, None, ("ok",)))
        browser.wait_for(
            lambda: "1/1" in b.find_element(By.ID, "row-bo").text,
            10,
            "the live update",  # type: ignore[attr-defined]
        )

        b.find_element(By.LINK_TEXT, "bo").click()  # type: ignore[attr-defined]
        browser.wait_for(lambda: "Every attempt" in b.page_source, what="bo's page")  # type: ignore[attr-defined]
        attempts = b.find_element(By.ID, "attempts").text  # type: ignore[attr-defined]
        assert attempts.count("the guest's CPU is not x86_64") == 4
        browser.shoot(b, "unit-student")

        b.get(base + "exercises/emu")  # type: ignore[attr-defined]
        steps = b.find_element(By.ID, "steps").text  # type: ignore[attr-defined]
        assert "Which CPU?" in steps and "bo" in steps
        assert "wrong answers: " in steps and "x86_64" in steps and "(2 students)" in steps
        browser.shoot(b, "unit-exercise")

        b.get(base + "actions/reset?student=bo&exercise=emu")  # type: ignore[attr-defined]
        browser.shoot(b, "unit-confirm")
        assert done == []
        b.find_element(By.ID, "confirm").click()  # type: ignore[attr-defined]
        # the confirm page says "starts over" too: wait for the action itself, then its page
        browser.wait_for(lambda: bool(done), what="the reset")
        assert done == [("bo", "emu", None)]

        # a student: their own page only
        b.delete_all_cookies()  # type: ignore[attr-defined]
        browser.log_in(b, base, d.ANA)
        browser.wait_for(lambda: b.current_url.endswith("/students/ana"), what="ana's page")  # type: ignore[attr-defined]
        assert "reset…" not in b.page_source  # type: ignore[attr-defined]
        browser.shoot(b, "unit-student-own")
        b.get(base + "students/bo")  # type: ignore[attr-defined]
        assert "403" in b.find_element(By.TAG_NAME, "h1").text  # type: ignore[attr-defined]
