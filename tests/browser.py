"""Headless Chromium driven by Selenium (Debian's chromium and chromium-driver), for the dashboard.

Screenshots go to ``tests/artifacts/screenshots/`` (git-ignored), kept after the run.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.ci import running_in_ci

SHOTS = Path(__file__).parent / "artifacts" / "screenshots"


def free_port() -> int:
    """A TCP port nothing listens on now (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tools() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[object]:
    """A headless Chromium under Selenium; skipped (failed in CI) when it is not installed."""
    tools = _tools()
    if tools is None:
        reason = "chromium and chromium-driver are not installed (labctl host setup --test-tools)"
        if running_in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = tools[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-sync",
        "--disable-component-update",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=tools[1]), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shoot(driver: object, name: str) -> Path:
    """Save a screenshot of the whole page (beyond the window) as ``SHOTS/name.png``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    size = driver.execute_script(  # type: ignore[attr-defined]
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    shot = driver.execute_cdp_cmd(  # type: ignore[attr-defined]
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def log_in(driver: object, base: str, token: str) -> None:
    """Log in through the form, as a person would."""
    from selenium.webdriver.common.by import By

    from labctl.dashboard.app import COOKIE

    driver.get(base + "login")  # type: ignore[attr-defined]
    driver.delete_cookie(COOKIE)  # type: ignore[attr-defined]  # an earlier login's, if any
    driver.find_element(By.ID, "token").send_keys(token)  # type: ignore[attr-defined]
    driver.find_element(By.ID, "login").click()  # type: ignore[attr-defined]
    # the click only starts the form's POST: a page asked for before its answer has set the
    # session cookie is the login page again, for good (likely what failed CI's fleet test once)
    wait_for(
        lambda: driver.get_cookie(COOKIE) is not None,  # type: ignore[attr-defined]
        20,
        "the login's session cookie",
    )


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true.

    An element the page replaced between finding it and reading it (the live grid swaps its
    rows), or one not there yet, counts as "not yet", as Selenium's own waits take it.
    """
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if predicate():
                return
        except (StaleElementReferenceException, NoSuchElementException):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def served(app: object, port: int) -> Iterator[str]:
    """Run an ASGI app on uvicorn in a thread on 127.0.0.1:port; its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, "uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def class_serve(
    name: str, port: int, env: dict[str, str] | None = None, *extra: str
) -> tuple[subprocess.Popen[str], str]:
    """``labctl class serve --class NAME`` as a subprocess, listening; it and its token."""
    import requests

    server = subprocess.Popen(
        [sys.executable, "-m", "labctl", "class", "serve", "--class", name,
         "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**(env if env is not None else os.environ), "COLUMNS": "200"},
    )  # fmt: skip
    assert server.stdout is not None
    token = ""
    for _ in range(10):
        if found := re.search(r"stored hashed\): (\S+)", server.stdout.readline()):
            token = found.group(1)
            break
    if not token:
        server.kill()
        _, err = server.communicate(timeout=30)
        raise AssertionError(f"class serve printed no token: {err}")

    def listening() -> bool:
        try:
            requests.get(f"http://127.0.0.1:{port}/login", timeout=2)
        except requests.ConnectionError:
            return False
        return True

    wait_for(listening, 30, "class serve to listen")
    return server, token
