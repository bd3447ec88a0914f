"""The fault injector and the SQS clock: each fault does what it claims, and nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError
from moto import mock_aws

from mailroom_local.faults import Crash, FaultInjector, FaultPlan, SqsTimeTravel
from mailroom_local.outbox import Outbox
from tests.support import ACCOUNT, REGION

ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def _injector(**plan: Any) -> FaultInjector:
    return FaultInjector(FaultPlan(**plan), seed=7).install()


def _send(ses: Any, to: str = "b@example.com") -> Any:
    return ses.send_email(
        FromEmailAddress="a@example.com",
        Destination={"ToAddresses": [to]},
        Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
    )


def _sent() -> int:
    return len(Outbox(ACCOUNT, REGION).messages())


def test_a_throttled_send_is_answered_429_and_never_reaches_ses(aws: None) -> None:
    injector = _injector(throttle=1.0)
    try:
        ses = boto3.client("sesv2", region_name=REGION, config=ONE_ATTEMPT)
        ses.create_email_identity(EmailIdentity="a@example.com")
        with injector.invocation("f"), pytest.raises(ClientError) as raised:
            _send(ses)
        assert raised.value.response["Error"]["Code"] == "TooManyRequestsException"
        assert raised.value.response["Error"]["Message"] == "Maximum sending rate exceeded."
        assert _sent() == 0  # moto never saw it
        _send(ses)  # outside an invocation: no faults
        assert _sent() == 1
        assert injector.log.counts["throttle"] == 1
    finally:
        injector.uninstall()


def test_transient_errors_are_retried_by_botocore_like_real_5xx(aws: None) -> None:
    injector = _injector(transient=1.0)
    try:
        standard = Config(retries={"mode": "standard", "max_attempts": 3})
        dynamodb = boto3.client("dynamodb", region_name=REGION, config=standard)
        with injector.invocation("f"), pytest.raises(ClientError) as raised:
            dynamodb.list_tables()
        assert raised.value.response["Error"]["Code"] == "InternalServerError"
        # max_attempts counts the retries: four attempts in all, each drawing its own fault
        assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 3
        assert injector.log.counts["transient:dynamodb"] == 4
    finally:
        injector.uninstall()


def test_an_injected_error_never_reaches_moto_for_writes_either(aws: None) -> None:
    sqs = boto3.client("sqs", region_name=REGION, config=ONE_ATTEMPT)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    dynamodb = boto3.client("dynamodb", region_name=REGION, config=ONE_ATTEMPT)
    dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    injector = _injector(transient=1.0)  # hooks the clients made from now on
    try:
        with injector.invocation("f"):
            with pytest.raises(ClientError):
                boto3.client("sqs", region_name=REGION, config=ONE_ATTEMPT).send_message(QueueUrl=url, MessageBody="x")
            with pytest.raises(ClientError):
                boto3.client("dynamodb", region_name=REGION, config=ONE_ATTEMPT).put_item(
                    TableName="t", Item={"pk": {"S": "a"}}
                )
        assert "Messages" not in sqs.receive_message(QueueUrl=url)
        assert "Item" not in dynamodb.get_item(TableName="t", Key={"pk": {"S": "a"}})
    finally:
        injector.uninstall()


def test_a_lost_answer_comes_after_the_work_was_done(aws: None) -> None:
    injector = _injector(lost_answer=1.0)
    try:
        ses = boto3.client("sesv2", region_name=REGION, config=ONE_ATTEMPT)
        ses.create_email_identity(EmailIdentity="a@example.com")
        with injector.invocation("f"), pytest.raises(ReadTimeoutError):
            _send(ses)
        assert _sent() == 1  # SES accepted it; the caller cannot know
    finally:
        injector.uninstall()


def test_always_failing_and_rejected_addresses_until_healed(aws: None) -> None:
    injector = _injector(always_fail=frozenset({"x@example.com"}), reject=frozenset({"r@example.com"}))
    try:
        ses = boto3.client("sesv2", region_name=REGION, config=ONE_ATTEMPT)
        ses.create_email_identity(EmailIdentity="a@example.com")
        with injector.invocation("f"):
            for to, code in (("x@example.com", "InternalFailure"), ("r@example.com", "MessageRejected")):
                with pytest.raises(ClientError) as raised:
                    _send(ses, to)
                assert raised.value.response["Error"]["Code"] == code
            _send(ses, "ok@example.com")
        injector.heal("x@example.com")
        with injector.invocation("f"):
            _send(ses, "x@example.com")
        assert _sent() == 2
    finally:
        injector.uninstall()


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_kills_the_invocation_at_a_call_and_every_call_after_it(aws: None, when: str) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    injector = _injector()
    client = boto3.client("sqs", region_name=REGION)
    try:
        with injector.invocation("f", crash_at=1, crash_after=when == "after"):
            with pytest.raises(Crash):
                client.send_message(QueueUrl=url, MessageBody="one")
            with pytest.raises(Crash):  # the process is dead: nothing more reaches AWS
                client.send_message(QueueUrl=url, MessageBody="two")
        bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])]
        assert bodies == ([] if when == "before" else ["one"])
        assert injector.log.crashes == [("f", "SendMessage", when)]
        client.send_message(QueueUrl=url, MessageBody="three")  # a new invocation lives again
    finally:
        injector.uninstall()


def test_crash_is_not_an_exception_the_code_could_swallow() -> None:
    assert not issubclass(Crash, Exception)


def test_the_same_seed_draws_the_same_duplicates() -> None:
    first = FaultInjector(FaultPlan(duplicate=0.3), seed=3)
    second = FaultInjector(FaultPlan(duplicate=0.3), seed=3)
    draws = [first.duplicate() for _ in range(50)]
    assert draws == [second.duplicate() for _ in range(50)]
    assert 5 < sum(draws) < 30


def test_time_travel_makes_delays_and_visibility_timeouts_pass(aws: None) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=900)
    travel = SqsTimeTravel().install()
    try:
        assert "Messages" not in sqs.receive_message(QueueUrl=url)
        travel.advance(901)
        assert len(sqs.receive_message(QueueUrl=url)["Messages"]) == 1
        assert "Messages" not in sqs.receive_message(QueueUrl=url)  # in flight
        travel.advance(301)
        (again,) = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])["Messages"]
        assert again["Body"] == "later" and again["Attributes"]["ApproximateReceiveCount"] == "2"
    finally:
        travel.uninstall()
