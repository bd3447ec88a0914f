"""DynamoDB: the subscribers table and the results ledger."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError

from mailroom.adapters.aws import dynamodb_client
from mailroom.models import DeliveryStatus, Subscriber, SubscriberStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# A write whose answer was lost (read timeout, closed connection) is sent again this often;
# every such write is conditioned so that repeating it is harmless.
AMBIGUOUS_ATTEMPTS = 4
BATCH_GET_LIMIT = 100  # keys in one BatchGetItem
BY_ID_INDEX = "ById"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in values.items() if value is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _deserializer.deserialize(value) for key, value in item.items()}


class SubscriberRepository:
    """Subscribers keyed by their normalized email address."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self.client = client or dynamodb_client()

    def create(self, subscriber: Subscriber) -> bool:
        """Store a new subscriber; False (and nothing written) if the address is taken."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(subscriber.model_dump(mode="json")),
                ConditionExpression="attribute_not_exists(email)",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def get(self, email: str) -> Subscriber | None:
        response = self.client.get_item(TableName=self.table_name, Key=to_item({"email": email}), ConsistentRead=True)
        item = response.get("Item")
        return Subscriber.model_validate(from_item(item)) if item else None

    def find_by_id(self, subscriber_id: str) -> Subscriber | None:
        """The subscriber with this id (links carry the id, not the address): the ById index
        (keys only) names the address, a consistent read returns the subscriber."""
        response = self.client.query(
            TableName=self.table_name,
            IndexName=BY_ID_INDEX,
            KeyConditionExpression="id = :id",
            ExpressionAttributeValues=to_item({":id": subscriber_id}),
            Limit=2,
        )
        for item in response.get("Items", []):
            subscriber = self.get(str(from_item(item)["email"]))
            if subscriber is not None and subscriber.id == subscriber_id:
                return subscriber
        return None

    def _transition(self, email: str, subscriber_id: str, condition: str, update: str, values: dict[str, Any]) -> bool:
        """A conditional update of the subscriber with this id; False if the condition failed
        (another state, or the address now belongs to another subscriber, or none)."""
        used = {f"#{word}": word for word in ("status", "name") if f"#{word}" in condition + update}
        names = {"ExpressionAttributeNames": used} if used else {}
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=to_item({"email": email}),
                UpdateExpression=update,
                ConditionExpression=f"id = :id AND ({condition})",
                ExpressionAttributeValues=to_item({":id": subscriber_id, **values}),
                **names,  # type: ignore[arg-type]
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def request_confirmation(
        self, email: str, subscriber_id: str, now: str, resend_after: str, stale_after: str, expires_at: int, limit: int
    ) -> int | None:
        """Count one more confirmation mail for a pending subscriber and return its number;
        None if the last one was requested after ``resend_after`` (the resend limit) - or, if
        it never reached the queue, after ``stale_after`` (it may still be on its way: a
        double click must not send two) - or if ``limit`` were requested already. Extends
        the pending subscriber's life to ``expires_at``."""
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key=to_item({"email": email}),
                UpdateExpression="SET confirmation_sent_at = :now, expires_at = :expires ADD confirmations :one",
                ConditionExpression=(
                    "id = :id AND #status = :pending"
                    " AND (attribute_not_exists(confirmations) OR confirmations < :limit)"
                    " AND (attribute_not_exists(confirmation_sent_at)"
                    " OR (confirmations_queued = confirmations AND confirmation_sent_at <= :after)"
                    " OR (confirmations_queued < confirmations AND confirmation_sent_at <= :stale))"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":id": subscriber_id,
                        ":pending": SubscriberStatus.PENDING.value,
                        ":now": now,
                        ":after": resend_after,
                        ":stale": stale_after,
                        ":expires": expires_at,
                        ":limit": limit,
                        ":one": 1,
                    }
                ),
                ReturnValues="UPDATED_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return int(from_item(response["Attributes"])["confirmations"])

    def mark_confirmation_queued(self, email: str, subscriber_id: str, seq: int) -> None:
        self._transition(
            email,
            subscriber_id,
            "attribute_not_exists(confirmations_queued) OR confirmations_queued < :seq",
            "SET confirmations_queued = :seq",
            {":seq": seq},
        )

    def resubscribe(
        self, email: str, subscriber_id: str, expires_at: int, name: str | None, consent: str | None
    ) -> bool:
        """An unsubscribed subscriber who registers again is pending again (double opt-in anew),
        with the new registration's name and consent, and may be sent a confirmation at once."""
        values: dict[str, Any] = {
            ":unsubscribed": SubscriberStatus.UNSUBSCRIBED.value,
            ":pending": SubscriberStatus.PENDING.value,
            ":expires": expires_at,
        }
        sets = ["#status = :pending", "expires_at = :expires"]
        removes = ["unsubscribed_at", "confirmation_sent_at"]
        for field, value in (("name", name), ("consent", consent)):
            if value is None:
                removes.append(f"#{field}" if field == "name" else field)
            else:
                sets.append(f"{'#name' if field == 'name' else field} = :{field}")
                values[f":{field}"] = value
        return self._transition(
            email,
            subscriber_id,
            "#status = :unsubscribed",
            f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            values,
        )

    def confirm(self, email: str, subscriber_id: str, now: str) -> bool:
        """Pending -> subscribed (and no longer expiring); False if it was not pending."""
        return self._transition(
            email,
            subscriber_id,
            "#status = :pending",
            "SET #status = :subscribed, confirmed_at = :now REMOVE expires_at",
            {
                ":pending": SubscriberStatus.PENDING.value,
                ":subscribed": SubscriberStatus.SUBSCRIBED.value,
                ":now": now,
            },
        )

    def unsubscribe(self, email: str, subscriber_id: str, now: str) -> bool:
        """Subscribed or pending -> unsubscribed, kept (without expiry) so that nothing is sent
        again; False if it was neither (already unsubscribed, or suppressed)."""
        return self._transition(
            email,
            subscriber_id,
            "#status IN (:subscribed, :pending)",
            "SET #status = :unsubscribed, unsubscribed_at = :now REMOVE expires_at",
            {
                ":subscribed": SubscriberStatus.SUBSCRIBED.value,
                ":pending": SubscriberStatus.PENDING.value,
                ":unsubscribed": SubscriberStatus.UNSUBSCRIBED.value,
                ":now": now,
            },
        )

    def mark_welcome_queued(self, email: str, subscriber_id: str) -> None:
        # Erased or replaced meanwhile (the condition fails): nothing to mark.
        with suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.update_item(
                TableName=self.table_name,
                Key=to_item({"email": email}),
                UpdateExpression="SET welcome_queued = :true",
                ConditionExpression="id = :id",
                ExpressionAttributeValues=to_item({":true": True, ":id": subscriber_id}),
            )

    def delete(self, email: str, subscriber_id: str) -> bool:
        """Delete the subscriber, only if it is still the one with this id; False if it was not there."""
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key=to_item({"email": email}),
                ConditionExpression="id = :id",
                ExpressionAttributeValues=to_item({":id": subscriber_id}),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def scan_page(
        self, segment: int, total_segments: int, cursor: str | None, limit: int
    ) -> tuple[list[Subscriber], str | None]:
        """One page of one parallel-scan segment: the subscribed subscribers among the next
        ``limit`` items from ``cursor`` (an email; None = the start), and where the next page
        starts (None = the segment is done)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "Limit": limit,
            "ConsistentRead": True,
            "Segment": segment,
            "TotalSegments": total_segments,
            "FilterExpression": "#status = :subscribed",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_item({":subscribed": SubscriberStatus.SUBSCRIBED.value}),
        }
        if cursor is not None:
            kwargs["ExclusiveStartKey"] = to_item({"email": cursor})
        response = self.client.scan(**kwargs)
        subscribers = [Subscriber.model_validate(from_item(item)) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return subscribers, (str(from_item(last)["email"]) if last else None)

    def get_many(self, emails: Sequence[str], attempts: int = 5) -> dict[str, Subscriber]:
        """The subscribers with these addresses (absent ones are left out); BatchGetItem, 100 keys a call."""
        keys = [to_item({"email": email}) for email in dict.fromkeys(emails)]
        subscribers = [
            Subscriber.model_validate(item) for item in batch_get(self.client, self.table_name, keys, attempts)
        ]
        return {subscriber.email: subscriber for subscriber in subscribers}


def batch_get(
    client: Any,
    table_name: str,
    keys: Sequence[dict[str, Any]],
    attempts: int = 5,
    sleep: Callable[[float], None] | None = None,
    *,
    request: Mapping[str, Any] | None = None,
    backoff: Callable[[int], float] | None = None,
) -> list[dict[str, Any]]:
    """The items with these keys (absent ones left out), with consistent reads: BatchGetItem,
    100 keys a call, the keys it leaves unprocessed asked again after a backoff; RuntimeError
    if some are still unread after ``attempts`` calls. ``request``: more of the table's part of
    each call (a ProjectionExpression and its names); ``backoff``: the wait before attempt n+1
    (50 ms doubling, at most 1 s, unless told)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        pending = list(keys[start : start + BATCH_GET_LIMIT])
        for attempt in range(attempts):
            asked = {"Keys": pending, "ConsistentRead": True, **(request or {})}
            response = client.batch_get_item(RequestItems={table_name: asked})
            found += [from_item(item) for item in response.get("Responses", {}).get(table_name, [])]
            unprocessed: dict[str, Any] = dict(response.get("UnprocessedKeys") or {})
            pending = list(unprocessed.get(table_name, {}).get("Keys", []))
            if not pending:
                break
            (sleep or time.sleep)(backoff(attempt) if backoff else min(0.05 * 2**attempt, 1.0))
        else:
            raise RuntimeError(f"{len(pending)} item(s) of {table_name} not read after {attempts} attempts")
    return found


def conditional_update(client: Any, sleep: Callable[[float], None] | None = None, **request: Any) -> bool:
    """``UpdateItem(**request)`` with a condition that makes repeating it harmless: True if it
    was written, False if the condition failed. An answer lost on the way (a BotoCoreError)
    is tried again, up to AMBIGUOUS_ATTEMPTS times, after a backoff."""
    for attempt in range(AMBIGUOUS_ATTEMPTS):
        try:
            client.update_item(**request)
        except client.exceptions.ConditionalCheckFailedException:
            return False
        except BotoCoreError:
            if attempt + 1 == AMBIGUOUS_ATTEMPTS:
                raise
            (sleep or time.sleep)(backoff_seconds(attempt))
            continue
        return True
    raise AssertionError("unreachable")


def backoff_seconds(attempt: int) -> float:
    """Jittered exponential backoff between retries of one request: 50 ms, 100 ms, ... at most 2 s."""
    return float(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto


class ResultLedger:
    """One record per mail, keyed (pk = the mail's run, e.g. "welcome" or "campaign#<id>"; sk = subscriber id).

    The record is claimed with a conditional write *before* the send, under a random claim
    token, and completed after it, conditioned on that token: that is what turns SQS's
    at-least-once delivery into at most one mail. A write whose answer was lost (a read
    timeout, a closed connection) is sent again: each is conditioned so that repeating it
    is harmless, and a claim that finds its own token knows the first attempt went through.
    """

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self.client = client or dynamodb_client()

    def _key(self, pk: str, sk: str) -> dict[str, Any]:
        return to_item({"pk": pk, "sk": sk})

    def claim(
        self,
        pk: str,
        sk: str,
        token: str,
        now: str,
        email: str | None = None,
        held: str | None = None,
        expires_at: int | None = None,
    ) -> tuple[bool, dict[str, Any] | None]:
        """Claim the right to send this mail: (True, None), or (False, the record as it is).

        The record may be claimed if it does not exist, was released, or is held by ``held``
        (an earlier attempt's claim known not to have been sent). ``expires_at`` (epoch
        seconds) lets the table's TTL remove the record.
        """
        item = {
            "pk": pk,
            "sk": sk,
            "status": DeliveryStatus.SENDING.value,
            "claim": token,
            "claimed_at": now,
            "email": email,
            "expires_at": expires_at,
        }
        condition = "attribute_not_exists(pk) OR #status = :released"
        values: dict[str, Any] = {":released": DeliveryStatus.RELEASED.value}
        names = {"#status": "status"}
        if held:
            condition += " OR (#status = :sending AND #claim = :held)"
            values |= {":sending": DeliveryStatus.SENDING.value, ":held": held}
            names["#claim"] = "claim"
        for attempt in range(AMBIGUOUS_ATTEMPTS):
            try:
                self.client.put_item(
                    TableName=self.table_name,
                    Item=to_item(item),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=to_item(values),
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except self.client.exceptions.ConditionalCheckFailedException as exc:
                old_item = getattr(exc, "response", {}).get("Item")
                old = from_item(old_item) if old_item else None
                if old is not None and old.get("claim") == token:
                    return True, None  # an earlier try of this very claim went through
                return False, old
            except BotoCoreError:
                if attempt + 1 == AMBIGUOUS_ATTEMPTS:
                    raise
                time.sleep(backoff_seconds(attempt))
                continue
            return True, None
        raise AssertionError("unreachable")

    def _complete(self, pk: str, sk: str, token: str, status: DeliveryStatus, values: dict[str, Any]) -> bool:
        """Move our claim to ``status``; False if the record is no longer held by ``token``."""
        names = {"#status": "status", "#claim": "claim", **{f"#{key}": key for key in values}}
        sets = ", ".join(["#status = :status", *[f"#{key} = :{key}" for key in values]])
        # False: done by an earlier try whose answer was lost, or not ours any more
        return conditional_update(
            self.client,
            TableName=self.table_name,
            Key=self._key(pk, sk),
            UpdateExpression=f"SET {sets}",
            ConditionExpression="#status = :sending AND #claim = :claim",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(
                {":status": status.value, ":sending": DeliveryStatus.SENDING.value, ":claim": token}
                | {f":{key}": value for key, value in values.items()}
            ),
        )

    def record_sent(self, pk: str, sk: str, token: str, message_id: str, now: str) -> None:
        self._complete(pk, sk, token, DeliveryStatus.SENT, {"message_id": message_id, "sent_at": now})

    def record_failed(self, pk: str, sk: str, token: str, error: str, now: str) -> None:
        self._complete(pk, sk, token, DeliveryStatus.FAILED, {"error": error, "failed_at": now})

    def release(self, pk: str, sk: str, token: str, error: str, now: str) -> None:
        """Give the claim back after a failure that sent nothing: a later delivery may send it."""
        self._complete(pk, sk, token, DeliveryStatus.RELEASED, {"error": error, "released_at": now})

    def record_uncertain(self, pk: str, sk: str, token: str, error: str, now: str) -> bool:
        return self._complete(pk, sk, token, DeliveryStatus.UNCERTAIN, {"error": error, "uncertain_at": now})

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.table_name, Key=self._key(pk, sk), ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def query(self, pk: str) -> list[dict[str, Any]]:
        """Every record of one run (e.g. an edition); paginated."""
        items: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=to_item({":pk": pk}),
            ConsistentRead=True,
        ):
            items.extend(from_item(item) for item in page.get("Items", []))
        return items
