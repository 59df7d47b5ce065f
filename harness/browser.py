"""A real headless Chromium for scenarios that look at the app as a person does.

Playwright drives the OS's ``chromium`` (no browser download): launched by executable path, with
background networking off so it only talks to the app on loopback.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def missing() -> str | None:
    """Why no browser scenario can run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install 'celery-failure-harness[browser]')"
    if chromium_path() is None:
        return "no chromium on PATH (Debian/Ubuntu: apt-get install -y chromium)"
    return None


@contextmanager
def browser_page() -> Iterator[object]:
    """A fresh page in a fresh headless Chromium; both closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()
