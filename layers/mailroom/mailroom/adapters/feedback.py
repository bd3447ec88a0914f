"""DynamoDB: SES feedback on result records, campaign counters and subscribers, a batch at a time.

A batch's records are read with ``BatchGetItem`` (consistent reads, 100 keys a request,
unprocessed keys asked again) and each event judged on its record. An event that changes
nothing else is written with an ``UpdateItem`` of its record; the others - a first event
of its kind on a campaign's record (a counter goes up) or a soft bounce (the subscriber's
``soft_bounces`` goes up) - in ``TransactWriteItems`` of at most 100 items: the records'
updates, the soft bounces, and ONE update per campaign that adds the summed counters of
the records in that transaction, so the counters always equal the records.

Each record update is conditioned on the event's key not being in its ``feedback`` set yet
(and, for the first event of a kind, on that kind's marker being absent), so a repeated
event or a repeated write whose answer was lost changes nothing and counts nothing twice.
A refused condition means the record changed since it was read: it is read again and the
event judged again. DynamoDB refuses two operations on one item in a transaction, so the
events of one record in a batch are written in rounds, one event per record a round;
identical events (the same key on the same record) are one.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mailroom.adapters.aws import dynamodb_client
from mailroom.adapters.campaigns import progress_key
from mailroom.adapters.dynamodb import backoff_seconds, batch_get, conditional_update, to_item
from mailroom.errors import MailroomError
from mailroom.logic.feedback import MailRef, RecordChange, Recorded, RecordResult
from mailroom.models import DeliveryStatus, SubscriberStatus
from mailroom.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ATTEMPTS = 8
MAX_ITEMS = 100  # TransactWriteItems' limit
FEEDBACK = "feedback"  # the record's string set of the event keys recorded on it
_RETRYABLE = frozenset({"TransactionConflict", "ThrottlingError"})
_THROTTLED = frozenset(
    {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded", "InternalServerError"}
)
_PROJECTION = "pk, sk, #status, message_id, #feedback, delivered_at, bounced_at, complained_at"


class FeedbackError(MailroomError):
    """An event could not be recorded after retries (the record kept changing under it)."""


class RecordNotReady(FeedbackError):
    """The record is still claimed (``sending``): the worker's result is not written yet, and
    a campaign's result replaces the whole record. The event must come again later."""


@dataclass(eq=False)
class _Entry:
    """One distinct event of a batch, on its way to its record."""

    index: int  # in the batch
    ref: MailRef
    change: RecordChange
    count: bool  # a campaign counter may go up with it (False once the campaign proved to have no progress item)
    soft_bounce_of: str | None
    first: bool = False  # the first event of its kind on the record, as last read
    alone: bool = False  # written in a transaction of its own (after a refusal no reason pinned on one item)

    @property
    def counts(self) -> bool:
        return self.count and self.first and self.ref.campaign_id is not None

    @property
    def solo(self) -> bool:
        """Nothing to write with the record: one UpdateItem (1 WRU; in a transaction 2)."""
        return not self.counts and self.soft_bounce_of is None


@dataclass
class _Transaction:
    entries: list[_Entry] = field(default_factory=list)
    counters: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))  # campaign -> counter -> n
    subscribers: set[str] = field(default_factory=set)  # the soft bounces' keys

    def size_with(self, entry: _Entry) -> int:
        size = len(self.entries) + len(self.subscribers) + len(self.counters) + 1
        size += entry.soft_bounce_of is not None
        return size + (entry.counts and str(entry.ref.campaign_id) not in self.counters)

    def add(self, entry: _Entry) -> None:
        self.entries.append(entry)
        if entry.soft_bounce_of is not None:
            self.subscribers.add(entry.soft_bounce_of)
        if entry.counts:
            counters = self.counters[str(entry.ref.campaign_id)]
            counters[entry.change.counter] = counters.get(entry.change.counter, 0) + 1


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

    # -- the records ----------------------------------------------------------------------
    def record(self, ref: MailRef, change: RecordChange) -> RecordResult:
        """Record one ``change`` (``record_batch`` of one); raises what stopped it."""
        (result,) = self.record_batch([(ref, change)])
        if isinstance(result, Exception):
            raise result
        return result

    def record_batch(self, entries: Sequence[tuple[MailRef, RecordChange]]) -> list[RecordResult | Exception]:
        """Record each ``change`` on the record its ``ref`` names (see ``logic.feedback.RecordChange``):
        what became of each, in order, or the exception that stopped it (``RecordNotReady``,
        ``FeedbackError``, an AWS error) - one event's failure is that event's alone."""
        results: list[RecordResult | Exception | None] = [None] * len(entries)
        first_of: dict[tuple[str, str, str], int] = {}
        copies: list[tuple[int, int]] = []
        rounds: list[list[_Entry]] = []
        seen: dict[tuple[str, str], int] = defaultdict(int)
        for index, (ref, change) in enumerate(entries):
            identity = (ref.pk, ref.sk, change.key)
            if identity in first_of:  # the same event twice in the batch: one
                copies.append((index, first_of[identity]))
                continue
            first_of[identity] = index
            position = seen[(ref.pk, ref.sk)]
            seen[(ref.pk, ref.sk)] += 1
            if position == len(rounds):
                rounds.append([])
            rounds[position].append(_Entry(index, ref, change, ref.campaign_id is not None, change.soft_bounce_of))
        for entries_of_round in rounds:  # one event per record a round
            self._record_round(entries_of_round, results)
        for index, original in copies:
            found = results[original]
            if isinstance(found, RecordResult) and found.recorded in (Recorded.FIRST, Recorded.AGAIN):
                found = RecordResult(Recorded.DUPLICATE)
            results[index] = found
        return [result if result is not None else FeedbackError("not recorded") for result in results]

    def _record_round(self, pending: list[_Entry], results: list[RecordResult | Exception | None]) -> None:
        for attempt in range(ATTEMPTS):
            if not pending:
                return
            try:
                current = self._get_many([entry.ref for entry in pending])
            except (ClientError, BotoCoreError, FeedbackError) as exc:
                for entry in pending:
                    results[entry.index] = exc
                return
            writes: list[_Entry] = []
            for entry in pending:
                record = current.get((entry.ref.pk, entry.ref.sk))
                try:
                    judged = _judge(entry.ref, record, entry.change)
                except RecordNotReady as exc:
                    results[entry.index] = exc
                    continue
                if judged is not None:
                    results[entry.index] = RecordResult(judged)
                    continue
                entry.first = entry.change.marker not in (record or {})
                writes.append(entry)
            pending, wait = self._write(writes, results)
            if pending and wait:
                self.sleep(backoff_seconds(attempt))
            # else the records changed since they were read (or a part was dropped): judge again
        for entry in pending:
            results[entry.index] = FeedbackError(f"event not recorded on {entry.ref.pk} after {ATTEMPTS} attempts")

    def _get_many(self, refs: Sequence[MailRef]) -> dict[tuple[str, str], dict[str, Any]]:
        """The records (consistent reads), by (pk, sk); a missing one is absent."""
        keys = [to_item({"pk": pk, "sk": sk}) for pk, sk in dict.fromkeys((ref.pk, ref.sk) for ref in refs)]
        projection = {
            "ProjectionExpression": _PROJECTION,
            "ExpressionAttributeNames": {"#feedback": FEEDBACK, "#status": "status"},
        }
        try:
            records = batch_get(
                self.client, self.results_table, keys, ATTEMPTS, self.sleep, request=projection, backoff=backoff_seconds
            )
        except RuntimeError as exc:
            raise FeedbackError(f"records still unprocessed after {ATTEMPTS} BatchGetItem attempts") from exc
        return {(str(record["pk"]), str(record["sk"])): record for record in records}

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

    def _counter_updates(self, counters: dict[str, dict[str, int]]) -> Iterator[tuple[str, dict[str, Any]]]:
        for campaign_id, added in counters.items():
            names = {f"#c{i}": counter for i, counter in enumerate(added)}
            values = {f":c{i}": n for i, n in enumerate(added.values())}
            yield (
                campaign_id,
                {
                    "Update": {
                        "TableName": self.campaigns_table,
                        "Key": progress_key(campaign_id),
                        "UpdateExpression": "ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(added))),
                        "ConditionExpression": "attribute_exists(id)",
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": to_item(values),
                    }
                },
            )

    def _write(self, writes: list[_Entry], results: list[RecordResult | Exception | None]) -> tuple[list[_Entry], bool]:
        """Write the judged events: their results, or the entries to judge again (and whether to wait first)."""
        again: list[_Entry] = []
        wait = False
        transactions: list[_Transaction] = []
        for entry in sorted(writes, key=lambda e: e.ref.campaign_id or ""):
            if entry.solo:
                retry, lost = self._write_solo(entry, results)
                again += retry
                wait |= lost
                continue
            if (
                not transactions
                or entry.alone
                or transactions[-1].entries[-1].alone
                or transactions[-1].size_with(entry) > MAX_ITEMS
                or entry.soft_bounce_of in transactions[-1].subscribers
            ):
                transactions.append(_Transaction())
            transactions[-1].add(entry)
        for transaction in transactions:
            retry, lost = self._commit(transaction, results)
            again += retry
            wait |= lost
        return again, wait

    def _write_solo(self, entry: _Entry, results: list[RecordResult | Exception | None]) -> tuple[list[_Entry], bool]:
        try:
            self.client.update_item(**self._record_update(entry.ref, entry.change, entry.first)["Update"])
        except BotoCoreError:
            # The answer was lost: whether it went through is unknown. Judging again is safe -
            # if it did, the record holds the event's key and nothing happens twice.
            return [entry], True
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return [entry], False
            if code in _THROTTLED:
                return [entry], True
            results[entry.index] = exc
            return [], False
        results[entry.index] = RecordResult(Recorded.FIRST if entry.first else Recorded.AGAIN)
        return [], False

    def _commit(
        self, transaction: _Transaction, results: list[RecordResult | Exception | None]
    ) -> tuple[list[_Entry], bool]:
        items: list[dict[str, Any]] = []
        # what each item is: ("record" | "soft bounce", entry) or ("counter", campaign id)
        owners: list[tuple[str, Any]] = []
        for entry in transaction.entries:
            items.append(self._record_update(entry.ref, entry.change, entry.first))
            owners.append(("record", entry))
            if entry.soft_bounce_of is not None:
                items.append(self._soft_bounce_update(entry.soft_bounce_of, entry.ref.subscriber_id))
                owners.append(("soft bounce", entry))
        for campaign_id, item in self._counter_updates(transaction.counters):
            items.append(item)
            owners.append(("counter", campaign_id))
        try:
            self.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except BotoCoreError:
            return transaction.entries, True  # lost answer: judged again (see _write_solo)
        except ClientError as exc:
            return self._cancelled(transaction, owners, exc, results)
        for entry in transaction.entries:
            results[entry.index] = RecordResult(
                Recorded.FIRST if entry.first else Recorded.AGAIN,
                counted=entry.counts,
                soft_bounce_counted=entry.soft_bounce_of is not None,
            )
        return [], False

    def _cancelled(
        self,
        transaction: _Transaction,
        owners: list[tuple[str, Any]],
        exc: ClientError,
        results: list[RecordResult | Exception | None],
    ) -> tuple[list[_Entry], bool]:
        """A refused transaction (nothing of it was written): its entries to judge again, and
        whether to wait first. An error retrying cannot fix is the failure of the events it is
        about, never of the others in the transaction: an item's own reason fails that item's
        event (a counter's: the events it counts); a refusal of the whole request splits the
        transaction into one per event, so that the next round finds the one it is about."""
        code = exc.response.get("Error", {}).get("Code")
        if code in _THROTTLED:
            return transaction.entries, True
        if code != "TransactionCanceledException":
            return _split(transaction, exc, results), False
        reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons") or []]
        failed = [owners[i] for i, reason in enumerate(reasons[: len(owners)]) if reason == "ConditionalCheckFailed"]
        bad = _broken(transaction, owners, reasons)
        if bad:
            for entry in transaction.entries:
                if id(entry) in bad:
                    results[entry.index] = exc
            return [entry for entry in transaction.entries if id(entry) not in bad], False
        if not failed and not set(reasons) & _RETRYABLE:
            for entry in transaction.entries:  # cancelled with no reason given: nothing to pin it on
                results[entry.index] = exc
            return [], False
        for kind, owner in failed:
            if kind == "counter":
                # A campaign record without its progress item (never started?): record, count nothing.
                logger.warning(
                    "the campaign has no progress item: its events are not counted", extra={"campaign": owner}
                )
                for entry in transaction.entries:
                    if entry.ref.campaign_id == owner:
                        entry.count = False
            elif kind == "soft bounce":
                owner.soft_bounce_of = None  # the address was erased, or is somebody else's now
        # a record's refused condition: it changed since it was read, judged again at once;
        # a conflict or throttling alone: the same again, after a backoff
        return transaction.entries, not failed

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


def _split(transaction: _Transaction, exc: ClientError, results: list[RecordResult | Exception | None]) -> list[_Entry]:
    """The whole request refused, no item named: one event is its own failure; several are
    written again one per transaction, so that the refusal finds the event it is about."""
    if len(transaction.entries) == 1:
        results[transaction.entries[0].index] = exc
        return []
    for entry in transaction.entries:
        entry.alone = True
    return transaction.entries


def _broken(transaction: _Transaction, owners: list[tuple[str, Any]], reasons: list[str | None]) -> set[int]:
    """The entries (ids) an item's reason retrying cannot fix is about: a record's or a soft
    bounce's event, or every event a counter item counts."""
    bad: set[int] = set()
    for (kind, owner), reason in zip(owners, reasons, strict=False):
        if reason in (None, "None", "ConditionalCheckFailed") or reason in _RETRYABLE:
            continue
        if kind == "counter":
            bad |= {id(entry) for entry in transaction.entries if entry.counts and entry.ref.campaign_id == owner}
        else:
            bad.add(id(owner))
    return bad


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
