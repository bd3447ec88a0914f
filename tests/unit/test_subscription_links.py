"""Double opt-in and one-click unsubscribe through the handlers: registration -> confirmation
mail -> confirm link -> welcome mail with RFC 8058 headers -> one-click POST; and every way a
link can be wrong (forged, altered, for another purpose, expired, replayed)."""

from __future__ import annotations

import email
import json
import re
from collections.abc import Callable
from email import policy
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto import mock_aws

from mailroom.adapters.parameters import PublicUrl
from mailroom.links import CONFIRM, UNSUBSCRIBE, Links, fixed_links
from mailroom.tokens import Tokens
from mailroom_local.template import Stack
from tests.conftest import LambdaContext
from tests.support import REGION, link_tokens, load_event, put_subscriber, queue_messages, sent_mails, sqs_event

Loader = Callable[..., ModuleType]


def _tokens(stack: Stack, clock: Callable[[], float] | None = None) -> Tokens:
    tokens = link_tokens(stack)
    return Tokens(tokens.keys, clock) if clock else tokens


def _subscriber(stack: Stack, email_address: str = "ada@example.com") -> dict[str, Any]:
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=stack.physical_name("SubscribersTable"), Key={"email": {"S": email_address}}, ConsistentRead=True
    )["Item"]
    return {key: next(iter(value.values())) for key, value in item.items()}


def _link_event(name: str, token: str | None, accept: str | None = None) -> dict[str, Any]:
    event = load_event(name)
    event["queryStringParameters"] = None if token is None else {"token": token}
    event["multiValueQueryStringParameters"] = None if token is None else {"token": [token]}
    if accept:
        event["headers"]["Accept"] = accept
        event["multiValueHeaders"]["Accept"] = [accept]
    return event


def _json(response: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response["body"])
    return body


def _headers(response: dict[str, Any]) -> dict[str, str]:
    single = {key.lower(): value for key, value in (response.get("headers") or {}).items()}
    multi = {key.lower(): values[-1] for key, values in (response.get("multiValueHeaders") or {}).items()}
    return {**single, **multi}


def _token_in(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


@pytest.fixture
def registration(load_function: Loader) -> ModuleType:
    return load_function("RegistrationFunction")


@pytest.fixture
def worker(load_function: Loader) -> ModuleType:
    return load_function("WelcomeWorkerFunction")


def test_sign_up_confirm_welcome_and_one_click_unsubscribe(
    stack: Stack, registration: ModuleType, worker: ModuleType, context: LambdaContext
) -> None:
    # sign up: pending, one confirmation mail
    assert registration.lambda_handler(load_event("registration_post.json"), context)["statusCode"] == 202
    (task,) = queue_messages(stack, "WelcomeQueue")
    assert worker.lambda_handler(sqs_event(stack, "WelcomeQueue", [task]), context) == {"batchItemFailures": []}
    (confirmation,) = sent_mails()
    assert confirmation.subject == "Please confirm your subscription to Mailroom"
    assert "List-Unsubscribe" not in confirmation.headers  # not subscribed yet: nothing to leave
    assert confirmation.text is not None
    confirm_url = re.search(r"https://\S+/confirm\?token=\S+", confirmation.text)  # the web app's page
    assert confirm_url is not None and confirm_url.group(0) in (confirmation.html or "")
    assert _subscriber(stack)["status"] == "pending"

    # the link confirms (JSON for the single-page app)
    token = _token_in(confirm_url.group(0))
    response = registration.lambda_handler(
        _link_event("registration_confirm_get.json", token, "application/json"), context
    )
    assert (response["statusCode"], _json(response)["status"]) == (200, "confirmed")
    subscriber = _subscriber(stack)
    assert subscriber["status"] == "subscribed" and "expires_at" not in subscriber

    # then the welcome mail goes out, with RFC 8058 one-click headers
    (welcome_task,) = queue_messages(stack, "WelcomeQueue")
    assert welcome_task["kind"] == "welcome"
    worker.lambda_handler(sqs_event(stack, "WelcomeQueue", [welcome_task]), context)
    welcome = sent_mails()[1]
    assert welcome.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = welcome.headers["List-Unsubscribe"].strip("<>")  # the API's route
    assert urlsplit(unsubscribe_url).scheme == "https" and urlsplit(unsubscribe_url).path == "/api/unsubscribe"
    assert unsubscribe_url.replace("/api/unsubscribe?", "/unsubscribe?") in (welcome.text or "")  # the page

    # the GET shows one button and changes nothing (mail scanners follow links)
    page = registration.lambda_handler(
        _link_event("registration_unsubscribe_get.json", _token_in(unsubscribe_url)), context
    )
    assert page["statusCode"] == 200 and page["body"].count("<button") == 1 and 'method="post"' in page["body"]
    assert _headers(page)["referrer-policy"] == "no-referrer"
    assert _subscriber(stack)["status"] == "subscribed"

    # the one-click POST, as a mailbox provider sends it, unsubscribes at once: 200, no further step
    one_click = registration.lambda_handler(
        _link_event("registration_unsubscribe_one_click.json", _token_in(unsubscribe_url)), context
    )
    assert one_click["statusCode"] == 200
    assert _subscriber(stack)["status"] == "unsubscribed"
    # replayed: the same answer, nothing changes
    again = registration.lambda_handler(
        _link_event("registration_unsubscribe_one_click.json", _token_in(unsubscribe_url)), context
    )
    assert again["statusCode"] == 200 and _subscriber(stack)["status"] == "unsubscribed"


def test_a_replayed_confirmation_link_confirms_once_and_queues_one_welcome(
    stack: Stack, registration: ModuleType, context: LambdaContext
) -> None:
    registration.lambda_handler(load_event("registration_post.json"), context)
    (task,) = queue_messages(stack, "WelcomeQueue")
    token = _tokens(stack).sign(CONFIRM, task["subscriber_id"], 3600)
    for _ in range(3):
        response = registration.lambda_handler(
            _link_event("registration_confirm_get.json", token, "application/json"), context
        )
        assert (response["statusCode"], _json(response)["status"]) == (200, "confirmed")
    assert [t["kind"] for t in queue_messages(stack, "WelcomeQueue")] == ["welcome"]


def _forgeries(stack: Stack, subscriber_id: str) -> dict[str, str]:
    tokens = _tokens(stack)
    good = tokens.sign(CONFIRM, subscriber_id, 3600)
    payload, mac = good.split(".")
    other_payload = tokens.sign(CONFIRM, "someone-else", 3600).split(".")[0]
    return {
        "forged with another key": Tokens([b"x" * 32]).sign(CONFIRM, subscriber_id, 3600),
        "payload altered": f"{other_payload}.{mac}",
        "signature altered": f"{payload}.{mac[:-2]}{'AA' if not mac.endswith('AA') else 'BB'}",
        "for another purpose": tokens.sign(UNSUBSCRIBE, subscriber_id),
        "expired": _tokens(stack, clock=lambda: 1_000_000.0).sign(CONFIRM, subscriber_id, 60),
        "garbage": "not-a-token",
        "empty": "",
        "huge": "a." + "b" * 5000,
    }


@pytest.mark.parametrize(
    "kind",
    [
        "forged with another key",
        "payload altered",
        "signature altered",
        "for another purpose",
        "expired",
        "garbage",
        "empty",
        "huge",
    ],
)
def test_a_bad_confirmation_link_is_a_400_that_reveals_nothing_and_changes_nothing(
    stack: Stack, registration: ModuleType, context: LambdaContext, kind: str
) -> None:
    registration.lambda_handler(load_event("registration_post.json"), context)
    (task,) = queue_messages(stack, "WelcomeQueue")
    token = _forgeries(stack, task["subscriber_id"])[kind]
    response = registration.lambda_handler(
        _link_event("registration_confirm_get.json", token or None, "application/json"), context
    )
    assert response["statusCode"] == 400
    assert _json(response) == {"error": {"code": "invalid_link", "message": "This link is invalid or has expired."}}
    assert _subscriber(stack)["status"] == "pending"
    assert queue_messages(stack, "WelcomeQueue") == []
    # a browser gets the same as a page, without a trace of the reason
    page = registration.lambda_handler(_link_event("registration_confirm_get.json", token or None), context)
    assert page["statusCode"] == 400 and "invalid or has expired" in page["body"]
    assert _headers(page)["content-type"].startswith("text/html") and "Traceback" not in page["body"]


def test_a_bad_unsubscribe_link_is_a_400_and_unsubscribes_nobody(
    stack: Stack, registration: ModuleType, context: LambdaContext
) -> None:
    registration.lambda_handler(load_event("registration_post.json"), context)
    (task,) = queue_messages(stack, "WelcomeQueue")
    tokens = _tokens(stack)
    for token in [
        tokens.sign(CONFIRM, task["subscriber_id"], 3600),  # a confirmation token cannot unsubscribe
        Tokens([b"y" * 32]).sign(UNSUBSCRIBE, task["subscriber_id"]),
        "",
    ]:
        for name in ("registration_unsubscribe_one_click.json", "registration_unsubscribe_get.json"):
            response = registration.lambda_handler(_link_event(name, token or None), context)
            assert response["statusCode"] == 400, (name, token)
    assert _subscriber(stack)["status"] == "pending"


def test_links_of_an_erased_or_expired_subscriber(
    stack: Stack, registration: ModuleType, context: LambdaContext
) -> None:
    tokens = _tokens(stack)
    confirm = registration.lambda_handler(
        _link_event("registration_confirm_get.json", tokens.sign(CONFIRM, "gone", 60), "application/json"), context
    )
    assert confirm["statusCode"] == 404 and _json(confirm)["error"]["code"] == "not_found"
    # unsubscribing somebody who is not there is what they asked for: 200
    gone = registration.lambda_handler(
        _link_event("registration_unsubscribe_one_click.json", tokens.sign(UNSUBSCRIBE, "gone")), context
    )
    assert gone["statusCode"] == 200


def test_the_sample_link_events_carry_a_placeholder_token_and_are_answered_400(
    registration: ModuleType, context: LambdaContext
) -> None:
    """`sam local invoke` with events/registration_*: the placeholder is no valid token."""
    for name in (
        "registration_confirm_get.json",
        "registration_unsubscribe_get.json",
        "registration_unsubscribe_one_click.json",
    ):
        assert registration.lambda_handler(load_event(name), context)["statusCode"] == 400


def test_the_confirmation_sample_event_sends_one_confirmation_mail_while_pending(
    stack: Stack, worker: ModuleType, context: LambdaContext
) -> None:
    event = load_event("welcome_worker_confirmation_sqs.json")
    task = json.loads(event["Records"][0]["body"])
    put_subscriber(stack, task["subscriber_id"], task["email"], status="pending")
    assert worker.lambda_handler(event, context) == {"batchItemFailures": []}
    assert worker.lambda_handler(event, context) == {"batchItemFailures": []}  # a duplicate delivery
    (mail,) = sent_mails()
    # its record holds no address and expires (the mail says an unconfirmed address is forgotten)
    record = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=stack.physical_name("ResultsTable"),
        Key={"pk": {"S": "confirmation"}, "sk": {"S": f"{task['subscriber_id']}#1"}},
    )["Item"]
    assert record["status"]["S"] == "sent" and "email" not in record and int(record["expires_at"]["N"]) > 0
    raw = email.message_from_string(
        "\n".join(f"{k}: {v}" for k, v in mail.headers.items()) + "\n\n", policy=policy.default
    )
    assert raw["Subject"] == "Please confirm your subscription to Mailroom"
    link = re.search(r"https://\S+", mail.text or "")
    assert link is not None
    assert _tokens(stack).verify(CONFIRM, _token_in(link.group(0))).subscriber_id == task["subscriber_id"]


def test_links_open_the_web_app_and_the_one_click_url_is_the_api_route_for_the_same_token() -> None:
    links = fixed_links("https://news.example.com/")
    confirm = links.confirm_url("s-1")
    assert confirm.startswith("https://news.example.com/confirm?token=")
    page = links.unsubscribe_url("s-1")
    assert page.startswith("https://news.example.com/unsubscribe?token=")
    one_click = links.one_click_url(page)
    assert one_click == page.replace("/unsubscribe?", "/api/unsubscribe?")
    assert links.unsubscribe_headers(page)["List-Unsubscribe"] == f"<{one_click}>"
    with pytest.raises(ValueError):
        links.one_click_url(one_click)  # already the API's URL
    with pytest.raises(ValueError):
        links.one_click_url(confirm)


def test_the_public_url_is_read_from_the_parameter_once_and_then_cached() -> None:
    reads: list[str] = []

    class Ssm:
        def get_parameter(self, Name: str) -> dict[str, Any]:
            reads.append(Name)
            return {"Parameter": {"Value": "https://d111.cloudfront.net"}}

    now = [0.0]
    url = PublicUrl("", "/stack/public-url", client=Ssm(), ttl=300, clock=lambda: now[0])
    links = Links(url, lambda: Tokens([b"k" * 32]))
    assert links.confirm_url("s-1").startswith("https://d111.cloudfront.net/confirm?token=")
    assert links.unsubscribe_url("s-1").startswith("https://d111.cloudfront.net/unsubscribe?token=")
    assert reads == ["/stack/public-url"]
    now[0] = 301.0
    url()
    assert reads == ["/stack/public-url"] * 2
    # an explicit URL is never looked up
    assert PublicUrl("https://news.example.com", "/stack/public-url", client=Ssm())() == "https://news.example.com"
    assert len(reads) == 2
    with pytest.raises(ValueError):
        PublicUrl("", "")


def test_the_public_url_parameter_is_read_with_moto() -> None:
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        ssm.put_parameter(Name="/stack/public-url", Value="https://d111.cloudfront.net", Type="String")
        assert PublicUrl("", "/stack/public-url", client=ssm)() == "https://d111.cloudfront.net"
        ssm.put_parameter(Name="/stack/bad", Value="not a url", Type="String")
        with pytest.raises(ValueError):
            PublicUrl("", "/stack/bad", client=ssm)()
