"""The public pages in a real browser: sign up, the confirmation link from the mail, the
unsubscribe page's one button; and the errors a person can run into."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from mailroom_local import Runtime
from tests.browser.conftest import docs_screenshot
from tests.integration.conftest import admin_http, confirmation_link, mails_to, wait_for

pytestmark = pytest.mark.integration

UNSUBSCRIBE_PAGE = re.compile(r"https?://\S+/unsubscribe\?token=[\w.-]+")


def _subscriber(runtime: Runtime, address: str) -> dict[str, object]:
    found = admin_http(runtime, "GET", f"{runtime.api_url}/admin/subscribers?q={address}").json()["items"]
    assert len(found) == 1, found
    return dict(found[0])


def test_sign_up_confirm_from_the_mail_and_unsubscribe_with_one_button(runtime: Runtime, page: Page) -> None:
    address = f"ada.{uuid.uuid4().hex[:8]}@example.org"
    page.goto(f"{runtime.url}/")
    expect(page).to_have_title("Subscribe to the newsletter · Mailroom")
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Name").fill("Ada")
    page.get_by_label("I agree to receive").check()
    docs_screenshot(page, "sign-up")
    page.get_by_role("button", name="Subscribe").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    assert page.url == f"{runtime.url}/check-inbox"
    expect(page.locator("main")).to_contain_text(address)
    docs_screenshot(page, "check-inbox")

    # the link in the confirmation mail opens the web app, which confirms through the API
    link = confirmation_link(runtime, address)
    assert link.startswith(f"{runtime.url}/confirm?token=")
    page.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Subscription confirmed")
    docs_screenshot(page, "confirmed")
    assert _subscriber(runtime, address)["status"] == "subscribed"
    assert _subscriber(runtime, address)["consent"].startswith("I agree to receive the Mailroom newsletter")

    # the welcome mail's visible link is the unsubscribe page: it changes nothing until the button
    welcome = wait_for(lambda: mails_to(runtime, address, "welcome"), timeout=5.0)
    assert welcome, "no welcome mail"
    found = UNSUBSCRIBE_PAGE.search(welcome[0]["text"])
    assert found, welcome[0]["text"]
    page.goto(found.group(0))
    expect(page.get_by_role("heading", level=1)).to_have_text("Unsubscribe")
    button = page.get_by_role("button", name="Unsubscribe")
    expect(button).to_have_count(1)
    assert _subscriber(runtime, address)["status"] == "subscribed"
    docs_screenshot(page, "unsubscribe")
    button.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
    assert _subscriber(runtime, address)["status"] == "unsubscribed"


def test_sign_up_errors_are_shown_next_to_the_field_and_nothing_is_sent(runtime: Runtime, page: Page) -> None:
    page.goto(f"{runtime.url}/")
    email = page.get_by_label("Email address")
    subscribe = page.get_by_role("button", name="Subscribe")

    subscribe.click()  # empty
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_be_focused()
    expect(page.locator("#" + email.get_attribute("id") + "-error")).to_have_text("Please enter your email address.")

    email.fill("not-an-address")
    subscribe.click()
    expect(page.locator("#" + email.get_attribute("id") + "-error")).to_contain_text("does not look like an email")

    # the browser accepts it, the API does not: its 400 names the field and is shown there
    email.fill("ada@localhost")
    page.get_by_label("I agree to receive").check()
    subscribe.click()
    expect(page.get_by_role("status").first).to_contain_text("email")
    expect(email).to_have_attribute("aria-invalid", "true")
    assert page.url == f"{runtime.url}/"

    email.fill(f"consent.{uuid.uuid4().hex[:6]}@example.org")
    page.get_by_label("I agree to receive").uncheck()
    subscribe.click()
    expect(page.get_by_label("I agree to receive")).to_have_attribute("aria-invalid", "true")
    assert page.url == f"{runtime.url}/"


def test_bad_links_show_clear_errors(runtime: Runtime, page: Page) -> None:
    page.goto(f"{runtime.url}/confirm?token=forged.token")
    expect(page.get_by_role("heading", level=1)).to_have_text("Invalid link")
    page.goto(f"{runtime.url}/unsubscribe?token=forged.token")
    expect(page.get_by_role("heading", level=1)).to_have_text("Invalid link")
    expect(page.get_by_role("button", name="Unsubscribe")).to_have_count(0)
    page.goto(f"{runtime.url}/confirm")
    expect(page.get_by_role("heading", level=1)).to_have_text("Invalid link")
    page.goto(f"{runtime.url}/no/such/page")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")


def test_the_sign_up_form_works_with_the_keyboard_alone(runtime: Runtime, page: Page) -> None:
    address = f"keys.{uuid.uuid4().hex[:8]}@example.org"
    page.goto(f"{runtime.url}/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_label("Email address").focus()
    page.keyboard.type(address)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Name")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("I agree to receive")).to_be_focused()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Subscribe")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    expect(page.locator("main")).to_be_focused()  # focus moves to the new page's content


def test_a_narrow_screen_gets_the_same_form_without_horizontal_scrolling(runtime: Runtime, page: Page) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(f"{runtime.url}/")
    expect(page.get_by_label("Email address")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, width
