"""A value read from AWS on first use and again once it is ``ttl`` seconds old.

For configuration that a function needs per mail, from many threads (the link key, the web
app's URL): the fresh value is returned without a lock; only a read takes it, so one thread
reads while the others wait for the same answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Refreshed(Generic[T]):
    """``Refreshed(read, ttl)()`` -> ``read()``'s value, read at most once per ``ttl`` seconds."""

    def __init__(self, read: Callable[[], T], ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.read = read
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._read_at = 0.0

    def __call__(self) -> T:
        value = self._value
        if value is not None and self.clock() - self._read_at < self.ttl:
            return value  # the hot path: no lock
        with self._lock:
            if self._value is None or self.clock() - self._read_at >= self.ttl:
                self._value = self.read()
                self._read_at = self.clock()
            return self._value
