"""Starting a campaign and fanning it out: resumable steps over parallel scan segments.

Starting (``start_campaign``) is one conditional write (draft/scheduled -> sending) and one
``SendMessageBatch`` of fan-out steps, one per scan segment. A step (``run_step``) works on
one segment, page by page, until its time budget is spent, then queues its continuation:

1. read the segment's position (``seg<k>_seq`` and ``seg<k>_cursor``) from the campaign;
2. take the page recorded for that position - or scan it and record it first
   (a *checkpoint*: the recipients of the page, written before any task is queued);
3. queue the page's tasks, ``recipients_per_task`` recipients each, ten per SendMessageBatch;
4. move the position on, counting the page's recipients, with a write conditioned on the
   position read in 1;
5. retire the page's checkpoint: its recipients are dropped, a tombstone stays.

A crash anywhere repeats at most steps 2-4 of one page: the retried step replays the same
checkpoint, so it queues the very same tasks (the workers' claims make the duplicates
harmless) and counts the page once. Nobody is skipped, nobody is counted twice, even if the
subscribers table changed in between. Two steps racing on one segment are safe the same way:
only one of them moves the position.

Retiring (5) happens only after the position has moved past the page, and the position only
moves forward: a step reads a checkpoint only at the position it read, so a retired page is
never needed again - except by a racing step that read the old position before the advance.
That step finds the tombstone, replays an empty page and fails to advance: it never scans
the page again (which could queue subscribers the page did not count). So at any time only
the pages in flight hold addresses, which keeps erasure (``logic.audience``) cheap; a crash
before 5 leaves a full checkpoint until its TTL, which erasure handles too.

A segment's position (``seg<k>_cursor``) is an address too. It goes when the segment's scan
is complete (the last advance removes it), and a cancel removes all of them with the state:
a cancelled fan-out never moves again (step 1 stops on the state, and 4 is conditioned on
it), so a step racing the cancel still only replays what it read and fails to advance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mailroom.logic.ports import CampaignStore, Queue, SubscriberPages
from mailroom.models import Campaign, CampaignStatus, CampaignTask, FanoutStep, Page, Recipient, iso, utcnow
from mailroom.observability import logger
from mailroom.worker import Budget


class Checkpoints(Protocol):
    """The fan-out's page checkpoints (``adapters.results.CampaignResults``)."""

    def checkpoint(
        self, campaign_id: str, segment: int, seq: int, scan: Callable[[], Page], now_epoch: int
    ) -> tuple[Page, bool]: ...
    def retire_checkpoint(self, campaign_id: str, segment: int, seq: int) -> None: ...


@dataclass(frozen=True)
class FanoutSettings:
    page_size: int = 500
    recipients_per_task: int = 50


@dataclass
class StepResult:
    campaign_id: str
    segment: int
    pages: int = 0
    recipients: int = 0
    tasks: int = 0
    replayed: int = 0
    state: str = "continued"  # continued | done | stopped


def start_campaign(
    campaign: Campaign,
    campaigns: CampaignStore,
    fanout_queue: Queue,
    segments: int,
    now: datetime,
    correlation_id: str | None = None,
    due: bool = False,
) -> Campaign | None:
    """draft/scheduled -> sending, and queue its fan-out. None if it was not startable (any more).

    ``due``: start it only if it is (still) scheduled and due at ``now`` - the dispatcher's
    view of it came from an eventually consistent index.
    """
    started = campaigns.start(campaign.id, segments, iso(now), due_before=iso(now) if due else None)
    if started is None:
        return None
    steps = [
        FanoutStep(campaign_id=campaign.id, segment=k, correlation_id=correlation_id).model_dump_json(exclude_none=True)
        for k in range(segments)
    ]
    try:
        fanout_queue.send_batch(steps)
    except Exception:
        campaigns.unstart(campaign.id, campaign, iso(now))
        raise
    logger.info("campaign started", extra={"campaign_id": campaign.id, "segments": segments})
    return started


def resume_stalled(
    campaigns: CampaignStore, fanout_queue: Queue, now: datetime, stalled_after_seconds: int = 900
) -> list[str]:
    """Queue the steps again for every sending campaign whose fan-out has not moved for a while
    (e.g. a continuation that could not be queued). Steps of finished segments end at once."""
    resumed: list[str] = []
    threshold = iso(datetime.fromtimestamp(now.timestamp() - stalled_after_seconds, tz=now.tzinfo))
    for campaign in campaigns.with_status(CampaignStatus.SENDING):
        if campaign.fanout_done or (campaign.progressed_at or campaign.updated_at) > threshold:
            continue
        fanout_queue.send_batch(
            [FanoutStep(campaign_id=campaign.id, segment=k).model_dump_json() for k in range(campaign.segments)]
        )
        resumed.append(campaign.id)
        logger.warning("stalled fan-out resumed", extra={"campaign_id": campaign.id})
    return resumed


def pack(page: list[Recipient], campaign_id: str, name: str, per_task: int, correlation_id: str | None) -> list[str]:
    """The task bodies of one page: ``per_task`` recipients each, named ``<name>.<index>``."""
    return [
        CampaignTask(
            campaign_id=campaign_id,
            task=f"{name}.{index}",
            recipients=page[start : start + per_task],
            correlation_id=correlation_id,
        ).model_dump_json(exclude_none=True)
        for index, start in enumerate(range(0, len(page), per_task))
    ]


def run_step(
    step: FanoutStep,
    campaigns: CampaignStore,
    subscribers: SubscriberPages,
    results: Checkpoints,
    task_queue: Queue,
    fanout_queue: Queue,
    settings: FanoutSettings,
    budget: Budget,
    clock: Callable[[], datetime] = utcnow,
) -> StepResult:
    result = StepResult(step.campaign_id, step.segment)
    item = campaigns.progress(step.campaign_id)
    k = step.segment
    if not item or item.get("state") != CampaignStatus.SENDING.value or f"seg{k}_seq" not in item:
        result.state = "stopped"
        return result
    if item.get(f"seg{k}_done"):
        result.state = "done"
        return result
    seq = int(item[f"seg{k}_seq"])
    cursor: str | None = item.get(f"seg{k}_cursor")
    total = int(item["segments"])

    def scan() -> Page:
        found, next_cursor = subscribers.scan_page(k, total, cursor, settings.page_size)
        return Page([Recipient(id=s.id, email=s.email, name=s.name) for s in found], next_cursor)

    while True:
        page, replayed = results.checkpoint(step.campaign_id, k, seq, scan, int(time.time()))
        tasks = pack(page.recipients, step.campaign_id, f"{k}.{seq}", settings.recipients_per_task, step.correlation_id)
        if tasks:
            task_queue.send_batch(tasks)
        if not campaigns.advance(step.campaign_id, k, seq, page.next_cursor, len(page.recipients), iso(clock())):
            logger.info("another step moved this segment on; stopping", extra={"campaign_id": step.campaign_id})
            result.state = "stopped"
            return result
        try:
            results.retire_checkpoint(step.campaign_id, k, seq)
        except Exception as exc:  # the page is counted; its checkpoint just keeps its recipients until the TTL
            logger.warning("checkpoint not retired", extra={"campaign_id": step.campaign_id, "error": str(exc)})
        result.pages += 1
        result.recipients += len(page.recipients)
        result.tasks += len(tasks)
        result.replayed += int(replayed)
        seq, cursor = seq + 1, page.next_cursor
        if cursor is None:
            result.state = "done"
            campaigns.complete_if_done(step.campaign_id, iso(clock()))
            return result
        if budget.expired():
            fanout_queue.send(step.model_dump_json(exclude_none=True))
            return result
