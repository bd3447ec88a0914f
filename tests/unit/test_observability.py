"""No address reaches the logs: every line is redacted as it is written."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from types import ModuleType
from unittest import mock

import pytest
from botocore.exceptions import ClientError

from mailroom.observability import logger, redact
from mailroom_local.template import Stack
from tests.conftest import LambdaContext
from tests.support import load_event, put_subscriber


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[str]]]:
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)
    try:
        yield lambda: stream.getvalue().splitlines()
    finally:
        logger.registered_handler.setStream(previous)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Email address is not verified: ada.lovelace+x@Example.org.",
            "Email address is not verified: ***@Example.org.",
        ),
        ('{"email": "bob@ex.com"}', '{"email": "***@ex.com"}'),
        ("<carol@xn--bcher-kva.de>", "<***@xn--bcher-kva.de>"),
        ("no address here, just an @", "no address here, just an @"),
    ],
)
def test_redact_masks_the_local_part(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_every_log_line_is_redacted_message_extra_and_stack_trace(log_lines: Callable[[], list[str]]) -> None:
    try:
        raise ValueError("rejected ada@example.com")
    except ValueError:
        logger.exception("failed for dora@example.org", extra={"error": "eve@example.net said no"})
    (line,) = log_lines()
    assert "@example.com" in line and "ada@" not in line and "dora@" not in line and "eve@" not in line
    assert json.loads(line)["message"] == "failed for ***@example.org"


def test_a_rejection_quoting_the_recipient_logs_no_address(
    stack: Stack, load_function: Callable[..., ModuleType], context: LambdaContext, log_lines: Callable[[], list[str]]
) -> None:
    event = load_event("welcome_worker_sqs.json")
    task = json.loads(event["Records"][0]["body"])
    put_subscriber(stack, task["subscriber_id"], task["email"])
    app = load_function("WelcomeWorkerFunction")
    rejected = ClientError(
        {"Error": {"Code": "MessageRejected", "Message": f"Address blacklisted: {task['email']}"}}, "SendEmail"
    )
    with mock.patch.object(app.mailer.client, "send_email", side_effect=rejected):
        app.lambda_handler(event, context)
    lines = log_lines()
    assert any("mail failed permanently" in line for line in lines)
    assert not [line for line in lines if task["email"] in line]


ID_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhYmMiLCJ0b2tlbl91c2UiOiJpZCJ9.c2lnbmF0dXJlLWJ5dGVz_-"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Authorization: {ID_TOKEN}", "Authorization: ***"),
        (f"Bearer {ID_TOKEN} then", "Bearer *** then"),
        ("GET /unsubscribe?token=v1.abc-DEF_9.sig&x=1", "GET /unsubscribe?token=***&x=1"),
        ('{"token": "v1.abc", "n": 1}', '{"token": "***", "n": 1}'),
        ('{"password":"Secret-pass-1","email":"a@b.example"}', '{"password":"***","email":"***@b.example"}'),
        ('{"session": "AYABeA", "new_password": "x-Y-1"}', '{"session": "***", "new_password": "***"}'),
        ("tokens processed: 3", "tokens processed: 3"),  # the word alone is not a secret
    ],
)
def test_redact_masks_tokens_sessions_and_passwords(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_token_in_a_log_line_or_its_extra_keys_is_masked(log_lines: Callable[[], list[str]]) -> None:
    logger.info(f"checking {ID_TOKEN}", extra={"link": "https://x.example/confirm?token=v1.secret.sig"})
    (line,) = log_lines()
    assert ID_TOKEN not in line and "v1.secret.sig" not in line
    assert json.loads(line)["link"] == "https://x.example/confirm?token=***"
