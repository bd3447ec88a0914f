"""The subscriber lifecycle on the embedded runtime, as the issue's done-criteria put it:
an unconfirmed subscriber gets no newsletter; a newsletter's raw MIME carries both RFC 8058
headers; POSTing ``List-Unsubscribe=One-Click`` to that URL answers 200 and the next
campaign skips the subscriber."""

from __future__ import annotations

import email
import time
import uuid
from email import policy
from typing import Any

import pytest

from mailroom_local import Runtime
from tests.integration.conftest import http, mails_to, outbox, send_campaign, subscribe, wait_for

pytestmark = pytest.mark.integration


def _raw(mail: dict[str, Any]) -> email.message.EmailMessage:
    """The mail's header block as the outbox holds it, parsed back with the email package."""
    text = "".join(f"{name}: {value}\r\n" for name, value in mail["headers"].items()) + "\r\n"
    message = email.message_from_string(text, policy=policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_only_confirmed_subscribers_get_newsletters_and_one_click_unsubscribes_for_the_next(runtime: Runtime) -> None:
    tag = uuid.uuid4().hex[:8]
    confirmed, unconfirmed = f"ann.{tag}@example.org", f"pending.{tag}@example.org"
    subscribe(runtime, confirmed, "Ann")
    assert http("POST", f"{runtime.api_url}/subscriptions", {"email": unconfirmed}).status == 202
    assert wait_for(lambda: mails_to(runtime, unconfirmed, "confirm"), timeout=5.0)

    first = f"First {tag}"
    campaign = send_campaign(runtime, first)
    (newsletter,) = mails_to(runtime, confirmed, first.lower())
    assert not mails_to(runtime, unconfirmed, first.lower())  # never confirmed: nothing
    assert campaign["counters"]["sent"] >= 1

    headers = _raw(newsletter)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = str(headers["List-Unsubscribe"]).strip("<>")
    # the API's route on the web app's origin (https in AWS, see test_content); the body's
    # visible link is the web app's page for the same token
    assert url.startswith(f"{runtime.public_url}/api/unsubscribe?token=")
    token = url.partition("?token=")[2]
    assert f"{runtime.public_url}/unsubscribe?token={token}" in newsletter["text"]
    answer = http("POST", url, b"List-Unsubscribe=One-Click", {"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status == 200, answer.text

    second = f"Second {tag}"
    send_campaign(runtime, second)
    time.sleep(0.3)
    assert not mails_to(runtime, confirmed, second.lower())
    assert not mails_to(runtime, unconfirmed, second.lower())
    assert all(second.lower() not in m["subject"].lower() or confirmed not in m["to"] for m in outbox(runtime))


def test_a_browser_gets_pages_for_links_and_a_bad_link_is_a_400_page(runtime: Runtime) -> None:
    tag = uuid.uuid4().hex[:8]
    reader = f"page.{tag}@example.org"
    subscribe(runtime, reader)
    (welcome,) = mails_to(runtime, reader, "welcome")
    url = str(_raw(welcome)["List-Unsubscribe"]).strip("<>")
    assert url.startswith(f"{runtime.api_url}/unsubscribe?token=")  # the API's route: no JavaScript needed
    page = http("GET", url, headers={"Accept": "text/html"})
    assert page.status == 200 and page.text.count("<button") == 1
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # pressing the button posts the form to the same URL
    pressed = http("POST", url, b"List-Unsubscribe=One-Click", {"Content-Type": "application/x-www-form-urlencoded"})
    assert pressed.status == 200 and "unsubscribed" in pressed.text.lower()
    forged = http("GET", url[:-4] + "AAAA", headers={"Accept": "text/html"})
    assert forged.status == 400 and "invalid or has expired" in forged.text
    assert "traceback" not in forged.text.lower()
