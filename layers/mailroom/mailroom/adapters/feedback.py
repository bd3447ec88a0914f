"""DynamoDB: SES feedback on result records, campaign counters and subscribers.

An event is recorded with one write: an ``UpdateItem`` of the record, or - when a counter
or a subscriber's ``soft_bounces`` go up with it - a ``TransactWriteItems`` of the record
and those. The record's update is conditioned on the event's key not being in its
``feedback`` set yet (and, for the first event of a kind, on that kind's marker being
absent), so a repeated event or a repeated write whose answer was lost changes nothing and
counts nothing twice. A refused condition means the record changed since it was read: it
is read again and the event judged again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mailroom.adapters.aws import dynamodb_client
from mailroom.adapters.campaigns import progress_key
from mailroom.adapters.dynamodb import backoff_seconds, conditional_update, from_item, to_item
from mailroom.errors import MailroomError
from mailroom.logic.feedback import MailRef, RecordChange, Recorded, RecordResult
from mailroom.models import DeliveryStatus, SubscriberStatus
from mailroom.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ATTEMPTS = 8
FEEDBACK = "feedback"  # the record's string set of the event keys recorded on it
_RETRYABLE = frozenset({"TransactionConflict", "ThrottlingError"})


class FeedbackError(MailroomError):
    """An event could not be recorded after retries (the record kept changing under it)."""


class RecordNotReady(FeedbackError):
    """The record is still claimed (``sending``): the worker's result is not written yet, and
    a campaign's result replaces the whole record. The event must come again later."""


class FeedbackLedger:
    def __init__(
        self,
        results_table: str,
        subscribers_table: str,
        campaigns_table: str,
        client: DynamoDBClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.results_table = results_table
        self.subscribers_table = subscribers_table
        self.campaigns_table = campaigns_table
        self.client = client or dynamodb_client()
        self.sleep = sleep

    # -- the record -----------------------------------------------------------------------
    def record(self, ref: MailRef, change: RecordChange) -> RecordResult:
        """Record ``change`` on the record ``ref`` names (see ``logic.feedback.RecordChange``)."""
        count, soft_bounce_of = ref.campaign_id is not None, change.soft_bounce_of
        for attempt in range(ATTEMPTS):
            current = self._get(ref)
            judged = _judge(ref, current, change)
            if judged is not None:
                return RecordResult(judged)
            first = change.marker not in (current or {})
            items = [self._record_update(ref, change, first)]
            counter = count and first
            if counter:
                items.append(self._counter_update(str(ref.campaign_id), change.counter))
            if soft_bounce_of is not None:
                items.append(self._soft_bounce_update(soft_bounce_of, ref.subscriber_id))
            failed = self._write(items)
            if failed is None:
                return RecordResult(
                    Recorded.FIRST if first else Recorded.AGAIN,
                    counted=counter,
                    soft_bounce_counted=soft_bounce_of is not None,
                )
            if counter and 1 in failed:
                # A campaign record without its progress item (never started?): record, count nothing.
                logger.warning("the campaign has no progress item: the event is not counted", extra={"record": ref.pk})
                count = False
            if soft_bounce_of is not None and len(items) - 1 in failed:
                soft_bounce_of = None  # the address was erased, or is somebody else's now: no soft bounce to count
            if not failed:
                self.sleep(backoff_seconds(attempt))
            # else the record changed since it was read (or a part was dropped): judge again
        raise FeedbackError(f"event not recorded on {ref.pk} after {ATTEMPTS} attempts")

    def _get(self, ref: MailRef) -> dict[str, Any] | None:
        item = self.client.get_item(
            TableName=self.results_table,
            Key=to_item({"pk": ref.pk, "sk": ref.sk}),
            ConsistentRead=True,
            ProjectionExpression="pk, #status, message_id, #feedback, delivered_at, bounced_at, complained_at",
            ExpressionAttributeNames={"#feedback": FEEDBACK, "#status": "status"},
        ).get("Item")
        return from_item(item) if item else None

    def _record_update(self, ref: MailRef, change: RecordChange, first: bool) -> dict[str, Any]:
        names = {"#feedback": FEEDBACK, "#marker": change.marker} | {
            f"#v{i}": key for i, key in enumerate(change.values)
        }
        values: dict[str, Any] = {":key": change.key, ":keys": {change.key}, ":marker": change.marker_value}
        values |= {f":v{i}": value for i, value in enumerate(change.values.values())}
        sets = ["#marker = if_not_exists(#marker, :marker)", *[f"#v{i} = :v{i}" for i in range(len(change.values))]]
        condition = "attribute_exists(pk) AND NOT contains(#feedback, :key)"
        if first:
            condition += " AND attribute_not_exists(#marker)"
        return {
            "Update": {
                "TableName": self.results_table,
                "Key": to_item({"pk": ref.pk, "sk": ref.sk}),
                "UpdateExpression": f"SET {', '.join(sets)} ADD #feedback :keys",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": to_item(values),
            }
        }

    def _counter_update(self, campaign_id: str, counter: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.campaigns_table,
                "Key": progress_key(campaign_id),
                "UpdateExpression": "ADD #counter :one",
                "ConditionExpression": "attribute_exists(id)",
                "ExpressionAttributeNames": {"#counter": counter},
                "ExpressionAttributeValues": to_item({":one": 1}),
            }
        }

    def _soft_bounce_update(self, email: str, subscriber_id: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.subscribers_table,
                "Key": to_item({"email": email}),
                "UpdateExpression": "ADD soft_bounces :one",
                "ConditionExpression": "id = :id",
                "ExpressionAttributeValues": to_item({":one": 1, ":id": subscriber_id}),
            }
        }

    def _write(self, items: list[dict[str, Any]]) -> set[int] | None:
        """Write the items (one update, or a transaction); None if it went through, else the
        indexes of the items whose condition failed (empty: try again later)."""
        try:
            if len(items) == 1:
                self.client.update_item(**items[0]["Update"])
            else:
                self.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except BotoCoreError:
            # The answer was lost: whether it went through is unknown. Judging again is safe -
            # if it did, the record holds the event's key and nothing happens twice.
            return set()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return {0}
            if code != "TransactionCanceledException":
                raise
            reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons") or []]
            failed = {index for index, reason in enumerate(reasons) if reason == "ConditionalCheckFailed"}
            if not failed and not set(reasons) & _RETRYABLE:
                raise
            return failed
        return None

    # -- the subscriber -------------------------------------------------------------------
    def suppress(self, email: str, subscriber_id: str, reason: str, at: str) -> bool:
        """Suppress the subscriber with this address if it is still ``subscriber_id``; True if
        this call did it (False: suppressed before, erased, or somebody else's address now)."""
        # conditioned on not being suppressed yet: repeating it is harmless
        return conditional_update(
            self.client,
            self.sleep,
            TableName=self.subscribers_table,
            Key=to_item({"email": email}),
            UpdateExpression="SET #status = :suppressed, suppressed_at = :at, suppressed_reason = :reason "
            "REMOVE expires_at",
            ConditionExpression="id = :id AND #status <> :suppressed",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {":suppressed": SubscriberStatus.SUPPRESSED.value, ":at": at, ":reason": reason, ":id": subscriber_id}
            ),
        )


def _judge(ref: MailRef, current: dict[str, Any] | None, change: RecordChange) -> Recorded | None:
    """What the record as read says about the event before anything is written (None: write it)."""
    if current is None:
        return Recorded.NO_RECORD
    if current.get("status") == DeliveryStatus.SENDING.value:
        raise RecordNotReady(f"the record on {ref.pk} is still being sent")
    if current.get("message_id") not in (None, change.message_id):
        return Recorded.OTHER_MAIL
    if change.key in (current.get(FEEDBACK) or set()):
        return Recorded.DUPLICATE
    return None
