"""AWS faked at the HTTP layer, inside botocore, for the worker benchmarks.

The adapters run with real botocore clients: parameters are validated, requests
serialized and signed (SigV4), responses parsed and errors raised exactly as against AWS.
Only the network is replaced: a ``before-send`` handler answers each request with an
``AWSResponse`` carrying the JSON body AWS would send, so botocore's CPU cost per call is
part of every measurement. Nothing can reach the network: an operation without a fake
raises instead of falling through to the real endpoint, and the clients carry fake
credentials (the credential chain is never consulted).

Faked: DynamoDB ``GetItem`` and ``BatchGetItem`` (answered from a :class:`Store` of items
the real adapters wrote, see ``bench.worker.prepare``), single-item writes (claims and
releases succeed; on the campaigns table they fail their condition, as completing a
campaign does until its last record), ``TransactWriteItems`` and ``BatchWriteItem``
(succeed); SES v2 ``GetAccount`` and
``SendEmail`` (after ``ses_latency`` seconds; with a ``SendWindow`` it refuses a call
beyond the window's limit within any one second, as SES does, with SES v2's
``TooManyRequestsException`` - HTTP 429 in the SES v2 API model - "Maximum sending rate
exceeded.").
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing.context import BaseContext
from typing import Any

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse, HTTPHeaders
from botocore.config import Config

REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}
_DYNAMODB_JSON = "application/x-amz-json-1.0"


class _Body:
    """The ``raw`` of an AWSResponse: botocore reads it with ``stream()``."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def client(service: str, config: Config) -> Any:
    """A real boto3 client (AWS's own endpoint URL, fake credentials); install a FakeAws on it."""
    session = boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"],
        aws_session_token=FAKE_CREDENTIALS["aws_session_token"],
        region_name=REGION,
    )
    return session.client(service, config=config)  # type: ignore[call-overload]


class SendWindow:
    """SES's maximum send rate: at most ``limit`` sends accepted within any one second.

    Shared by processes (one per simulated worker invocation): the times of the last
    ``limit`` accepted sends in a ring in shared memory; a send is accepted when the oldest
    of them is at least one second old. ``time.monotonic`` is the system-wide
    ``CLOCK_MONOTONIC`` on Linux, comparable between processes.
    """

    def __init__(self, limit: int, context: BaseContext) -> None:
        self.limit = limit
        self._times = context.Array("d", [-math.inf] * limit, lock=False)
        self._next = context.Value("i", 0, lock=False)
        self._lock = context.Lock()

    def admit(self, now: float) -> bool:
        with self._lock:
            index = self._next.value
            if self._times[index] > now - 1.0:
                return False
            self._times[index] = now
            self._next.value = (index + 1) % self.limit
            return True


_TO = re.compile(rb'"ToAddresses":\s*\["([^"]+)"')


def _recipient(body: Any) -> str:
    found = _TO.search(body if isinstance(body, bytes) else str(body or "").encode())
    return found.group(1).decode() if found else ""


def canonical(key: Mapping[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


class Store:
    """DynamoDB items (DynamoDB JSON) by table and key: what GetItem and BatchGetItem answer."""

    def __init__(self, key_schema: Mapping[str, Sequence[str]]) -> None:
        self.key_schema = {table: tuple(names) for table, names in key_schema.items()}
        self._items: dict[str, dict[str, dict[str, Any]]] = {table: {} for table in key_schema}

    def put(self, table: str, item: dict[str, Any]) -> None:
        key = {name: item[name] for name in self.key_schema[table]}
        self._items[table][canonical(key)] = item

    def get(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        return self._items.get(table, {}).get(canonical(key))


class FakeAws:
    """Answers the workers' DynamoDB and SES v2 requests; counts them, and the sends.

    DynamoDB: reads come from ``store``; a single-item write (``PutItem``, ``UpdateItem``,
    ``DeleteItem``) to a table in ``refused_updates`` fails its condition (the campaign is
    not done yet); every other write succeeds (claims, releases, ``TransactWriteItems``)
    without being stored.
    """

    def __init__(
        self,
        *,
        store: Store,
        account_rate: float,
        ses_latency: float = 0.05,
        dynamodb_latency: float = 0.0,
        refused_updates: frozenset[str] = frozenset(),
        window: SendWindow | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.account_rate = account_rate
        self.ses_latency = ses_latency
        self.dynamodb_latency = dynamodb_latency
        self.refused_updates = refused_updates
        self.window = window  # None: SES accepts every call
        self.clock = clock
        self.sleep = sleep
        self.calls: Counter[str] = Counter()  # "dynamodb.UpdateItem" -> count
        self.accepted: list[float] = []  # arrival time of every SendEmail SES accepted
        self.attempts: list[tuple[float, str]] = []  # (arrival, recipient) of every SendEmail, throttled too
        self.throttled = 0
        self.own_cpu = 0.0  # CPU seconds spent answering (the benchmark's own cost, not Mailroom's)
        self._lock = threading.Lock()
        self._ids = itertools.count()

    def install(self, aws_client: Any) -> Any:
        aws_client.meta.events.register("before-send", self._before_send)
        return aws_client

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()
            self.accepted.clear()
            self.attempts.clear()
            self.throttled = 0
            self.own_cpu = 0.0

    # -------------------------------------------------------------------- dispatch
    def _before_send(self, request: AWSPreparedRequest, event_name: str, **kwargs: Any) -> AWSResponse:
        started = time.thread_time()
        try:
            return self._answer(request, event_name)
        finally:
            spent = time.thread_time() - started
            with self._lock:
                self.own_cpu += spent

    def _answer(self, request: AWSPreparedRequest, event_name: str) -> AWSResponse:
        _, service, operation = event_name.split(".", 2)
        with self._lock:
            self.calls[f"{service}.{operation}"] += 1
        if service == "dynamodb":
            if self.dynamodb_latency:
                self.sleep(self.dynamodb_latency)
            return self._dynamodb(request, operation)
        if service == "sesv2" and operation == "SendEmail":
            return self._send_email(request)
        if service == "sesv2" and operation == "GetAccount":
            return self._ses_json(request, 200, self._account())
        raise AssertionError(f"the benchmark has no fake for {service} {operation}")

    # -------------------------------------------------------------------- DynamoDB
    def _dynamodb(self, request: AWSPreparedRequest, operation: str) -> AWSResponse:
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        if operation == "TransactWriteItems":
            return self._dynamodb_json(request, {})
        params = json.loads(body)
        if operation == "BatchWriteItem":
            return self._dynamodb_json(request, {"UnprocessedItems": {}})
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            if params["TableName"] in self.refused_updates:
                return self._dynamodb_error(
                    request, "ConditionalCheckFailedException", "The conditional request failed"
                )
            return self._dynamodb_json(request, {})
        if operation == "GetItem":
            item = self.store.get(params["TableName"], params["Key"])
            return self._dynamodb_json(request, {"Item": item} if item else {})
        if operation == "BatchGetItem":
            responses = {
                table: [item for key in spec["Keys"] if (item := self.store.get(table, key)) is not None]
                for table, spec in params["RequestItems"].items()
            }
            return self._dynamodb_json(request, {"Responses": responses, "UnprocessedKeys": {}})
        raise AssertionError(f"the benchmark has no fake for DynamoDB {operation}")

    def _dynamodb_json(self, request: AWSPreparedRequest, payload: dict[str, Any], status: int = 200) -> AWSResponse:
        data = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "content-type": _DYNAMODB_JSON,
            "x-amz-crc32": str(zlib.crc32(data)),
            "x-amzn-requestid": f"bench-{next(self._ids)}",
        }
        return AWSResponse(request.url, status, HTTPHeaders.from_dict(headers), _Body(data))

    def _dynamodb_error(self, request: AWSPreparedRequest, code: str, message: str) -> AWSResponse:
        payload = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}
        return self._dynamodb_json(request, payload, status=400)

    # -------------------------------------------------------------------- SES v2
    def _account(self) -> dict[str, Any]:
        return {
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": True,
            "SendQuota": {"Max24HourSend": 1e9, "MaxSendRate": self.account_rate, "SentLast24Hours": 0.0},
            "SendingEnabled": True,
        }

    def _send_email(self, request: AWSPreparedRequest) -> AWSResponse:
        arrived = self.clock()
        with self._lock:
            self.attempts.append((arrived, _recipient(request.body)))
        if self.window is not None and not self.window.admit(arrived):
            with self._lock:
                self.throttled += 1
            return self._ses_json(
                request,
                429,
                {"message": "Maximum sending rate exceeded."},
                {"x-amzn-errortype": "TooManyRequestsException:"},
            )
        if self.ses_latency:
            self.sleep(self.ses_latency)
        with self._lock:
            self.accepted.append(arrived)
        return self._ses_json(request, 200, {"MessageId": f"0100bench{next(self._ids):012d}-000000"})

    def _ses_json(
        self, request: AWSPreparedRequest, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None
    ) -> AWSResponse:
        data = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"content-type": "application/json", "x-amzn-requestid": f"bench-{next(self._ids)}"} | (extra or {})
        return AWSResponse(request.url, status, HTTPHeaders.from_dict(headers), _Body(data))
