"""DynamoDB: one result record per (campaign, recipient), the counters, and fan-out checkpoints.

Records live in the results table under ``pk = campaign#<id>``, ``sk = <subscriber id>``:
claimed (``sending``, with a random claim token) before the send, then *resolved* to
``sent``, ``failed``, ``skipped`` or ``uncertain``. A resolution and the matching counter
increments on the campaign item commit in one ``TransactWriteItems``, so the counters
always equal the records. Resolutions are buffered and committed up to
``RESOLUTIONS_PER_TRANSACTION`` at a time.

Records that did not reach the recipient carry ``problem = <campaign id>#<status>``, a
sparse index (``Problems``) that pages through "who did not get it, and why" without
reading the sent ones.

Fan-out checkpoints live under ``pk = fanout#<id>``: the recipients of one scan page,
written before their tasks are queued, so a retried fan-out step replays exactly the same
tasks (see ``logic.fanout``). Once the segment's position has moved past a page, its
checkpoint is *retired*: the recipients are removed and a tombstone stays, so a step that
still holds the old position replays an empty page (and then fails to advance) instead of
scanning the page again. Only the pages in flight hold addresses; erasure anonymises a
subscriber in those (``anonymise_checkpoints``). Checkpoints expire (TTL ``expires_at``)
after two weeks.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mailroom.adapters.aws import dynamodb_client
from mailroom.adapters.campaigns import decode_cursor, encode_cursor, progress_key
from mailroom.adapters.dynamodb import ResultLedger, backoff_seconds, from_item, to_item
from mailroom.errors import MailroomError
from mailroom.models import DeliveryStatus, Page, Recipient, Resolution

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# 25 records + the counters item per transaction (the limit is 100 items): small enough to
# keep the window between a send and its record short, large enough to amortise.
RESOLUTIONS_PER_TRANSACTION = 25
TRANSACTION_ATTEMPTS = 8
CHECKPOINT_TTL_SECONDS = 14 * 24 * 3600
MAX_READS_PER_PAGE = 10
# What an erased recipient becomes in a checkpoint still in flight: an address no subscriber
# can have (.invalid is reserved, RFC 2606; normalize_email refuses it), so the worker
# finds nobody and resolves the recipient ``skipped`` - counted once, as the page was.
ERASED_ADDRESS = "erased@erased.invalid"
REWRITE_ATTEMPTS = 5
PROBLEM_STATUSES = frozenset({DeliveryStatus.FAILED, DeliveryStatus.SKIPPED, DeliveryStatus.UNCERTAIN})
_COUNTER_OF = {
    DeliveryStatus.SENT: "sent",
    DeliveryStatus.FAILED: "failed",
    DeliveryStatus.SKIPPED: "skipped",
    DeliveryStatus.UNCERTAIN: "uncertain",
}


def campaign_pk(campaign_id: str) -> str:
    return f"campaign#{campaign_id}"


class ResolveError(MailroomError):
    """The resolutions could not be committed (after retries); the records stay as they were."""


class CampaignResults:
    def __init__(
        self,
        results_table: str,
        campaigns_table: str,
        client: DynamoDBClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.results_table = results_table
        self.campaigns_table = campaigns_table
        self.client = client or dynamodb_client()
        self.ledger = ResultLedger(results_table, self.client)
        self.sleep = sleep

    # -- one record -----------------------------------------------------------------------
    def claim(self, campaign_id: str, recipient: Recipient, token: str, now: str) -> tuple[bool, dict[str, Any] | None]:
        """Claim the record for sending; on refusal, the record as it is (``ResultLedger.claim``)."""
        return self.ledger.claim(
            campaign_pk(campaign_id), recipient.id, token, now, email=recipient.email, held=recipient.held
        )

    def release(self, campaign_id: str, subscriber_id: str, token: str, error: str, now: str) -> None:
        """Give our claim back after a failure that sent nothing (``ResultLedger.release``)."""
        self.ledger.release(campaign_pk(campaign_id), subscriber_id, token, error, now)

    # -- resolving, with the counters -----------------------------------------------------
    def resolve(self, campaign_id: str, resolutions: Sequence[Resolution], now: str) -> list[Resolution]:
        """Commit final statuses and the counters together; returns the resolutions refused.

        A record whose condition no longer holds is left out (and the rest retried): resolved
        by another delivery first, or - for a resolution without a claim (a skip) - still
        claimed by another attempt. The caller decides what to do with those. Conflicts,
        throttling and lost answers are retried with backoff.
        """
        refused: list[Resolution] = []
        for start in range(0, len(resolutions), RESOLUTIONS_PER_TRANSACTION):
            refused += self._commit(campaign_id, list(resolutions[start : start + RESOLUTIONS_PER_TRANSACTION]), now)
        return refused

    def record(self, campaign_id: str, subscriber_id: str) -> dict[str, Any] | None:
        """One record as it is (a consistent read)."""
        return self.ledger.get(campaign_pk(campaign_id), subscriber_id)

    def _commit(self, campaign_id: str, pending: list[Resolution], now: str) -> list[Resolution]:
        refused: list[Resolution] = []
        for attempt in range(TRANSACTION_ATTEMPTS):
            if not pending:
                return refused
            try:
                self.client.transact_write_items(
                    TransactItems=self._items(campaign_id, pending, now)  # type: ignore[arg-type]
                )
            except BotoCoreError:
                # The answer was lost: whether it committed is unknown. Sending it again is
                # safe - if it did, every record's condition fails and nothing is counted twice.
                self._backoff(attempt)
                continue
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code not in (
                        "ThrottlingException",
                        "ProvisionedThroughputExceededException",
                        "InternalServerError",
                    ):
                        raise
                    self._backoff(attempt)
                    continue
                reasons = exc.response.get("CancellationReasons") or []
                if len(reasons) > len(pending) and reasons[len(pending)].get("Code") == "ConditionalCheckFailed":
                    raise ResolveError(f"campaign {campaign_id} has no progress item (never started?)") from exc
                stale = {
                    index
                    for index, reason in enumerate(reasons[: len(pending)])
                    if reason.get("Code") == "ConditionalCheckFailed"
                }
                if stale:
                    refused += [resolution for index, resolution in enumerate(pending) if index in stale]
                    pending = [resolution for index, resolution in enumerate(pending) if index not in stale]
                else:
                    self._backoff(attempt)  # TransactionConflict, throttling: the same again, later
                continue
            return refused
        raise ResolveError(f"{len(pending)} result record(s) not committed after {TRANSACTION_ATTEMPTS} attempts")

    def _backoff(self, attempt: int) -> None:
        self.sleep(backoff_seconds(attempt))

    def _items(self, campaign_id: str, pending: list[Resolution], now: str) -> list[dict[str, Any]]:
        pk = campaign_pk(campaign_id)
        items: list[dict[str, Any]] = []
        counts = dict.fromkeys(_COUNTER_OF.values(), 0)
        for resolution in pending:
            counts[_COUNTER_OF[resolution.status]] += 1
            # The whole record is written: a Put costs what an Update costs, and says it all.
            record = {
                "pk": pk,
                "sk": resolution.subscriber_id,
                "status": resolution.status.value,
                "email": resolution.email if resolution.keep_address else None,
                "claimed_at": resolution.claimed_at,
                "resolved_at": now,
                "message_id": resolution.message_id,
                "error": resolution.error,
                "problem": None,
            }
            if resolution.status in PROBLEM_STATUSES:
                record["problem"] = f"{campaign_id}#{resolution.status.value}"
            if resolution.claim is None:
                condition = "attribute_not_exists(pk) OR #status = :released"
                values = {":released": DeliveryStatus.RELEASED.value}
                names = {"#status": "status"}
                if resolution.held:
                    condition += " OR (#status = :sending AND #claim = :held)"
                    values |= {":sending": DeliveryStatus.SENDING.value, ":held": resolution.held}
                    names["#claim"] = "claim"
            else:
                condition = "#status = :sending AND #claim = :claim"
                values = {":sending": DeliveryStatus.SENDING.value, ":claim": resolution.claim}
                names = {"#status": "status", "#claim": "claim"}
            items.append(
                {
                    "Put": {
                        "TableName": self.results_table,
                        "Item": to_item(record),
                        "ConditionExpression": condition,
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": to_item(values),
                    }
                }
            )
        counters = {name: count for name, count in counts.items() if count} | {"resolved": len(pending)}
        items.append(
            {
                "Update": {
                    "TableName": self.campaigns_table,
                    "Key": progress_key(campaign_id),
                    "UpdateExpression": "ADD " + ", ".join(f"#{name} :{name}" for name in counters),
                    "ConditionExpression": "attribute_exists(id)",
                    "ExpressionAttributeNames": {f"#{name}": name for name in counters},
                    "ExpressionAttributeValues": to_item({f":{name}": count for name, count in counters.items()}),
                }
            }
        )
        return items

    # -- listing ------------------------------------------------------------------------
    def recipients(
        self, campaign_id: str, status: DeliveryStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of records, optionally of one status, and the cursor of the next page."""
        if status in PROBLEM_STATUSES:
            kwargs: dict[str, Any] = {
                "IndexName": "Problems",
                "KeyConditionExpression": "problem = :problem",
                "ExpressionAttributeValues": to_item({":problem": f"{campaign_id}#{status.value}"}),
            }
            fields: tuple[str, ...] = ("pk", "sk", "problem")
        else:
            kwargs = {
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": to_item({":pk": campaign_pk(campaign_id)}),
                "ConsistentRead": True,
            }
            fields = ("pk", "sk")
            if status is not None:
                kwargs["FilterExpression"] = "#status = :status"
                kwargs["ExpressionAttributeNames"] = {"#status": "status"}
                kwargs["ExpressionAttributeValues"] |= to_item({":status": status.value})
        start = decode_cursor(cursor, fields)
        found: list[dict[str, Any]] = []
        # Each read evaluates at most the rows still wanted, so no match is ever read past;
        # a filter may match few of them: after a few reads the cursor is handed out, so one
        # request stays well inside the API's time limit.
        for _ in range(MAX_READS_PER_PAGE):
            request = {"TableName": self.results_table, "Limit": limit - len(found), **kwargs}
            if start:
                request["ExclusiveStartKey"] = start
            response = self.client.query(**request)
            found.extend(_public_record(from_item(item)) for item in response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start or len(found) >= limit:
                break
        return found, encode_cursor(start)

    # -- fan-out checkpoints --------------------------------------------------------------
    def checkpoint(
        self, campaign_id: str, segment: int, seq: int, scan: Callable[[], Page], now_epoch: int
    ) -> tuple[Page, bool]:
        """The page recorded for (segment, seq); scans and records it first if there is none.

        Returns the page and whether it was replayed from an earlier attempt.
        """
        key = _checkpoint_key(campaign_id, segment, seq)
        item = self.client.get_item(TableName=self.results_table, Key=key, ConsistentRead=True).get("Item")
        if item:
            return _page_of(from_item(item)), True
        page = scan()
        try:
            self.client.put_item(
                TableName=self.results_table,
                Item=key | to_item({"data": _encode_page(page), "expires_at": now_epoch + CHECKPOINT_TTL_SECONDS}),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            # Another step recorded this page meanwhile: use its version, not ours.
            item = self.client.get_item(TableName=self.results_table, Key=key, ConsistentRead=True)["Item"]
            return _page_of(from_item(item)), True
        return page, False

    def retire_checkpoint(self, campaign_id: str, segment: int, seq: int) -> None:
        """The segment's position has moved past page ``seq``: drop its recipients, keep a
        tombstone (until the TTL) so that a step still holding the old position replays an
        empty page instead of scanning it again. Harmless to repeat or to skip (the TTL)."""
        with suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.update_item(
                TableName=self.results_table,
                Key=_checkpoint_key(campaign_id, segment, seq),
                UpdateExpression="SET retired = :true REMOVE #data",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#data": "data"},
                ExpressionAttributeValues=to_item({":true": True}),
            )

    def anonymise_checkpoints(self, campaign_id: str, subscriber_id: str, final: bool = False) -> tuple[int, int]:
        """Replace the subscriber's address and name in the campaign's checkpoints that still
        hold recipients (the pages in flight) by ``ERASED_ADDRESS``; (checkpoints rewritten,
        checkpoints whose scan position is the subscriber's own address).

        The recipient stays in the page, anonymous: a replayed step queues the same tasks and
        counts the page as before, and the worker resolves it ``skipped`` (nobody has that
        address). Each rewrite is conditioned on the data read, and read again on a conflict.
        ``final``: the campaign's fan-out can never step again (cancelled or sent): a page
        naming the subscriber is retired instead - its scan position (``next``) may be the
        address itself, which a live fan-out still needs and a final one never will.
        """
        rewritten = positioned = 0
        paginator = self.client.get_paginator("query")
        for response in paginator.paginate(
            TableName=self.results_table,
            KeyConditionExpression="pk = :pk",
            FilterExpression="attribute_exists(#data)",
            ExpressionAttributeNames={"#data": "data"},
            ExpressionAttributeValues=to_item({":pk": f"fanout#{campaign_id}"}),
            ConsistentRead=True,
        ):
            for raw in response.get("Items", []):
                changed, at_position = self._anonymise_one(from_item(raw), subscriber_id, final)
                rewritten += int(changed)
                positioned += int(at_position)
        return rewritten, positioned

    def _anonymise_one(self, item: dict[str, Any], subscriber_id: str, final: bool) -> tuple[bool, bool]:
        key = to_item({"pk": item["pk"], "sk": item["sk"]})
        for _ in range(REWRITE_ATTEMPTS):
            data = item.get("data")
            if data is None:
                return False, False  # retired meanwhile
            page = _page_of(item)
            erased = [r for r in page.recipients if r.id == subscriber_id]
            addresses = {r.email for r in erased}
            at_position = page.next_cursor is not None and page.next_cursor in addresses
            if not erased:
                return False, False
            if final:
                update, at_position = "SET retired = :true REMOVE #data", False
                values: dict[str, Any] = {":true": True, ":old": bytes(data)}
            elif all(r.email == ERASED_ADDRESS and r.name is None for r in erased):
                return False, at_position
            else:
                anonymous = [
                    Recipient(id=r.id, email=ERASED_ADDRESS, held=r.held) if r.id == subscriber_id else r
                    for r in page.recipients
                ]
                update = "SET #data = :new"
                values = {":new": _encode_page(Page(anonymous, page.next_cursor)), ":old": bytes(data)}
            try:
                self.client.update_item(
                    TableName=self.results_table,
                    Key=key,
                    UpdateExpression=update,
                    ConditionExpression="#data = :old",
                    ExpressionAttributeNames={"#data": "data"},
                    ExpressionAttributeValues=to_item(values),
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                fresh = self.client.get_item(TableName=self.results_table, Key=key, ConsistentRead=True).get("Item")
                if not fresh:
                    return False, False
                item = from_item(fresh)
                continue
            return True, at_position
        raise RuntimeError(f"checkpoint {item['sk']} kept changing; not anonymised")


def _checkpoint_key(campaign_id: str, segment: int, seq: int) -> dict[str, Any]:
    return to_item({"pk": f"fanout#{campaign_id}", "sk": f"{segment:03d}#{seq:09d}"})


def _encode_page(page: Page) -> bytes:
    data = json.dumps(
        {"r": [r.model_dump(exclude_none=True) for r in page.recipients], "next": page.next_cursor},
        separators=(",", ":"),
    ).encode()
    return zlib.compress(data)


def _page_of(item: dict[str, Any]) -> Page:
    """The page of a checkpoint; a retired one is an empty page (its position has moved on)."""
    if item.get("data") is None:
        return Page([], None)
    data = json.loads(zlib.decompress(bytes(item["data"])))
    return Page([Recipient.model_validate(r) for r in data["r"]], data.get("next"))


def _public_record(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "subscriber_id": item["sk"],
        "email": item.get("email"),
        "status": item.get("status"),
        "error": item.get("error"),
        "message_id": item.get("message_id"),
        "claimed_at": item.get("claimed_at"),
        "resolved_at": item.get("resolved_at"),
        "attempts": int(item.get("attempts", 0)),
    }
