"""Debian's Chromium driven by Playwright, for the console's browser test and screenshots.

Playwright's own browser downloads are never used: it drives /usr/bin/chromium (the
`chromium` package, which .ci/run installs) through `executable_path`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = os.environ.get("DEVPROV_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces it lacks
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_available() -> bool:
    return os.access(CHROMIUM, os.X_OK)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium with a fresh profile (Playwright makes one per launch)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Browser, width: int = 1280, height: int = 860) -> Page:
    """A page that trusts devprov's own test CA (its certificates are made per run)."""
    context = await browser.new_context(
        ignore_https_errors=True, viewport={"width": width, "height": height}
    )
    return await context.new_page()


async def sign_in(page: Page, base: str, credential: str) -> None:
    await page.goto(base + "/console")
    await page.fill("#credential", credential)
    await page.click("#sign-in")
    await page.wait_for_url("**/console/overview")
