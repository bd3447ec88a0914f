"""Browser tests: the web app on the embedded runtime, driven by Playwright in headless chromium.

The browser is the system's chromium (Debian's ``chromium``; ``.ci/run`` installs it), found
as ``$MAILROOM_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on PATH; without one,
Playwright's own download is tried (``playwright install chromium`` where that is allowed).
No browser at all is a failure with that advice, never a skip.

A failed test leaves its page's screenshot, HTML and console under
``test-artifacts/browser/`` (CI keeps that folder as the run's artefacts).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Playwright, sync_playwright

from tests.integration.conftest import runtime  # noqa: F401 - the module-scoped runtime fixture
from tests.support import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "browser"
# `make screenshots` sets this to docs/screenshots: the views the README shows are taken by the tests.
DOCS_SCREENSHOTS = os.environ.get("MAILROOM_DOCS_SCREENSHOTS")


def chromium_path() -> str | None:
    """The system chromium, if there is one."""
    explicit = os.environ.get("MAILROOM_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    path = chromium_path()
    try:
        launched = playwright.chromium.launch(executable_path=path, headless=True)
    except Error as exc:
        pytest.fail(
            f"no browser for the browser tests ({exc.message.splitlines()[0]}): install chromium "
            "(Debian: apt-get install -y chromium) or set MAILROOM_CHROMIUM to a chromium binary",
            pytrace=False,
        )
    try:
        yield launched
    finally:
        launched.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _artifact_name(nodeid: str) -> str:
    return re.sub(r"[^\w.-]+", "_", nodeid.split("::", 1)[-1])[:120]


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (its own storage) and page. JavaScript errors on the page fail
    the test; a failed test leaves a screenshot, the HTML and the console in test-artifacts/."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="Europe/Berlin")
    context.set_default_timeout(10_000)
    opened = context.new_page()
    console: list[str] = []
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        console.append(f"{message.type}: {message.text}")
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(message.text)

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: errors.append(f"{error.name}: {error.message}"))
    try:
        yield opened
        failed = any(
            getattr(getattr(request.node, f"report_{when}", None), "failed", False) for when in ("setup", "call")
        )
        if failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            name = _artifact_name(request.node.nodeid)
            try:
                opened.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
                (ARTIFACTS / f"{name}.html").write_text(opened.content(), encoding="utf-8")
            except Error as exc:
                console.append(f"(no screenshot: {exc.message})")
            (ARTIFACTS / f"{name}.console.txt").write_text("\n".join(console) + "\n", encoding="utf-8")
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


def docs_screenshot(page: Page, name: str, **options: Any) -> None:
    """With MAILROOM_DOCS_SCREENSHOTS set (make screenshots), keep this view for the docs."""
    if DOCS_SCREENSHOTS:
        folder = Path(DOCS_SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), **options)
