"""SQS: putting tasks on a queue, one at a time or in batches of ten."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mailroom.adapters.aws import sqs_client
from mailroom.errors import MailroomError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SQS_BATCH_LIMIT = 10
# One SendMessageBatch request carries at most this many bytes of bodies. SQS accepts
# 1 MiB today; 256 KiB is the long-standing limit every region and emulator accepts.
SQS_BATCH_BYTES = 256 * 1024


class EnqueueError(MailroomError):
    """Some messages could not be put on the queue, even after retries."""

    def __init__(self, failed: dict[str, str]) -> None:
        super().__init__(f"{len(failed)} message(s) not enqueued: {sorted(set(failed.values()))}")
        self.failed = failed


class TaskQueue:
    def __init__(
        self,
        queue_url: str,
        client: SQSClient | None = None,
        attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.queue_url = queue_url
        self.client = client or sqs_client()
        self.attempts = attempts
        self.sleep = sleep

    def send(self, body: str, attributes: dict[str, str] | None = None, delay_seconds: int = 0) -> str:
        """Put one message on the queue (invisible for ``delay_seconds``, at most 900); returns its MessageId."""
        response = self.client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            MessageAttributes=_attributes(attributes),
            DelaySeconds=max(0, min(900, delay_seconds)),
        )
        return response["MessageId"]

    def send_batch(self, bodies: Sequence[str], attributes: dict[str, str] | None = None) -> int:
        """Put every body on the queue, ten per SendMessageBatch call.

        Entries that fail are retried with exponential backoff; sender faults that will
        not heal (``SenderFault``) are not retried. Raises EnqueueError naming what is
        left after the last attempt. Returns the number of SendMessageBatch calls made.
        """
        calls = 0
        for chunk in _chunks(bodies):
            calls += self._send_chunk(chunk, attributes)
        return calls

    def _send_chunk(self, pending: dict[str, str], attributes: dict[str, str] | None) -> int:
        failed: dict[str, str] = {}
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(min(0.1 * 2**attempt, 2.0))
            response = self.client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": entry_id, "MessageBody": body, "MessageAttributes": _attributes(attributes)}
                    for entry_id, body in pending.items()
                ],
            )
            failures = response.get("Failed", [])
            permanent = {f["Id"]: f.get("Code", "") for f in failures if f.get("SenderFault")}
            if permanent:
                raise EnqueueError(permanent)
            failed = {f["Id"]: f.get("Code", "") for f in failures}
            pending = {entry_id: pending[entry_id] for entry_id in failed}
            if not pending:
                return attempt + 1
        raise EnqueueError(failed)


def come_again(client: SQSClient, queue_url: str, receipts: Sequence[tuple[str, int]]) -> int:
    """Make received messages visible again after their own delay (``(receipt handle, seconds)``)
    instead of the queue's visibility timeout; best effort: returns how many could not be
    changed (those come again after the visibility timeout, as they would anyway)."""
    failed = 0
    for start in range(0, len(receipts), 10):
        entries = [
            {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
            for index, (handle, seconds) in enumerate(receipts[start : start + 10])
        ]
        try:
            answer = client.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
        except (BotoCoreError, ClientError):  # best effort: the visibility timeout still brings them back
            failed += len(entries)
            continue
        failed += len(answer.get("Failed") or [])
    return failed


def _chunks(bodies: Sequence[str]) -> list[dict[str, str]]:
    """Ten entries per request at most, and at most SQS_BATCH_BYTES of bodies; ids are positions."""
    chunks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    size = 0
    for index, body in enumerate(bodies):
        length = len(body.encode("utf-8"))
        if length > SQS_BATCH_BYTES:
            raise EnqueueError({str(index): "MessageTooLong"})
        if current and (len(current) == SQS_BATCH_LIMIT or size + length > SQS_BATCH_BYTES):
            chunks.append(current)
            current, size = {}, 0
        current[str(index)] = body
        size += length
    if current:
        chunks.append(current)
    return chunks


def _attributes(attributes: dict[str, str] | None) -> dict[str, Any]:
    return {key: {"DataType": "String", "StringValue": value} for key, value in (attributes or {}).items()}
