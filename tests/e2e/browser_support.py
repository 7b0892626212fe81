"""What the browser tests share: the review service served for real (uvicorn on a loopback
port, a fresh SQLite database, one imported batch), Debian's headless Chromium driven through
Selenium, and the keyboard and page helpers.

The browser goes to ``localhost``, not ``127.0.0.1``: the session cookie is ``Secure``, which
Chromium accepts over plain http only on localhost.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from dedup.adjudication.credentials import totp_now
from tests.review_support import (
    PASSWORD,
    Clock,
    ReviewWorld,
    free_port,
    migrated,
    review_world,
    sqlite_url,
)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 30  # generous: other test runs share this machine's cores


class WallClock(Clock):
    """The real time, as the deployed service has it (TOTP codes follow it too)."""

    def __call__(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class LiveService:
    world: ReviewWorld
    url: str


@contextmanager
def serving(folder: Path, batch_id: str, payload: dict[str, Any]) -> Iterator[LiveService]:
    """The service on a fresh SQLite database in ``folder``, served by uvicorn in a background
    thread, with ``payload`` imported as batch ``batch_id``."""
    engine = migrated(sqlite_url(folder))
    world = review_world(engine, clock=WallClock())
    with world.client("operator") as operator:
        answer = operator.post(f"/api/v1/batches/{batch_id}/candidates", json=payload)
    assert answer.status_code == 200, answer.text
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(world.app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="review-service", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)  # uvicorn has no start event to wait on
        assert server.started, "the review service did not start"
        yield LiveService(world, f"http://localhost:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT_S)
        engine.dispose()


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a window of ``width`` x ``height`` (the outer window: the page's
    viewport is what ``window.innerWidth/innerHeight`` say)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: run scripts/install-services")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        pytest.fail(f"Chromium did not start ({exc.msg}): run scripts/install-services")
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    return WebDriverWait(driver, WAIT_S)


def on_page(driver: webdriver.Chrome, path: str) -> None:
    """Wait until the browser shows ``path`` (a prefix) and the page has loaded."""
    wait(driver).until(
        lambda d: (
            urlsplit(d.current_url).path.startswith(path)
            and d.execute_script("return document.readyState") == "complete"
        ),
        f"never reached {path}",
    )


def focused(driver: webdriver.Chrome) -> WebElement:
    return driver.switch_to.active_element


def expect_focus(driver: webdriver.Chrome, element_id: str) -> None:
    wait(driver).until(
        lambda d: focused(d).get_attribute("id") == element_id,
        f"{element_id!r} does not have the keyboard focus",
    )


def keys(driver: webdriver.Chrome, *typed: str) -> None:
    """Type on the keyboard, into whatever has the focus."""
    ActionChains(driver).send_keys(*typed).perform()


def text_of(driver: webdriver.Chrome, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def log_in(driver: webdriver.Chrome, live: LiveService, username: str, home: str) -> None:
    """The login form with the keyboard alone: type, Tab to the next field, Enter."""
    driver.get(f"{live.url}/")
    on_page(driver, "/login")
    expect_focus(driver, "username")
    keys(driver, username, Keys.TAB)
    expect_focus(driver, "password")
    code = totp_now(live.world.secrets[username], datetime.now(UTC))
    keys(driver, PASSWORD, Keys.TAB)
    expect_focus(driver, "totp")
    keys(driver, code, Keys.ENTER)
    on_page(driver, home)
    assert username in text_of(driver, "header .who")


def claim_with_enter(driver: webdriver.Chrome) -> None:
    """Enter on the queue page: the claim button has the focus."""
    expect_focus(driver, "claim")
    keys(driver, Keys.ENTER)


def images_loaded(driver: webdriver.Chrome) -> list[str]:
    """The ``alt`` of every image on the page that has a source, once each has been decoded
    with a width."""
    wait(driver).until(
        lambda d: d.execute_script(
            "const imgs = [...document.images].filter(i => i.getAttribute('src'));"
            "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);"
        ),
        "the page's images did not load",
    )
    alts = driver.execute_script(
        "return [...document.images].filter(i => i.getAttribute('src')).map(i => i.alt);"
    )
    assert isinstance(alts, list)
    return [str(a) for a in alts]
