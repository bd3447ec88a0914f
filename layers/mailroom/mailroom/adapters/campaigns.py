"""DynamoDB: the campaigns table - campaigns, their status transitions, fan-out state and counters.

Two items per campaign:

* the campaign (key ``<id>``): subject, content (up to 100 KiB), status, times. It changes
  only at status transitions, each a conditional write, so two dispatchers, a repeated
  schedule firing or a double click start a campaign once;
* its progress (key ``<id>#progress``): a copy of the status (``state``), the fan-out
  position of each scan segment (``seg<k>_seq``, ``seg<k>_cursor``) and the counters. It is
  the item written hundreds of times per campaign, so it stays small: DynamoDB charges a
  write by the size of the whole item, and counters next to 100 KiB of content would cost
  100 write units per update.

The fan-out position moves only by a write conditioned on the position read, so duplicated
fan-out steps cannot repeat or skip a page (a segment's cursor, an address, is removed when
its scan is complete and by a cancel); the counters change only in the transaction
that resolves the result records (see ``adapters.results``).

Indexes: ``ByStatus`` (status, due_at) finds due and sending campaigns; ``ByCreated``
(kind, created_at) lists campaigns newest first. Progress items carry neither key.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from mailroom.adapters.aws import dynamodb_client
from mailroom.adapters.dynamodb import from_item, to_item
from mailroom.models import COUNTERS, FEEDBACK_COUNTERS, Campaign, CampaignStatus

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


def _storable(value: str) -> bool:
    """A key string DynamoDB takes: 1 to 1,024 bytes of UTF-8 (no lone surrogate)."""
    try:
        return 1 <= len(value.encode("utf-8")) <= 1024
    except UnicodeEncodeError:
        return False


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
        or not all(
            isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) and _storable(v["S"])
            for v in key.values()
        )
    ):  # a key string DynamoDB would refuse (empty, or over its 1,024-byte sort key) is no cursor of ours
        raise InvalidCursor("is not a cursor this API returned")
    return key


PROGRESS = "#progress"


def progress_key(campaign_id: str) -> dict[str, Any]:
    return to_item({"id": f"{campaign_id}{PROGRESS}"})


class CampaignRepository:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self.client = client or dynamodb_client()

    def _key(self, campaign_id: str) -> dict[str, Any]:
        return to_item({"id": campaign_id})

    # -- reading ------------------------------------------------------------------------
    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.table_name, Key=key, ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def get(self, campaign_id: str) -> Campaign | None:
        """The campaign with its counters."""
        main = self._get(self._key(campaign_id))
        if main is None or main.get("kind") != KIND:
            return None
        return _merge(main, self._get(progress_key(campaign_id)))

    def progress(self, campaign_id: str) -> dict[str, Any] | None:
        """The progress item: ``state``, fan-out position and counters."""
        return self._get(progress_key(campaign_id))

    def _with_progress(self, items: list[dict[str, Any]]) -> list[Campaign]:
        if not items:
            return []
        keys = [progress_key(str(item["id"])) for item in items]
        found: dict[str, dict[str, Any]] = {}
        response = self.client.batch_get_item(RequestItems={self.table_name: {"Keys": keys, "ConsistentRead": True}})
        for raw in response.get("Responses", {}).get(self.table_name, []):
            item = from_item(raw)
            found[str(item["id"]).removesuffix(PROGRESS)] = item
        unprocessed: dict[str, Any] = dict(response.get("UnprocessedKeys") or {})
        for raw_key in unprocessed.get(self.table_name, {}).get("Keys", []):
            campaign_id = str(from_item(raw_key)["id"]).removesuffix(PROGRESS)
            found[campaign_id] = self.progress(campaign_id) or {}
        return [_merge(item, found.get(str(item["id"]))) for item in items]

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
        items = self._with_progress([from_item(item) for item in response.get("Items", [])])
        return items, encode_cursor(response.get("LastEvaluatedKey"))

    def started(self, since: str | None = None) -> list[tuple[str, CampaignStatus, str]]:
        """(id, status, started_at) of every campaign ever started (started at or after
        ``since`` if given): whose result records and fan-out checkpoints may name a
        subscriber. Only three small attributes are returned, not the content."""
        found: list[tuple[str, CampaignStatus, str]] = []
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table_name,
            IndexName="ByCreated",
            KeyConditionExpression="kind = :kind",
            ProjectionExpression="id, #st, started_at",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues=to_item({":kind": KIND}),
        ):
            for raw in page.get("Items", []):
                item = from_item(raw)
                started_at = item.get("started_at")
                if started_at and (since is None or str(started_at) >= since):
                    found.append((str(item["id"]), CampaignStatus(item["status"]), str(started_at)))
        return found

    def recent(self, since: str, limit: int) -> list[Campaign]:
        """The campaigns sending now or started at or after ``since``, most recently started
        first, at most ``limit``, with their counters."""
        started = [
            (started_at, campaign_id)
            for campaign_id, status, started_at in self.started()
            if status is CampaignStatus.SENDING or started_at >= since
        ]
        found = [self.get(campaign_id) for _, campaign_id in sorted(started, reverse=True)[:limit]]
        return [campaign for campaign in found if campaign is not None]

    def with_status(self, status: CampaignStatus, due_before: str | None = None) -> list[Campaign]:
        """Every campaign in ``status`` (with ``due_at`` <= ``due_before`` if given), with counters.

        The index is eventually consistent: whoever acts on the answer must re-check with a
        conditional write (``start`` does).
        """
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
            found.extend(self._with_progress([from_item(item) for item in page.get("Items", [])]))
        return found

    # -- writing ------------------------------------------------------------------------
    def create(self, campaign: Campaign) -> None:
        values = campaign.model_dump(mode="json", include=set(MAIN_FIELDS)) | {
            "kind": KIND,
            "due_at": campaign.send_at or campaign.created_at,
        }
        self.client.put_item(
            TableName=self.table_name, Item=to_item(values), ConditionExpression="attribute_not_exists(id)"
        )

    def _update_main(
        self, campaign_id: str, condition: str, values: dict[str, Any], sets: dict[str, Any], removes: tuple[str, ...]
    ) -> dict[str, Any]:
        """One conditional update of the campaign item, as a TransactWriteItems entry."""
        names = {f"#{key}": key for key in sets} | {f"#{key}": key for key in removes} | {"#st": "status"}
        expression = "SET " + ", ".join(f"#{key} = :{key}" for key in sets)
        if removes:
            expression += " REMOVE " + ", ".join(f"#{key}" for key in removes)
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": self._key(campaign_id),
                "UpdateExpression": expression,
                "ConditionExpression": f"attribute_exists(id) AND ({condition})",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": to_item({f":{key}": value for key, value in sets.items()} | values),
            }
        }

    def _transact(self, items: list[dict[str, Any]]) -> bool:
        try:
            self.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                return False
            raise
        return True

    def _transition(
        self,
        campaign_id: str,
        allowed: tuple[CampaignStatus, ...],
        sets: dict[str, Any],
        removes: tuple[str, ...] = (),
        extra: list[dict[str, Any]] | None = None,
        due_before: str | None = None,
    ) -> Campaign | None:
        """Apply ``sets`` if the campaign's status is in ``allowed`` (and, with ``due_before``,
        it is due), together with the ``extra`` transaction items; the campaign after, or None."""
        values = {f":allowed{index}": status.value for index, status in enumerate(allowed)}
        condition = f"#st IN ({', '.join(values)})"
        if due_before is not None:
            condition += " AND due_at <= :due_before"
            values[":due_before"] = due_before
        main = self._update_main(campaign_id, condition, values, sets, removes)
        if extra:
            if not self._transact([main, *extra]):
                return None
        else:
            update = main["Update"]
            try:
                self.client.update_item(**update)
            except self.client.exceptions.ConditionalCheckFailedException:
                return None
        return self.get(campaign_id)

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

    def start(self, campaign_id: str, segments: int, now: str, due_before: str | None = None) -> Campaign | None:
        """draft/scheduled -> sending, with a fresh progress item for ``segments`` scan segments.

        One transaction with a condition on the status (and, for the dispatcher, on being
        due): of two dispatchers, or a schedule firing twice, exactly one starts it.
        """
        progress: dict[str, Any] = {
            "id": f"{campaign_id}{PROGRESS}",
            "state": CampaignStatus.SENDING.value,
            "segments": segments,
            "segments_left": segments,
            "progressed_at": now,
        } | dict.fromkeys(COUNTERS, 0)
        for segment in range(segments):
            progress[f"seg{segment}_seq"] = 0
        sets = {"status": CampaignStatus.SENDING.value, "started_at": now, "updated_at": now, "due_at": now}
        allowed = (CampaignStatus.SCHEDULED,) if due_before else EDITABLE
        put = {"Put": {"TableName": self.table_name, "Item": to_item(progress)}}
        return self._transition(campaign_id, allowed, sets, extra=[put], due_before=due_before)

    def unstart(self, campaign_id: str, previous: Campaign, now: str) -> None:
        """Undo ``start`` when its fan-out could not be queued (only if nothing happened since)."""
        status = CampaignStatus.SCHEDULED if previous.send_at else CampaignStatus.DRAFT
        sets = {"status": status.value, "due_at": previous.send_at or previous.created_at, "updated_at": now}
        delete = {
            "Delete": {
                "TableName": self.table_name,
                "Key": progress_key(campaign_id),
                "ConditionExpression": "recipients = :zero",
                "ExpressionAttributeValues": to_item({":zero": 0}),
            }
        }
        self._transition(campaign_id, (CampaignStatus.SENDING,), sets, ("started_at",), extra=[delete])

    def cancel(self, campaign_id: str, now: str, sending: bool) -> Campaign | None:
        """-> cancelled; a sending campaign's progress says so too (fan-out and workers stop).

        The segments' scan positions (``seg<k>_cursor``: an address each) go in the same
        write: a cancelled fan-out never advances again (every step checks ``state``, every
        ``advance`` is conditioned on it), so nothing reads them any more.
        """
        sets = {"status": CampaignStatus.CANCELLED.value, "cancelled_at": now, "updated_at": now, "due_at": now}
        extra = None
        if sending:
            segments = int((self.progress(campaign_id) or {}).get("segments") or 0)
            cursors = tuple(f"seg{k}_cursor" for k in range(segments))
            extra = [self._set_state(campaign_id, CampaignStatus.CANCELLED, removes=cursors)]
        allowed = (CampaignStatus.SENDING,) if sending else EDITABLE
        return self._transition(campaign_id, allowed, sets, extra=extra)

    def _set_state(
        self, campaign_id: str, state: CampaignStatus, condition: str | None = None, removes: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        names = {"#state": "state"} | {f"#r{index}": name for index, name in enumerate(removes)}
        expression = "SET #state = :state"
        if removes:
            expression += " REMOVE " + ", ".join(f"#r{index}" for index in range(len(removes)))
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": progress_key(campaign_id),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":state": {"S": state.value}},
        }
        if condition:
            update["ConditionExpression"] = condition
            update["ExpressionAttributeValues"] |= to_item({":sending": CampaignStatus.SENDING.value, ":zero": 0})
        return {"Update": update}

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
            "#state": "state",
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
                "SET #seq = :next, #done = :true, progressed_at = :now"
                " ADD recipients :n, segments_left :minus REMOVE #cursor"
            )
            values |= {":minus": -1, ":true": True}
        else:
            expression = "SET #seq = :next, #cursor = :cursor, progressed_at = :now ADD recipients :n"
            values[":cursor"] = cursor
            del names["#done"]
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=progress_key(campaign_id),
                UpdateExpression=expression,
                ConditionExpression="#seq = :seq AND #state = :sending",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def drop_position(self, campaign_id: str, segment: int, email: str) -> bool:
        """Remove ``seg<k>_cursor`` if it is ``email`` and the fan-out can no longer move it on
        (the campaign is not sending, or the segment is done); True if this call removed it.

        Only for erasure: a sending segment's cursor is where its scan goes on, and stays.
        """
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=progress_key(campaign_id),
                UpdateExpression="REMOVE #cursor",
                ConditionExpression="#cursor = :email AND (#state <> :sending OR #done = :true)",
                ExpressionAttributeNames={
                    "#cursor": f"seg{segment}_cursor",
                    "#done": f"seg{segment}_done",
                    "#state": "state",
                },
                ExpressionAttributeValues=to_item(
                    {":email": email, ":sending": CampaignStatus.SENDING.value, ":true": True}
                ),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def complete_if_done(self, campaign_id: str, now: str) -> bool:
        """sending -> sent once the fan-out is done and every recipient is resolved.

        A read of the small progress item first; the transaction only when it looks done.
        """
        progress = self.progress(campaign_id)
        if (
            not progress
            or progress.get("state") != CampaignStatus.SENDING.value
            or progress.get("segments_left") != 0
            or progress.get("resolved") != progress.get("recipients")
        ):
            return False
        done = "#state = :sending AND segments_left = :zero AND resolved = recipients"
        sets = {"status": CampaignStatus.SENT.value, "finished_at": now, "updated_at": now, "due_at": now}
        finished = self._transition(
            campaign_id,
            (CampaignStatus.SENDING,),
            sets,
            extra=[self._set_state(campaign_id, CampaignStatus.SENT, condition=done)],
        )
        return finished is not None


MAIN_FIELDS = (
    "id",
    "subject",
    "content",
    "format",
    "status",
    "send_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "cancelled_at",
)


def _merge(main: dict[str, Any], progress: dict[str, Any] | None) -> Campaign:
    """The campaign model from its two items (a campaign never started has no progress)."""
    values = {key: main.get(key) for key in MAIN_FIELDS if main.get(key) is not None}
    if progress:
        values |= {
            key: progress[key]
            for key in (*COUNTERS, *FEEDBACK_COUNTERS, "segments", "segments_left")
            if key in progress
        }
        values["progressed_at"] = progress.get("progressed_at")
    return Campaign.model_validate(values)
