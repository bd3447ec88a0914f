"""The dead-letter queues: what is in them (with the reason each task failed), and the redrive.

A task reaches a dead-letter queue in one of two ways:

* a worker gave it up: its transient failures were used up, or it was malformed. The worker
  sent it there itself (``worker.DeadLetters``) with message attributes ``error`` (the last
  error), ``failed_at`` and ``source``;
* SQS moved it after ``maxReceiveCount`` receives (the queue's redrive policy): its worker
  never finished - crashed or timed out every time. It has no ``error`` attribute; its
  receive count says how often it was tried.

A redrive puts each message back on the queue it came from - with its retry counters reset,
so it gets the full budget of retries again - and only then deletes it from the dead-letter
queue, ten at a time, until its time is up (the admin API's function has 20 s; call it again
for the rest: it answers what remains). A redrive that stops in between leaves a copy in
both places: the workers' claims make sure the copy mails nobody twice.

SQS has its own redrive (``StartMessageMoveTask``); moto does not implement it, and it
neither resets counters nor reports per message, so Mailroom moves the messages itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailroom.adapters.aws import sqs_client
from mailroom.models import iso, utcnow

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

PEEK_VISIBILITY_SECONDS = 30
REDRIVE_VISIBILITY_SECONDS = 120
NO_REASON = "no reason recorded: the worker never finished it (crashed or timed out on every receive)"


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str  # welcome | newsletter | fanout
    url: str  # the dead-letter queue
    source_url: str  # where a redrive puts its messages


class UnknownQueue(ValueError):
    """No dead-letter queue has that name."""


def reset_counters(body: str) -> str:
    """A task's body with its retry counters back at zero (other bodies unchanged)."""
    try:
        task = json.loads(body)
    except ValueError:
        return body
    if not isinstance(task, dict):
        return body
    for counter in ("attempt", "failures"):
        if counter in task:
            task[counter] = 0
    return json.dumps(task, separators=(",", ":"))


def describe(queue: str, message: dict[str, Any]) -> dict[str, Any]:
    """One dead letter as the admin sees it: where, why, when, and what the task was."""
    attributes = message.get("MessageAttributes") or {}
    system = message.get("Attributes") or {}
    body = message.get("Body", "")
    try:
        task = json.loads(body)
    except ValueError:
        task = None
    summary: dict[str, Any] = {"kind": None}
    if isinstance(task, dict):
        summary["kind"] = task.get("kind")
        if task.get("kind") == "campaign":
            summary |= {"campaign_id": task.get("campaign_id"), "recipients": len(task.get("recipients") or [])}
        elif task.get("kind") == "welcome":
            summary |= {"subscriber_id": task.get("subscriber_id")}
        elif task.get("kind") == "confirmation":
            summary |= {"subscriber_id": task.get("subscriber_id"), "seq": task.get("seq")}
        elif task.get("kind") == "fanout":
            summary |= {"campaign_id": task.get("campaign_id"), "segment": task.get("segment")}
    return {
        "queue": queue,
        "message_id": message.get("MessageId"),
        "reason": attributes.get("error", {}).get("StringValue") or NO_REASON,
        "failed_at": attributes.get("failed_at", {}).get("StringValue"),
        "receive_count": int(system.get("ApproximateReceiveCount", 0) or 0),
        "task": summary,
    }


class DeadLetterOffice:
    def __init__(self, queues: Sequence[DeadLetterQueue], client: SQSClient | None = None) -> None:
        self.queues = {queue.name: queue for queue in queues}
        self.client = client or sqs_client()

    def _chosen(self, name: str | None) -> list[DeadLetterQueue]:
        if name is None:
            return list(self.queues.values())
        if name not in self.queues:
            raise UnknownQueue(f"no dead-letter queue named {name!r}; one of {sorted(self.queues)}")
        return [self.queues[name]]

    def counts(self) -> dict[str, int]:
        """Messages in each dead-letter queue (approximate, as SQS counts them)."""
        counts: dict[str, int] = {}
        for queue in self.queues.values():
            attributes = self.client.get_queue_attributes(
                QueueUrl=queue.url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            ).get("Attributes", {})
            counts[queue.name] = int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
                attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
            )
        return counts

    def _receive(self, queue: DeadLetterQueue, count: int, visibility: int) -> list[dict[str, Any]]:
        response = self.client.receive_message(
            QueueUrl=queue.url,
            MaxNumberOfMessages=max(1, min(10, count)),
            VisibilityTimeout=visibility,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        )
        messages: list[dict[str, Any]] = [dict(message) for message in response.get("Messages") or []]
        return messages

    def peek(self, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Up to ``limit`` dead letters, described; they stay where they are (made visible again)."""
        found: list[dict[str, Any]] = []
        for queue in self._chosen(name):
            seen: list[dict[str, Any]] = []
            while len(found) + len(seen) < limit:
                batch = self._receive(queue, limit - len(found) - len(seen), PEEK_VISIBILITY_SECONDS)
                if not batch:
                    break
                seen += batch
            for message in seen:
                self.client.change_message_visibility(
                    QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            found += [describe(queue.name, message) for message in seen]
        return found

    def redrive(self, name: str | None = None, limit: int = 1000, deadline: float = float("inf")) -> dict[str, int]:
        """Move up to ``limit`` dead letters back to their queues, ten per request, until
        ``deadline`` (``time.monotonic``); how many, per queue. Call again for the rest."""
        moved: dict[str, int] = {}
        for queue in self._chosen(name):
            moved[queue.name] = 0
            while sum(moved.values()) < limit and time.monotonic() < deadline:
                batch = self._receive(queue, limit - sum(moved.values()), REDRIVE_VISIBILITY_SECONDS)
                if not batch:
                    break
                entries = [
                    {
                        "Id": str(index),
                        "MessageBody": reset_counters(message["Body"]),
                        "MessageAttributes": {"redriven_at": {"DataType": "String", "StringValue": iso(utcnow())}},
                    }
                    for index, message in enumerate(batch)
                ]
                sent = self.client.send_message_batch(QueueUrl=queue.source_url, Entries=entries)  # type: ignore[arg-type]
                done = [batch[int(entry["Id"])] for entry in sent.get("Successful", [])]
                # only what is safely back on its queue leaves the dead-letter queue; the rest
                # becomes visible again after the visibility timeout
                if done:
                    self.client.delete_message_batch(
                        QueueUrl=queue.url,
                        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                    )
                moved[queue.name] += len(done)
        return moved
