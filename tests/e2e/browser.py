"""Debian's headless Chromium through Playwright, signed in to a test's Airflow UI."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airflow_cluster import KEPT_LOGS, PASSWORD, USER, require_ci_service
from playwright.sync_api import Page, expect, sync_playwright

SCREENSHOTS = KEPT_LOGS / "screenshots"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Two cores shared with other tests: the UI's first renders and the runs themselves can be slow.
UI_TIMEOUT_MS = 60_000
NAVIGATION_TIMEOUT_MS = 120_000


def find_chromium() -> str:
    """The path of Debian's Chromium; skips without it (fails under CI=true)."""
    found = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
    require_ci_service(found is not None, "Chromium not installed (/usr/bin/chromium): apt-get install chromium")
    return found


@contextmanager
def browser_page(executable: str, failure_screenshot: Path, **context_options) -> Iterator[Page]:
    """A page of a fresh headless Chromium (`context_options` for Playwright's context); a screenshot
    of it is kept at `failure_screenshot` when the block fails."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            context = browser.new_context(**context_options)
            context.set_default_timeout(UI_TIMEOUT_MS)
            context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            page = context.new_page()
            try:
                yield page
            except BaseException:
                keep_failure_screenshot(page, failure_screenshot)
                raise
        finally:
            browser.close()


def keep_failure_screenshot(page: Page, path: Path) -> None:
    """Save the page as it is at a failure; a page that cannot be captured must not hide the failure."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=path, full_page=True, timeout=30_000)
    except Exception as error:
        print(f"\nNo screenshot of the page at the failure ({page.url}): {error}")
    else:
        print(f"\nScreenshot of the page at the failure ({page.url}): {path}")


def log_in(page: Page, base_url: str) -> None:
    """Sign in through the Simple auth manager's login form, where the UI sends a visitor."""
    page.goto(base_url)
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    expect(page.get_by_role("link", name="Dags", exact=True)).to_be_visible()


def assert_png(path: Path) -> None:
    """A screenshot was saved: a PNG of more than a blank page's bytes."""
    assert path.stat().st_size > 10_000, path
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
