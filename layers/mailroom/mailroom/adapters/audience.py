"""DynamoDB for subscriber management: paging the subscribers table, importing, and erasing
the personal data a subscriber left in the results table.

Result records are scrubbed by an allow-list: every attribute that is not one of
``ANONYMOUS_ATTRIBUTES`` (keys, status, times, claim tokens, SES feedback markers) is removed, so an attribute
added later (an SES diagnostic, an address in an error message) cannot survive an erasure
by being forgotten here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mailroom.adapters.aws import dynamodb_client
from mailroom.adapters.dynamodb import SubscriberRepository, batch_get, from_item, to_item
from mailroom.models import Subscriber

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_ATTEMPTS = 6
# What a result record keeps after an erasure: enough for the campaign's counts and the
# recipients listing (by subscriber id, which nothing maps to a person any more).
ANONYMOUS_ATTRIBUTES = frozenset(
    {
        "pk",
        "sk",
        "status",
        "problem",
        "claim",
        "claimed_at",
        "resolved_at",
        "sent_at",
        "failed_at",
        "released_at",
        "uncertain_at",
        "attempts",
        "expires_at",
        "erased_at",
        # SES feedback (adapters.feedback): event keys, first-event markers, bounce and
        # complaint types - no address among them. Without the keys and markers a repeated
        # event would be judged a first one and counted again.
        "feedback",
        "delivered_at",
        "bounced_at",
        "complained_at",
        "bounce_type",
        "bounce_subtype",
        "last_bounce_at",
        "complaint_type",
    }
)


class SubscriberDirectory(SubscriberRepository):
    """The subscribers table as the admin API sees it (key: the normalized email): the
    repository's lookups and conditional writes, plus listing and importing."""

    def scan(self, start_after: str | None, limit: int) -> tuple[list[Subscriber], str | None]:
        """Up to ``limit`` subscribers in table order after the address ``start_after``, and
        the address to go on after (None: the end of the table)."""
        kwargs: dict[str, Any] = {"TableName": self.table_name, "Limit": limit}
        if start_after is not None:
            kwargs["ExclusiveStartKey"] = to_item({"email": start_after})
        response = self.client.scan(**kwargs)
        found = [Subscriber.model_validate(from_item(item)) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return found, (str(from_item(last)["email"]) if last else None)

    def insert(self, values: dict[str, Any]) -> dict[str, Any] | None:
        """Write a new subscriber unless the address exists; None if it is (now) ours, else
        the subscriber found at the address (empty if it is gone again).

        A refusal naming our own id means an earlier try of this very put went through
        (its answer was lost and botocore sent it again).
        """
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(values),
                ConditionExpression="attribute_not_exists(email)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            old = getattr(exc, "response", {}).get("Item")
            if old is None:  # not returned: read it
                old = self.client.get_item(
                    TableName=self.table_name, Key=to_item({"email": values["email"]}), ConsistentRead=True
                ).get("Item")
            found = from_item(old) if old else {}
            return None if found.get("id") == values["id"] else found
        return None


class PersonalRecords:
    """The results table's records of one subscriber: found by key, scrubbed in place."""

    def __init__(
        self, table_name: str, client: DynamoDBClient | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.table_name = table_name
        self.client = client or dynamodb_client()
        self.sleep = sleep

    def keys_with_prefix(self, pk: str, prefix: str) -> list[tuple[str, str]]:
        """The keys of the records under ``pk`` whose sort key starts with ``prefix``."""
        keys: list[tuple[str, str]] = []
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ProjectionExpression="pk, sk",
            ExpressionAttributeValues=to_item({":pk": pk, ":prefix": prefix}),
            ConsistentRead=True,
        ):
            keys.extend((str(item["pk"]["S"]), str(item["sk"]["S"])) for item in page.get("Items", []))
        return keys

    def scrub(self, keys: Sequence[tuple[str, str]], now: str) -> int:
        """Remove every attribute but ``ANONYMOUS_ATTRIBUTES`` from the records that exist
        among ``keys`` (BatchGetItem, 100 keys a call); the number of records changed.

        Each update is conditioned on the record existing (never creates one) and removes
        what the read found: a record resolved in between keeps its new status.
        """
        scrubbed = 0
        for record in self._get_many(keys):
            personal = sorted(set(record) - ANONYMOUS_ATTRIBUTES)
            if not personal:
                continue
            names = {f"#a{index}": name for index, name in enumerate(personal)}
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key=to_item({"pk": record["pk"], "sk": record["sk"]}),
                    UpdateExpression="SET erased_at = :now REMOVE " + ", ".join(names),
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=to_item({":now": now}),
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                continue
            scrubbed += 1
        return scrubbed

    def _get_many(self, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        items = [to_item({"pk": pk, "sk": sk}) for pk, sk in dict.fromkeys(keys)]
        return batch_get(self.client, self.table_name, items, BATCH_ATTEMPTS, self.sleep)
