"""Headless Chromium driven by Selenium: the system browser and driver, never a downloaded one.

``make setup`` installs Debian's ``chromium`` and ``chromium-driver`` when it runs as root and
they are missing. The page under test exposes ``window.portalConsole`` (its numbers and a frame
grab); :meth:`Browser.until` polls a JavaScript expression like the suite's ``wait_for_sync``.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable, Optional

import pytest

__all__ = ['Browser', 'find_chromium']

_CANDIDATES = (('chromium', 'chromedriver'), ('chromium-browser', 'chromedriver'), ('google-chrome', 'chromedriver'))


def find_chromium() -> Optional[tuple[str, str]]:
    """(browser, driver) paths: $PORTAL_BRIDGE_CHROMIUM / $PORTAL_BRIDGE_CHROMEDRIVER, else PATH."""
    browser, driver = os.environ.get('PORTAL_BRIDGE_CHROMIUM'), os.environ.get('PORTAL_BRIDGE_CHROMEDRIVER')
    if browser and driver:
        return browser, driver
    for b, d in _CANDIDATES:
        if shutil.which(b) and shutil.which(d):
            return shutil.which(b), shutil.which(d)
    return None


class Browser:
    """One headless Chromium window."""

    def __init__(self) -> None:
        found = find_chromium()
        if found is None:
            pytest.skip(
                'needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver; make setup does)'
            )
        webdriver = pytest.importorskip('selenium.webdriver', reason='needs selenium (requirements/*.txt)')
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = found[0]
        for arg in (
            '--headless=new',
            '--no-sandbox',  # as root
            '--disable-dev-shm-usage',
            '--autoplay-policy=no-user-gesture-required',
            '--window-size=1600,1000',
            '--disable-background-timer-throttling',
            '--disable-renderer-backgrounding',
        ):
            options.add_argument(arg)
        options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
        self.driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=options)
        self.driver.set_script_timeout(20)

    def open(self, url: str) -> None:
        self.driver.get(url)

    def js(self, expression: str, *args: Any) -> Any:
        return self.driver.execute_script(f'return {expression};', *args)

    def stats(self) -> dict:
        return self.js('window.portalConsole ? window.portalConsole.stats() : null') or {}

    def until(self, predicate: Callable[[dict], Any], timeout: float = 20.0, what: str = '') -> dict:
        """Poll the page's stats until ``predicate(stats)`` is truthy and return those stats.

        On timeout: AssertionError with the last stats and the end of the browser's log.
        """
        deadline = time.monotonic() + timeout
        stats: dict = {}
        while time.monotonic() < deadline:
            stats = self.stats()
            if stats and predicate(stats):
                return stats
            time.sleep(0.1)
        raise AssertionError(
            f'timed out after {timeout} s waiting for {what or predicate}; page: {stats}; log: {self.log()[-10:]}'
        )

    def log(self) -> list[str]:
        try:
            return [entry['message'] for entry in self.driver.get_log('browser')]
        except Exception:  # noqa: BLE001 (a driver without logs)
            return []

    def screenshot(self, path: str) -> None:
        self.driver.save_screenshot(path)

    def close(self) -> None:
        self.driver.quit()
