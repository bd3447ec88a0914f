"""The monitoring figures for the admin (``GET /admin/metrics``): what the workers did in the
last hour and the last day, and how each recent campaign is progressing.

The task figures are the functions' own metrics (``observability.TASK_METRICS``, per task
type), read back from CloudWatch: counts are sums, processing times the p50 and p95 of the
per-task ``ProcessingTime`` over the whole window. A window is the whole minutes before
``now`` (CloudWatch stores whole minutes): the hour is the 60 minutes up to the end of the
current minute. The campaign figures come from the campaigns' own counters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from mailroom.models import Campaign, CampaignStatus, iso
from mailroom.observability import TASK_METRICS_OF, TASK_TYPES, logger

WINDOWS = {"hour": 3600, "day": 86400}
MAIL_TASK_TYPES = ("confirmation", "welcome", "newsletter")
PERCENTILES = ("p50", "p95")
# answer key -> metric, summed over the window
COUNTS = {"processed": "TasksProcessed"}
MAILS = {
    "sent": "MailsSent",
    "failed": "MailsFailed",
    "skipped": "MailsSkipped",
    "uncertain": "MailsUncertain",
    "duplicates": "DuplicatesSuppressed",
}
# errors by type: tasks whose handling raised, tasks given up, and the mails' own troubles
ERRORS = {
    "task_errors": "TaskErrors",
    "dead_lettered": "TasksDeadLettered",
    "failed": "MailsFailed",
    "retried": "MailsRetried",
    "throttled": "MailsThrottled",
    "uncertain": "MailsUncertain",
}
# how many recent campaigns the answer lists at most
MAX_CAMPAIGNS = 20


@dataclass(frozen=True)
class MetricQuery:
    """One statistic of one task metric over one window (the id is CloudWatch's query id)."""

    id: str
    metric: str
    task_type: str
    stat: str  # Sum, SampleCount, p50, p95
    window: str


class MetricSource(Protocol):
    def statistics(
        self, queries: list[MetricQuery], start_of: Mapping[str, datetime], end: datetime
    ) -> dict[str, float | None]:
        """Each query's value over its window (``start_of[window]`` to ``end``); None: no data."""
        ...


class RecentCampaigns(Protocol):
    def recent(self, since: str, limit: int) -> list[Campaign]: ...


def error_keys(task_type: str) -> list[str]:
    """The errors a task type can have: those whose metric it emits."""
    return [key for key, metric in ERRORS.items() if metric in TASK_METRICS_OF[task_type]]


def _metrics_of(task_type: str) -> list[str]:
    names = [*COUNTS.values(), *(ERRORS[key] for key in error_keys(task_type))]
    if task_type in MAIL_TASK_TYPES:
        names += MAILS.values()
    return list(dict.fromkeys(names))


def queries() -> list[MetricQuery]:
    """Every statistic the figures need: sums of the counts, and the processing time's
    percentiles and sample count, per task type and window."""
    found: list[MetricQuery] = []
    for window in WINDOWS:
        for task_type in TASK_TYPES:
            stats = [(name, "Sum") for name in _metrics_of(task_type)]
            stats += [("ProcessingTime", stat) for stat in (*PERCENTILES, "SampleCount")]
            for metric, stat in stats:
                found.append(MetricQuery(f"q{len(found)}", metric, task_type, stat, window))
    return found


def window_bounds(now: datetime) -> tuple[dict[str, datetime], datetime]:
    """Each window's start, and their common end: the end of ``now``'s minute."""
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return {window: end - timedelta(seconds=seconds) for window, seconds in WINDOWS.items()}, end


def _count(value: float | None) -> int:
    return round(value) if value is not None and math.isfinite(value) else 0


def _ms(value: float | None) -> float | None:
    return round(value, 1) if value is not None and math.isfinite(value) else None


def task_figures(source: MetricSource, now: datetime) -> dict[str, Any]:
    """The task figures of each window: per task type, and totals."""
    asked = queries()
    starts, end = window_bounds(now)
    values = source.statistics(asked, starts, end)
    got = {(q.window, q.task_type, q.metric, q.stat): values.get(q.id) for q in asked}
    windows: dict[str, Any] = {}
    for window in WINDOWS:

        def value(task_type: str, metric: str, stat: str = "Sum", window: str = window) -> float | None:
            return got.get((window, task_type, metric, stat))

        per_type: dict[str, Any] = {}
        for task_type in TASK_TYPES:
            figures: dict[str, Any] = {key: _count(value(task_type, name)) for key, name in COUNTS.items()}
            figures["processing_ms"] = {
                "samples": _count(value(task_type, "ProcessingTime", "SampleCount")),
                **{stat: _ms(value(task_type, "ProcessingTime", stat)) for stat in PERCENTILES},
            }
            figures["errors"] = {key: _count(value(task_type, ERRORS[key])) for key in error_keys(task_type)}
            if task_type in MAIL_TASK_TYPES:
                figures["mails"] = {key: _count(value(task_type, name)) for key, name in MAILS.items()}
            per_type[task_type] = figures
        totals = {
            "processed": sum(f["processed"] for f in per_type.values()),
            "mails_sent": sum(f["mails"]["sent"] for f in per_type.values() if "mails" in f),
            "errors": {key: sum(f["errors"].get(key, 0) for f in per_type.values()) for key in ERRORS},
        }
        windows[window] = {"start": iso(starts[window]), "end": iso(end), "task_types": per_type, "totals": totals}
    return windows


def _moment(value: str | None) -> datetime | None:
    """A stored timestamp, or None when there is none or it cannot be read (a timestamp without
    a time zone is UTC, as Mailroom writes them): one odd record never breaks the figures."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def campaign_progress(campaign: Campaign, now: datetime) -> dict[str, Any]:
    """A campaign's progress: done so far, its average send rate since it started, and, while
    it is sending and its fan-out has counted every recipient, when it should be done."""
    started = _moment(campaign.started_at)
    stopped = campaign.finished_at or (campaign.cancelled_at if campaign.status is CampaignStatus.CANCELLED else None)
    ended = _moment(stopped)
    elapsed = ((ended or now) - started).total_seconds() if started else 0.0
    rate = campaign.resolved / elapsed if elapsed > 0 else None
    remaining = max(0, campaign.recipients - campaign.resolved) if campaign.fanout_done else None
    eta = None
    if campaign.status is CampaignStatus.SENDING and remaining is not None:
        if remaining <= 0:
            eta = iso(now)
        elif rate:
            eta = iso(now + timedelta(seconds=remaining / rate))
    return {
        "id": campaign.id,
        "subject": campaign.subject,
        "status": campaign.status.value,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
        "fanout_done": campaign.fanout_done,
        "recipients": campaign.recipients,
        "done": campaign.resolved,
        "sent": campaign.sent,
        "failed": campaign.failed,
        "skipped": campaign.skipped,
        "uncertain": campaign.uncertain,
        "remaining": remaining,
        "rate_per_second": round(rate, 2) if rate is not None else None,
        "eta": eta,
    }


def report(source: MetricSource, campaigns: RecentCampaigns, now: datetime) -> dict[str, Any]:
    """The whole answer of ``GET /admin/metrics``. If the metrics cannot be read (CloudWatch
    throttles, say), ``windows`` is null and ``unavailable`` says why; the campaigns are there."""
    since = iso(now - timedelta(seconds=WINDOWS["day"]))
    recent: Iterable[Campaign] = campaigns.recent(since, MAX_CAMPAIGNS)
    answer: dict[str, Any] = {"generated_at": iso(now), "windows": None, "unavailable": None}
    try:
        answer["windows"] = task_figures(source, now)
    except Exception as exc:  # the figures are a view: show the rest of the page
        logger.warning("the task metrics could not be read", extra={"error": str(exc)})
        answer["unavailable"] = "The task metrics could not be read from CloudWatch; try again shortly."
    answer["campaigns"] = [campaign_progress(campaign, now) for campaign in recent]
    return answer
