"""Schedules: the template's ``ScheduleV2`` (EventBridge Scheduler) and ``Schedule``
(EventBridge rule) events, fired at their times by one scheduler thread.

* Times come from :mod:`mailroom_local.cron` (time zones and DST as Scheduler does them).
* ``ScheduleV2``: the target gets the schedule's ``Input`` with Scheduler's context
  attributes substituted -- ``<aws.scheduler.schedule-arn>``,
  ``<aws.scheduler.scheduled-time>`` (UTC, ``2026-11-28T10:00:00Z``),
  ``<aws.scheduler.execution-id>``, ``<aws.scheduler.attempt-number>`` -- or ``{}`` without
  an ``Input``. ``Schedule`` (a rule) sends its ``Input`` as is, or the "Scheduled Event".
* A fired schedule invokes the function asynchronously, as Scheduler and rules do; when
  the function fails, Lambda's asynchronous invocation retries it twice, after about one
  and then two minutes (the default ``MaximumRetryAttempts`` of 2).
* A disabled schedule (``State: DISABLED`` / ``Enabled: false``) is listed but never fires
  by itself. :meth:`Scheduler.fire_now` (``POST /_local/schedules/<name>``) fires any
  schedule at once, synchronously, without retries.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .console import Console
from .cron import ScheduleExpression, parse
from .sandbox import Invocation
from .template import ScheduleSpec

__all__ = ["ASYNC_RETRY_DELAYS", "Scheduler", "render_input"]

_EPSILON = timedelta(microseconds=1)
ASYNC_RETRY_DELAYS = (60.0, 120.0)  # Lambda async invocation: 2 retries, ~1 min then ~2 min


def iso_utc(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_input(
    spec: ScheduleSpec,
    arn: str,
    scheduled: datetime,
    *,
    region: str,
    account_id: str,
    execution_id: str,
    attempt: int = 1,
) -> Any:
    """The payload the target gets for one firing."""
    if spec.event_type == "ScheduleV2":
        if spec.input is None:
            return {}
        text = (
            spec.input.replace("<aws.scheduler.schedule-arn>", arn)
            .replace("<aws.scheduler.scheduled-time>", iso_utc(scheduled))
            .replace("<aws.scheduler.execution-id>", execution_id)
            .replace("<aws.scheduler.attempt-number>", str(attempt))
        )
        return json.loads(text)
    if spec.input is not None:
        return json.loads(spec.input)
    return {
        "version": "0",
        "id": execution_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": iso_utc(scheduled),
        "region": region,
        "resources": [arn],
        "detail": {},
    }


@dataclass
class _Entry:
    spec: ScheduleSpec
    expression: ScheduleExpression
    arn: str
    next_fire: datetime | None


class Scheduler:
    """Fires schedules at their times; lists them; fires one on demand."""

    def __init__(
        self,
        schedules: list[ScheduleSpec],
        *,
        invoke: Callable[[str, Any], Invocation],
        region: str,
        account_id: str,
        console: Console,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._invoke = invoke
        self._region = region
        self._account_id = account_id
        self._console = console
        self._now = now
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        started = now()
        self.entries: dict[str, _Entry] = {}
        for spec in schedules:
            expression = parse(spec.expression, spec.timezone, start=started)
            if spec.event_type == "ScheduleV2":
                arn = f"arn:aws:scheduler:{region}:{account_id}:schedule/{spec.group}/{spec.name}"
            else:
                arn = f"arn:aws:events:{region}:{account_id}:rule/{spec.name}"
            first = expression.next_after(started - _EPSILON) if spec.enabled else None
            self.entries[spec.name] = _Entry(spec, expression, arn, first)
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    # ----------------------------------------------------------------- control
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)
        for worker in list(self._workers):
            worker.join(timeout)

    # ---------------------------------------------------------------- queries
    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "name": entry.spec.name,
                    "type": entry.spec.event_type,
                    "arn": entry.arn,
                    "expression": entry.spec.expression,
                    "timezone": entry.spec.timezone,
                    "target": entry.spec.function,
                    "enabled": entry.spec.enabled,
                    "description": entry.spec.description,
                    "next_fire_time": iso_utc(entry.next_fire) if entry.next_fire else None,
                }
                for entry in self.entries.values()
            ]

    def fire_now(self, name: str) -> Invocation | None:
        """Fire the named schedule at once and wait for the target; None if unknown."""
        entry = self.entries.get(name)
        if entry is None:
            return None
        scheduled = self._now().replace(microsecond=0)
        self._console.info(f"firing {name} now (manual) -> {entry.spec.function}", "scheduler")
        return self._invoke(entry.spec.function, self._payload(entry, scheduled, str(uuid.uuid4())))

    # ---------------------------------------------------------------- internals
    def _payload(self, entry: _Entry, scheduled: datetime, execution_id: str) -> Any:
        return render_input(
            entry.spec,
            entry.arn,
            scheduled,
            region=self._region,
            account_id=self._account_id,
            execution_id=execution_id,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self._now()
            due: list[tuple[_Entry, datetime]] = []
            with self._lock:
                for entry in self.entries.values():
                    if entry.next_fire is not None and entry.next_fire <= now:
                        due.append((entry, entry.next_fire))
                        # Fire once even if several times were missed (e.g. the machine slept).
                        entry.next_fire = entry.expression.next_after(max(now, entry.next_fire))
                pending = [e.next_fire for e in self.entries.values() if e.next_fire is not None]
            for entry, scheduled in due:
                self._fire_async(entry, scheduled)
            wait = min(((t - self._now()).total_seconds() for t in pending), default=3600.0)
            self._wake.wait(timeout=max(0.05, min(wait, 60.0)))
            self._wake.clear()

    def _fire_async(self, entry: _Entry, scheduled: datetime) -> None:
        execution_id = str(uuid.uuid4())
        self._console.info(
            f"{entry.spec.name} fired (scheduled {iso_utc(scheduled)}) -> {entry.spec.function}", "scheduler"
        )
        try:
            payload = self._payload(entry, scheduled, execution_id)
        except ValueError as exc:
            self._console.error(f"{entry.spec.name}: the schedule's Input is not JSON: {exc}", "scheduler")
            return
        worker = threading.Thread(
            target=self._deliver, args=(entry, payload), name=f"schedule-{entry.spec.name}", daemon=True
        )
        self._workers = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()

    def _deliver(self, entry: _Entry, payload: Any) -> None:
        for attempt, delay in enumerate((0.0, *ASYNC_RETRY_DELAYS)):
            if delay and self._stop.wait(delay):
                return
            invocation = self._invoke(entry.spec.function, payload)
            if invocation.ok or self._stop.is_set():
                return
            if attempt < len(ASYNC_RETRY_DELAYS):
                self._console.warning(
                    f"{entry.spec.name}: {entry.spec.function} failed ({invocation.error_type}); "
                    f"Lambda retries asynchronous invocations: again in {ASYNC_RETRY_DELAYS[attempt]:.0f} s",
                    "scheduler",
                )
        self._console.error(f"{entry.spec.name}: {entry.spec.function} failed after all retries", "scheduler")
