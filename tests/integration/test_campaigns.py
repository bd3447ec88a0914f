"""Campaigns end to end on the embedded runtime: admin API -> schedule -> fan-out -> workers -> outbox."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from mailroom_local import Runtime
from tests.integration.conftest import admin, http, mails_to, outbox, queues_idle, record_statuses, subscribe, wait_for
from tests.support import ACCOUNT, REGION, TEMPLATE

pytestmark = pytest.mark.integration

LARGE = 10_000


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    # A fast local SES, so that 10,000 mails take seconds, not minutes.
    started = Runtime(TEMPLATE, port=0, ses_max_send_rate=5_000.0, quiet=True).start()
    try:
        yield started
    finally:
        started.stop()


def per_address(runtime: Runtime, subject: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for mail in outbox(runtime):
        if mail["subject"] == subject:
            counts.update(mail["to"])
    return counts


def test_a_scheduled_campaign_goes_out_once_even_when_the_schedule_fires_twice(runtime: Runtime) -> None:
    readers = [f"reader{n}.{uuid.uuid4().hex[:8]}@example.org" for n in range(3)]
    for reader in readers:
        subscribe(runtime, reader, "Ada")

    subject = f"Issue {uuid.uuid4().hex[:6]}"
    campaign = admin(
        runtime,
        "POST",
        "/campaigns",
        {"subject": subject, "content": "Hi {{ name }}", "send_at": "2026-01-01T10:00:00Z"},
    )
    assert campaign["status"] == "scheduled"
    for _ in range(2):
        fired = http("POST", f"{runtime.url}/_local/schedules/DailyNewsletter")
        assert fired.status == 200, fired.text
    assert wait_for(lambda: admin(runtime, "GET", f"/campaigns/{campaign['id']}")["status"] == "sent", timeout=20.0)
    assert wait_for(lambda: queues_idle(runtime, "NewsletterQueue", "FanoutQueue"), timeout=10.0)
    time.sleep(0.5)  # nothing more may arrive
    assert per_address(runtime, subject) == dict.fromkeys(readers, 1)
    final = admin(runtime, "GET", f"/campaigns/{campaign['id']}")
    assert final["counters"] == {"recipients": 3, "queued": 0, "sent": 3, "failed": 0, "skipped": 0, "uncertain": 0}
    (mail,) = mails_to(runtime, readers[0], subject.lower())
    assert mail["html"] and "Hi Ada" in mail["text"] and f"{runtime.public_url}/unsubscribe?token=" in mail["text"]


def _seed(runtime: Runtime, count: int) -> list[str]:
    dynamodb = runtime.client("dynamodb")
    table = runtime.stack.physical_name("SubscribersTable")
    addresses = [f"bulk{n}@example.net" for n in range(count)]
    for start in range(0, count, 25):
        dynamodb.batch_write_item(
            RequestItems={
                table: [
                    {
                        "PutRequest": {
                            "Item": {
                                "email": {"S": address},
                                "id": {"S": f"bulk-{start + offset}"},
                                "status": {"S": "subscribed"},
                                "created_at": {"S": "2026-11-28T09:00:00.000Z"},
                            }
                        }
                    }
                    for offset, address in enumerate(addresses[start : start + 25])
                ]
            }
        )
    return addresses


def test_a_campaign_to_10000_subscribers_reaches_each_exactly_once(runtime: Runtime) -> None:
    from mailroom_local.outbox import Outbox

    addresses = _seed(runtime, LARGE)
    subject = f"Ten thousand {uuid.uuid4().hex[:6]}"
    campaign = admin(runtime, "POST", "/campaigns", {"subject": subject, "content": "# Hello\n\nNews for everyone."})
    started = time.monotonic()
    assert admin(runtime, "POST", f"/campaigns/{campaign['id']}/send")["status"] == "sending"

    def done() -> dict[str, Any] | None:
        current: dict[str, Any] = admin(runtime, "GET", f"/campaigns/{campaign['id']}")
        return current if current["status"] == "sent" else None

    final = wait_for(done, timeout=240.0, interval=1.0)
    assert final, admin(runtime, "GET", f"/campaigns/{campaign['id']}")
    elapsed = time.monotonic() - started
    mails = [mail for mail in Outbox(ACCOUNT, REGION).messages() if mail["subject"] == subject]
    counts = Counter(address for mail in mails for address in mail["to"])
    statuses = record_statuses(runtime, f"campaign#{campaign['id']}")
    print(f"\n{LARGE} subscribers: {len(mails)} mails in {elapsed:.1f} s ({len(mails) / elapsed:.0f}/s)")
    # outbox: every address exactly once (the bulk ones, and the earlier test's subscribers)
    assert all(counts[address] == 1 for address in addresses)
    assert max(counts.values()) == 1
    assert len(mails) == final["counters"]["sent"] == statuses["sent"] == final["counters"]["recipients"]
    # counters equal the records, exactly
    assert final["counters"] == {
        "recipients": statuses["sent"],
        "queued": 0,
        "sent": statuses["sent"],
        "failed": 0,
        "skipped": 0,
        "uncertain": 0,
    }
    assert sum(statuses.values()) == statuses["sent"] >= LARGE
    dead = {q["name"]: q for q in http("GET", f"{runtime.url}/_local/queues").json()}
    assert dead["NewsletterDeadLetterQueue"]["ApproximateNumberOfMessages"] == 0
    assert dead["FanoutDeadLetterQueue"]["ApproximateNumberOfMessages"] == 0
