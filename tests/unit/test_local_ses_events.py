"""The embedded runtime's SES event publishing: pattern matching, the events, the capture in moto, the bus."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mailroom_local.console import Console
from mailroom_local.moto_ext import SesSend, add_send_listener, remove_send_listener
from mailroom_local.parameters import TemplateError
from mailroom_local.sandbox import Invocation
from mailroom_local.ses_events import SesEventBus, build_events, check_pattern, matches, resolve_mode
from mailroom_local.template import EventRuleSpec, Stack
from tests.support import ACCOUNT, EVENTS, REGION, TEMPLATE

SENT_AT = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)
CAMPAIGN = "c0ffee00c0ffee00c0ffee00c0ffee01"
# The sample events in events/ are exactly what the runtime builds for these sends (see
# test_the_sample_events_are_what_the_runtime_builds): (file, recipient, subscriber id, index).
SAMPLES = [
    ("ses_events_delivery.json", "success@simulator.amazonses.com", "3f1c2a9e-5b7d-4e2a-9c1f-8d6b0a4e7c21", 1),
    ("ses_events_bounce.json", "bounce@simulator.amazonses.com", "7a0e5d3b-1c9f-4b8e-a2d4-6f3c9e1b5a08", 1),
    ("ses_events_complaint.json", "complaint@simulator.amazonses.com", "c2b9f4e1-8d3a-4f6c-b7e5-0a1d9c8b2e47", 2),
]


def sample_send(recipient: str, subscriber_id: str, message_id: str | None = None) -> SesSend:
    return SesSend(
        message_id=message_id or f"0100019ac2f3e4d5-{subscriber_id}-000000",
        source="newsletter@example.com",
        destinations=[recipient],
        configuration_set="ConfigurationSet",
        account_id=ACCOUNT,
        region=REGION,
        tags={"kind": "campaign", "campaign": CAMPAIGN, "subscriber": subscriber_id},
        sent_at=SENT_AT,
    )


def sample_event(name: str) -> dict[str, Any]:
    """What events/<name> must hold, built by the runtime."""
    _, recipient, subscriber_id, index = next(sample for sample in SAMPLES if sample[0] == name)
    return build_events(sample_send(recipient, subscriber_id))[index]


@pytest.fixture(scope="module")
def rule() -> EventRuleSpec:
    (found,) = Stack.load(TEMPLATE).event_rules
    return found


# --------------------------------------------------------------------------- patterns
PATTERN = {"source": ["aws.ses"], "detail": {"mail": {"tags": {"ses:configuration-set": ["A", "B"]}}}}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"source": "aws.ses", "detail": {"mail": {"tags": {"ses:configuration-set": ["B"]}}}}, True),
        # an array in the event matches when any element does
        ({"source": "aws.ses", "detail": {"mail": {"tags": {"ses:configuration-set": ["X", "A"]}}}}, True),
        ({"source": "aws.ses", "detail": {"mail": {"tags": {"ses:configuration-set": "A"}}}, "other": 1}, True),
        ({"source": "aws.ses", "detail": {"mail": {"tags": {"ses:configuration-set": ["C"]}}}}, False),
        ({"source": "aws.ses", "detail": {"mail": {"tags": {}}}}, False),
        ({"source": "aws.ses", "detail": {"mail": "tags"}}, False),
        ({"source": "aws.sns", "detail": {"mail": {"tags": {"ses:configuration-set": ["A"]}}}}, False),
        ({"detail": {"mail": {"tags": {"ses:configuration-set": ["A"]}}}}, False),
        ({"source": "aws.ses", "detail": {"mail": {"tags": {"ses:configuration-set": []}}}}, False),
        ("not an object", False),
    ],
)
def test_a_pattern_matches_exact_values_in_lists_and_nested_objects(event: Any, expected: bool) -> None:
    assert matches(PATTERN, event) is expected


def test_values_match_by_type_too() -> None:
    assert matches({"n": [1]}, {"n": 1})
    assert matches({"n": [1]}, {"n": 1.0})
    assert not matches({"n": [1]}, {"n": "1"})
    assert not matches({"n": [1]}, {"n": True})
    assert matches({"b": [True]}, {"b": True})
    assert matches({"x": [None]}, {"x": None})


@pytest.mark.parametrize(
    "pattern",
    [
        {},
        {"source": "aws.ses"},
        {"source": []},
        {"source": [{"prefix": "aws."}]},
        {"detail": {"n": [{"numeric": [">", 1]}]}},
        {"$or": [{"a": ["b"]}]},
    ],
)
def test_pattern_features_the_runtime_lacks_are_refused(pattern: dict[str, Any]) -> None:
    with pytest.raises(TemplateError):
        check_pattern(pattern)


def test_the_template_has_one_rule_on_the_default_bus_for_the_configuration_set(rule: EventRuleSpec) -> None:
    # an AWS::Events::Rule whose target is SesEventsQueue (SesEventsFunction records it in batches)
    assert (rule.name, rule.function, rule.queue, rule.bus, rule.enabled) == (
        "SesFeedbackRule",
        None,
        "SesEventsQueue",
        "default",
        True,
    )
    assert rule.target == "SesEventsQueue"
    assert rule.pattern["detail"] == {"mail": {"tags": {"ses:configuration-set": ["ConfigurationSet"]}}}
    check_pattern(rule.pattern)
    (source,) = [source for source in Stack.load(TEMPLATE).sqs_sources if source.function == "SesEventsFunction"]
    assert source.queue_arn == Stack.load(TEMPLATE).get_att("SesEventsQueue", "Arn")


def test_a_rule_whose_target_is_not_one_of_the_stacks_queues_is_refused() -> None:
    template = {
        "Resources": {
            "Q": {"Type": "AWS::SQS::Queue"},
            "R": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "EventPattern": {"source": ["aws.ses"]},
                    "Targets": [{"Id": "T", "Arn": "arn:aws:sns:us-east-1:123456789012:topic"}],
                },
            },
        }
    }
    with pytest.raises(TemplateError, match="not one of the stack's queues"):
        Stack(template, base_dir=Path(".")).event_rules  # noqa: B018
    template["Resources"]["R"]["Properties"]["Targets"] = [{"Id": "T", "Arn": {"Fn::GetAtt": ["Q", "Arn"]}}]
    (found,) = Stack(template, base_dir=Path(".")).event_rules
    assert (found.name, found.queue, found.function) == ("R", "Q", None)


# ----------------------------------------------------------------------------- events
def settle(events: SesEventBus) -> None:
    """Wait (up to 5 s) until the bus has nothing pending."""
    for _ in range(500):
        if events.status()["pending"] == 0:
            return
        threading.Event().wait(0.01)


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(event["detail-type"], event["detail"]["eventType"]) for event in events]


SENT = ("Email Sent", "Send")
DELIVERED = ("Email Delivered", "Delivery")
BOUNCED = ("Email Bounced", "Bounce")
COMPLAINED = ("Email Complaint Received", "Complaint")


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ("success@simulator.amazonses.com", [SENT, DELIVERED]),
        ("Success+label@Simulator.AmazonSES.com", [SENT, DELIVERED]),
        ("ooto@simulator.amazonses.com", [SENT, DELIVERED]),
        ("bounce@simulator.amazonses.com", [SENT, BOUNCED]),
        ("suppressionlist@simulator.amazonses.com", [SENT, BOUNCED]),
        ("complaint@simulator.amazonses.com", [SENT, DELIVERED, COMPLAINED]),
        ("ada@example.com", []),
        ("unknown@simulator.amazonses.com", []),
    ],
)
def test_the_mailbox_simulator_decides_the_events(recipient: str, expected: list[tuple[str, str]]) -> None:
    assert kinds(build_events(sample_send(recipient, "s-1"))) == expected


def test_every_mail_gets_send_and_delivery_with_all_and_nothing_with_off() -> None:
    send = sample_send("ada@example.com", "s-1")
    assert kinds(build_events(send, "all")) == [SENT, DELIVERED]
    assert kinds(build_events(sample_send("bounce@simulator.amazonses.com", "s-1"), "all")) == [SENT, BOUNCED]
    assert build_events(sample_send("bounce@simulator.amazonses.com", "s-1"), "off") == []


def test_events_carry_the_envelope_the_tags_the_message_id_and_match_the_rule(rule: EventRuleSpec) -> None:
    send = sample_send("complaint@simulator.amazonses.com", "s-1", message_id="m-1")
    events = build_events(send)
    assert events == build_events(send)  # the same mail always makes the same events
    assert len({event["id"] for event in events}) == 3
    # the rule takes what SesEventsFunction records: not the Send event (an invocation per mail)
    assert [matches(rule.pattern, event) for event in events] == [False, True, True]
    for event in events:
        assert event["source"] == "aws.ses"
        assert (event["account"], event["region"]) == (ACCOUNT, REGION)
        assert event["resources"] == [f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/ConfigurationSet"]
        mail = event["detail"]["mail"]
        assert mail["messageId"] == "m-1"
        assert mail["destination"] == ["complaint@simulator.amazonses.com"]
        assert mail["tags"]["kind"] == ["campaign"]
        assert mail["tags"]["subscriber"] == ["s-1"]
        assert mail["tags"]["campaign"] == [CAMPAIGN]
        assert mail["tags"]["ses:configuration-set"] == ["ConfigurationSet"]
        assert mail["tags"]["ses:from-domain"] == ["example.com"]
    complaint = events[2]["detail"]["complaint"]
    assert complaint["complaintFeedbackType"] == "abuse"
    assert complaint["complainedRecipients"] == [{"emailAddress": "complaint@simulator.amazonses.com"}]
    assert complaint["feedbackId"].endswith("-000000")
    assert events[1]["detail"]["delivery"]["recipients"] == ["complaint@simulator.amazonses.com"]
    times = [event["time"] for event in events]
    assert times == sorted(times)


def test_bounces_say_permanent_and_their_subtype() -> None:
    (_, bounce) = build_events(sample_send("bounce@simulator.amazonses.com", "s-1"))
    assert bounce["detail"]["bounce"]["bounceType"] == "Permanent"
    assert bounce["detail"]["bounce"]["bounceSubType"] == "General"
    assert bounce["detail"]["bounce"]["bouncedRecipients"][0]["emailAddress"] == "bounce@simulator.amazonses.com"
    (_, listed) = build_events(sample_send("suppressionlist@simulator.amazonses.com", "s-1"))
    assert listed["detail"]["bounce"]["bounceSubType"] == "OnAccountSuppressionList"


@pytest.mark.parametrize("name", [sample[0] for sample in SAMPLES])
def test_the_sample_events_are_what_the_runtime_builds(name: str, rule: EventRuleSpec) -> None:
    path: Path = EVENTS / name
    assert json.loads(path.read_text()) == sample_event(name), f"regenerate events/{name}"
    assert matches(rule.pattern, json.loads(path.read_text()))


def test_the_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILROOM_LOCAL_SES_EVENTS", raising=False)
    assert resolve_mode() == "simulator"
    monkeypatch.setenv("MAILROOM_LOCAL_SES_EVENTS", "ALL")
    assert resolve_mode() == "all"
    assert resolve_mode("off") == "off"
    with pytest.raises(ValueError, match="MAILROOM_LOCAL_SES_EVENTS"):
        resolve_mode("some")


# --------------------------------------------------------------------- capture in moto
def test_moto_hands_sends_with_a_configuration_set_and_their_tags_to_the_listeners() -> None:
    heard: list[SesSend] = []
    with mock_aws():
        ses = boto3.client("sesv2", region_name=REGION)
        ses.create_email_identity(EmailIdentity="newsletter@example.com")
        add_send_listener(heard.append)
        try:
            common: dict[str, Any] = {
                "FromEmailAddress": "newsletter@example.com",
                "Destination": {"ToAddresses": ["bounce@simulator.amazonses.com"]},
                "Content": {"Raw": {"Data": b"Subject: Hi\r\n\r\nHello\r\n"}},
            }
            ses.send_email(**common)  # no configuration set: no events
            message_id = ses.send_email(
                **common,
                ConfigurationSetName="ConfigurationSet",
                EmailTags=[{"Name": "kind", "Value": "welcome"}, {"Name": "subscriber", "Value": "s-1"}],
            )["MessageId"]
        finally:
            remove_send_listener(heard.append)
        ses.send_email(**common, ConfigurationSetName="ConfigurationSet")  # nobody listens any more
    (send,) = heard
    assert send.message_id == message_id
    assert send.configuration_set == "ConfigurationSet"
    assert send.tags == {"kind": "welcome", "subscriber": "s-1"}
    assert send.destinations == ["bounce@simulator.amazonses.com"]
    assert (send.source, send.account_id, send.region) == ("newsletter@example.com", ACCOUNT, REGION)


def test_a_failing_listener_does_not_fail_the_send() -> None:
    def broken(send: SesSend) -> None:
        raise RuntimeError("boom")

    with mock_aws():
        ses = boto3.client("sesv2", region_name=REGION)
        ses.create_email_identity(EmailIdentity="newsletter@example.com")
        add_send_listener(broken)
        try:
            answer = ses.send_email(
                FromEmailAddress="newsletter@example.com",
                Destination={"ToAddresses": ["success@simulator.amazonses.com"]},
                Content={"Raw": {"Data": b"Subject: Hi\r\n\r\nHello\r\n"}},
                ConfigurationSetName="ConfigurationSet",
            )
        finally:
            remove_send_listener(broken)
    assert answer["MessageId"]


# ------------------------------------------------------------------------------- bus
class Invoker:
    def __init__(self, failures: int = 0) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures = failures
        self.done = threading.Event()
        self.expected = 0

    def __call__(self, function: str, event: dict[str, Any]) -> Invocation:
        self.calls.append((function, event))
        if self.failures:
            self.failures -= 1
            return Invocation("r", False, {"errorType": "RecordNotReady", "errorMessage": "later"}, 1.0)
        if len(self.calls) >= self.expected:
            self.done.set()
        return Invocation("r", True, {"outcome": "recorded"}, 1.0)


class Sender:
    """The runtime's ``send`` (SQS SendMessage to a queue of the stack), failing ``failures`` times first."""

    def __init__(self, failures: int = 0, expected: int = 1) -> None:
        self.messages: list[tuple[str, str]] = []
        self.failures = failures
        self.expected = expected
        self.done = threading.Event()

    def __call__(self, queue: str, body: str) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("SQS is down")
        self.messages.append((queue, body))
        if len(self.messages) >= self.expected:
            self.done.set()


def function_rule(rule: EventRuleSpec) -> EventRuleSpec:
    """A function's EventBridgeRule event with the template's pattern (the other kind of target)."""
    return EventRuleSpec("SesFeedback", "SesEventsFunction", rule.pattern)


def bus(rule: EventRuleSpec, invoker: Invoker, **kwargs: Any) -> SesEventBus:
    other = EventRuleSpec("Other", "OtherFunction", {"source": ["aws.s3"]})
    disabled = EventRuleSpec("Off", "OffFunction", {"source": ["aws.ses"]}, enabled=False)
    return SesEventBus(
        [rule, other, disabled],
        invoke=invoker,
        account_id=ACCOUNT,
        region=REGION,
        console=Console(io.StringIO(), quiet=True),
        delay=0.0,
        **kwargs,
    )


def test_the_bus_sends_every_matching_event_to_the_rules_queue_in_order(rule: EventRuleSpec) -> None:
    sender = Sender(expected=2)
    invoker = Invoker()
    depth = {"visible": 2, "in_flight": 0}
    events = bus(rule, invoker, mode="simulator", send=sender, queue_depth=lambda queue: depth)
    events.start()
    try:
        events.publish(sample_send("complaint@simulator.amazonses.com", "s-1"))
        events.publish(sample_send("ada@example.com", "s-2"))  # no events for it
        assert sender.done.wait(5.0)
    finally:
        events.stop()
        events.join(5.0)
    assert invoker.calls == []  # the queue's event source mapping invokes the function, not the bus
    assert [queue for queue, _ in sender.messages] == ["SesEventsQueue"] * 2
    # one message per event, its body the EventBridge event as JSON (what EventBridge sends to SQS)
    bodies = [json.loads(body) for _, body in sender.messages]
    assert bodies == build_events(sample_send("complaint@simulator.amazonses.com", "s-1"))[1:]
    status = events.status()
    assert (status["matched"], status["delivered"], status["pending"]) == (2, 2, 0)
    (shown, _) = status["rules"]
    assert (shown["name"], shown["target"], shown["target_type"], shown["queue"]) == (
        "SesFeedbackRule",
        "SesEventsQueue",
        "sqs",
        depth,
    )


def test_a_refused_send_is_retried_like_eventbridge(rule: EventRuleSpec) -> None:
    sender = Sender(failures=1, expected=2)
    events = bus(rule, Invoker(), mode="simulator", send=sender, retry_delays=(0.01, 0.01))
    events.start()
    try:
        events.publish(sample_send("complaint@simulator.amazonses.com", "s-1"))
        assert sender.done.wait(5.0)
        settle(events)
    finally:
        events.stop()
        events.join(5.0)
    assert kinds([json.loads(body) for _, body in sender.messages]) == [COMPLAINED, DELIVERED]
    status = events.status()
    assert (status["failed"], status["delivered"], status["dropped"], status["pending"]) == (1, 2, 0, 0)


def test_a_queue_rule_needs_something_that_sends(rule: EventRuleSpec) -> None:
    with pytest.raises(TemplateError, match="SesEventsQueue"):
        bus(rule, Invoker())


def test_the_bus_invokes_the_matching_rules_function_with_every_event_in_order(rule: EventRuleSpec) -> None:
    rule = function_rule(rule)
    invoker = Invoker()
    invoker.expected = 2
    events = bus(rule, invoker, mode="simulator")
    events.start()
    try:
        events.publish(sample_send("complaint@simulator.amazonses.com", "s-1"))
        events.publish(sample_send("ada@example.com", "s-2"))  # no events for it
        # another account's or region's sends are not this stack's
        events.publish(replace(sample_send("bounce@simulator.amazonses.com", "s-3"), account_id="999999999999"))
        assert invoker.done.wait(5.0)
    finally:
        events.stop()
        events.join(5.0)
    assert [function for function, _ in invoker.calls] == ["SesEventsFunction"] * 2
    assert kinds([event for _, event in invoker.calls]) == [DELIVERED, COMPLAINED]  # Send matches no rule
    status = events.status()
    assert {key: status[key] for key in ("mode", "sends", "emitted", "matched", "delivered", "pending")} == {
        "mode": "simulator",
        "sends": 2,
        "emitted": 3,
        "matched": 2,
        "delivered": 2,
        "pending": 0,
    }
    assert [r["name"] for r in status["rules"]] == ["SesFeedback", "Other"]


def test_a_failed_invocation_is_retried_like_an_asynchronous_invocation(rule: EventRuleSpec) -> None:
    rule = function_rule(rule)
    invoker = Invoker(failures=1)
    invoker.expected = 3
    events = bus(rule, invoker, mode="simulator", retry_delays=(0.01, 0.01))
    events.start()
    try:
        events.publish(sample_send("complaint@simulator.amazonses.com", "s-1"))
        assert invoker.done.wait(5.0)
    finally:
        events.stop()
        events.join(5.0)
    # the retry comes later, on its own: the next event does not wait for it (no order, as in AWS)
    assert kinds([event for _, event in invoker.calls]) == [DELIVERED, COMPLAINED, DELIVERED]
    status = events.status()
    assert (status["failed"], status["delivered"], status["dropped"], status["pending"]) == (1, 2, 0, 0)


def test_an_event_that_keeps_failing_is_dropped_after_the_retries(rule: EventRuleSpec) -> None:
    rule = function_rule(rule)
    invoker = Invoker(failures=100)
    events = bus(rule, invoker, mode="all", retry_delays=(0.01, 0.01))
    events.start()
    try:
        events.publish(sample_send("ada@example.com", "s-1"))
        settle(events)
    finally:
        events.stop()
        events.join(5.0)
    status = events.status()
    assert (status["emitted"], status["dropped"], status["failed"], status["pending"]) == (2, 1, 3, 0)
    assert len(invoker.calls) == 3  # the Delivery event (Send matches no rule): the first try and two retries
