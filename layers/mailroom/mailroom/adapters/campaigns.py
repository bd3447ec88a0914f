"""DynamoDB: the campaigns table - campaigns, their status transitions, fan-out state and counters.

One item per campaign (key ``id``). Every status change is a conditional write, so two
dispatchers, a repeated schedule firing or a double click start a campaign once. The
fan-out state of each scan segment (``seg<k>_seq``, ``seg<k>_cursor``) moves forward only
by a write conditioned on the position it read, so duplicated fan-out steps cannot repeat
or skip a page. The counters (``sent``, ``failed``, ...) are changed only in the same
transaction that resolves the result records (see ``adapters.results``).

Indexes: ``ByStatus`` (status, due_at) finds due and sending campaigns; ``ByCreated``
(kind, created_at) lists campaigns newest first.
"""

from __future__ import annotations

import base64
import binascii
import json
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from mailroom.adapters.aws import dynamodb_client
from mailroom.adapters.dynamodb import from_item, to_item
from mailroom.models import COUNTERS, Campaign, CampaignStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KIND = "campaign"
EDITABLE = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)


class InvalidCursor(ValueError):
    """A paging cursor that this API did not hand out."""


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, fields: tuple[str, ...]) -> dict[str, Any] | None:
    """The DynamoDB start key in a cursor; InvalidCursor unless it has exactly ``fields`` (strings)."""
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("is not a cursor this API returned") from None
    if (
        not isinstance(key, dict)
        or set(key) != set(fields)
        or not all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) for v in key.values())
    ):
        raise InvalidCursor("is not a cursor this API returned")
    return key


class CampaignRepository:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self.client = client or dynamodb_client()

    def _key(self, campaign_id: str) -> dict[str, Any]:
        return to_item({"id": campaign_id})

    # -- reading ------------------------------------------------------------------------
    def get(self, campaign_id: str) -> Campaign | None:
        item = self.client.get_item(TableName=self.table_name, Key=self._key(campaign_id), ConsistentRead=True).get(
            "Item"
        )
        return Campaign.model_validate(from_item(item)) if item else None

    def raw(self, campaign_id: str) -> dict[str, Any] | None:
        """The whole item, fan-out state included."""
        item = self.client.get_item(TableName=self.table_name, Key=self._key(campaign_id), ConsistentRead=True).get(
            "Item"
        )
        return from_item(item) if item else None

    def page(self, limit: int, cursor: str | None = None) -> tuple[list[Campaign], str | None]:
        """Campaigns, newest first, a page at a time."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": "ByCreated",
            "KeyConditionExpression": "kind = :kind",
            "ExpressionAttributeValues": to_item({":kind": KIND}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        start = decode_cursor(cursor, ("id", "kind", "created_at"))
        if start:
            kwargs["ExclusiveStartKey"] = start
        response = self.client.query(**kwargs)
        items = [Campaign.model_validate(from_item(item)) for item in response.get("Items", [])]
        return items, encode_cursor(response.get("LastEvaluatedKey"))

    def with_status(self, status: CampaignStatus, due_before: str | None = None) -> list[Campaign]:
        """Every campaign in ``status`` (with ``due_at`` <= ``due_before`` if given)."""
        condition = "#status = :status" + (" AND due_at <= :due" if due_before else "")
        values: dict[str, Any] = {":status": status.value}
        if due_before:
            values[":due"] = due_before
        found: list[Campaign] = []
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table_name,
            IndexName="ByStatus",
            KeyConditionExpression=condition,
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(values),
        ):
            found.extend(Campaign.model_validate(from_item(item)) for item in page.get("Items", []))
        return found

    # -- writing ------------------------------------------------------------------------
    def create(self, campaign: Campaign) -> None:
        values = campaign.model_dump(mode="json") | {"kind": KIND, "due_at": campaign.send_at or campaign.created_at}
        self.client.put_item(
            TableName=self.table_name, Item=to_item(values), ConditionExpression="attribute_not_exists(id)"
        )

    def _transition(
        self,
        campaign_id: str,
        allowed: tuple[CampaignStatus, ...],
        sets: dict[str, Any],
        removes: tuple[str, ...] = (),
    ) -> Campaign | None:
        """Apply ``sets`` if the campaign exists and its status is in ``allowed``; the new campaign, or None."""
        names = {f"#{key}": key for key in sets} | {f"#{key}": key for key in removes} | {"#st": "status"}
        allowed_values = {f":allowed{index}": status.value for index, status in enumerate(allowed)}
        expression = "SET " + ", ".join(f"#{key} = :{key}" for key in sets)
        if removes:
            expression += " REMOVE " + ", ".join(f"#{key}" for key in removes)
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key=self._key(campaign_id),
                UpdateExpression=expression,
                ConditionExpression=f"attribute_exists(id) AND #st IN ({', '.join(allowed_values)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item({f":{key}": value for key, value in sets.items()} | allowed_values),
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return Campaign.model_validate(from_item(response["Attributes"]))

    def update_content(self, campaign_id: str, changes: dict[str, Any], unschedule: bool, now: str) -> Campaign | None:
        """Edit a draft or scheduled campaign. ``send_at`` set schedules it; ``unschedule`` makes it a draft."""
        sets = dict(changes) | {"updated_at": now}
        removes: tuple[str, ...] = ()
        if "send_at" in changes:
            sets |= {"status": CampaignStatus.SCHEDULED.value, "due_at": changes["send_at"]}
        elif unschedule:
            sets |= {"status": CampaignStatus.DRAFT.value, "due_at": now}
            removes = ("send_at",)
        return self._transition(campaign_id, EDITABLE, sets, removes)

    def start(self, campaign_id: str, segments: int, now: str) -> Campaign | None:
        """draft/scheduled -> sending, with fresh fan-out state for ``segments`` scan segments.

        Conditional: of two dispatchers, or a schedule firing twice, exactly one starts it.
        """
        sets: dict[str, Any] = {
            "status": CampaignStatus.SENDING.value,
            "started_at": now,
            "updated_at": now,
            "due_at": now,
            "segments": segments,
            "segments_left": segments,
        } | {counter: 0 for counter in COUNTERS}
        for segment in range(segments):
            sets[f"seg{segment}_seq"] = 0
        return self._transition(campaign_id, EDITABLE, sets)

    def unstart(self, campaign_id: str, previous: Campaign, now: str) -> None:
        """Undo ``start`` when its fan-out could not be queued (only if nothing happened since)."""
        status = CampaignStatus.SCHEDULED if previous.send_at else CampaignStatus.DRAFT
        with suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(campaign_id),
                UpdateExpression="SET #st = :status, due_at = :due, updated_at = :now REMOVE started_at",
                ConditionExpression="#st = :sending AND recipients = :zero",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":status": status.value,
                        ":due": previous.send_at or previous.created_at,
                        ":now": now,
                        ":sending": CampaignStatus.SENDING.value,
                        ":zero": 0,
                    }
                ),
            )

    def cancel(self, campaign_id: str, now: str) -> Campaign | None:
        return self._transition(
            campaign_id,
            (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.SENDING),
            {"status": CampaignStatus.CANCELLED.value, "cancelled_at": now, "updated_at": now, "due_at": now},
        )

    # -- fan-out state ------------------------------------------------------------------
    def advance(self, campaign_id: str, segment: int, seq: int, cursor: str | None, selected: int, now: str) -> bool:
        """Move ``segment`` from page ``seq`` to the next, counting its recipients; False if
        another step already moved it (or the campaign is no longer sending).

        ``cursor`` None means the segment's scan is complete.
        """
        names = {
            "#seq": f"seg{segment}_seq",
            "#cursor": f"seg{segment}_cursor",
            "#done": f"seg{segment}_done",
            "#st": "status",
        }
        values: dict[str, Any] = {
            ":seq": seq,
            ":next": seq + 1,
            ":n": selected,
            ":now": now,
            ":sending": CampaignStatus.SENDING.value,
        }
        if cursor is None:
            expression = (
                "SET #seq = :next, #done = :true, updated_at = :now"
                " ADD recipients :n, segments_left :minus REMOVE #cursor"
            )
            values |= {":minus": -1, ":true": True}
        else:
            expression = "SET #seq = :next, #cursor = :cursor, updated_at = :now ADD recipients :n"
            values[":cursor"] = cursor
            del names["#done"]
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(campaign_id),
                UpdateExpression=expression,
                ConditionExpression="#seq = :seq AND #st = :sending",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def complete_if_done(self, campaign_id: str, now: str) -> bool:
        """sending -> sent once the fan-out is done and every recipient is resolved."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=self._key(campaign_id),
                UpdateExpression="SET #st = :sent, finished_at = :now, updated_at = :now, due_at = :now",
                ConditionExpression="#st = :sending AND segments_left = :zero AND resolved = recipients",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":sent": CampaignStatus.SENT.value,
                        ":sending": CampaignStatus.SENDING.value,
                        ":zero": 0,
                        ":now": now,
                    }
                ),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True
