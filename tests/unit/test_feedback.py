"""SES feedback under moto: the handler, the logic and the adapter - records, counters, suppression, repeats."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from mailroom.adapters.feedback import FeedbackLedger, RecordNotReady
from mailroom.adapters.sqs import come_again
from mailroom.logic.delivery import STALE_CLAIM_SECONDS
from mailroom.logic.feedback import (
    InvalidFeedback,
    MailRef,
    RecordChange,
    Recorded,
    RecordResult,
    apply_batch,
    apply_feedback,
    mail_ref,
    parse_event,
)
from mailroom.observability import logger
from mailroom_local.template import Stack
from tests.conftest import LambdaContext
from tests.support import REGION, load_event, sqs_event

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
def logs() -> Iterator[Callable[[], str]]:
    """The JSON log lines the functions write (the Powertools logger's stream), as text."""
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)
    try:
        yield stream.getvalue
    finally:
        logger.registered_handler.setStream(previous)


@pytest.fixture
def app(load_function: Callable[..., ModuleType]) -> ModuleType:
    return load_function("SesEventsFunction")


def handle(app: ModuleType, event: Any) -> dict[str, Any]:
    """What one event did (``Feedback.summary()``), recorded by the function's own store and
    clock (the handler answers only its batch's failures; batches are tested below)."""
    try:
        return apply_feedback(parse_event(event), app.store, app.clock).summary()
    except InvalidFeedback as exc:
        return {"outcome": "malformed", "reason": str(exc)}


def invoke(app: ModuleType, stack: Stack, *events: Any) -> dict[str, Any]:
    """The handler with one SQS batch: a message per event, its body the EventBridge event."""
    result: dict[str, Any] = app.lambda_handler(sqs_event(stack, "SesEventsQueue", list(events)), LambdaContext())
    return result


def message_ids(batch: dict[str, Any]) -> list[str]:
    return [record["messageId"] for record in batch["Records"]]


def emf(out: str) -> dict[str, float]:
    """The task metrics of the ses_event task type in the output: name -> sum of its values."""
    found: dict[str, float] = {}
    for line in out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        if blob.get("task_type") != "ses_event" or "bounce" in blob:
            continue
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                found[metric["Name"]] = found.get(metric["Name"], 0) + (
                    sum(value) if isinstance(value, list) else value
                )
    return found


def task_done(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"task done"' in line]
    return [line for line in lines if line.get("message") == "task done"]


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


def test_metrics_and_logs_name_no_address(
    tables: Tables, app: ModuleType, stack: Stack, capsys: pytest.CaptureFixture[str], logs: Callable[[], str]
) -> None:
    assert invoke(app, stack, *(load_event(name) for name in SAMPLES)) == {"batchItemFailures": []}
    out = capsys.readouterr().out
    assert "@" not in out.replace('"service":"ses-events"', "")
    assert logs() and "simulator.amazonses.com" not in logs()
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
def test_malformed_events_are_logged_and_dropped(
    tables: Tables,
    app: ModuleType,
    stack: Stack,
    make: Callable[[dict[str, Any]], Any],
    capsys: pytest.CaptureFixture[str],
    logs: Callable[[], str],
) -> None:
    result = handle(app, make(load_event("ses_events_bounce.json")))
    assert result["outcome"] == "malformed"
    assert "simulator.amazonses.com" not in result["reason"]
    # in a batch: logged with the reason, counted, dropped (retrying cannot fix it): no item failure
    assert invoke(app, stack, make(load_event("ses_events_bounce.json"))) == {"batchItemFailures": []}
    out = capsys.readouterr().out
    assert "simulator.amazonses.com" not in out + logs()
    assert "not an SES event Mailroom can read: ignored" in logs()
    assert '"SesEventsIgnored":[1.0]' in out
    assert tables.subscriber("bounce@simulator.amazonses.com")["status"] == "subscribed"
    assert tables.counters()["bounced"] == 0


def test_messages_that_are_no_json_or_no_message_are_dropped(
    tables: Tables, app: ModuleType, stack: Stack, logs: Callable[[], str]
) -> None:
    batch = sqs_event(stack, "SesEventsQueue", [load_event("ses_events_delivery.json")] * 2)
    batch["Records"][0]["body"] = "bounce@simulator.amazonses.com is not JSON"
    batch["Records"].append({"body": "{}"})  # no messageId
    assert app.lambda_handler(batch, LambdaContext()) == {"batchItemFailures": []}
    assert "simulator.amazonses.com" not in logs()
    assert logs().count("not an SES event Mailroom can read: ignored") == 2
    assert tables.counters()["delivered"] == 1


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
    real_get = ledger._get_many
    raced: list[Any] = []

    def get(refs: Any) -> Any:
        current = real_get(refs)
        if not raced:
            raced.append(None)
            ledger._get_many = real_get  # type: ignore[method-assign]
            raced[0] = ledger.record(ref, RecordChange("delivery:a", message_id, "delivered_at", "a", "delivered"))
        return current

    ledger._get_many = get  # type: ignore[method-assign]
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


# ------------------------------------------------------------------------------ batches
def test_the_sample_batch_records_every_event_and_logs_one_line(
    tables: Tables, app: ModuleType, capsys: pytest.CaptureFixture[str], logs: Callable[[], str]
) -> None:
    batch = load_event("ses_events_sqs.json")  # what sam local invoke gets: the three samples
    assert [json.loads(record["body"]) for record in batch["Records"]] == [load_event(name) for name in SAMPLES]
    assert app.lambda_handler(batch, LambdaContext()) == {"batchItemFailures": []}
    assert tables.counters() == {"delivered": 1, "bounced": 1, "complained": 1}
    assert tables.subscriber("bounce@simulator.amazonses.com")["status"] == "suppressed"
    assert tables.subscriber("complaint@simulator.amazonses.com")["status"] == "suppressed"
    out = capsys.readouterr().out
    (done,) = task_done(logs())  # one line per batch, none per event
    assert (done["events"], done["ignored"], done["retried"], done["outcomes"]) == (3, 0, 0, {"recorded": 3})
    assert "SES event processed" not in logs()
    metrics = emf(out)
    assert (metrics["TasksProcessed"], metrics["SesDeliveries"], metrics["SesComplaints"]) == (3, 1, 1)
    assert metrics["SubscribersSuppressed"] == 2
    assert len(json.loads(next(line for line in out.splitlines() if '"ProcessingTime"' in line))["ProcessingTime"]) == 3


def test_a_batch_with_duplicate_events_counts_each_once(
    tables: Tables, app: ModuleType, stack: Stack, capsys: pytest.CaptureFixture[str], logs: Callable[[], str]
) -> None:
    delivery, bounce = load_event("ses_events_delivery.json"), load_event("ses_events_bounce.json")
    assert invoke(app, stack, delivery, bounce, delivery, bounce, delivery) == {"batchItemFailures": []}
    assert tables.counters() == {"delivered": 1, "bounced": 1, "complained": 0}
    record = tables.record(f"campaign#{CAMPAIGN}", DELIVERED_ID)
    assert record["feedback"] == {"delivery:2026-11-28T10:00:01.000Z"}
    out = capsys.readouterr().out
    (done,) = task_done(logs())
    assert done["outcomes"] == {"recorded": 2, "duplicate": 3}
    metrics = emf(out)
    assert (metrics["TasksProcessed"], metrics["SesDeliveries"]) == (5, 1)
    assert metrics["SubscribersSuppressed"] == 1  # the repeats find it suppressed
    # and again in the next batch: nothing new
    assert invoke(app, stack, delivery, bounce) == {"batchItemFailures": []}
    assert tables.counters() == {"delivered": 1, "bounced": 1, "complained": 0}


def test_events_of_one_record_in_one_batch_are_each_recorded(tables: Tables, app: ModuleType, stack: Stack) -> None:
    complaint = load_event("ses_events_complaint.json")
    delivered = copy.deepcopy(load_event("ses_events_delivery.json"))
    delivered["detail"]["mail"] = copy.deepcopy(complaint["detail"]["mail"])  # the same mail: delivered, complained
    batch = [delivered, complaint, soft_bounce("fb-1"), soft_bounce("fb-2"), soft_bounce("fb-3", "Undetermined")]
    assert invoke(app, stack, *batch) == {"batchItemFailures": []}
    assert tables.counters() == {"delivered": 1, "bounced": 1, "complained": 1}
    record = tables.record(f"campaign#{CAMPAIGN}", COMPLAINED_ID)
    assert record["feedback"] == {"delivery:2026-11-28T10:00:01.000Z", "complaint:" + complaint_id(complaint)}
    assert (record["delivered_at"], record["complained_at"]) == ("2026-11-28T10:00:01.000Z", "2026-11-28T10:00:02.000Z")
    bounced = tables.record(f"campaign#{CAMPAIGN}", BOUNCED_ID)
    assert bounced["feedback"] == {"bounce:fb-1", "bounce:fb-2", "bounce:fb-3"}
    assert int(tables.subscriber("bounce@simulator.amazonses.com")["soft_bounces"]) == 3


def complaint_id(event: dict[str, Any]) -> str:
    return str(event["detail"]["complaint"]["feedbackId"])


def test_soft_bounces_of_one_subscriber_on_two_records_in_one_batch(stack: Stack, app: ModuleType) -> None:
    tables = Tables(stack)
    tables.add_campaign()
    tables.add_subscriber("bounce@simulator.amazonses.com", BOUNCED_ID)
    tables.add_record(f"campaign#{CAMPAIGN}", BOUNCED_ID, "m-1")
    tables.add_record("welcome", BOUNCED_ID, "m-2")
    on_campaign = soft_bounce("fb-1")
    on_campaign["detail"]["mail"]["messageId"] = "m-1"
    on_welcome = soft_bounce("fb-2")
    on_welcome["detail"]["mail"] |= {"messageId": "m-2", "tags": {"kind": ["welcome"], "subscriber": [BOUNCED_ID]}}
    # two updates of the subscriber's item cannot share a transaction: two transactions
    assert invoke(app, stack, on_campaign, on_welcome) == {"batchItemFailures": []}
    assert int(tables.subscriber("bounce@simulator.amazonses.com")["soft_bounces"]) == 2
    assert tables.counters()["bounced"] == 1


def test_a_record_still_being_sent_fails_exactly_its_message(
    tables: Tables, app: ModuleType, stack: Stack, capsys: pytest.CaptureFixture[str], logs: Callable[[], str]
) -> None:
    tables.add_record(f"campaign#{CAMPAIGN}", BOUNCED_ID, None, status="sending")
    batch = sqs_event(stack, "SesEventsQueue", [load_event(name) for name in SAMPLES])
    bounce_message = message_ids(batch)[1]
    assert app.lambda_handler(batch, LambdaContext()) == {"batchItemFailures": [{"itemIdentifier": bounce_message}]}
    # the others are recorded; the bounce's subscriber is suppressed already; its record waits
    assert tables.counters() == {"delivered": 1, "bounced": 0, "complained": 1}
    assert tables.subscriber("bounce@simulator.amazonses.com")["status"] == "suppressed"
    out = capsys.readouterr().out
    (done,) = task_done(logs())
    assert (done["retried"], done["outcomes"]) == (1, {"recorded": 2, "not ready": 1})
    metrics = emf(out)
    assert (metrics["TasksRetried"], metrics["TasksProcessed"], metrics.get("TaskErrors", 0)) == (1, 2, 0)
    # the message comes again once the worker recorded its send: recorded then, counted once
    tables.add_record(
        f"campaign#{CAMPAIGN}", BOUNCED_ID, load_event("ses_events_bounce.json")["detail"]["mail"]["messageId"]
    )
    assert app.lambda_handler(batch, LambdaContext()) == {"batchItemFailures": []}
    assert tables.counters() == {"delivered": 1, "bounced": 1, "complained": 1}


class RecordingSqs:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def change_message_visibility_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"Successful": [{"Id": entry["Id"]} for entry in kwargs["Entries"]], "Failed": []}


@pytest.mark.parametrize(("receives", "delay"), [("1", 15), ("2", 60), ("4", 900), ("5", 900)])
def test_a_not_ready_event_comes_again_sooner_the_later_the_longer(
    tables: Tables, app: ModuleType, stack: Stack, monkeypatch: pytest.MonkeyPatch, receives: str, delay: int
) -> None:
    tables.add_record(f"campaign#{CAMPAIGN}", BOUNCED_ID, None, status="sending")
    batch = sqs_event(stack, "SesEventsQueue", [load_event(name) for name in SAMPLES])
    for record in batch["Records"]:
        record["attributes"]["ApproximateReceiveCount"] = receives
    sqs = RecordingSqs()
    monkeypatch.setattr(app, "sqs_client", lambda: sqs)
    bounce = batch["Records"][1]
    assert app.lambda_handler(batch, LambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": bounce["messageId"]}]
    }
    # only the not-ready message, on the function's own queue, with the delay of its receive
    assert sqs.calls == [
        {
            "QueueUrl": app.settings.ses_events_queue_url,
            "Entries": [{"Id": "0", "ReceiptHandle": bounce["receiptHandle"], "VisibilityTimeout": delay}],
        }
    ]
    assert app.settings.ses_events_queue_url == stack.ref("SesEventsQueue")
    # the 5th receive, the last before the dead-letter queue, comes after a stale claim is resolved
    assert sum(app.NOT_READY_DELAYS) > STALE_CLAIM_SECONDS


def test_come_again_makes_a_message_visible_after_its_own_delay(stack: Stack) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = str(stack.ref("SesEventsQueue"))
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    assert sqs.receive_message(QueueUrl=url).get("Messages") is None  # in flight: invisible
    assert come_again(sqs, url, [(message["ReceiptHandle"], 0), ("not-a-handle", 0)]) == 1
    (again,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    assert again["MessageId"] == message["MessageId"]


def test_an_aws_error_on_one_event_fails_only_its_message(
    tables: Tables, app: ModuleType, stack: Stack, capsys: pytest.CaptureFixture[str], logs: Callable[[], str]
) -> None:
    real = app.store.suppress

    def suppress(email: str, *args: Any) -> bool:
        if email.startswith("complaint"):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "UpdateItem")
        return bool(real(email, *args))

    app.store.suppress = suppress
    batch = sqs_event(stack, "SesEventsQueue", [load_event(name) for name in SAMPLES])
    complaint_message = message_ids(batch)[2]
    assert app.lambda_handler(batch, LambdaContext()) == {"batchItemFailures": [{"itemIdentifier": complaint_message}]}
    assert tables.counters() == {"delivered": 1, "bounced": 1, "complained": 0}
    out = capsys.readouterr().out
    assert "an SES event could not be recorded" in logs()
    assert "simulator.amazonses.com" not in out + logs()
    assert emf(out)["TaskErrors"] == 1


def test_a_conflict_is_retried(tables: Tables, ledger: FeedbackLedger) -> None:
    real = ledger.client.transact_write_items
    calls: list[int] = []

    def conflicting(**kwargs: Any) -> Any:
        calls.append(len(kwargs["TransactItems"]))
        if len(calls) == 1:
            reasons = [{"Code": "None"}, {"Code": "TransactionConflict"}] + [{"Code": "None"}] * 2
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                    "CancellationReasons": reasons,
                },
                "TransactWriteItems",
            )
        return real(**kwargs)

    ledger.client.transact_write_items = conflicting  # type: ignore[method-assign]
    events = [parse_event(load_event(name)) for name in SAMPLES]
    results = apply_batch(events, ledger)
    assert [r.outcome for r in results if not isinstance(r, Exception)] == ["recorded"] * 3
    assert calls == [4, 4]  # three records and one counter update for the campaign, then the same again
    assert tables.counters() == {"delivered": 1, "bounced": 1, "complained": 1}


def deliveries(stack: Stack, count: int) -> tuple[Tables, list[tuple[MailRef, RecordChange]]]:
    """A campaign with ``count`` sent records, and a delivery event for each."""
    tables = Tables(stack)
    tables.add_campaign()
    entries = []
    for index in range(count):
        ref = MailRef(f"campaign#{CAMPAIGN}", f"s-{index}", f"s-{index}", CAMPAIGN)
        tables.add_record(ref.pk, ref.sk, f"m-{index}")
        entries.append((ref, RecordChange("delivery:t", f"m-{index}", "delivered_at", "t", "delivered")))
    return tables, entries


def test_many_events_of_one_campaign_go_in_transactions_of_at_most_100(stack: Stack, ledger: FeedbackLedger) -> None:
    tables, entries = deliveries(stack, 150)
    sizes: list[int] = []
    keys: list[int] = []
    real_transact, real_get = ledger.client.transact_write_items, ledger.client.batch_get_item

    def transact(**kwargs: Any) -> Any:
        sizes.append(len(kwargs["TransactItems"]))
        return real_transact(**kwargs)

    def get(**kwargs: Any) -> Any:
        keys.append(sum(len(table["Keys"]) for table in kwargs["RequestItems"].values()))
        return real_get(**kwargs)

    ledger.client.transact_write_items = transact  # type: ignore[method-assign]
    ledger.client.batch_get_item = get  # type: ignore[method-assign]
    results = ledger.record_batch(entries)
    assert [r.recorded for r in results if isinstance(r, RecordResult)] == [Recorded.FIRST] * 150
    assert keys == [100, 50]
    assert sizes == [100, 52]  # 99 records + the counter; 51 records + the counter
    assert tables.counters()["delivered"] == 150


def keys_of(items: list[dict[str, Any]]) -> list[str]:
    return [item["Update"]["Key"].get("sk", {}).get("S", "counter") for item in items]


def refusing(ledger: FeedbackLedger, refuse: Callable[[list[str]], None]) -> list[list[str]]:
    """Every transaction's keys, in order; ``refuse(keys)`` raises for those it refuses."""
    real = ledger.client.transact_write_items
    calls: list[list[str]] = []

    def transact(**kwargs: Any) -> Any:
        calls.append(keys_of(kwargs["TransactItems"]))
        refuse(calls[-1])
        return real(**kwargs)

    ledger.client.transact_write_items = transact  # type: ignore[method-assign]
    return calls


def test_an_items_own_refusal_fails_its_event_only_the_others_are_recorded(
    stack: Stack, ledger: FeedbackLedger
) -> None:
    tables, entries = deliveries(stack, 5)

    def refuse(keys: list[str]) -> None:
        if "s-2" in keys:
            reasons = [{"Code": "ValidationError" if key == "s-2" else "None"} for key in keys]
            raise ClientError(
                {"Error": {"Code": "TransactionCanceledException", "Message": "no"}, "CancellationReasons": reasons},
                "TransactWriteItems",
            )

    calls = refusing(ledger, refuse)
    results = ledger.record_batch(entries)
    assert isinstance(results[2], ClientError)
    assert [r.recorded for r in results if isinstance(r, RecordResult)] == [Recorded.FIRST] * 4
    assert calls == [["s-0", "s-1", "s-2", "s-3", "s-4", "counter"], ["s-0", "s-1", "s-3", "s-4", "counter"]]
    assert tables.counters()["delivered"] == 4


def test_a_refused_request_is_split_until_the_event_it_is_about_fails_alone(
    stack: Stack, ledger: FeedbackLedger
) -> None:
    tables, entries = deliveries(stack, 5)

    def refuse(keys: list[str]) -> None:
        if "s-3" in keys:  # a refusal of the whole request, no item named
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "no"}}, "TransactWriteItems")

    calls = refusing(ledger, refuse)
    results = ledger.record_batch(entries)
    assert isinstance(results[3], ClientError)
    assert [r.recorded for r in results if isinstance(r, RecordResult)] == [Recorded.FIRST] * 4
    assert calls[0] == ["s-0", "s-1", "s-2", "s-3", "s-4", "counter"]
    assert sorted(calls[1:]) == [[f"s-{i}", "counter"] for i in range(5)]  # then one transaction per event
    assert tables.counters()["delivered"] == 4


def test_unprocessed_keys_are_read_again(tables: Tables, ledger: FeedbackLedger) -> None:
    real = ledger.client.batch_get_item
    calls: list[dict[str, Any]] = []

    def unprocessed(**kwargs: Any) -> Any:
        calls.append(kwargs)
        if len(calls) == 1:  # DynamoDB read nothing this time
            return {"Responses": {}, "UnprocessedKeys": kwargs["RequestItems"]}
        return real(**kwargs)

    ledger.client.batch_get_item = unprocessed  # type: ignore[method-assign]
    results = apply_batch([parse_event(load_event(name)) for name in SAMPLES], ledger)
    assert [r.outcome for r in results if not isinstance(r, Exception)] == ["recorded"] * 3
    assert len(calls) == 2
    assert calls[0]["RequestItems"][tables.results]["ConsistentRead"] is True
