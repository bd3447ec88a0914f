"""GET /admin/dead-letters and POST /admin/dead-letters/redrive, and `make redrive`'s CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest

from mailroom.adapters.deadletters import NO_REASON, DeadLetterOffice, DeadLetterQueue, reset_counters
from mailroom_local import redrive
from mailroom_local.template import Stack
from tests.campaigns import Campaigns
from tests.support import REGION, queue_messages

TASK = {
    "kind": "campaign",
    "campaign_id": "c1",
    "task": "0.0.0",
    "recipients": [{"id": "s1", "email": "a@example.com"}, {"id": "s2", "email": "b@example.com"}],
    "attempt": 3,
    "failures": 9,
}
WELCOME = {"kind": "welcome", "subscriber_id": "s3", "email": "c@example.com", "attempt": 0, "failures": 9}
CONFIRMATION = {"kind": "confirmation", "subscriber_id": "s4", "email": "d@example.com", "seq": 2, "failures": 9}


@pytest.fixture
def campaigns(stack: Stack, load_function: Callable[..., ModuleType]) -> Campaigns:
    return Campaigns(stack, load_function)


def _dead_letter(stack: Stack, queue: str, body: dict[str, Any], reason: str | None) -> None:
    attributes = {"error": {"DataType": "String", "StringValue": reason}} if reason else {}
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=stack.queue_url(queue), MessageBody=json.dumps(body), MessageAttributes=attributes
    )


def _fill(stack: Stack) -> None:
    _dead_letter(stack, "NewsletterDeadLetterQueue", TASK, "InternalFailure: SES is down")
    _dead_letter(stack, "NewsletterDeadLetterQueue", TASK | {"task": "0.0.1"}, None)  # moved by SQS itself
    _dead_letter(stack, "WelcomeDeadLetterQueue", WELCOME, "MessageRejected: not verified news@example.com")


def test_the_dead_letter_view_shows_counts_and_reasons_and_leaves_them_there(
    stack: Stack, campaigns: Campaigns
) -> None:
    _fill(stack)
    _dead_letter(stack, "WelcomeDeadLetterQueue", CONFIRMATION, "InternalFailure: confirmation")
    status, listing = campaigns.call("GET", "/admin/dead-letters")
    assert status == 200
    assert listing["counts"] == {"welcome": 2, "newsletter": 2, "fanout": 0}
    by_reason = {item["reason"]: item for item in listing["items"]}
    assert set(by_reason) == {
        "InternalFailure: SES is down",
        NO_REASON,
        "MessageRejected: not verified news@example.com",
        "InternalFailure: confirmation",
    }
    assert by_reason["InternalFailure: confirmation"]["task"] == {
        "kind": "confirmation",
        "subscriber_id": "s4",
        "seq": 2,
    }
    assert by_reason["InternalFailure: SES is down"]["task"] == {
        "kind": "campaign",
        "campaign_id": "c1",
        "recipients": 2,
    }
    assert by_reason[NO_REASON]["queue"] == "newsletter"
    # a second look finds them all still there
    status, again = campaigns.call("GET", "/admin/dead-letters", query={"queue": "newsletter", "limit": "10"})
    assert status == 200 and len(again["items"]) == 2


@pytest.mark.parametrize(
    ("query", "field"),
    [({"queue": "bogus"}, "queue"), ({"limit": "0"}, "limit"), ({"limit": "many"}, "limit")],
)
def test_a_bad_dead_letter_query_is_a_400_naming_the_field(
    campaigns: Campaigns, query: dict[str, str], field: str
) -> None:
    status, body = campaigns.call("GET", "/admin/dead-letters", query=query)
    assert status == 400 and body["error"]["field"] == field


def test_a_redrive_moves_them_back_with_their_counters_reset(stack: Stack, campaigns: Campaigns) -> None:
    _fill(stack)
    status, body = campaigns.call("POST", "/admin/dead-letters/redrive", {"queue": "newsletter"})
    assert status == 200
    assert body == {"redriven": {"newsletter": 2}, "remaining": {"welcome": 1, "newsletter": 0, "fanout": 0}}
    moved = queue_messages(stack, "NewsletterQueue")
    assert sorted(task["task"] for task in moved) == ["0.0.0", "0.0.1"]
    assert all(task["failures"] == 0 and task["attempt"] == 0 for task in moved)
    assert all(task["recipients"] == TASK["recipients"] for task in moved)
    # an empty body redrives every queue
    status, body = campaigns.call("POST", "/admin/dead-letters/redrive")
    assert status == 200 and body["redriven"] == {"welcome": 1, "newsletter": 0, "fanout": 0}
    assert queue_messages(stack, "WelcomeQueue") == [WELCOME | {"failures": 0}]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"queue": "nope"}, "queue"), ({"limit": 0}, "limit"), ({"limit": 10_001}, "limit"), ({"what": 1}, "what")],
)
def test_a_bad_redrive_request_is_a_400_naming_the_field(campaigns: Campaigns, body: Any, field: str) -> None:
    status, answer = campaigns.call("POST", "/admin/dead-letters/redrive", body)
    assert status == 400 and answer["error"]["field"] == field


def test_reset_counters_leaves_other_bodies_alone() -> None:
    assert json.loads(reset_counters(json.dumps(TASK))) == TASK | {"attempt": 0, "failures": 0}
    assert reset_counters("not json") == "not json"
    assert reset_counters("[1, 2]") == "[1, 2]"


def test_make_redrive_lists_then_redrives_through_the_admin_api(
    stack: Stack, campaigns: Campaigns, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(stack)
    calls: list[tuple[str, str]] = []

    def through_the_handler(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        calls.append((method, path))
        route, _, query = path.partition("?")
        status, answer = campaigns.call(method, route, body, dict([query.split("=")]) if query else None)
        assert status == 200, answer
        return answer

    monkeypatch.setattr(redrive, "_call", through_the_handler)
    assert redrive.main(["--list"]) == 0
    assert "newsletter 2" in capsys.readouterr().out
    assert redrive.main(["--queue", "welcome"]) == 0
    out = capsys.readouterr().out
    assert "MessageRejected: not verified news@example.com" in out
    assert "redriven: welcome 1" in out
    assert calls[-1] == ("POST", "/admin/dead-letters/redrive")
    assert queue_messages(stack, "WelcomeQueue") == [WELCOME | {"failures": 0}]


def test_make_redrive_says_when_the_api_cannot_be_reached(capsys: pytest.CaptureFixture[str]) -> None:
    assert redrive.main(["--url", "http://127.0.0.1:9", "--list"]) == 2
    assert "cannot reach" in capsys.readouterr().err


def test_a_redrive_stops_at_its_deadline_and_leaves_the_rest(stack: Stack) -> None:
    _fill(stack)
    office = DeadLetterOffice(
        [
            DeadLetterQueue(
                "newsletter", stack.queue_url("NewsletterDeadLetterQueue"), stack.queue_url("NewsletterQueue")
            )
        ]
    )
    assert office.redrive(deadline=time.monotonic() - 1) == {"newsletter": 0}
    assert office.counts() == {"newsletter": 2}
    assert office.redrive(limit=1) == {"newsletter": 1}
    assert office.counts() == {"newsletter": 1} and len(queue_messages(stack, "NewsletterQueue")) == 1
