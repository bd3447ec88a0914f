"""Smaller parts of the local runtime: SQS events and batch responses, schedules' inputs,
the console's log formatting, the outbox."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from mailroom_local.console import Console, summarize_emf
from mailroom_local.outbox import Outbox
from mailroom_local.pollers import build_sqs_event, failed_message_ids
from mailroom_local.sandbox import Invocation
from mailroom_local.scheduler import Scheduler, render_input
from mailroom_local.template import ScheduleSpec

# ------------------------------------------------------------------------------------ SQS


def test_sqs_event_has_the_lambda_shape() -> None:
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "h1",
        "Body": "{}",
        "MD5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1",
            "SenderId": "s",
            "ApproximateFirstReceiveTimestamp": "2",
        },
        "MessageAttributes": {
            "kind": {"StringValue": "welcome", "DataType": "String"},
            "blob": {"BinaryValue": b"\x00", "DataType": "Binary"},
        },
        "MD5OfMessageAttributes": "x",
    }
    (record,) = build_sqs_event([message], "arn:aws:sqs:us-east-1:123456789012:Q", "us-east-1")["Records"]
    assert record["messageId"] == "m1" and record["receiptHandle"] == "h1" and record["body"] == "{}"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "welcome",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["blob"]["binaryValue"] == "AA=="
    assert record["eventSource"] == "aws:sqs" and record["awsRegion"] == "us-east-1"
    assert record["eventSourceARN"].endswith(":Q") and record["md5OfBody"]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "a"}]}, {"a"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, None),  # not in the batch
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, None),
        ({"batchItemFailures": [{"id": "a"}]}, None),  # a bad key name
        ({"batchItemFailures": "a"}, None),
        ("not json object", None),
    ],
)
def test_batch_item_failures_follow_the_aws_rules(response: object, expected: set[str] | None) -> None:
    assert failed_message_ids(response, {"a", "b"}) == expected


# ------------------------------------------------------------------------------ schedules


def schedule(**overrides: object) -> ScheduleSpec:
    values: dict[str, object] = {
        "name": "Daily",
        "function": "Fn",
        "event_type": "ScheduleV2",
        "expression": "cron(0 10 * * ? *)",
        "timezone": "UTC",
        "input": None,
        "enabled": True,
        "group": "default",
    }
    values.update(overrides)
    return ScheduleSpec(**values)  # type: ignore[arg-type]


def test_schedule_v2_input_gets_the_context_attributes() -> None:
    spec = schedule(
        input='{"a": "<aws.scheduler.schedule-arn>", "t": "<aws.scheduler.scheduled-time>", '
        '"e": "<aws.scheduler.execution-id>", "n": "<aws.scheduler.attempt-number>"}'
    )
    payload = render_input(
        spec, "arn:s", datetime(2026, 11, 28, 10, tzinfo=UTC), region="r", account_id="1", execution_id="x"
    )
    assert payload == {"a": "arn:s", "t": "2026-11-28T10:00:00Z", "e": "x", "n": "1"}
    assert render_input(schedule(), "arn", datetime.now(UTC), region="r", account_id="1", execution_id="x") == {}


def test_an_eventbridge_rule_without_input_sends_the_scheduled_event() -> None:
    payload = render_input(
        schedule(event_type="Schedule"),
        "arn:rule",
        datetime(2026, 1, 1, tzinfo=UTC),
        region="eu-west-1",
        account_id="1",
        execution_id="x",
    )
    assert payload["detail-type"] == "Scheduled Event" and payload["source"] == "aws.events"
    assert payload["resources"] == ["arn:rule"] and payload["time"] == "2026-01-01T00:00:00Z"


def test_the_scheduler_lists_and_fires_on_demand() -> None:
    calls: list[tuple[str, object]] = []

    def invoke(function: str, event: object) -> Invocation:
        calls.append((function, event))
        return Invocation("id", True, {"done": True}, 1.0)

    now = datetime(2026, 11, 28, 11, tzinfo=UTC)
    scheduler = Scheduler(
        [schedule(input='{"t": "<aws.scheduler.scheduled-time>"}'), schedule(name="Off", enabled=False)],
        invoke=invoke,
        region="us-east-1",
        account_id="123456789012",
        console=Console(quiet=True),
        now=lambda: now,
    )
    listing = {s["name"]: s for s in scheduler.listing()}
    assert listing["Daily"]["next_fire_time"] == "2026-11-29T10:00:00Z"
    assert listing["Daily"]["arn"] == "arn:aws:scheduler:us-east-1:123456789012:schedule/default/Daily"
    assert listing["Off"]["next_fire_time"] is None
    result = scheduler.fire_now("Daily")
    assert result is not None and result.payload == {"done": True}
    assert calls == [("Fn", {"t": "2026-11-28T11:00:00Z"})]
    assert scheduler.fire_now("Nope") is None


# -------------------------------------------------------------------------------- console


def test_powertools_json_lines_become_readable() -> None:
    stream = io.StringIO()
    console = Console(stream)
    console.function_line(
        "Fn",
        json.dumps(
            {
                "level": "INFO",
                "location": "x:1",
                "message": "welcome sent",
                "timestamp": "t",
                "service": "s",
                "cold_start": True,
                "function_request_id": "r",
                "subscriber_id": "42",
                "note": "two words",
            }
        ),
    )
    console.function_line("Fn", json.dumps({"level": "ERROR", "message": "boom", "exception": "Traceback\n  line"}))
    console.function_line("Fn", "plain text")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith('INFO    [Fn] welcome sent subscriber_id=42 note="two words"')
    assert "ERROR   [Fn] boom" in lines[1] and lines[2] == "    Traceback" and lines[3] == "      line"
    assert lines[4].endswith("[Fn] plain text")


def test_emf_blobs_become_one_metrics_line_and_are_kept() -> None:
    blob = {
        "_aws": {
            "Timestamp": 1,
            "CloudWatchMetrics": [
                {
                    "Namespace": "Mailroom",
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": "MailsSent", "Unit": "Count"}, {"Name": "Took", "Unit": "Milliseconds"}],
                }
            ],
        },
        "service": "welcome",
        "MailsSent": [1.0],
        "Took": 12.345,
    }
    assert summarize_emf(blob) == "Mailroom: MailsSent=1 Count, Took=12.35 Milliseconds (service=welcome)"
    stream = io.StringIO()
    console = Console(stream)
    console.function_line("Fn", json.dumps(blob))
    assert "METRICS [Fn] Mailroom: MailsSent=1 Count" in stream.getvalue()
    assert list(console.metrics) == [blob]


# --------------------------------------------------------------------------------- outbox


@mock_aws
def test_the_outbox_parses_raw_mime_and_clears() -> None:
    sesv2 = boto3.client("sesv2", region_name="us-east-1")
    sesv2.create_email_identity(EmailIdentity="news@example.com")
    raw = (
        "From: News <news@example.com>\r\nTo: reader@example.org\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello</p>\r\n--b--\r\n"
    )
    sesv2.send_email(
        FromEmailAddress="news@example.com",
        Destination={"ToAddresses": ["reader@example.org"]},
        Content={"Raw": {"Data": raw.encode()}},
    )
    outbox = Outbox("123456789012", "us-east-1")
    (mail,) = outbox.messages()
    assert mail["to"] == ["reader@example.org"]  # moto lists it twice (envelope + header)
    assert mail["from"] == "News <news@example.com>" and mail["subject"] == "Grüße"
    assert mail["text"].strip() == "Hello" and mail["html"].strip() == "<p>Hello</p>"
    assert mail["headers"]["MIME-Version"] == "1.0"
    assert mail["sent_at"].endswith("Z")
    assert outbox.clear() == 1
    assert outbox.messages() == []
