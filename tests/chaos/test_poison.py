"""A poison task: the sender's identity disappears in the middle of a campaign.

Every send then fails with a configuration error (classified retryable: the fault is the
account's, not the recipients'); each task retries with backoff until its failures are used
up, then lands in the dead-letter queue with the reason. Once the identity is back, a redrive
sends exactly the missing mails: nobody who already had the newsletter gets it again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from types import ModuleType

import boto3
import pytest

from mailroom_local.faults import FaultInjector, FaultPlan, SqsTimeTravel
from mailroom_local.template import Stack
from tests.campaigns import assert_counters_match_records, put_subscribers
from tests.chaos.driver import Chaos
from tests.support import REGION

SUBJECT = "Poison monthly"


@pytest.fixture
def chaos(stack: Stack, load_function: Callable[..., ModuleType]) -> Iterator[Chaos]:
    travel = SqsTimeTravel().install()
    injector = FaultInjector(FaultPlan(), seed=0).install()  # no faults: the poison is real
    try:
        yield Chaos(stack, load_function, injector, travel, env={"RECIPIENTS_PER_TASK": "10", "SEND_THREADS": "8"})
    finally:
        injector.uninstall()
        travel.uninstall()


def newsletters(chaos: Chaos) -> Counter[str]:
    return Counter(address for subject, to in chaos.mail_headers() if subject == SUBJECT for address in to)


def test_a_poisoned_campaign_dead_letters_with_the_reason_and_its_redrive_sends_exactly_the_rest(
    chaos: Chaos,
) -> None:
    subscribed = set(put_subscribers(chaos.stack, 120))
    status, campaign = chaos.admin("POST", "/admin/campaigns", {"subject": SUBJECT, "content": "Hi {{ name }}"})
    assert status == 201
    assert chaos.admin("POST", f"/admin/campaigns/{campaign['id']}/send")[0] == 202
    fanout, newsletter = chaos.sources[1], chaos.sources[2]
    while chaos.poll(fanout):
        pass
    assert chaos.poll(newsletter)  # one batch goes out...
    before = newsletters(chaos)
    assert 0 < len(before) < len(subscribed)

    ses = boto3.client("sesv2", region_name=REGION)
    sender = chaos.stack.function_env("NewsletterWorkerFunction")["SENDER_ADDRESS"]
    ses.delete_email_identity(EmailIdentity=sender)  # ...then the sender's identity is gone
    chaos.run()

    assert newsletters(chaos) == before
    dead = chaos.dead_letters("NewsletterDeadLetterQueue")
    stuck = {r["email"] for message in dead for r in json.loads(message["Body"])["recipients"]}
    assert stuck == subscribed - set(before)
    for message in dead:
        reason = message["MessageAttributes"]["error"]["StringValue"]
        assert "MessageRejected" in reason and sender in reason
        assert json.loads(message["Body"])["failures"] == 9  # every retry was spent first
    progress = chaos.admin("GET", f"/admin/campaigns/{campaign['id']}")[1]
    assert progress["status"] == "sending" and progress["counters"]["queued"] == len(stuck)

    status, listing = chaos.admin("GET", "/admin/dead-letters")
    assert status == 200 and listing["counts"]["newsletter"] == len(dead)
    assert {item["reason"] for item in listing["items"]} == {
        message["MessageAttributes"]["error"]["StringValue"] for message in dead
    }

    ses.create_email_identity(EmailIdentity=sender)  # the fix
    status, redriven = chaos.admin("POST", "/admin/dead-letters/redrive", {"queue": "newsletter"})
    assert status == 200 and redriven["redriven"] == {"newsletter": len(dead)}
    chaos.run()

    after = newsletters(chaos)
    assert set(after) == subscribed and set(after.values()) == {1}
    final = chaos.admin("GET", f"/admin/campaigns/{campaign['id']}")[1]
    assert final["status"] == "sent"
    assert assert_counters_match_records(chaos.stack, final) == {"sent": len(subscribed)}
    assert chaos.pending("NewsletterDeadLetterQueue") == 0


def test_a_campaign_whose_start_died_before_its_fan_out_is_resumed_by_the_recovery_schedule(
    chaos: Chaos,
) -> None:
    from tests.campaigns import api_event

    subscribed = set(put_subscribers(chaos.stack, 30))
    status, campaign = chaos.admin("POST", "/admin/campaigns", {"subject": SUBJECT, "content": "Hi {{ name }}"})
    assert status == 201
    # "send now": two GetItems (1, 2), the start transaction (3), the fan-out's SendMessageBatch (4):
    # the function dies right after the campaign was started, before its fan-out was queued
    outcome, _ = chaos.invoke(
        "AdminFunction", api_event("POST", f"/admin/campaigns/{campaign['id']}/send"), crash_at=3, crash_after=True
    )
    assert outcome == "crashed"
    assert chaos.admin("GET", f"/admin/campaigns/{campaign['id']}")[1]["status"] == "sending"
    assert chaos.admin("POST", f"/admin/campaigns/{campaign['id']}/send")[0] == 409  # a retry cannot help
    chaos.run()
    assert newsletters(chaos) == dict.fromkeys(subscribed, 1)
    assert chaos.admin("GET", f"/admin/campaigns/{campaign['id']}")[1]["status"] == "sent"
