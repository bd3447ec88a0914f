"""Sign-up rate limits: fixed-window counters in DynamoDB (the rate limits table).

Each counter is one item, ``key`` = ``signup#<kind>#<subject>#<window start>``, counted by
one conditional ``UpdateItem``::

    SET expires_at = if_not_exists(expires_at, :expires) ADD hits :one
    IF attribute_not_exists(hits) OR hits < :limit

A failed condition writes nothing: the request is over its budget until the window ends.
The window's start is part of the key, so a new hour is a new item and nothing is ever
reset; ``expires_at`` (the table's TTL attribute) removes old items a little after their
window, and however late TTL deletes them they are never read again.

The subjects: the source IP as API Gateway saw it (IPv6: its /64 network, what one
subscriber line gets), and the normalised address as a SHA-256 hash (domain-separated):
no address is stored in clear. ``SignupLimits.charge`` checks the IP first, then the
address, so a request refused for its IP never spends the address's budget (a flood from
one IP cannot lock somebody else's address out). docs/abuse.md has the reasons.

An error of the table itself (throttling, a 5xx after the client's retries, a lost answer)
raises ``RateLimitUnavailable``: the caller answers 503 with Retry-After (fail closed -
the table is throttled exactly when a flood is on), never 500, never a silent drop.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from mailroom.adapters.aws import dynamodb_client
from mailroom.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

WINDOW_SECONDS = 3600  # the hour
EXPIRY_MARGIN_SECONDS = 300  # TTL: this long after the window's end
UNAVAILABLE_RETRY_SECONDS = 5  # Retry-After of the 503 when the table fails
IPV6_PREFIX = 64  # one IPv6 subscriber gets a /64 (or more): count the network, not each address
MAX_REMEMBERED = 10_000  # keys known to be over their limit, kept per execution environment
UNKNOWN_SOURCE = "unknown"


class Kind(StrEnum):
    """What a sign-up budget is counted on."""

    IP = "ip"
    ADDRESS = "address"


class RateLimited(Exception):
    """Over a budget: ``retry_after`` seconds until its window ends."""

    def __init__(self, kind: Kind, retry_after: int) -> None:
        super().__init__(f"rate limited ({kind.value}); retry after {retry_after} s")
        self.kind = kind
        self.retry_after = retry_after


class RateLimitUnavailable(Exception):
    """The rate limits table could not be asked; the request is neither counted nor allowed."""

    def __init__(self, reason: str, retry_after: int = UNAVAILABLE_RETRY_SECONDS) -> None:
        super().__init__(f"rate limits unavailable: {reason}")
        self.reason = reason
        self.retry_after = retry_after


def address_subject(email: str) -> str:
    """The hex SHA-256 of a normalised address, prefixed so that it matches no other
    system's hashed e-mail addresses (plain ``sha256(email)`` is a common tracking id)."""
    return hashlib.sha256(f"mailroom:signup:{email}".encode()).hexdigest()


def source_subject(source_ip: str | None) -> str:
    """The IP a budget is counted on: an IPv4 address as it is, an IPv4-mapped IPv6 address
    as its IPv4 address, any other IPv6 address as its /64 network (one household or
    server owns the whole /64 and could rotate through it). No or an unreadable source IP
    (never the case behind API Gateway) shares one ``unknown`` budget."""
    try:
        address = ipaddress.ip_address((source_ip or "").strip())
    except ValueError:
        return UNKNOWN_SOURCE
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


@dataclass(frozen=True)
class Hit:
    """One counted hit: the item it added to (the refund takes it back there)."""

    key: str


@dataclass
class FixedWindowCounter:
    """Counters per key and window of ``window_seconds``, in the rate limits table
    (partition key ``key`` (S), TTL attribute ``expires_at``)."""

    table_name: str
    client: Any = None
    window_seconds: int = WINDOW_SECONDS
    clock: Callable[[], float] = time.time
    # keys found over their limit, with their window's end: refused again without a request
    # to DynamoDB until then (a flood costs one failed write per key and environment)
    _over: dict[str, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.client is None:
            self.client = dynamodb_client()

    def window(self, now: float) -> tuple[int, int]:
        """The start and end (epoch seconds) of the window ``now`` is in."""
        start = int(now // self.window_seconds) * self.window_seconds
        return start, start + self.window_seconds

    def hit(self, name: str, limit: int) -> Hit | int:
        """Count one hit on ``name`` in the current window if it has fewer than ``limit``:
        the Hit; else the seconds until the window ends (nothing written).
        Raises RateLimitUnavailable if the table cannot be asked."""
        now = self.clock()
        start, end = self.window(now)
        retry_after = max(1, math.ceil(end - now))
        key = f"{name}#{start}"
        with self._lock:
            known_over = self._over.get(key, 0.0) > now
        if known_over:
            return retry_after
        client: DynamoDBClient = self.client
        try:
            client.update_item(
                TableName=self.table_name,
                Key={"key": {"S": key}},
                UpdateExpression="SET expires_at = if_not_exists(expires_at, :expires) ADD hits :one",
                ConditionExpression="attribute_not_exists(hits) OR hits < :limit",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":expires": {"N": str(end + EXPIRY_MARGIN_SECONDS)},
                },
            )
        except client.exceptions.ConditionalCheckFailedException:
            self._remember_over(key, end)
            return retry_after
        except ClientError as error:
            raise RateLimitUnavailable(str(error.response.get("Error", {}).get("Code", "ClientError"))) from error
        except BotoCoreError as error:
            # a lost answer may have counted the hit: the retry the client is asked for
            # counts once more (an over-count, on the safe side)
            raise RateLimitUnavailable(type(error).__name__) from error
        return Hit(key)

    def take_back(self, hit: Hit) -> None:
        """Best effort: uncount a hit whose request failed on our side (the client is told
        to retry, and the retry must not cost it twice). Errors are logged, not raised."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"key": {"S": hit.key}},
                UpdateExpression="ADD hits :minus_one",
                ConditionExpression="hits > :zero",
                ExpressionAttributeValues={":minus_one": {"N": "-1"}, ":zero": {"N": "0"}},
            )
        except Exception as error:  # the refund is a courtesy; the original error matters
            logger.warning("rate limit hit not taken back", extra={"error": type(error).__name__})

    def _remember_over(self, key: str, end: float) -> None:
        with self._lock:
            if len(self._over) >= MAX_REMEMBERED:
                now = self.clock()
                self._over = {k: v for k, v in self._over.items() if v > now}
                if len(self._over) >= MAX_REMEMBERED:
                    self._over.clear()
            self._over[key] = end


@dataclass(frozen=True)
class Charge:
    """The hits one sign-up counted (to take back if it fails on our side)."""

    hits: tuple[Hit, ...]


@dataclass
class SignupLimits:
    """The sign-up budgets: ``per_source_ip`` and ``per_address`` sign-ups per window."""

    counter: FixedWindowCounter
    per_address: int
    per_source_ip: int

    def charge(self, source_ip: str | None, email: str) -> Charge:
        """Count one sign-up of ``email`` (normalised) from ``source_ip``: IP first, then
        address. Raises RateLimited (nothing more counted) or RateLimitUnavailable."""
        hits: list[Hit] = []
        budgets = (
            (Kind.IP, source_subject(source_ip), self.per_source_ip),
            (Kind.ADDRESS, address_subject(email), self.per_address),
        )
        for kind, subject, limit in budgets:
            try:
                outcome = self.counter.hit(f"signup#{kind.value}#{subject}", limit)
            except RateLimitUnavailable:
                self.refund(Charge(tuple(hits)))  # the client is asked to retry: not twice
                raise
            if not isinstance(outcome, Hit):
                raise RateLimited(kind, outcome)
            hits.append(outcome)
        return Charge(tuple(hits))

    def refund(self, charge: Charge) -> None:
        """Take a failed sign-up's hits back (best effort)."""
        for hit in charge.hits:
            self.counter.take_back(hit)
