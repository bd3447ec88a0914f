"""Monitoring end to end on the embedded runtime: the functions' EMF output becomes metrics in
the local CloudWatch, and the admin's figures (GET /admin/metrics) equal what the outbox, the
result records and the dead-letter queue show; a sign-up's and a campaign's correlation id
follow them through the queues (GET /_local/logs)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from mailroom_local import Runtime
from tests.integration.conftest import (
    admin,
    admin_http,
    api_link,
    confirmation_link,
    http,
    mails_to,
    outbox,
    record_statuses,
    send_campaign,
    wait_for,
)

READERS = [f"watcher{n}@example.com" for n in range(4)]


def sign_up(runtime: Runtime, address: str) -> str:
    """Sign up and confirm (confirmation and welcome mails); the sign-up's request id."""
    answer = http("POST", f"{runtime.api_url}/subscriptions", {"email": address})
    assert answer.status == 202, answer.text
    link = api_link(runtime, confirmation_link(runtime, address))
    assert http("GET", link, headers={"Accept": "application/json"}).status == 200
    assert wait_for(lambda: mails_to(runtime, address, "welcome"), timeout=10.0)
    return answer.headers["x-amzn-requestid"]


def figures(runtime: Runtime) -> dict[str, Any]:
    answer: dict[str, Any] = admin(runtime, "GET", "/metrics")
    return answer


def test_the_admin_figures_equal_the_outbox_the_records_and_the_dead_letters(runtime: Runtime) -> None:
    request_ids = [sign_up(runtime, address) for address in READERS]
    # a malformed task: the welcome worker dead-letters it
    runtime.client("sqs").send_message(QueueUrl=runtime.stack.physical_name("WelcomeQueue"), MessageBody="{not json")
    subject = f"Monitored {uuid.uuid4().hex[:6]}"
    campaign = send_campaign(runtime, subject)
    assert wait_for(lambda: admin(runtime, "GET", "/dead-letters")["counts"]["welcome"] == 1, timeout=20.0)

    mails = outbox(runtime)
    confirmations = [m for m in mails if "confirm" in m["subject"].lower()]
    welcomes = [m for m in mails if "welcome" in m["subject"].lower()]
    newsletters = [m for m in mails if m["subject"] == subject]
    assert len(confirmations) == len(welcomes) == len(newsletters) == len(READERS)
    welcome_records = record_statuses(runtime, "welcome")
    campaign_records = record_statuses(runtime, f"campaign#{campaign['id']}")

    def settled() -> dict[str, Any] | None:
        # CloudWatch has a function's metrics once its invocation printed them: wait for the last
        answer = figures(runtime)
        hour = answer["windows"]["hour"]["task_types"]
        done = hour["newsletter"]["mails"]["sent"] == len(newsletters) and hour["welcome"]["errors"]["dead_lettered"]
        return answer if done else None

    answer = wait_for(settled, timeout=20.0, interval=0.5)
    assert answer, figures(runtime)
    assert answer["unavailable"] is None
    for window in ("hour", "day"):
        per_type = answer["windows"][window]["task_types"]
        confirmation, welcome, newsletter = per_type["confirmation"], per_type["welcome"], per_type["newsletter"]
        # mails: the outbox and the result records
        assert confirmation["mails"]["sent"] == len(confirmations)
        assert welcome["mails"]["sent"] == len(welcomes) == welcome_records["sent"]
        assert newsletter["mails"]["sent"] == len(newsletters) == campaign_records["sent"]
        assert newsletter["mails"]["sent"] == campaign["counters"]["sent"]
        # one confirmation or welcome task per mail; every processed task has its time
        assert confirmation["processed"] == confirmation["processing_ms"]["samples"] == len(confirmations)
        assert welcome["processed"] == welcome["processing_ms"]["samples"] == len(welcomes)
        assert newsletter["processed"] == newsletter["processing_ms"]["samples"] >= 1
        for figures_of in (confirmation, welcome, newsletter):
            p50, p95 = figures_of["processing_ms"]["p50"], figures_of["processing_ms"]["p95"]
            assert 0 < p50 <= p95
        # errors by type: the one malformed task, dead-lettered, and nothing else
        assert welcome["errors"] == {
            "task_errors": 0,
            "dead_lettered": 1,
            "failed": 0,
            "retried": 0,
            "throttled": 0,
            "uncertain": 0,
        }
        assert answer["windows"][window]["totals"]["errors"]["dead_lettered"] == 1
        assert sum(answer["windows"][window]["totals"]["errors"].values()) == 1
        assert per_type["newsletter_fanout"]["processed"] >= 1
        all_mails = len(confirmations) + len(welcomes) + len(newsletters)
        assert answer["windows"][window]["totals"]["mails_sent"] == all_mails

    (progress,) = [c for c in answer["campaigns"] if c["id"] == campaign["id"]]
    assert progress["status"] == "sent" and progress["eta"] is None
    assert progress["done"] == progress["recipients"] == progress["sent"] == len(newsletters)
    assert progress["rate_per_second"] > 0

    # the same figures, as the runtime collected them from the functions' output
    local = http("GET", f"{runtime.url}/_local/metrics").json()["metrics"]
    sums = {(m["metric"], m["dimensions"].get("task_type")): m["sum"] for m in local if m["namespace"] == "Mailroom"}
    assert sums[("MailsSent", "newsletter")] == len(newsletters)
    assert sums[("MailsSent", "confirmation")] == len(confirmations)
    assert sums[("TasksDeadLettered", "welcome")] == 1
    cold = {m["dimensions"]["function_name"] for m in local if m["metric"] == "ColdStart"}
    assert {"RegistrationFunction", "WelcomeWorkerFunction", "NewsletterWorkerFunction", "AdminFunction"} <= cold

    # a sign-up's correlation id: the API's request id, on the registration's lines and on the
    # worker's that sent its confirmation mail
    trail = http("GET", f"{runtime.url}/_local/logs?correlation_id={request_ids[0]}").json()["logs"]
    steps = {(record["function"], record["message"]) for record in trail}
    assert ("RegistrationFunction", "registration") in steps
    assert ("WelcomeWorkerFunction", "task done") in steps
    assert [r["task_type"] for r in trail if r["message"] == "task done"] == ["confirmation"]


def test_a_campaigns_correlation_id_follows_it_through_the_fan_out_to_the_sends(runtime: Runtime) -> None:
    # its own subscribers (straight into the table: no sign-up needed here)
    runtime.client("dynamodb").batch_write_item(
        RequestItems={
            runtime.stack.physical_name("SubscribersTable"): [
                {
                    "PutRequest": {
                        "Item": {
                            "email": {"S": f"traced{n}@example.com"},
                            "id": {"S": f"traced-{n}"},
                            "status": {"S": "subscribed"},
                            "created_at": {"S": "2026-12-06T09:00:00.000Z"},
                        }
                    }
                }
                for n in range(3)
            ]
        }
    )
    campaign_id = admin(runtime, "POST", "/campaigns", {"subject": "Traced", "content": "Hi"})["id"]
    started = admin_http(runtime, "POST", f"{runtime.api_url}/admin/campaigns/{campaign_id}/send")
    assert started.status == 202
    request_id = started.headers["x-amzn-requestid"]
    final = wait_for(lambda: (c := admin(runtime, "GET", f"/campaigns/{campaign_id}"))["status"] == "sent" and c, 60.0)
    assert final, admin(runtime, "GET", f"/campaigns/{campaign_id}")
    assert final["counters"]["sent"] >= 3

    def logs() -> list[dict[str, Any]]:
        url = f"{runtime.url}/_local/logs?correlation_id={request_id}"
        found: list[dict[str, Any]] = http("GET", url).json()["logs"]
        return found

    def sent(records: list[dict[str, Any]]) -> int:
        return sum(r.get("outcomes", {}).get("sent", 0) for r in records if r["function"] == "NewsletterWorkerFunction")

    # every send of the campaign is on a line with the admin's request id
    trail = wait_for(lambda: (found := logs()) and sent(found) == final["counters"]["sent"] and found, 10.0)
    assert trail, [(r["function"], r["message"], r.get("outcomes")) for r in logs()]
    functions = {record["function"] for record in trail}
    assert {"AdminFunction", "FanoutFunction", "NewsletterWorkerFunction"} <= functions
    assert all(r["campaign_id"] == campaign_id for r in trail if r["function"] == "NewsletterWorkerFunction")


@pytest.mark.parametrize(
    ("query", "message"),
    [("minutes=0", "minutes"), ("minutes=x", "minutes"), ("limit=0", "limit"), ("limit=999999", "limit")],
)
def test_the_local_routes_refuse_bad_parameters(runtime: Runtime, query: str, message: str) -> None:
    route = "metrics" if query.startswith("minutes") else "logs"
    answer = http("GET", f"{runtime.url}/_local/{route}?{query}")
    assert answer.status == 400 and message in answer.json()["message"]
