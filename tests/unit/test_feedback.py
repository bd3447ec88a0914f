"""SES feedback under moto: the handler, the logic and the adapter - records, counters, suppression, repeats."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError

from mailroom.adapters.feedback import FeedbackLedger, RecordNotReady
from mailroom.logic.feedback import (
    InvalidFeedback,
    MailRef,
    RecordChange,
    Recorded,
    apply_feedback,
    mail_ref,
    parse_event,
)
from mailroom_local.template import Stack
from tests.conftest import LambdaContext
from tests.support import REGION, load_event

CAMPAIGN = "c0ffee00c0ffee00c0ffee00c0ffee01"
DELIVERED_ID = "3f1c2a9e-5b7d-4e2a-9c1f-8d6b0a4e7c21"  # the subscribers of the sample events
BOUNCED_ID = "7a0e5d3b-1c9f-4b8e-a2d4-6f3c9e1b5a08"
COMPLAINED_ID = "c2b9f4e1-8d3a-4f6c-b7e5-0a1d9c8b2e47"
SAMPLES = {
    "ses_events_delivery.json": ("success@simulator.amazonses.com", DELIVERED_ID),
    "ses_events_bounce.json": ("bounce@simulator.amazonses.com", BOUNCED_ID),
    "ses_events_complaint.json": ("complaint@simulator.amazonses.com", COMPLAINED_ID),
}


def plain(item: dict[str, Any]) -> dict[str, Any]:
    from mailroom.adapters.dynamodb import from_item

    return from_item(item)


class Tables:
    """The stack's tables, read and written plainly."""

    def __init__(self, stack: Stack) -> None:
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.subscribers = stack.physical_name("SubscribersTable")
        self.results = stack.physical_name("ResultsTable")
        self.campaigns = stack.physical_name("CampaignsTable")

    def put(self, table: str, values: dict[str, Any]) -> None:
        from mailroom.adapters.dynamodb import to_item

        self.dynamodb.put_item(TableName=table, Item=to_item(values))

    def get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        from mailroom.adapters.dynamodb import to_item

        item = self.dynamodb.get_item(TableName=table, Key=to_item(key), ConsistentRead=True).get("Item")
        return plain(item) if item else None

    def subscriber(self, email: str) -> dict[str, Any]:
        found = self.get(self.subscribers, {"email": email})
        assert found is not None
        return found

    def record(self, pk: str, sk: str) -> dict[str, Any]:
        found = self.get(self.results, {"pk": pk, "sk": sk})
        assert found is not None
        return found

    def counters(self, campaign_id: str = CAMPAIGN) -> dict[str, int]:
        found = self.get(self.campaigns, {"id": f"{campaign_id}#progress"}) or {}
        return {name: int(found.get(name, 0)) for name in ("delivered", "bounced", "complained")}

    def add_subscriber(self, email: str, subscriber_id: str, **extra: Any) -> None:
        values = {"email": email, "id": subscriber_id, "status": "subscribed", "created_at": "2026-11-28T09:00:00.000Z"}
        self.put(self.subscribers, values | extra)

    def add_record(self, pk: str, sk: str, message_id: str | None, status: str = "sent") -> None:
        self.put(self.results, {"pk": pk, "sk": sk, "status": status, "message_id": message_id})

    def add_campaign(self, campaign_id: str = CAMPAIGN) -> None:
        self.put(self.campaigns, {"id": f"{campaign_id}#progress", "state": "sending", "sent": 3})


@pytest.fixture
def tables(stack: Stack) -> Tables:
    """The sample events' campaign, records and subscribers (one expiring: it must stop expiring)."""
    found = Tables(stack)
    found.add_campaign()
    for name, (email, subscriber_id) in SAMPLES.items():
        message_id = load_event(name)["detail"]["mail"]["messageId"]
        found.add_record(f"campaign#{CAMPAIGN}", subscriber_id, message_id)
        found.add_subscriber(email, subscriber_id, expires_at=1_900_000_000)
    return found


@pytest.fixture
def ledger(stack: Stack) -> FeedbackLedger:
    return FeedbackLedger(
        stack.physical_name("ResultsTable"),
        stack.physical_name("SubscribersTable"),
        stack.physical_name("CampaignsTable"),
        sleep=lambda seconds: None,
    )


@pytest.fixture
def app(load_function: Callable[..., ModuleType]) -> ModuleType:
    return load_function("SesEventsFunction")


def handle(app: ModuleType, event: Any) -> dict[str, Any]:
    result: dict[str, Any] = app.lambda_handler(event, LambdaContext())
    return result


# ------------------------------------------------------------------ the sample events
def test_a_hard_bounce_suppresses_the_subscriber_and_counts_once(tables: Tables, app: ModuleType) -> None:
    event = load_event("ses_events_bounce.json")
    first = handle(app, event)
    assert first == {
        "event": "Bounce",
        "outcome": "recorded",
        "counted": True,
        "suppressed": 1,
        "bounce": "hard",
        "soft_bounce_counted": False,
    }
    subscriber = tables.subscriber("bounce@simulator.amazonses.com")
    assert subscriber["status"] == "suppressed"
    assert subscriber["suppressed_reason"] == "bounce: Permanent/General"
    assert subscriber["suppressed_at"].endswith("Z")
    assert "expires_at" not in subscriber
    assert int(subscriber.get("soft_bounces", 0)) == 0
    record = tables.record(f"campaign#{CAMPAIGN}", BOUNCED_ID)
    assert record["bounced_at"] == "2026-11-28T10:00:01.000Z"
    assert (record["bounce_type"], record["bounce_subtype"]) == ("Permanent", "General")
    assert record["status"] == "sent"  # the send's own result is untouched
    assert "email" not in record  # no address where there was none
    assert tables.counters() == {"delivered": 0, "bounced": 1, "complained": 0}

    again = handle(app, copy.deepcopy(event))  # EventBridge delivers it again
    assert (again["outcome"], again["counted"], again["suppressed"]) == ("duplicate", False, 0)
    assert tables.counters() == {"delivered": 0, "bounced": 1, "complained": 0}
    assert tables.subscriber("bounce@simulator.amazonses.com")["suppressed_at"] == subscriber["suppressed_at"]


def test_a_complaint_suppresses_the_subscriber_and_counts_once(tables: Tables, app: ModuleType) -> None:
    event = load_event("ses_events_complaint.json")
    first = handle(app, event)
    assert (first["event"], first["outcome"], first["counted"], first["suppressed"]) == (
        "Complaint",
        "recorded",
        True,
        1,
    )
    subscriber = tables.subscriber("complaint@simulator.amazonses.com")
    assert (subscriber["status"], subscriber["suppressed_reason"]) == ("suppressed", "complaint: abuse")
    record = tables.record(f"campaign#{CAMPAIGN}", COMPLAINED_ID)
    assert (record["complained_at"], record["complaint_type"]) == ("2026-11-28T10:00:02.000Z", "abuse")
    assert handle(app, event)["outcome"] == "duplicate"
    assert tables.counters() == {"delivered": 0, "bounced": 0, "complained": 1}


def test_a_delivery_is_recorded_and_counted_once(tables: Tables, app: ModuleType) -> None:
    event = load_event("ses_events_delivery.json")
    assert handle(app, event)["outcome"] == "recorded"
    assert handle(app, event)["outcome"] == "duplicate"
    record = tables.record(f"campaign#{CAMPAIGN}", DELIVERED_ID)
    assert record["delivered_at"] == "2026-11-28T10:00:01.000Z"
    assert record["feedback"] == {"delivery:2026-11-28T10:00:01.000Z"}
    assert tables.counters() == {"delivered": 1, "bounced": 0, "complained": 0}
    assert tables.subscriber("success@simulator.amazonses.com")["status"] == "subscribed"


def test_metrics_and_logs_name_no_address(tables: Tables, app: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    for name in SAMPLES:
        handle(app, load_event(name))
    out = capsys.readouterr().out
    assert "@" not in out.replace('"service":"ses-events"', "")
    blobs = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    names = {metric["Name"] for blob in blobs for d in blob["_aws"]["CloudWatchMetrics"] for metric in d["Metrics"]}
    assert {"SesDeliveries", "SesBounces", "SesComplaints", "SubscribersSuppressed"} <= names
    (bounce,) = [blob for blob in blobs if "SesBounces" in blob]
    assert (bounce["bounce"], bounce["task_type"]) == ("hard", "ses_event")


# ------------------------------------------------------------------------ soft bounces
def soft_bounce(feedback_id: str, bounce_type: str = "Transient") -> dict[str, Any]:
    event = load_event("ses_events_bounce.json")
    event["detail"]["bounce"] |= {"bounceType": bounce_type, "bounceSubType": "MailboxFull", "feedbackId": feedback_id}
    return event


def test_a_soft_bounce_is_counted_once_even_when_delivered_twice(tables: Tables, app: ModuleType) -> None:
    first = handle(app, soft_bounce("fb-1"))
    assert (first["outcome"], first["bounce"], first["soft_bounce_counted"], first["suppressed"]) == (
        "recorded",
        "soft",
        True,
        0,
    )
    assert handle(app, soft_bounce("fb-1"))["outcome"] == "duplicate"
    subscriber = tables.subscriber("bounce@simulator.amazonses.com")
    assert (subscriber["status"], int(subscriber["soft_bounces"])) == ("subscribed", 1)
    # another soft bounce of the same mail: counted on the subscriber, not again on the campaign
    second = handle(app, soft_bounce("fb-2", "Undetermined"))
    assert (second["outcome"], second["counted"], second["soft_bounce_counted"]) == ("recorded again", False, True)
    assert handle(app, soft_bounce("fb-1"))["outcome"] == "duplicate"  # an old one once more
    assert int(tables.subscriber("bounce@simulator.amazonses.com")["soft_bounces"]) == 2
    assert tables.counters()["bounced"] == 1
    record = tables.record(f"campaign#{CAMPAIGN}", BOUNCED_ID)
    assert record["feedback"] == {"bounce:fb-1", "bounce:fb-2"}
    assert record["bounce_type"] == "Undetermined"  # the latest


def test_a_hard_bounce_after_a_soft_one_suppresses(tables: Tables, app: ModuleType) -> None:
    handle(app, soft_bounce("fb-1"))
    result = handle(app, load_event("ses_events_bounce.json"))
    assert (result["outcome"], result["counted"], result["suppressed"]) == ("recorded again", False, 1)
    assert tables.subscriber("bounce@simulator.amazonses.com")["status"] == "suppressed"
    assert tables.counters()["bounced"] == 1


# ------------------------------------------------------------------- what is left alone
def test_an_event_without_a_record_changes_nothing(tables: Tables, app: ModuleType, stack: Stack) -> None:
    event = load_event("ses_events_delivery.json")
    event["detail"]["mail"]["tags"]["campaign"] = ["feedfeedfeedfeedfeedfeedfeedfeed"]
    assert handle(app, event)["outcome"] == "no record"
    assert tables.get(tables.results, {"pk": "campaign#feedfeedfeedfeedfeedfeedfeedfeed", "sk": DELIVERED_ID}) is None
    assert tables.counters("feedfeedfeedfeedfeedfeedfeedfeed") == {"delivered": 0, "bounced": 0, "complained": 0}
    # a soft bounce without a record counts nothing either (it could not be told from a repeat)
    bounce = soft_bounce("fb-1")
    bounce["detail"]["mail"]["tags"]["campaign"] = ["feedfeedfeedfeedfeedfeedfeedfeed"]
    assert handle(app, bounce)["soft_bounce_counted"] is False
    assert "soft_bounces" not in tables.subscriber("bounce@simulator.amazonses.com")


def test_a_hard_bounce_without_a_record_still_suppresses_the_subscriber_it_names(
    tables: Tables, app: ModuleType
) -> None:
    event = load_event("ses_events_bounce.json")
    event["detail"]["mail"]["tags"]["campaign"] = ["feedfeedfeedfeedfeedfeedfeedfeed"]
    result = handle(app, event)
    assert (result["outcome"], result["suppressed"]) == ("no record", 1)
    assert tables.subscriber("bounce@simulator.amazonses.com")["status"] == "suppressed"


def test_another_subscriber_at_the_address_is_neither_suppressed_nor_counted(tables: Tables, app: ModuleType) -> None:
    # the address was erased and registered again: a new subscriber, a new id
    tables.add_subscriber("bounce@simulator.amazonses.com", "someone-else")
    assert handle(app, load_event("ses_events_bounce.json"))["suppressed"] == 0
    assert handle(app, soft_bounce("fb-1"))["soft_bounce_counted"] is False
    subscriber = tables.subscriber("bounce@simulator.amazonses.com")
    assert subscriber["status"] == "subscribed"
    assert "soft_bounces" not in subscriber
    assert tables.counters()["bounced"] == 1  # the mail did bounce


def test_an_event_of_another_message_is_not_recorded(tables: Tables, app: ModuleType) -> None:
    event = load_event("ses_events_delivery.json")
    event["detail"]["mail"]["messageId"] = "another-message"
    assert handle(app, event)["outcome"] == "other mail"
    assert tables.counters()["delivered"] == 0


@pytest.mark.parametrize(
    "change",
    [
        {"detail-type": "Email Sent", "detail": {"eventType": "Send"}},
        {"detail-type": "Email Delivery Delayed", "detail": {"eventType": "DeliveryDelay"}},
        {"detail-type": "Email Rejected", "detail": {"eventType": "Reject"}},
        {"detail": {"mail": {"tags": {"kind": ["test"], "campaign": [CAMPAIGN]}}}},  # a test copy
        {"detail": {"mail": {"tags": {"kind": ["campaign"], "subscriber": ["a b"], "campaign": [CAMPAIGN]}}}},
        {"detail": {"mail": {"tags": {"kind": ["campaign"], "subscriber": [DELIVERED_ID], "campaign": []}}}},
        {"detail": {"mail": {"tags": {"kind": ["confirmation"], "subscriber": [DELIVERED_ID], "seq": ["x"]}}}},
    ],
)
def test_events_that_name_nothing_to_record_are_ignored(
    tables: Tables, app: ModuleType, change: dict[str, Any]
) -> None:
    event = merge(load_event("ses_events_delivery.json"), change)
    assert handle(app, event)["outcome"] == "ignored"
    assert tables.counters()["delivered"] == 0


def merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "tags":
            merge(base[key], value)
        else:
            base[key] = value
    return base


def _without(path: str) -> Callable[[dict[str, Any]], Any]:
    def change(event: dict[str, Any]) -> Any:
        *parents, last = path.split(".")
        target = event
        for part in parents:
            target = target[part]
        del target[last]
        return event

    return change


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def change(event: dict[str, Any]) -> Any:
        *parents, last = path.split(".")
        target = event
        for part in parents:
            target = target[part]
        target[last] = value
        return event

    return change


@pytest.mark.parametrize(
    "make",
    [
        lambda event: None,
        lambda event: [],
        lambda event: "Email Bounced",
        lambda event: {},
        lambda event: {"source": "aws.ses"},
        _set("source", "aws.sns"),
        _without("detail"),
        _without("detail.mail"),
        _without("detail.mail.messageId"),
        _without("detail.bounce"),
        _without("detail.bounce.feedbackId"),
        _set("detail.bounce.timestamp", "yesterday"),
        _set("detail.bounce.bouncedRecipients", "bounce@simulator.amazonses.com"),
        _set("detail.mail.tags", {"kind": "campaign"}),
        _set("detail.mail.tags", ["kind"]),
        _set("detail", "bounce@simulator.amazonses.com"),
        _set("detail.bounce.bounceType", None),
    ],
)
def test_malformed_events_are_logged_and_ignored(
    tables: Tables, app: ModuleType, make: Callable[[dict[str, Any]], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    result = handle(app, make(load_event("ses_events_bounce.json")))
    assert result["outcome"] == "malformed"
    assert "simulator.amazonses.com" not in result["reason"]
    assert "simulator.amazonses.com" not in capsys.readouterr().out
    assert tables.subscriber("bounce@simulator.amazonses.com")["status"] == "subscribed"
    assert tables.counters()["bounced"] == 0


def test_a_recipient_that_is_no_address_is_skipped(tables: Tables, app: ModuleType) -> None:
    event = load_event("ses_events_bounce.json")
    event["detail"]["bounce"]["bouncedRecipients"] = [{"emailAddress": "not an address"}]
    event["detail"]["mail"]["destination"] = ["also not"]
    result = handle(app, event)
    assert (result["outcome"], result["suppressed"]) == ("recorded", 0)


def test_recipients_fall_back_to_the_mails_destination(tables: Tables, app: ModuleType) -> None:
    event = load_event("ses_events_complaint.json")
    event["detail"]["complaint"]["complainedRecipients"] = []
    event["detail"]["mail"]["destination"] = ["Someone <Complaint@Simulator.AmazonSES.com>"]
    del event["detail"]["complaint"]["complaintFeedbackType"]
    assert handle(app, event)["suppressed"] == 1
    assert tables.subscriber("complaint@simulator.amazonses.com")["suppressed_reason"] == "complaint"


# ------------------------------------------------------------------------ the adapter
def test_welcome_and_confirmation_records_are_found_and_count_nothing(stack: Stack, ledger: FeedbackLedger) -> None:
    tables = Tables(stack)
    tables.add_record("welcome", "s-1", "m-1")
    tables.add_record("confirmation", "s-1#2", "m-2")
    for tags, message_id, key in [
        ({"kind": ["welcome"], "subscriber": ["s-1"]}, "m-1", ("welcome", "s-1")),
        ({"kind": ["confirmation"], "subscriber": ["s-1"], "seq": ["2"]}, "m-2", ("confirmation", "s-1#2")),
    ]:
        event = load_event("ses_events_delivery.json")
        event["detail"]["mail"] |= {"tags": tags, "messageId": message_id}
        feedback = apply_feedback(parse_event(event), ledger)
        assert (feedback.outcome, feedback.counted) == ("recorded", False)
        assert tables.record(*key)["delivered_at"] == "2026-11-28T10:00:01.000Z"


def test_a_record_still_being_sent_fails_the_event_after_suppressing(tables: Tables, ledger: FeedbackLedger) -> None:
    # a campaign's result replaces its whole record: writing on a claimed one would be lost
    tables.add_record(f"campaign#{CAMPAIGN}", BOUNCED_ID, None, status="sending")
    with pytest.raises(RecordNotReady):
        apply_feedback(parse_event(load_event("ses_events_bounce.json")), ledger)
    assert tables.subscriber("bounce@simulator.amazonses.com")["status"] == "suppressed"
    assert tables.counters()["bounced"] == 0


def test_a_record_whose_send_is_not_recorded_yet_still_gets_its_events(tables: Tables, ledger: FeedbackLedger) -> None:
    tables.add_record(f"campaign#{CAMPAIGN}", DELIVERED_ID, None, status="uncertain")
    assert apply_feedback(parse_event(load_event("ses_events_delivery.json")), ledger).outcome == "recorded"


def test_a_lost_answer_is_judged_again_and_counts_once(tables: Tables, ledger: FeedbackLedger) -> None:
    real = ledger.client.transact_write_items
    calls = []

    def lost(**kwargs: Any) -> Any:
        calls.append(kwargs)
        answer = real(**kwargs)
        if len(calls) == 1:
            raise ReadTimeoutError(endpoint_url="https://dynamodb")
        return answer

    ledger.client.transact_write_items = lost  # type: ignore[method-assign]
    feedback = apply_feedback(parse_event(soft_bounce("fb-1")), ledger)
    assert feedback.outcome == "duplicate"  # it went through the first time
    assert len(calls) == 1
    assert tables.counters()["bounced"] == 1
    assert int(tables.subscriber("bounce@simulator.amazonses.com")["soft_bounces"]) == 1


def test_a_campaign_without_its_progress_item_is_recorded_uncounted(stack: Stack, ledger: FeedbackLedger) -> None:
    tables = Tables(stack)
    tables.add_record(f"campaign#{CAMPAIGN}", DELIVERED_ID, None)
    result = ledger.record(
        MailRef(f"campaign#{CAMPAIGN}", DELIVERED_ID, DELIVERED_ID, CAMPAIGN),
        RecordChange("delivery:t", "m", "delivered_at", "t", "delivered"),
    )
    assert (result.recorded, result.counted) == (Recorded.FIRST, False)
    assert tables.record(f"campaign#{CAMPAIGN}", DELIVERED_ID)["delivered_at"] == "t"


def test_only_the_first_event_of_a_kind_counts_when_another_races_it(tables: Tables, ledger: FeedbackLedger) -> None:
    """Another delivery event is recorded between our read and our write: ours is recorded again, uncounted."""
    ref = MailRef(f"campaign#{CAMPAIGN}", DELIVERED_ID, DELIVERED_ID, CAMPAIGN)
    message_id = tables.record(ref.pk, ref.sk)["message_id"]
    real_get = ledger._get
    raced: list[Any] = []

    def get(found: MailRef) -> dict[str, Any] | None:
        current = real_get(found)
        if not raced:
            raced.append(None)
            ledger._get = real_get  # type: ignore[method-assign]
            raced[0] = ledger.record(ref, RecordChange("delivery:a", message_id, "delivered_at", "a", "delivered"))
        return current

    ledger._get = get  # type: ignore[method-assign]
    result = ledger.record(ref, RecordChange("delivery:b", message_id, "delivered_at", "b", "delivered"))
    assert (raced[0].recorded, raced[0].counted) == (Recorded.FIRST, True)
    assert (result.recorded, result.counted) == (Recorded.AGAIN, False)
    assert tables.counters()["delivered"] == 1
    record = tables.record(ref.pk, ref.sk)
    assert (record["delivered_at"], record["feedback"]) == ("a", {"delivery:a", "delivery:b"})


def test_tags_name_records() -> None:
    def mail(**tags: str) -> Any:
        event = load_event("ses_events_delivery.json")
        event["detail"]["mail"]["tags"] = {name: [value] for name, value in tags.items()}
        return parse_event(event).detail.mail

    assert mail_ref(mail(kind="welcome", subscriber="s")) == MailRef("welcome", "s", "s")
    assert mail_ref(mail(kind="campaign", campaign="c", subscriber="s")) == MailRef("campaign#c", "s", "s", "c")
    assert mail_ref(mail(kind="confirmation", subscriber="s", seq="3")) == MailRef("confirmation", "s#3", "s")
    assert mail_ref(mail(kind="campaign", subscriber="s")) is None
    assert mail_ref(mail(kind="welcome", subscriber="s#x")) is None
    assert mail_ref(mail(kind="test", campaign="c")) is None


def test_parse_event_says_where_and_what_but_never_the_values() -> None:
    event = load_event("ses_events_bounce.json")
    event["detail"]["bounce"]["timestamp"] = "bounce@simulator.amazonses.com"
    with pytest.raises(InvalidFeedback) as raised:
        parse_event(event)
    assert "detail.bounce.timestamp" in str(raised.value)
    assert "simulator" not in str(raised.value)
