"""Debian's chromium, driven by selenium, for the tests that use the Prefect and MLflow UIs as a
person does: click, type, read the page, keep a screenshot.

Import the fixture into a test module (pytest puts tests/ on sys.path)::

    from browser import browser, chromium  # noqa: F401  (pytest fixtures)

Without ``chromium`` and ``chromium-driver`` (Debian packages; ``make test`` installs them
under ``CI=true``) the tests that use the fixture fail under ``CI=true`` and are skipped
elsewhere, saying so. Screenshots go to ``test-artifacts/screenshots/`` (CI keeps the folder).
Nothing is downloaded: the driver and the browser are the system's.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest

from conftest import ROOT, unavailable

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM, CHROMEDRIVER = "chromium", "chromedriver"
T = TypeVar("T")


@pytest.fixture(scope="session")
def chromium():
    """A headless chromium (selenium WebDriver), 1400x1000, quit at the end of the session
    (which stops its chromedriver process). Tests take it as :func:`browser`."""
    missing = [name for name in (CHROMIUM, CHROMEDRIVER) if not shutil.which(name)]
    if missing:
        unavailable(f"the browser tests need {' and '.join(missing)} on PATH: "
                    "`apt install chromium chromium-driver` (Debian)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--no-proxy-server"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which(CHROMEDRIVER)))
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium):
    """The session's chromium for one test, left on a blank page afterwards: a UI left open
    keeps rendering (Prefect's run graph draws with WebGL, in software here) and took most of a
    core for the rest of the suite."""
    yield chromium
    chromium.get("about:blank")


def screenshot(driver, name: str) -> Path:
    """Save what ``driver`` shows as ``test-artifacts/screenshots/<name>.png``; returns the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(what: str, probe: Callable[[], T | None], driver=None, timeout_s: float = 60.0) -> T:
    """Poll ``probe`` until it returns something truthy (exceptions count as not yet: a page
    re-renders under the driver) and return it; after ``timeout_s`` fail, naming ``what`` and
    keeping a screenshot of the page when ``driver`` is given."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if found := probe():
                return found
        except Exception as err:  # stale or missing elements while the page renders
            last = err
        time.sleep(0.5)
    shot = f"; page kept as {screenshot(driver, 'timeout')}" if driver is not None else ""
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}{shot} (last error: {str(last).splitlines()[0] if last else None})", pytrace=False)


def element_with_text(root, text: str, tag: str = "*"):
    """A visible ``tag`` element (any tag: the innermost) inside ``root`` (the driver: the
    page; or an element) whose whole text is ``text``, or None."""
    from selenium.webdriver.common.by import By

    innermost = f" and not(.//*[normalize-space(.)='{text}'])" if tag == "*" else ""
    xpath = f".//{tag}[normalize-space(.)='{text}'{innermost}]"
    return next((e for e in root.find_elements(By.XPATH, xpath) if e.is_displayed()), None)


def click(driver, element) -> None:
    """Scroll ``element`` to the middle of the window and click it."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def close_dialogs(driver) -> None:
    """Close the announcement dialogs a UI opens over a page (MLflow's "new Model Registry UI")."""
    from selenium.webdriver.common.by import By

    for dialog in driver.find_elements(By.CSS_SELECTOR, "[role=dialog]"):
        for button in dialog.find_elements(By.CSS_SELECTOR, "button[aria-label=Close]"):
            if button.is_displayed():
                button.click()
