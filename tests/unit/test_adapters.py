"""Adapters against stubbed or moto-backed clients: batching, retries, error classes."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)
from botocore.stub import Stubber

from mailroom.adapters.aws import sesv2_client
from mailroom.adapters.dynamodb import batch_get, conditional_update, to_item
from mailroom.adapters.ses import classify
from mailroom.adapters.sqs import SQS_BATCH_BYTES, EnqueueError, TaskQueue
from mailroom.errors import PermanentSendError, RetryableSendError, UncertainSendError

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/q"


def _queue() -> tuple[TaskQueue, Stubber, list[float]]:
    client = boto3.client("sqs", region_name="us-east-1")
    sleeps: list[float] = []
    return TaskQueue(URL, client=client, attempts=3, sleep=sleeps.append), Stubber(client), sleeps


def _expect_batch(stubber: Stubber, ids: list[str], failed: list[dict[str, Any]]) -> None:
    ok = [{"Id": i, "MessageId": f"m{i}", "MD5OfMessageBody": "x"} for i in ids if i not in {f["Id"] for f in failed}]
    stubber.add_response(
        "send_message_batch",
        {"Successful": ok, "Failed": failed},
        {"QueueUrl": URL, "Entries": [{"Id": i, "MessageBody": f"b{i}", "MessageAttributes": {}} for i in ids]},
    )


def test_send_batch_sends_ten_per_call() -> None:
    queue, stubber, _ = _queue()
    bodies = [f"b{i}" for i in range(23)]
    _expect_batch(stubber, [str(i) for i in range(10)], [])
    _expect_batch(stubber, [str(i) for i in range(10, 20)], [])
    _expect_batch(stubber, [str(i) for i in range(20, 23)], [])
    with stubber:
        assert queue.send_batch(bodies) == 3
    stubber.assert_no_pending_responses()


def test_send_batch_retries_only_the_failed_entries_with_backoff() -> None:
    queue, stubber, sleeps = _queue()
    _expect_batch(stubber, ["0", "1", "2"], [{"Id": "1", "Code": "InternalError", "SenderFault": False}])
    _expect_batch(stubber, ["1"], [])
    with stubber:
        assert queue.send_batch(["b0", "b1", "b2"]) == 2
    assert len(sleeps) == 1
    stubber.assert_no_pending_responses()


def test_send_batch_gives_up_after_its_attempts_naming_what_failed() -> None:
    queue, stubber, _ = _queue()
    failure = [{"Id": "0", "Code": "InternalError", "SenderFault": False}]
    for _ in range(3):
        _expect_batch(stubber, ["0"], failure)
    with stubber, pytest.raises(EnqueueError) as raised:
        queue.send_batch(["b0"])
    assert raised.value.failed == {"0": "InternalError"}


def test_send_batch_does_not_retry_sender_faults() -> None:
    queue, stubber, sleeps = _queue()
    _expect_batch(stubber, ["0"], [{"Id": "0", "Code": "InvalidMessageContents", "SenderFault": True}])
    with stubber, pytest.raises(EnqueueError):
        queue.send_batch(["b0"])
    assert sleeps == []


def _client_error(code: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "SendEmail")


@pytest.mark.parametrize(
    ("error", "kind", "throttled"),
    [
        (_client_error("TooManyRequestsException"), RetryableSendError, True),
        (_client_error("LimitExceededException"), RetryableSendError, True),
        (_client_error("Throttling", "Maximum sending rate exceeded."), RetryableSendError, True),
        (_client_error("SomethingElse", "Maximum sending rate exceeded."), RetryableSendError, True),
        (_client_error("InternalFailure"), RetryableSendError, False),
        (_client_error("MailFromDomainNotVerifiedException"), RetryableSendError, False),
        (_client_error("MessageRejected", "Email address is not verified."), PermanentSendError, False),
        (_client_error("BadRequestException", "Illegal address"), PermanentSendError, False),
        (
            _client_error(
                "MessageRejected",
                "Email address is not verified. The following identities failed "
                "the check in region US-EAST-1: reader@example.org",
            ),
            PermanentSendError,
            False,
        ),
        (
            _client_error(
                "MessageRejected",
                "Email address is not verified. The following identities failed "
                "the check in region US-EAST-1: news@example.com",
            ),
            RetryableSendError,
            False,
        ),
        # the sender's identity was deleted (moto's wording): configuration, not the recipient
        (
            _client_error("MessageRejected", "Did not have authority to send from email news@example.com"),
            RetryableSendError,
            False,
        ),
        # a recipient in the sender's own domain is still the recipient's problem
        (
            _client_error(
                "MessageRejected",
                "Email address is not verified. The following identities failed "
                "the check in region US-EAST-1: bob@example.com",
            ),
            PermanentSendError,
            False,
        ),
        (EndpointConnectionError(endpoint_url="https://email"), RetryableSendError, False),
        (ConnectTimeoutError(endpoint_url="https://email"), RetryableSendError, False),
        # after the request may have gone out: never retried
        (SSLError(endpoint_url="https://email", error="bad record mac"), UncertainSendError, False),
        (HTTPClientError(error="boom"), UncertainSendError, False),
        (ReadTimeoutError(endpoint_url="https://email"), UncertainSendError, False),
        (ConnectionClosedError(endpoint_url="https://email"), UncertainSendError, False),
    ],
)
def test_ses_errors_are_classified(error: Exception, kind: type, throttled: bool) -> None:
    classified = classify(error, from_address="news@example.com")
    assert type(classified) is kind
    assert classified.throttled is throttled


def test_the_ses_client_never_retries_a_send_by_itself() -> None:
    # a retry after a lost answer could deliver the same mail twice
    assert sesv2_client().meta.config.retries["total_max_attempts"] == 1


def test_send_batch_keeps_each_request_under_the_byte_limit() -> None:
    queue, stubber, _ = _queue()
    big = "x" * (SQS_BATCH_BYTES // 3 + 1)  # three of these do not fit in one request
    bodies = [big, big, big, "small"]
    for ids in (["0", "1"], ["2", "3"]):
        stubber.add_response(
            "send_message_batch",
            {"Successful": [{"Id": i, "MessageId": i, "MD5OfMessageBody": "x"} for i in ids], "Failed": []},
            {
                "QueueUrl": URL,
                "Entries": [{"Id": i, "MessageBody": bodies[int(i)], "MessageAttributes": {}} for i in ids],
            },
        )
    with stubber:
        assert queue.send_batch(bodies) == 2
    stubber.assert_no_pending_responses()


def test_a_body_over_the_limit_is_refused_before_any_call() -> None:
    queue, stubber, _ = _queue()
    with stubber, pytest.raises(EnqueueError):
        queue.send_batch(["x" * (SQS_BATCH_BYTES + 1)])


class _BatchGets:
    """BatchGetItem that leaves the last key of each call unprocessed, ``lazy`` times."""

    def __init__(self, lazy: int) -> None:
        self.lazy = lazy
        self.calls: list[int] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        keys = RequestItems["t"]["Keys"]
        assert RequestItems["t"]["ConsistentRead"] is True
        self.calls.append(len(keys))
        if self.lazy and len(keys) > 0:
            self.lazy -= 1
            return {"Responses": {"t": keys[:-1]}, "UnprocessedKeys": {"t": {"Keys": keys[-1:]}}}
        return {"Responses": {"t": keys}}


def test_batch_get_reads_100_keys_a_call_and_asks_again_for_the_unprocessed_ones() -> None:
    client, slept = _BatchGets(lazy=2), []
    keys = [to_item({"id": str(n)}) for n in range(150)]
    found = batch_get(client, "t", keys, attempts=5, sleep=slept.append)
    assert sorted(int(item["id"]) for item in found) == list(range(150))
    assert client.calls == [100, 1, 1, 50] and slept == [0.05, 0.1]


def test_batch_get_gives_up_after_its_attempts() -> None:
    client = _BatchGets(lazy=10)
    with pytest.raises(RuntimeError, match="1 item\\(s\\) of t not read after 3 attempts"):
        batch_get(client, "t", [to_item({"id": "a"}), to_item({"id": "b"})], attempts=3, sleep=lambda _: None)


class _ConditionFailed(Exception):
    pass


class _Updates:
    """UpdateItem answering from a script: "ok", "lost" (the answer never came) or "condition"."""

    exceptions = type("Exceptions", (), {"ConditionalCheckFailedException": _ConditionFailed})

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []

    def update_item(self, **request: Any) -> None:
        self.requests.append(request)
        step = self.script.pop(0)
        if step == "lost":
            raise ReadTimeoutError(endpoint_url="https://dynamodb")
        if step == "condition":
            raise _ConditionFailed


@pytest.mark.parametrize(
    ("script", "written"),
    [(["ok"], True), (["lost", "ok"], True), (["lost", "lost", "condition"], False)],
)
def test_a_conditional_update_is_tried_again_when_its_answer_is_lost(script: list[str], written: bool) -> None:
    client, slept = _Updates(*script), []
    assert conditional_update(client, slept.append, TableName="t", Key={}) is written
    assert len(client.requests) == len(script) and len(slept) == script.count("lost")  # a backoff before each retry
    assert all(request == {"TableName": "t", "Key": {}} for request in client.requests)


def test_a_conditional_update_whose_answers_stay_lost_raises() -> None:
    client = _Updates(*["lost"] * 10)
    with pytest.raises(ReadTimeoutError):
        conditional_update(client, lambda _: None, TableName="t", Key={})
    assert len(client.requests) == 4  # AMBIGUOUS_ATTEMPTS
