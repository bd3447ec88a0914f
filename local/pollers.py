"""SQS event source mappings: one poller per ``Type: SQS`` event, with one or more threads.

Mirrors what Lambda's event source mapping does for a standard queue:

* ``ReceiveMessage`` with ``MaxNumberOfMessages`` = ``BatchSize`` (at most 10 per call;
  larger batches are gathered over several calls within the batching window), short long
  polling, all system and message attributes. With ``MaximumBatchingWindowInSeconds`` the
  poller keeps gathering until the batch is full or the window has passed (approximately).
* The function gets the AWS-shaped SQS event (``Records`` with ``messageId``,
  ``receiptHandle``, ``body``, ``attributes``, ``messageAttributes``, ``md5OfBody``,
  ``eventSource: aws:sqs``, ``eventSourceARN``, ``awsRegion``).
* Success deletes the batch. With ``FunctionResponseTypes: [ReportBatchItemFailures]``
  only the records not listed in ``batchItemFailures`` are deleted; an empty/null response
  or list is full success; an ``itemIdentifier`` that is empty, missing or not in the batch
  makes the whole batch a failure, as in AWS.
* A function error or timeout deletes nothing: the messages reappear after the queue's
  visibility timeout, and after ``maxReceiveCount`` receives the queue's redrive policy moves
  them to the dead-letter queue. That last step is SQS's own (moto implements it on
  receive, like SQS), not the poller's.

Concurrency (:func:`plan_concurrency`). With ``ScalingConfig: {MaximumConcurrency: N}`` an
event source runs up to N invocations at once, each with its own batch: the poller has N
threads, each receiving a batch and invoking the function with it. The function's
``ReservedConcurrentExecutions`` bounds that too (0: the source is not polled, as Lambda
would throttle every invocation). Without ``ScalingConfig`` a source runs one invocation at
a time. That is a local choice, not Lambda's default (which scales a source up to the
function's or the account's concurrency limit): it keeps the order of the logs readable and
the number of processes small, and a template that relies on concurrency says so with
``MaximumConcurrency``. Each thread needs an execution environment of its own, so the
function's :class:`~.sandbox.SandboxPool` gets one environment per concurrent invocation of
all its sources (at least one; at most its reserved concurrency), all of them capped at
:data:`LOCAL_CONCURRENCY_LIMIT` per function to keep the process count sane; every cap is
reported. Other invocations of the function (API, schedules) share the same environments.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .console import Console
from .sandbox import Invocation
from .template import FunctionSpec, SqsSourceSpec

__all__ = [
    "LOCAL_CONCURRENCY_LIMIT",
    "ConcurrencyPlan",
    "SqsPoller",
    "build_sqs_event",
    "failed_message_ids",
    "plan_concurrency",
]

_WAIT_SECONDS = 1  # short long-polling: responsive, and stops within a second
LOCAL_CONCURRENCY_LIMIT = 8  # execution environments per function, at most


@dataclass(frozen=True)
class ConcurrencyPlan:
    """How many invocations each SQS event source runs at once, and the environments that takes."""

    sources: dict[tuple[str, str], int]  # (function, event) -> concurrent invocations; 0 = not polled
    environments: dict[str, int]  # function -> size of its SandboxPool
    notes: list[str]  # what was limited, and why, for the console


def plan_concurrency(
    functions: Mapping[str, FunctionSpec],
    sources: Iterable[SqsSourceSpec],
    limit: int = LOCAL_CONCURRENCY_LIMIT,
) -> ConcurrencyPlan:
    """Concurrency of the enabled ``sources`` and pool sizes of all ``functions`` (module docstring)."""
    planned: dict[tuple[str, str], int] = {}
    demand = dict.fromkeys(functions, 0)
    notes: list[str] = []
    for source in sources:
        if not source.enabled:
            continue
        name = f"{source.function}.{source.event}"
        reserved = functions[source.function].reserved_concurrency
        concurrency = source.maximum_concurrency or 1
        if reserved == 0:
            notes.append(f"{name}: not polled, ReservedConcurrentExecutions is 0 (Lambda would throttle it)")
        if reserved is not None and reserved < concurrency:
            concurrency = reserved  # Lambda throttles the source beyond the function's reserved concurrency
        if concurrency > limit:
            notes.append(f"{name}: MaximumConcurrency {concurrency} runs as {limit} concurrent invocations locally")
            concurrency = limit
        planned[(source.function, source.event)] = concurrency
        demand[source.function] += concurrency
    environments: dict[str, int] = {}
    for logical_id, function in functions.items():
        size = max(1, demand[logical_id])
        if function.reserved_concurrency:
            size = min(size, function.reserved_concurrency)
        if size > limit:
            notes.append(f"{logical_id}: {size} concurrent invocations share {limit} execution environments locally")
            size = limit
        environments[logical_id] = size
    return ConcurrencyPlan(sources=planned, environments=environments, notes=notes)


def build_sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The Lambda event for a batch of ``ReceiveMessage`` results."""
    records = []
    for message in messages:
        attributes = dict(message.get("Attributes") or {})
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": attributes,
            "messageAttributes": {
                name: _message_attribute(value) for name, value in (message.get("MessageAttributes") or {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
        if message.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        records.append(record)
    return {"Records": records}


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    attribute: dict[str, Any] = {
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    return attribute


def failed_message_ids(response: Any, batch_ids: set[str]) -> set[str] | None:
    """The message ids a ReportBatchItemFailures response marks failed; None = whole batch failed."""
    if response is None or response in ({}, ""):
        return set()
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier or identifier not in batch_ids:
            return None
        failed.add(identifier)
    return failed


class SqsPoller:
    """Feeds one queue to one function, like an event source mapping, ``concurrency`` batches at a time."""

    def __init__(
        self,
        source: SqsSourceSpec,
        *,
        queue_url: str,
        queue_name: str,
        sqs: Any,
        invoke: Callable[[Any], Invocation],
        region: str,
        console: Console,
        concurrency: int = 1,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"{source.function}.{source.event}: concurrency must be at least 1, not {concurrency}")
        self.source = source
        self.queue_url = queue_url
        self.queue_name = queue_name
        self.concurrency = concurrency
        self._sqs = sqs
        self._invoke = invoke
        self._region = region
        self._console = console
        self._stop = threading.Event()
        names = (
            [f"poller-{source.event}"]
            if concurrency == 1
            else [f"poller-{source.event}-{number}" for number in range(1, concurrency + 1)]
        )
        self._threads = [threading.Thread(target=self._run, name=name, daemon=True) for name in names]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        """Wait for the threads to end, ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    # ----------------------------------------------------------------- internals
    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(count, 10)),
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages") or []
        return messages

    def _gather(self) -> list[dict[str, Any]]:
        batch = self._receive(self.source.batch_size, _WAIT_SECONDS)
        if not batch:
            return batch
        window_ends = time.monotonic() + self.source.batching_window
        while len(batch) < self.source.batch_size and not self._stop.is_set():
            remaining = window_ends - time.monotonic()
            if remaining <= 0:
                break
            batch += self._receive(self.source.batch_size - len(batch), min(_WAIT_SECONDS, max(1, int(remaining))))
        return batch

    def _run(self) -> None:
        failures_in_a_row = 0
        while not self._stop.is_set():
            try:
                batch = self._gather()
                if batch:
                    self._process(batch)
                failures_in_a_row = 0
            except Exception as exc:  # the endpoint went away or misbehaved: log and back off
                if self._stop.is_set():
                    return
                failures_in_a_row += 1
                if failures_in_a_row == 1:
                    self._console.error(f"polling {self.queue_name} failed: {exc}", self.source.function)
                self._stop.wait(min(5.0, 0.5 * failures_in_a_row))

    def _process(self, batch: list[dict[str, Any]]) -> None:
        event = build_sqs_event(batch, self.source.queue_arn, self._region)
        invocation = self._invoke(event)
        ids = {m["MessageId"] for m in batch}
        if not invocation.ok:
            if not self._stop.is_set():
                self._console.warning(
                    f"{self.queue_name}: batch of {len(batch)} failed ({invocation.error_type}); "
                    "the messages return after the visibility timeout",
                    self.source.function,
                )
            return
        failed: set[str] | None = set()
        if self.source.report_batch_item_failures:
            failed = failed_message_ids(invocation.payload, ids)
            if failed is None:
                self._console.warning(
                    f"{self.queue_name}: invalid batchItemFailures response; the whole batch of {len(batch)} failed",
                    self.source.function,
                )
                return
            if failed:
                self._console.warning(
                    f"{self.queue_name}: {len(failed)} of {len(batch)} messages failed; "
                    "they return after the visibility timeout",
                    self.source.function,
                )
        done = [m for m in batch if m["MessageId"] not in (failed or set())]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
