"""Pacing sends to the SES account's rate: the rate itself (SES v2 GetAccount, cached) and a pacer.

Every worker invocation gets an equal share of the account's maximum send rate:
``rate x SHARE_OF_RATE / MaximumConcurrency`` (the event source mapping's cap on concurrent
invocations), so all workers together stay just under what SES allows. Within one
invocation the ``Pacer`` spaces the sends of all its threads evenly (no bursts), which is
what keeps throttling near zero at a rate close to the limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from mailroom.adapters.aws import sesv2_read_client
from mailroom.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

# Aim a little under the limit: SES measures its rate over short windows, and a pacer that
# aims at exactly 100% is throttled whenever a request is slower than the one before it.
SHARE_OF_RATE = 0.97
# SES's rate in the sandbox; used only when the account cannot be read and nothing is configured.
FALLBACK_RATE = 1.0
RATE_TTL_SECONDS = 300.0


class AccountRate:
    """The account's maximum send rate (mails per second), read with GetAccount and cached."""

    def __init__(
        self,
        client: SESV2Client | None = None,
        limit: float = 0.0,
        ttl: float = RATE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.limit = limit  # > 0: never send faster than this, whatever the account allows
        self.ttl = ttl
        self.clock = clock
        self._rate: float | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def _read(self) -> float:
        client = self._client or sesv2_read_client()
        self._client = client
        quota = client.get_account().get("SendQuota", {})
        return float(quota["MaxSendRate"])

    def __call__(self) -> float:
        with self._lock:
            if self._rate is None or self.clock() - self._read_at >= self.ttl:
                try:
                    self._rate = self._read()
                except (BotoCoreError, ClientError, KeyError, ValueError) as exc:
                    logger.warning("cannot read the SES send rate", extra={"error": str(exc)})
                    if self._rate is None:
                        self._rate = self.limit or FALLBACK_RATE
                self._read_at = self.clock()
            rate = self._rate
        return min(rate, self.limit) if self.limit > 0 else rate


def share_of(rate: float, max_concurrency: int) -> float:
    """This invocation's share of the account's rate."""
    return max(rate * SHARE_OF_RATE / max(1, max_concurrency), 0.01)


class Pacer:
    """Hands out evenly spaced send slots to many threads (a virtual-time token bucket, burst 1).

    A thread that wakes up more than ``tolerance`` after its slot (the CPU was busy, the GIL
    elsewhere) does not send then: it takes a new slot. Otherwise the late ones would go
    out together with the punctual ones after them, and SES counts sends per second.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        tolerance: float = 0.01,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.tolerance = tolerance
        self._interval = 1.0 / rate
        self._next = clock()
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        return 1.0 / self._interval

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._interval = 1.0 / rate

    def acquire(self, deadline: float | None = None) -> bool:
        """Wait for the next slot. False, without taking one, if it would start after ``deadline``."""
        while True:
            with self._lock:
                now = self.clock()
                slot = max(self._next, now)
                if deadline is not None and slot > deadline:
                    return False
                self._next = slot + self._interval
            if slot > now:
                self.sleep(slot - now)
            if self.clock() - slot <= self.tolerance:
                return True

    def penalize(self, seconds: float) -> None:
        """After a throttled call: no slot for ``seconds`` (for every thread), and 10% slower
        for the rest of the invocation (the next invocation starts from the account's rate)."""
        with self._lock:
            self._interval *= 1.1
            self._next = max(self._next, self.clock() + seconds)
