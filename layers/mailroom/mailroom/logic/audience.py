"""Subscriber management: list and search, import from CSV, export to CSV, erase (GDPR).

- **Listing** pages through a Scan (table order: a scan has no "newest first") and filters
  in Python, so that the search is case-insensitive on the address and the name.
- **Import** validates every row like a registration (``normalize_email``, the ``Name``
  rules), keeps the first of each address, and never overwrites a subscriber (conditional
  puts). Unconfirmed rows get a confirmation mail (double opt-in); if the queue refuses
  them, their subscribers are deleted again and the rows reported ``failed``: nothing
  half-written. It stops starting rows before the time budget runs out (the rest are
  ``not_attempted``), and importing the file again finishes an interrupted import: a
  pending subscriber it left without a queued confirmation gets it now (``resumed``).
- **Export** writes CSV with spreadsheet formulas defused.
- **Erasure** scrubs the subscriber's result records and fan-out checkpoints *first* and
  deletes the subscriber item *last*, so a crash part way leaves the id -> address lookup
  working for the retry; everything else is found by the subscriber id alone.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import TypeAdapter, ValidationError

from mailroom.errors import MailroomError
from mailroom.logic.ports import Queue
from mailroom.logic.registration import pending_subscriber
from mailroom.models import (
    CampaignStatus,
    ConfirmationTask,
    Name,
    Subscriber,
    SubscriberSource,
    SubscriberStatus,
    iso,
    normalize_email,
)
from mailroom.observability import logger
from mailroom.worker import Budget

MAX_IMPORT_ROWS = 5_000
MAX_REPORTED_VALUE = 100  # characters of a rejected cell quoted back in the report
IMPORT_THREADS = 16
# rows written (and their confirmations queued) before the time budget is looked at again
IMPORT_CHUNK = 100
TASKS_PER_BATCH = 10  # one SendMessageBatch
# Checkpoints live 14 days (TTL); DynamoDB deletes expired items within a few days.
CHECKPOINT_DAYS = 17
EXPORT_COLUMNS = (
    "id",
    "email",
    "name",
    "status",
    "source",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "suppressed_at",
)
# A cell starting with one of these is a formula to a spreadsheet (CSV injection, OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_name = TypeAdapter(Name)


class ImportRejected(MailroomError):
    """The file as a whole cannot be imported (no header, no email column, too many rows)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- listing --------------------------------------------------------------------------------
class SubscriberScan(Protocol):
    def scan(self, start_after: str | None, limit: int) -> tuple[list[Subscriber], str | None]: ...


def matches(subscriber: Subscriber, status: SubscriberStatus | None, q: str | None) -> bool:
    """In ``status`` (if given) and with ``q`` in the address or the name, ignoring case."""
    if status is not None and subscriber.status != status:
        return False
    if not q:
        return True
    needle = q.casefold()
    return needle in subscriber.email.casefold() or needle in (subscriber.name or "").casefold()


def find(
    subscribers: SubscriberScan,
    status: SubscriberStatus | None,
    q: str | None,
    limit: int,
    start_after: str | None,
    max_reads: int = 10,
    read_size: int = 500,
) -> tuple[list[Subscriber], str | None]:
    """Up to ``limit`` matching subscribers and the address to go on after (None: the end).

    The page stops at the last subscriber *examined*, so nothing is skipped; with a rare
    match, after ``max_reads`` reads the page may be short (even empty) with a cursor, which
    keeps one request well inside the API's time limit.
    """
    found: list[Subscriber] = []
    position = start_after
    for _ in range(max_reads):
        batch, last = subscribers.scan(position, read_size)
        for index, subscriber in enumerate(batch):
            position = subscriber.email
            if matches(subscriber, status, q):
                found.append(subscriber)
                if len(found) == limit:
                    at_end = last is None and index == len(batch) - 1
                    return found, None if at_end else position
        position = last
        if last is None:
            return found, None
    return found, position


# -- import ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    line: int
    email: str
    name: str | None


@dataclass
class ParsedCsv:
    rows: list[Row] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)


def _cell(row: Sequence[str], index: int | None) -> str:
    if index is None or index >= len(row):
        return ""
    value = row[index].strip()
    # An export's defused formula ('=..., '+..., ...) reads back as what it was.
    if len(value) > 1 and value[0] == "'" and value[1] in FORMULA_STARTS:
        value = value[1:]
    return value


def _quoted(value: str) -> str:
    return value if len(value) <= MAX_REPORTED_VALUE else value[:MAX_REPORTED_VALUE] + "..."


def parse_csv(text: str, max_rows: int = MAX_IMPORT_ROWS) -> ParsedCsv:
    """Rows of a CSV file with a header naming an ``email`` column (and maybe ``name``; other
    columns are ignored). Every row is validated; the first row of an address wins, later
    ones are duplicates. Raises ImportRejected for a file that cannot be read as a whole."""
    reader = csv.reader(io.StringIO(text, newline=""))
    parsed = ParsedCsv()
    first_line: dict[str, int] = {}
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            raise ImportRejected("empty_file", "The file has no header row; the first row must name the columns.")
        columns = [cell.strip().lstrip("\ufeff").lower() for cell in header]
        if "email" not in columns:
            raise ImportRejected("missing_column", "The header row has no 'email' column.")
        for name in ("email", "name"):
            if columns.count(name) > 1:
                raise ImportRejected("duplicate_column", f"The header row names the column '{name}' twice.")
        email_at = columns.index("email")
        name_at = columns.index("name") if "name" in columns else None
        count = 0
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            count += 1
            if count > max_rows:
                raise ImportRejected("too_many_rows", f"The file has more than {max_rows} rows; split it.")
            _take(parsed, first_line, reader.line_num, _cell(row, email_at), _cell(row, name_at))
    except csv.Error as exc:
        raise ImportRejected("invalid_csv", f"The file is not valid CSV at line {reader.line_num}: {exc}.") from None
    return parsed


def _take(parsed: ParsedCsv, first_line: dict[str, int], line: int, raw_email: str, raw_name: str) -> None:
    if not raw_email:
        parsed.rejected.append({"row": line, "email": "", "reason": "email is missing"})
        return
    try:
        email = normalize_email(raw_email)
    except ValueError as exc:
        parsed.rejected.append({"row": line, "email": _quoted(raw_email), "reason": f"email: {exc}"})
        return
    try:
        name = _name.validate_python(raw_name) or None
    except ValidationError as exc:
        reason = str(exc.errors(include_url=False)[0]["msg"]).removeprefix("Value error, ")
        parsed.rejected.append({"row": line, "email": _quoted(raw_email), "reason": f"name: {reason}"})
        return
    if email in first_line:
        parsed.duplicates.append({"row": line, "email": email, "first_row": first_line[email]})
        return
    first_line[email] = line
    parsed.rows.append(Row(line, email, name))


class ImportStore(Protocol):
    def insert(self, values: dict[str, Any]) -> dict[str, Any] | None: ...
    def delete(self, email: str, subscriber_id: str) -> bool: ...
    def mark_confirmation_queued(self, email: str, subscriber_id: str, seq: int) -> None: ...


@dataclass
class ImportReport:
    confirmed: bool
    rows: int = 0
    imported: list[Row] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    existing: list[dict[str, Any]] = field(default_factory=list)
    resumed: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    not_attempted: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "imported": len(self.imported),
            "confirmed": self.confirmed,
            "rows": self.rows,
            "complete": not self.not_attempted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "existing": self.existing,
            "resumed": self.resumed,
            "failed": self.failed,
            "not_attempted": self.not_attempted,
        }


@dataclass(frozen=True)
class Confirmation:
    """A confirmation mail to queue for an imported row: a new subscriber's first (``new``),
    or the one an interrupted import wrote but never queued."""

    row: Row
    subscriber: Subscriber
    seq: int
    new: bool


@dataclass(frozen=True)
class _Put:
    outcome: Literal["written", "existing", "not_attempted"]
    found: dict[str, Any] | None = None  # the subscriber already at the address (existing)


def unqueued_confirmation(found: dict[str, Any] | None) -> int | None:
    """The seq of the confirmation an earlier import requested for this subscriber but never
    queued (it was cut off between the write and the queue), or None.

    Only a pending subscriber of an import: a sign-up's confirmation is the registration's
    business (a repeated registration re-sends it).
    """
    if not found or not found.get("id"):
        return None
    requested = int(found.get("confirmations") or 0)
    queued = int(found.get("confirmations_queued") or 0)
    pending = found.get("status") == SubscriberStatus.PENDING.value
    if pending and found.get("source") == SubscriberSource.IMPORT.value and queued < requested:
        return requested
    return None


def new_subscriber(row: Row, subscriber_id: str, confirmed: bool, now: datetime, confirmation_days: int) -> Subscriber:
    """An imported subscriber: ``subscribed`` (no welcome mail) or ``pending`` with one confirmation requested."""
    stamp = iso(now)
    if confirmed:
        return Subscriber(
            id=subscriber_id,
            email=row.email,
            name=row.name,
            status=SubscriberStatus.SUBSCRIBED,
            created_at=stamp,
            source=SubscriberSource.IMPORT,
            confirmed_at=stamp,
            welcome_queued=True,
        )
    return pending_subscriber(subscriber_id, row.email, row.name, now, confirmation_days, SubscriberSource.IMPORT)


def import_rows(
    parsed: ParsedCsv,
    confirmed: bool,
    store: ImportStore,
    welcome_queue: Queue,
    now: datetime,
    confirmation_days: int,
    correlation_id: str | None = None,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    threads: int = IMPORT_THREADS,
    budget: Budget | None = None,
) -> ImportReport:
    """Write the parsed rows (conditional puts, in parallel) and, unconfirmed, queue their
    confirmation mails; the report says what happened to every row.

    No row is started once ``budget`` has expired (those are ``not_attempted``): what was
    written still gets its confirmation queued before the answer, so the margin must leave
    room for that. An ``existing`` row whose pending subscriber an interrupted import left
    without a queued confirmation gets it now (``resumed``), in either mode.
    """
    budget = budget or Budget(float("inf"))
    report = ImportReport(
        confirmed,
        rows=len(parsed.rows) + len(parsed.rejected) + len(parsed.duplicates),
        rejected=list(parsed.rejected),
        duplicates=list(parsed.duplicates),
    )
    candidates = [(row, new_subscriber(row, new_id(), confirmed, now, confirmation_days)) for row in parsed.rows]

    def put(candidate: tuple[Row, Subscriber]) -> _Put | Exception:
        if budget.expired():
            return _Put("not_attempted")
        values = candidate[1].model_dump(mode="json")
        if not confirmed:
            values["confirmations_queued"] = 0
        try:
            found = store.insert(values)
        except Exception as exc:  # reported per row; the others go on
            return exc
        return _Put("written") if found is None else _Put("existing", found)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        # In chunks: each chunk's confirmations are queued before the next chunk is written,
        # so the time a chunk takes (writes and queueing) is what the budget's margin covers.
        for start in range(0, len(candidates), IMPORT_CHUNK):
            chunk = candidates[start : start + IMPORT_CHUNK]
            written: list[tuple[Row, Subscriber]] = []
            resumable: list[Confirmation] = []
            for candidate, outcome in zip(chunk, pool.map(put, chunk), strict=True):
                row = candidate[0]
                if isinstance(outcome, Exception):
                    logger.warning("import row not stored", extra={"row": row.line, "error": type(outcome).__name__})
                    report.failed.append({"row": row.line, "email": row.email, "reason": "not stored; import it again"})
                elif outcome.outcome == "written":
                    written.append(candidate)
                elif outcome.outcome == "not_attempted":
                    report.not_attempted.append({"row": row.line, "email": row.email})
                elif (seq := unqueued_confirmation(outcome.found)) is not None:
                    found = Subscriber.model_validate(outcome.found)
                    resumable.append(Confirmation(row, found, seq, new=False))
                else:
                    report.existing.append({"row": row.line, "email": row.email})
            if confirmed:
                report.imported.extend(row for row, _ in written)
            queue = [] if confirmed else [Confirmation(row, subscriber, 1, new=True) for row, subscriber in written]
            _queue_confirmations(queue + resumable, store, welcome_queue, correlation_id, report, pool)
    if report.not_attempted:
        logger.warning("import stopped before its time ran out", extra={"not_attempted": len(report.not_attempted)})
    report.imported.sort(key=lambda row: row.line)
    for entries in (report.failed, report.resumed, report.not_attempted):
        entries.sort(key=lambda entry: int(entry["row"]))
    return report


def _queue_confirmations(
    confirmations: list[Confirmation],
    store: ImportStore,
    welcome_queue: Queue,
    correlation_id: str | None,
    report: ImportReport,
    pool: ThreadPoolExecutor,
) -> None:
    """One confirmation task per entry, ten per SendMessageBatch, then ``confirmations_queued``
    marked. The new subscribers of a batch the queue refused are deleted again (conditioned
    on their id); a resumed one stays pending, unqueued, for the next import to resume."""
    chunks = [confirmations[start : start + TASKS_PER_BATCH] for start in range(0, len(confirmations), TASKS_PER_BATCH)]

    def send(chunk: list[Confirmation]) -> bool:
        bodies = [
            ConfirmationTask(
                subscriber_id=entry.subscriber.id,
                email=entry.subscriber.email,
                seq=entry.seq,
                correlation_id=correlation_id,
            ).model_dump_json(exclude_none=True)
            for entry in chunk
        ]
        try:
            welcome_queue.send_batch(bodies)
        except Exception as exc:
            # Which entries of the chunk made it is not certain: undo them all. A task that
            # did reach the queue finds no subscriber with its id, and the worker skips it.
            logger.warning("confirmation tasks not queued", extra={"rows": len(chunk), "error": str(exc)})
            return False
        return True

    queued: list[Confirmation] = []
    refused: list[Confirmation] = []
    for chunk, queued_ok in zip(chunks, pool.map(send, chunks), strict=True):
        (queued if queued_ok else refused).extend(chunk)
    for entry in queued:
        if entry.new:
            report.imported.append(entry.row)
        else:
            report.resumed.append({"row": entry.row.line, "email": entry.row.email, "seq": entry.seq})

    def mark(entry: Confirmation) -> None:
        try:
            store.mark_confirmation_queued(entry.subscriber.email, entry.subscriber.id, entry.seq)
        except Exception as exc:  # a re-import queues it again: the ledger sends it once
            logger.warning("confirmation not marked queued", extra={"error": type(exc).__name__})

    def undo(entry: Confirmation) -> str:
        if not entry.new:
            return "no confirmation mail could be queued; still pending, import it again"
        try:
            store.delete(entry.subscriber.email, entry.subscriber.id)
        except Exception:
            logger.exception("imported subscriber not deleted after its task was refused")
            return "no confirmation mail could be queued; still pending, import it again"
        return "no confirmation mail could be queued; not imported, import it again"

    list(pool.map(mark, queued))
    for entry, reason in zip(refused, pool.map(undo, refused), strict=True):
        report.failed.append({"row": entry.row.line, "email": entry.row.email, "reason": reason})


# -- export ---------------------------------------------------------------------------------
def defuse(value: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading apostrophe."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def to_csv(subscribers: Iterable[Subscriber], header: bool = True) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(EXPORT_COLUMNS)
    for subscriber in subscribers:
        values = subscriber.model_dump(mode="json")
        writer.writerow([defuse(str(values.get(column) or "")) for column in EXPORT_COLUMNS])
    return out.getvalue()


# -- erasure --------------------------------------------------------------------------------
class Directory(Protocol):
    def find_by_id(self, subscriber_id: str) -> Subscriber | None: ...
    def delete(self, email: str, subscriber_id: str) -> bool: ...


class Records(Protocol):
    def keys_with_prefix(self, pk: str, prefix: str) -> list[tuple[str, str]]: ...
    def scrub(self, keys: Sequence[tuple[str, str]], now: str) -> int: ...


class StartedCampaigns(Protocol):
    def started(self, since: str | None = None) -> list[tuple[str, CampaignStatus, str]]: ...
    def progress(self, campaign_id: str) -> dict[str, Any] | None: ...
    def drop_position(self, campaign_id: str, segment: int, email: str) -> bool: ...


class CheckpointScrubber(Protocol):
    def anonymise_checkpoints(self, campaign_id: str, subscriber_id: str, final: bool = False) -> tuple[int, int]: ...


@dataclass
class Erasure:
    subscriber_id: str
    subscriber_deleted: bool = False
    records_scrubbed: int = 0
    checkpoints_rewritten: int = 0
    # fan-outs still sending whose scan position is the erased address right now: it moves
    # on with the fan-out's next page (an ExclusiveStartKey cannot be replaced by anything else)
    fanout_positions: int = 0
    # positions of fan-outs that will never move again (cancelled), removed
    fanout_positions_removed: int = 0

    @property
    def anything(self) -> bool:
        return bool(
            self.subscriber_deleted
            or self.records_scrubbed
            or self.checkpoints_rewritten
            or self.fanout_positions_removed
        )

    def public(self) -> dict[str, Any]:
        return {
            "erased": True,
            "subscriber_id": self.subscriber_id,
            "subscriber_deleted": self.subscriber_deleted,
            "records_scrubbed": self.records_scrubbed,
            "checkpoints_rewritten": self.checkpoints_rewritten,
            "fanout_positions": self.fanout_positions,
            "fanout_positions_removed": self.fanout_positions_removed,
        }


def erase(
    subscriber_id: str,
    directory: Directory,
    records: Records,
    campaigns: StartedCampaigns,
    checkpoints: CheckpointScrubber,
    now: datetime,
) -> Erasure:
    """Remove a subscriber's personal data from every table; the counters stay as they are.

    Order: result records (welcome, confirmations, every started campaign's), then the
    checkpoints of recent and sending campaigns and the fan-out positions naming the address,
    then the subscriber item. Every step is keyed by the id (the address comes from the
    subscriber item, deleted last) and is a no-op when repeated, so a retry after a crash
    finishes the job.
    """
    erasure = Erasure(subscriber_id)
    subscriber = directory.find_by_id(subscriber_id)
    started = campaigns.started()
    keys = [("welcome", subscriber_id), *records.keys_with_prefix("confirmation", f"{subscriber_id}#")]
    keys += [(f"campaign#{campaign_id}", subscriber_id) for campaign_id, _, _ in started]
    erasure.records_scrubbed = records.scrub(keys, iso(now))
    recent = iso(now - timedelta(days=CHECKPOINT_DAYS))
    for campaign_id, status, started_at in started:
        if started_at < recent and status is not CampaignStatus.SENDING:
            continue
        rewritten, positioned = checkpoints.anonymise_checkpoints(
            campaign_id, subscriber_id, final=status is not CampaignStatus.SENDING
        )
        erasure.checkpoints_rewritten += rewritten
        erasure.fanout_positions += positioned
    if subscriber is not None:
        for campaign_id, _, _ in started:
            _fanout_positions(campaigns, campaign_id, subscriber.email, erasure)
        erasure.subscriber_deleted = directory.delete(subscriber.email, subscriber.id)
    logger.info("subscriber erased", extra=erasure.public())
    return erasure


def _fanout_positions(campaigns: StartedCampaigns, campaign_id: str, email: str, erasure: Erasure) -> None:
    """The campaign's segment positions (``seg<k>_cursor``) that are ``email``: removed where
    the fan-out can no longer move them on (cancelled - or a campaign cancelled by an older
    version, which left them -, a finished segment), counted where it will (still sending).

    The progress item is read consistently (``state`` is the truth, the ``ByCreated``
    index's status may lag) and the removal is conditioned on the same: a cursor of a
    fan-out still running is never touched.
    """
    progress = campaigns.progress(campaign_id) or {}
    sending = progress.get("state") == CampaignStatus.SENDING.value
    for key, value in progress.items():
        segment = key.removeprefix("seg").removesuffix("_cursor")
        if value != email or not key.startswith("seg") or not key.endswith("_cursor") or not segment.isdigit():
            continue
        if sending and not progress.get(f"seg{segment}_done"):
            erasure.fanout_positions += 1
        elif campaigns.drop_position(campaign_id, int(segment), email):
            erasure.fanout_positions_removed += 1
        # else gone meanwhile (a cancel removes the positions too); cancelled and sent are final
