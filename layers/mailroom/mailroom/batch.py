"""SQS batches with partial failures, for the SQS-triggered functions.

What Powertools' ``BatchProcessor`` + ``process_partial_response`` did for the workers,
without importing them: the batch utility loads its parser models, asyncio and every event
data class, for a loop of a few lines (13 to 15 ms of each worker's cold start, measured in
bench.coldstart's rounds: docs/performance.md). Each record is handled on its own; a record
whose handler raises is reported in ``batchItemFailures`` (the event source mapping has
``ReportBatchItemFailures``), so SQS redelivers that record only. Every record failing is
reported the same way, never as a Lambda error: no blanket retry of the records that were
done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from mailroom.errors import TaskRetry
from mailroom.observability import logger


class BatchItemFailure(TypedDict):
    itemIdentifier: str


class PartialBatchResponse(TypedDict):
    batchItemFailures: list[BatchItemFailure]


@dataclass(frozen=True, slots=True)
class SqsRecord:
    """The parts of an SQS record the functions read."""

    message_id: str
    body: str
    receive_count: int

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> SqsRecord:
        attributes = raw.get("attributes") or {}
        try:
            receive_count = max(1, int(attributes.get("ApproximateReceiveCount") or 1))
        except (TypeError, ValueError):
            receive_count = 1
        return cls(message_id=str(raw["messageId"]), body=str(raw.get("body") or ""), receive_count=receive_count)


def process_batch(
    event: Mapping[str, Any], handler: Callable[[SqsRecord, Any], object], context: Any = None
) -> PartialBatchResponse:
    """Handle each record of an SQS event (``handler(record, context)``); the ids of those that
    raised, for SQS to redeliver."""
    failures: list[BatchItemFailure] = []
    for raw in event.get("Records") or []:
        record = SqsRecord.of(raw)
        try:
            handler(record, context)
        except Exception as exc:  # this record comes again; the others are done
            level = logger.info if isinstance(exc, TaskRetry) else logger.warning
            level(
                "record not done: it comes again",
                extra={"message_id": record.message_id, "error": type(exc).__name__, "reason": str(exc)[:300]},
            )
            failures.append({"itemIdentifier": record.message_id})
    return {"batchItemFailures": failures}
