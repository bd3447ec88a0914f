"""SES feedback end to end on the embedded runtime: a campaign to the mailbox simulator ->
SES events (EventBridge) -> SesEventsQueue (SQS) -> SesEventsFunction in batches ->
suppressed subscribers, recorded deliveries, feedback counters that equal the records ->
the next campaign skips the suppressed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mailroom_local import Runtime
from tests.integration.conftest import admin, http, outbox, send_campaign, wait_for
from tests.support import TEMPLATE

pytestmark = pytest.mark.integration

BOUNCE = "bounce@simulator.amazonses.com"
COMPLAINT = "complaint@simulator.amazonses.com"
SUCCESS = "success@simulator.amazonses.com"
READER = "reader@example.org"  # no simulator address: no events by default


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    started = Runtime(TEMPLATE, port=0, quiet=True, ses_events="simulator").start()
    try:
        yield started
    finally:
        started.stop()


def subscribe(runtime: Runtime, email: str) -> str:
    """A subscribed subscriber, put straight into the table (no double opt-in); its id."""
    subscriber_id = str(uuid.uuid4())
    runtime.client("dynamodb").put_item(
        TableName=runtime.stack.physical_name("SubscribersTable"),
        Item={
            "email": {"S": email},
            "id": {"S": subscriber_id},
            "name": {"S": "Sim"},
            "status": {"S": "subscribed"},
            "created_at": {"S": "2026-11-28T09:00:00.000Z"},
        },
    )
    return subscriber_id


def subscriber(runtime: Runtime, email: str) -> dict[str, Any]:
    item = runtime.client("dynamodb").get_item(
        TableName=runtime.stack.physical_name("SubscribersTable"), Key={"email": {"S": email}}, ConsistentRead=True
    )["Item"]
    return {key: next(iter(value.values())) for key, value in item.items()}


def record(runtime: Runtime, campaign_id: str, subscriber_id: str) -> dict[str, Any]:
    item = runtime.client("dynamodb").get_item(
        TableName=runtime.stack.physical_name("ResultsTable"),
        Key={"pk": {"S": f"campaign#{campaign_id}"}, "sk": {"S": subscriber_id}},
        ConsistentRead=True,
    )["Item"]
    return {key: next(iter(value.values())) for key, value in item.items()}


def feedback_counters(runtime: Runtime, campaign_id: str) -> dict[str, int]:
    """The feedback counters on the campaign's progress item (where every counter lives)."""
    item = runtime.client("dynamodb").get_item(
        TableName=runtime.stack.physical_name("CampaignsTable"),
        Key={"id": {"S": f"{campaign_id}#progress"}},
        ConsistentRead=True,
    )["Item"]
    return {name: int(item[name]["N"]) if name in item else 0 for name in ("delivered", "bounced", "complained")}


def ses_events(runtime: Runtime) -> dict[str, Any]:
    status: dict[str, Any] = http("GET", f"{runtime.url}/_local/ses-events").json()
    return status


def test_bounces_and_complaints_suppress_and_the_next_campaign_skips_them(runtime: Runtime) -> None:
    ids = {email: subscribe(runtime, email) for email in (BOUNCE, COMPLAINT, SUCCESS, READER)}
    first = send_campaign(runtime, "First issue")

    # 4 sends with the configuration set; events: success: Send + Delivery; bounce: Send +
    # Bounce; complaint: Send + Delivery + Complaint; the reader: none. The rule takes all
    # but the Send events: 4 messages on SesEventsQueue, recorded in batches.
    def settled() -> dict[str, Any] | None:
        status = ses_events(runtime)
        (rule,) = status["rules"]
        waiting = rule["queue"]["visible"] + rule["queue"]["in_flight"]
        recorded = feedback_counters(runtime, first["id"]) == {"delivered": 2, "bounced": 1, "complained": 1}
        return status if status["delivered"] >= 4 and status["pending"] == 0 and not waiting and recorded else None

    # an event whose record is still being sent comes again after the queue's visibility timeout (180 s)
    status = wait_for(settled, timeout=240.0)
    assert status, ses_events(runtime)
    assert (status["mode"], status["sends"], status["emitted"], status["dropped"]) == ("simulator", 4, 7, 0)
    assert (status["matched"], status["delivered"]) == (4, 4)
    assert [(r["name"], r["target"], r["target_type"]) for r in status["rules"]] == [
        ("SesFeedbackRule", "SesEventsQueue", "sqs")
    ]

    bounced, complained = subscriber(runtime, BOUNCE), subscriber(runtime, COMPLAINT)
    assert (bounced["status"], bounced["suppressed_reason"]) == ("suppressed", "bounce: Permanent/General")
    assert (complained["status"], complained["suppressed_reason"]) == ("suppressed", "complaint: abuse")
    assert subscriber(runtime, SUCCESS)["status"] == "subscribed"
    assert subscriber(runtime, READER)["status"] == "subscribed"
    delivered = record(runtime, first["id"], ids[SUCCESS])
    assert delivered["status"] == "sent" and delivered["delivered_at"]
    assert record(runtime, first["id"], ids[BOUNCE])["bounce_type"] == "Permanent"
    assert record(runtime, first["id"], ids[COMPLAINT])["complaint_type"] == "abuse"
    assert "delivered_at" not in record(runtime, first["id"], ids[READER])  # no events for it by default
    assert admin(runtime, "GET", f"/campaigns/{first['id']}")["counters"]["sent"] == 4
    assert feedback_counters(runtime, first["id"]) == {"delivered": 2, "bounced": 1, "complained": 1}
    assert admin(runtime, "GET", f"/campaigns/{first['id']}")["feedback"] == {
        "delivered": 2,
        "bounced": 1,
        "complained": 1,
    }

    # the counters equal the records: one record per recipient, its markers
    records = [record(runtime, first["id"], ids[email]) for email in (BOUNCE, COMPLAINT, SUCCESS, READER)]
    assert sum("delivered_at" in r for r in records) == 2
    assert sum("bounced_at" in r for r in records) == 1
    assert sum("complained_at" in r for r in records) == 1

    # the admin's figures: one SES event task per event recorded; an event whose mail's record
    # was still being sent is retried (a batch item failure), not an error
    def counted() -> dict[str, Any] | None:
        figures = admin(runtime, "GET", "/metrics")["windows"]["hour"]["task_types"]["ses_event"]
        return figures if figures["processed"] == status["delivered"] else None

    figures = wait_for(counted, timeout=10.0, interval=0.5)
    assert figures, admin(runtime, "GET", "/metrics")["windows"]["hour"]["task_types"]["ses_event"]
    assert figures["errors"] == {"task_errors": 0}
    assert figures["processing_ms"]["samples"] >= status["delivered"]  # and one per retried event

    second = send_campaign(runtime, "Second issue")
    mailed = [address for mail in outbox(runtime) if mail["subject"] == "Second issue" for address in mail["to"]]
    assert sorted(mailed) == sorted([SUCCESS, READER])
    assert admin(runtime, "GET", f"/campaigns/{second['id']}")["counters"]["recipients"] == 2
