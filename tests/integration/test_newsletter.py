"""The newsletter end to end: schedule -> dispatcher -> newsletter queue -> workers -> outbox."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from mailroom_local import Runtime
from tests.integration.conftest import http, mails_to, outbox, queues_idle, wait_for

pytestmark = pytest.mark.integration


def newsletters(runtime: Runtime) -> Counter[str]:
    """How many newsletters each address got."""
    counts: Counter[str] = Counter()
    for mail in outbox(runtime):
        if "newsletter" in mail["subject"].lower():
            counts.update(mail["to"])
    return counts


def test_firing_the_schedule_sends_exactly_one_newsletter_per_subscriber(runtime: Runtime) -> None:
    readers = [f"reader{n}.{uuid.uuid4().hex[:8]}@example.org" for n in range(3)]
    for reader in readers:
        assert http("POST", f"{runtime.url}/subscriptions", {"email": reader}).status == 202
    assert wait_for(lambda: all(mails_to(runtime, r, "welcome") for r in readers), timeout=3.0)

    fired = http("POST", f"{runtime.url}/_local/schedules/DailyNewsletter")
    assert fired.status == 200, fired.text
    result = fired.json()
    assert result["recipients"] == 3
    assert result["edition"].startswith("newsletter-")

    assert wait_for(lambda: all(newsletters(runtime)[r] >= 1 for r in readers), timeout=10.0)
    time.sleep(1.0)  # nothing more may arrive
    counts = newsletters(runtime)
    assert {r: counts[r] for r in readers} == dict.fromkeys(readers, 1)
    assert sum(counts.values()) == 3
    (sample,) = mails_to(runtime, readers[0], "newsletter")
    assert sample["html"] and sample["text"]

    # Firing the same edition again (the same day) sends nobody a second newsletter
    before = newsletters(runtime)
    fired = http("POST", f"{runtime.url}/_local/schedules/DailyNewsletter")
    assert fired.status == 200, fired.text
    assert wait_for(lambda: queues_idle(runtime, "NewsletterQueue"), timeout=10.0)
    time.sleep(1.0)
    assert newsletters(runtime) == before
    dead = {q["name"]: q for q in http("GET", f"{runtime.url}/_local/queues").json()}["NewsletterDeadLetterQueue"]
    assert dead["ApproximateNumberOfMessages"] == 0
