"""The sign-up form's honeypot in a real browser (docs/abuse.md): people neither see nor
reach it, their sign-ups never carry it, and a bot that fills every field is answered like
a person while nothing is stored or mailed."""

from __future__ import annotations

import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from mailroom_local import Runtime
from tests.integration.conftest import mails_to, queues_idle, wait_for

pytestmark = pytest.mark.integration


def _stored(runtime: Runtime, address: str) -> bool:
    table = runtime.stack.physical_name("SubscribersTable")
    item = runtime.client("dynamodb").get_item(TableName=table, Key={"email": {"S": address}}, ConsistentRead=True)
    return "Item" in item


def test_people_neither_see_nor_reach_the_honeypot_and_never_send_it(runtime: Runtime, page: Page) -> None:
    page.goto(f"{runtime.url}/")
    trap = page.locator("#website")
    expect(trap).to_have_count(1)
    expect(trap).to_have_attribute("tabindex", "-1")
    expect(trap).to_have_attribute("autocomplete", "off")
    box = trap.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 0, box  # off screen, not display:none
    assert page.evaluate("getComputedStyle(document.querySelector('#website')).display") != "none"
    # not in the accessibility tree, so no screen reader offers it
    form = page.get_by_role("form", name="Subscribe")
    assert "Leave this empty" not in form.aria_snapshot() and "Email address" in form.aria_snapshot()
    page.evaluate("document.querySelector('.trap').removeAttribute('aria-hidden')")  # the check itself
    assert "Leave this empty" in form.aria_snapshot()
    page.evaluate("document.querySelector('.trap').setAttribute('aria-hidden', 'true')")

    address = f"person.{uuid.uuid4().hex[:8]}@example.org"
    page.get_by_label("Email address").fill(address)
    page.get_by_label("I agree to receive").check()
    with page.expect_request(lambda request: request.url.endswith("/api/subscriptions")) as sent:
        page.get_by_role("button", name="Subscribe").click()
    assert "website" not in (sent.value.post_data_json or {})
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    assert wait_for(lambda: mails_to(runtime, address), timeout=5.0), "the person got no confirmation mail"


def test_a_bot_that_fills_every_field_is_answered_like_a_person_and_nothing_happens(
    runtime: Runtime, page: Page
) -> None:
    address = f"bot.{uuid.uuid4().hex[:8]}@example.org"
    page.goto(f"{runtime.url}/")
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Name").fill("Bot")
    page.locator("#website").fill("https://spam.example")  # what a form-filling bot does
    page.get_by_label("I agree to receive").check()
    with page.expect_response(lambda response: response.url.endswith("/api/subscriptions")) as answered:
        page.get_by_role("button", name="Subscribe").click()
    assert answered.value.status == 202
    assert answered.value.request.post_data_json["website"] == "https://spam.example"
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    assert wait_for(lambda: queues_idle(runtime, "WelcomeQueue"), timeout=5.0)
    time.sleep(0.5)
    assert mails_to(runtime, address) == []
    assert not _stored(runtime, address)
