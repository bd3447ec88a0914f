"""Every function invoked with its sample event from events/, under moto built from template.yaml."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError

from mailroom_local.faults import SqsTimeTravel
from mailroom_local.template import Stack
from tests.conftest import LambdaContext
from tests.support import REGION, load_event, put_subscriber, queue_messages, sent_mails, sqs_event

Loader = Callable[..., ModuleType]


def _subscriber_count(stack: Stack) -> int:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    return dynamodb.scan(TableName=stack.physical_name("SubscribersTable"), Select="COUNT")["Count"]


def _results(stack: Stack, pk: str) -> dict[str, dict[str, Any]]:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    items = dynamodb.query(
        TableName=stack.physical_name("ResultsTable"),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
    )["Items"]
    return {item["sk"]["S"]: {key: next(iter(value.values())) for key, value in item.items()} for item in items}


def _content_type(response: dict[str, Any]) -> str | None:
    """API Gateway merges headers and multiValueHeaders; Powertools answers with the latter."""
    single = {key.lower(): value for key, value in (response.get("headers") or {}).items()}
    multi = {key.lower(): values[-1] for key, values in (response.get("multiValueHeaders") or {}).items()}
    return {**single, **multi}.get("content-type")


# --------------------------------------------------------------------------- registration


def test_registration_sample_event_stores_a_pending_subscriber_and_queues_a_confirmation(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    # Given the registration function and its sample event
    app = load_function("RegistrationFunction")
    # When it is invoked
    response = app.lambda_handler(load_event("registration_post.json"), context)
    # Then it answers 202, revealing nothing about the address
    assert response["statusCode"] == 202
    assert json.loads(response["body"])["status"] == "accepted"
    # And the subscriber is stored pending and exactly one confirmation task is queued
    assert _subscriber_count(stack) == 1
    tasks = queue_messages(stack, "WelcomeQueue")
    assert tasks == [
        {
            "kind": "confirmation",
            "subscriber_id": mock.ANY,
            "email": "ada@example.com",
            "seq": 1,
            "correlation_id": mock.ANY,
            "attempt": 0,
            "failures": 0,
        }
    ]


def test_the_answer_is_the_same_whatever_the_address_state(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    app = load_function("RegistrationFunction")
    event = load_event("registration_post.json")
    answers = [app.lambda_handler(event, context)]
    # the same address in another case is the same subscriber: pending, within the resend window
    event["body"] = json.dumps({"email": "ADA@Example.com", "name": "Ada"})
    answers.append(app.lambda_handler(event, context))
    put_subscriber(stack, "s-known", "grace@example.com")
    event["body"] = json.dumps({"email": "grace@example.com"})
    answers.append(app.lambda_handler(event, context))
    assert {(a["statusCode"], a["body"]) for a in answers} == {(answers[0]["statusCode"], answers[0]["body"])}
    assert _subscriber_count(stack) == 2
    assert len(queue_messages(stack, "WelcomeQueue")) == 1  # one confirmation; none for the subscribed address


def test_invalid_email_sample_event_is_a_400_naming_the_field_and_writes_nothing(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    app = load_function("RegistrationFunction")
    response = app.lambda_handler(load_event("registration_post_invalid_email.json"), context)
    assert response["statusCode"] == 400
    error = json.loads(response["body"])["error"]
    assert error["field"] == "email"
    assert "@" in error["message"]
    assert _subscriber_count(stack) == 0
    assert queue_messages(stack, "WelcomeQueue") == []


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({"Content-Type": "application/json"}, "{not json", 400, "invalid_json"),
        ({"Content-Type": "application/json"}, json.dumps({"name": "No Email"}), 400, "invalid_field"),
        (
            {"Content-Type": "application/json"},
            json.dumps({"email": "a@example.com", "admin": True}),
            400,
            "invalid_field",
        ),
        (
            {"Content-Type": "application/json"},
            json.dumps({"email": "a@example.com", "name": "x" * 11000}),
            413,
            "body_too_large",
        ),
        ({"Content-Type": "text/plain"}, json.dumps({"email": "a@example.com"}), 415, "unsupported_media_type"),
        ({}, json.dumps({"email": "a@example.com"}), 415, "unsupported_media_type"),
        ({"Content-Type": "application/json"}, "[1, 2]", 400, "invalid_body"),
        ({"Content-Type": "application/json"}, "[" * 5000 + "]" * 5000, 400, "invalid_json"),
        (
            {"Content-Type": "application/json"},
            json.dumps({"email": "a@example.com", "name": "A\r\nBcc: x@y.z"}),
            400,
            "invalid_field",
        ),
        ({"Content-Type": "application/json"}, json.dumps({"email": 42}), 400, "invalid_field"),
        ({"Content-Type": "application/json"}, "", 400, "empty_body"),
        ({"Content-Type": "application/json"}, '{"email": ' + "1" * 5000 + "}", 400, "invalid_json"),
        ({"Content-Type": "application/json"}, b'{"email": "\xff"}'.decode("latin-1"), 400, "invalid_field"),
    ],
    ids=[
        "bad-json",
        "missing-email",
        "unknown-field",
        "too-large",
        "text-plain",
        "no-content-type",
        "array",
        "deep-nesting",
        "crlf-in-name",
        "email-not-string",
        "empty",
        "huge-integer",
        "latin1-mojibake",
    ],
)
def test_bad_input_is_a_4xx_json_error_and_writes_nothing(
    stack: Stack,
    load_function: Loader,
    context: LambdaContext,
    headers: dict[str, str],
    body: str,
    status: int,
    code: str,
) -> None:
    app = load_function("RegistrationFunction")
    event = load_event("registration_post.json")
    event["headers"] = headers
    event["multiValueHeaders"] = {key: [value] for key, value in headers.items()}
    event["body"] = body
    response = app.lambda_handler(event, context)
    assert response["statusCode"] == status
    assert _content_type(response) == "application/json"
    error = json.loads(response["body"])["error"]
    assert error["code"] == code
    assert error["message"]
    assert "Traceback" not in response["body"]
    assert _subscriber_count(stack) == 0
    assert queue_messages(stack, "WelcomeQueue") == []


def test_a_queue_failure_undoes_the_new_subscriber(stack: Stack, load_function: Loader, context: LambdaContext) -> None:
    app = load_function("RegistrationFunction")
    refused = ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessage")
    with mock.patch.object(app.lifecycle.welcome_queue.client, "send_message", side_effect=refused):
        response = app.lambda_handler(load_event("registration_post.json"), context)
    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error"]["code"] == "unavailable"
    assert _subscriber_count(stack) == 0
    # and trying again works
    assert app.lambda_handler(load_event("registration_post.json"), context)["statusCode"] == 202
    assert len(queue_messages(stack, "WelcomeQueue")) == 1


def test_unknown_route_is_a_404(stack: Stack, load_function: Loader, context: LambdaContext) -> None:
    app = load_function("RegistrationFunction")
    event = load_event("registration_post.json")
    event["path"] = event["resource"] = "/nope"
    assert app.lambda_handler(event, context)["statusCode"] == 404


# --------------------------------------------------------------------------- welcome worker


def _welcome_worker_with_its_subscriber(
    stack: Stack, load_function: Loader
) -> tuple[dict[str, Any], dict[str, Any], ModuleType]:
    """The sample event, its task, and the worker, with the subscriber the task names stored."""
    event = load_event("welcome_worker_sqs.json")
    task = json.loads(event["Records"][0]["body"])
    put_subscriber(stack, task["subscriber_id"], task["email"])
    return event, task, load_function("WelcomeWorkerFunction")


def test_welcome_sample_event_sends_one_mail_with_html_and_text(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    # Given the subscriber the sample event names
    event = load_event("welcome_worker_sqs.json")
    task = json.loads(event["Records"][0]["body"])
    put_subscriber(stack, task["subscriber_id"], task["email"], name="Ada <Lovelace>")
    app = load_function("WelcomeWorkerFunction")
    # When the worker handles the event
    response = app.lambda_handler(event, context)
    # Then no record failed, one mail went out with both parts, and the result is recorded
    assert response == {"batchItemFailures": []}
    mails = sent_mails()
    assert len(mails) == 1
    assert mails[0].to == ["ada@example.com"]
    assert mails[0].subject == "Welcome to Mailroom"
    assert mails[0].sender == "Mailroom <newsletter@example.com>"
    assert mails[0].text and "Welcome, Ada <Lovelace>!" in mails[0].text
    assert mails[0].html and "Ada &lt;Lovelace&gt;" in mails[0].html
    assert "<Lovelace>" not in mails[0].html
    result = _results(stack, "welcome")[task["subscriber_id"]]
    assert result["status"] == "sent"
    assert result["message_id"]


def test_welcome_duplicate_delivery_sends_nothing_twice(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    event, _task, app = _welcome_worker_with_its_subscriber(stack, load_function)
    app.lambda_handler(event, context)
    assert app.lambda_handler(event, context) == {"batchItemFailures": []}
    assert len(sent_mails()) == 1


def test_welcome_for_an_unknown_subscriber_is_skipped(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    app = load_function("WelcomeWorkerFunction")
    assert app.lambda_handler(load_event("welcome_worker_sqs.json"), context) == {"batchItemFailures": []}
    assert sent_mails() == []


def test_welcome_throttled_goes_back_to_the_queue_and_is_sent_on_redelivery(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    event, task, app = _welcome_worker_with_its_subscriber(stack, load_function)
    throttled = ClientError(
        {"Error": {"Code": "TooManyRequestsException", "Message": "Maximum sending rate exceeded."}}, "SendEmail"
    )
    with mock.patch.object(app.mailer.client, "send_email", side_effect=throttled):
        response = app.lambda_handler(event, context)
    # not a batch item failure (it would count towards maxReceiveCount): a new, delayed message
    assert response == {"batchItemFailures": []}
    assert _results(stack, "welcome")[task["subscriber_id"]]["status"] == "released"
    assert sent_mails() == []
    travel = SqsTimeTravel().install()
    try:
        travel.advance(5)  # the first backoff is about 2 s
        (again,) = queue_messages(stack, "WelcomeQueue")
    finally:
        travel.uninstall()
    assert again["attempt"] == 1 and again["failures"] == 0  # throttling slows down, it never fails
    # the retry sends it, once; a duplicate of the first message sends nothing more
    assert app.lambda_handler(sqs_event(stack, "WelcomeQueue", [again]), context) == {"batchItemFailures": []}
    assert app.lambda_handler(event, context) == {"batchItemFailures": []}
    assert len(sent_mails()) == 1
    assert _results(stack, "welcome")[task["subscriber_id"]]["status"] == "sent"


def test_welcome_failing_too_often_goes_to_the_dead_letter_queue_with_the_reason(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    event, task, app = _welcome_worker_with_its_subscriber(stack, load_function)
    event["Records"][0]["body"] = json.dumps(task | {"failures": 8})
    down = ClientError({"Error": {"Code": "InternalFailure", "Message": "SES is down"}}, "SendEmail")
    with mock.patch.object(app.mailer.client, "send_email", side_effect=down):
        assert app.lambda_handler(event, context) == {"batchItemFailures": []}
    sqs = boto3.client("sqs", region_name=REGION)
    (dead,) = sqs.receive_message(QueueUrl=stack.queue_url("WelcomeDeadLetterQueue"), MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert "InternalFailure: SES is down" in dead["MessageAttributes"]["error"]["StringValue"]
    assert json.loads(dead["Body"])["failures"] == 9
    assert sent_mails() == []


def test_welcome_rejected_is_recorded_failed_and_not_retried(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    event, task, app = _welcome_worker_with_its_subscriber(stack, load_function)
    rejected = ClientError(
        {"Error": {"Code": "MessageRejected", "Message": "Email address is not verified."}}, "SendEmail"
    )
    with mock.patch.object(app.mailer.client, "send_email", side_effect=rejected):
        assert app.lambda_handler(event, context) == {"batchItemFailures": []}
    result = _results(stack, "welcome")[task["subscriber_id"]]
    assert result["status"] == "failed"
    assert "MessageRejected" in result["error"]
    assert app.lambda_handler(event, context) == {"batchItemFailures": []}
    assert sent_mails() == []


def test_a_malformed_task_goes_to_the_dead_letter_queue_and_the_others_are_sent(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    good = json.loads(load_event("welcome_worker_sqs.json")["Records"][0]["body"])
    put_subscriber(stack, good["subscriber_id"], good["email"])
    event = sqs_event(stack, "WelcomeQueue", [{"kind": "welcome"}, good])
    app = load_function("WelcomeWorkerFunction")
    assert app.lambda_handler(event, context) == {"batchItemFailures": []}
    assert len(sent_mails()) == 1
    sqs = boto3.client("sqs", region_name=REGION)
    (dead,) = sqs.receive_message(QueueUrl=stack.queue_url("WelcomeDeadLetterQueue"), MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert "invalid welcome queue task" in dead["MessageAttributes"]["error"]["StringValue"]


def test_a_lost_ses_answer_is_not_retried_and_is_recorded_uncertain(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    from botocore.exceptions import ReadTimeoutError

    event, task, app = _welcome_worker_with_its_subscriber(stack, load_function)
    with mock.patch.object(app.mailer.client, "send_email", side_effect=ReadTimeoutError(endpoint_url="https://email")):
        assert app.lambda_handler(event, context) == {"batchItemFailures": []}
    assert _results(stack, "welcome")[task["subscriber_id"]]["status"] == "uncertain"
    assert app.lambda_handler(event, context) == {"batchItemFailures": []}
    assert sent_mails() == []


# ----------------------------------------------------------------------------- monitoring


def test_admin_metrics_sample_event_answers_the_figures_read_from_cloudwatch(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    # Given a newsletter worker's MailsSent in CloudWatch, under the dimensions Powertools gives it
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    dimensions = [{"Name": "service", "Value": "newsletter-worker"}, {"Name": "task_type", "Value": "newsletter"}]
    cloudwatch.put_metric_data(
        Namespace="Mailroom", MetricData=[{"MetricName": "MailsSent", "Dimensions": dimensions, "Values": [40, 10]}]
    )
    app = load_function("AdminFunction")
    # When the admin asks for the figures with the sample event
    response = app.lambda_handler(load_event("admin_get_metrics.json"), context)
    # Then they are there, for the hour and the day, and nothing else was counted
    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    assert body["unavailable"] is None and body["campaigns"] == []
    for window in ("hour", "day"):
        assert body["windows"][window]["task_types"]["newsletter"]["mails"]["sent"] == 50
        assert body["windows"][window]["totals"]["mails_sent"] == 50
        assert body["windows"][window]["task_types"]["welcome"]["mails"]["sent"] == 0


# ------------------------------------------------------------------------------ SES events


def test_ses_events_sample_batch_suppresses_the_bounced_and_complaining_subscribers(
    stack: Stack, load_function: Loader, context: LambdaContext
) -> None:
    # Given the subscribers the sample events name (their mails' records are not there: erased, say)
    batch = load_event("ses_events_sqs.json")
    events = [json.loads(record["body"]) for record in batch["Records"]]
    for event in events:
        mail = event["detail"]["mail"]
        put_subscriber(stack, mail["tags"]["subscriber"][0], mail["destination"][0])
    app = load_function("SesEventsFunction")
    # When the function gets the sample batch (an SQS message per EventBridge event)
    response = app.lambda_handler(batch, context)
    # Then no message failed, the hard bounce and the complaint suppressed their subscribers
    assert response == {"batchItemFailures": []}
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    statuses = {
        event["detail-type"]: dynamodb.get_item(
            TableName=stack.physical_name("SubscribersTable"),
            Key={"email": {"S": event["detail"]["mail"]["destination"][0]}},
        )["Item"]["status"]["S"]
        for event in events
    }
    assert statuses == {
        "Email Delivered": "subscribed",
        "Email Bounced": "suppressed",
        "Email Complaint Received": "suppressed",
    }
