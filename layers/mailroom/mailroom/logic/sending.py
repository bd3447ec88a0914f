"""Sending one campaign task: many recipients, concurrently, paced, each at most once.

Per task (one queue message):

1. the campaign is read: cancelled -> every recipient is resolved ``skipped``;
2. the recipients are re-checked against the subscribers table (one BatchGetItem): who
   unsubscribed or was erased since the fan-out is resolved ``skipped``;
3. the others are sent from a thread pool. Each send waits for a slot of the pacer, claims
   its record (conditional write), sends one attempt through SES, and yields an outcome;
4. final outcomes are committed with the campaign counters (``CampaignResults.resolve``)
   in transactions of up to 25 while the pool keeps sending;
5. what could not be finished is *handed back*: throttled recipients (released, never
   failed) and those not started before the time budget ran out go back on the queue as a
   new, smaller task with a delay - a fresh message, so throttling never pushes a task
   towards the dead-letter queue. A task that could not start at all, or that met a
   non-throttling transient error, fails as a batch item and SQS redelivers it.

A record found ``sending`` that was claimed by an earlier, vanished attempt (the worker
died between the send and the record) is resolved ``uncertain`` once the claim is older
than ``STALE_CLAIM_SECONDS``: the mail may have gone out, so it is never sent again, and
the campaign still completes. Until then those recipients are handed back to be looked at
again after the delay.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from mailroom.content import CampaignContent, CampaignRenderer, ContentError
from mailroom.errors import PermanentSendError, RetryableSendError, UncertainSendError
from mailroom.logic.delivery import Sender
from mailroom.logic.ports import CampaignStore, MailSender, ResultStore, SubscriberPages
from mailroom.mail import to_mime
from mailroom.models import (
    Campaign,
    CampaignStatus,
    CampaignTask,
    DeliveryStatus,
    Outcome,
    Recipient,
    Resolution,
    SubscriberStatus,
    iso,
    utcnow,
)
from mailroom.observability import logger
from mailroom.pacing import Pacer
from mailroom.worker import Budget

# A Lambda invocation lasts at most 15 minutes: a claim older than that belongs to no live attempt.
STALE_CLAIM_SECONDS = 900
FLUSH_EVERY = 25
MAX_DELAY_SECONDS = 900  # SQS's limit for DelaySeconds
THROTTLE_PENALTY_SECONDS = 0.2


class _Kind(Enum):
    FINAL = "final"  # resolved in this attempt: sent, failed, uncertain
    DUPLICATE = "duplicate"  # already claimed by another delivery
    RETRY = "retry"  # transient failure, claim released
    NOT_STARTED = "not_started"  # the time budget ran out before this one started


@dataclass(frozen=True)
class _Result:
    kind: _Kind
    recipient: Recipient
    status: DeliveryStatus | None = None
    claim: str | None = None
    claimed_at: str | None = None
    message_id: str | None = None
    error: str | None = None
    throttled: bool = False
    record: dict[str, object] | None = None

    def resolution(self) -> Resolution:
        assert self.status is not None
        return Resolution(
            self.recipient.id,
            self.recipient.email,
            self.status,
            claim=self.claim,
            claimed_at=self.claimed_at,
            message_id=self.message_id,
            error=self.error,
        )


@dataclass
class TaskResult:
    """What became of one task in this attempt."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    throttled: int = 0
    handed_back: list[Recipient] = field(default_factory=list)
    delay_seconds: int = 0
    next_attempt: int = 0
    retry_error: str | None = None  # a transient, non-throttling error: the task must be redelivered
    not_started: bool = False  # nothing was done: the task must be redelivered


def throttle_delay(attempt: int) -> int:
    """Backoff for throttled recipients: 2 s, 4 s, 8 s, ... up to 15 minutes, with jitter."""
    base = min(MAX_DELAY_SECONDS, 2 ** min(attempt + 1, 10))
    return max(1, min(MAX_DELAY_SECONDS, int(base * random.uniform(0.75, 1.25))))  # noqa: S311 - jitter


class CampaignSender:
    """Sends campaign tasks; one per worker process, reused across invocations."""

    def __init__(
        self,
        results: ResultStore,
        campaigns: CampaignStore,
        subscribers: SubscriberPages,
        mailer: MailSender,
        sender: Sender,
        public_url: str,
        pacer: Pacer,
        executor: Executor,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.results = results
        self.campaigns = campaigns
        self.subscribers = subscribers
        self.mailer = mailer
        self.sender = sender
        self.public_url = public_url
        self.pacer = pacer
        self.executor = executor
        self.clock = clock
        self._renderers: dict[str, CampaignRenderer] = {}

    def now(self) -> str:
        return iso(self.clock())

    def renderer(self, campaign: Campaign) -> CampaignRenderer:
        key = f"{campaign.id}@{campaign.updated_at}"
        if key not in self._renderers:
            if len(self._renderers) > 16:
                self._renderers.clear()
            content = CampaignContent(campaign.subject, campaign.content, campaign.format.value)
            self._renderers[key] = CampaignRenderer(content, self.sender.name, self.public_url)
        return self._renderers[key]

    # ----------------------------------------------------------------------------------
    def process_many(self, tasks: Sequence[CampaignTask], budget: Budget) -> list[TaskResult | Exception]:
        """Process a batch's tasks at the same time (their sends share the pool and the pacer),
        so one task's reads, commits and slowest send do not hold the others up.

        Returns each task's result, or the exception it raised, in order.
        """
        if len(tasks) <= 1:
            return [self._guarded(task, budget) for task in tasks]
        with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="task") as pool:
            return list(pool.map(lambda task: self._guarded(task, budget), tasks))

    def _guarded(self, task: CampaignTask, budget: Budget) -> TaskResult | Exception:
        try:
            return self.process(task, budget)
        except Exception as exc:  # the caller fails that task's record only
            logger.exception("task failed", extra={"task": task.task, "campaign_id": task.campaign_id})
            return exc

    def process(self, task: CampaignTask, budget: Budget) -> TaskResult:
        result = TaskResult(next_attempt=task.attempt)
        if budget.expired():
            result.not_started = True
            return result
        campaign = self.campaigns.get(task.campaign_id)
        if campaign is None:
            logger.warning("task of an unknown campaign dropped", extra={"campaign_id": task.campaign_id})
            return result
        if campaign.status is CampaignStatus.CANCELLED:
            skipped = [
                Resolution(r.id, r.email, DeliveryStatus.SKIPPED, error="campaign cancelled") for r in task.recipients
            ]
            self._commit(campaign.id, skipped, result)
            return result

        resolutions, eligible = self._check_eligibility(task.recipients)
        renderer = self.renderer(campaign)
        futures = [
            self.executor.submit(self._send_one, campaign, renderer, recipient, budget, task.task)
            for recipient in eligible
        ]
        stale_wait: list[Recipient] = []
        throttled: list[Recipient] = []
        try:
            resolutions = self._collect(futures, campaign.id, task.task, resolutions, result, throttled, stale_wait)
        finally:
            # Whatever else happens, what was sent gets recorded.
            self._commit(campaign.id, resolutions, result)
        self._hand_back(task, result, throttled, stale_wait)
        return result

    def _collect(
        self,
        futures: list[Future[_Result]],
        campaign_id: str,
        task_name: str,
        resolutions: list[Resolution],
        result: TaskResult,
        throttled: list[Recipient],
        stale_wait: list[Recipient],
    ) -> list[Resolution]:
        """Gather the sends' outcomes as they finish, committing every FLUSH_EVERY; the uncommitted rest."""
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except Exception as exc:
                # e.g. the claim's request failed: whether it was written is unknown, so the
                # task goes back whole; the other sends are still collected and recorded
                logger.exception("a send failed before it was sent", extra={"task": task_name})
                result.outcomes[Outcome.RETRY] += 1
                result.retry_error = result.retry_error or f"{type(exc).__name__}: {exc}"
                continue
            if outcome.kind is _Kind.FINAL:
                resolutions.append(outcome.resolution())
            elif outcome.kind is _Kind.DUPLICATE:
                self._duplicate(outcome, resolutions, stale_wait, result)
            elif outcome.kind is _Kind.RETRY:
                result.outcomes[Outcome.RETRY] += 1
                if outcome.throttled:
                    throttled.append(outcome.recipient)
                else:
                    result.retry_error = result.retry_error or outcome.error
            else:
                result.handed_back.append(outcome.recipient)
            if len(resolutions) >= FLUSH_EVERY:
                self._commit(campaign_id, resolutions, result)
                resolutions = []
        return resolutions

    def _check_eligibility(self, recipients: list[Recipient]) -> tuple[list[Resolution], list[Recipient]]:
        """Skip who unsubscribed or was erased since the fan-out; the rest, with their current name."""
        current = self.subscribers.get_many([r.email for r in recipients])
        skipped: list[Resolution] = []
        eligible: list[Recipient] = []
        for recipient in recipients:
            subscriber = current.get(recipient.email)
            if subscriber is None or subscriber.id != recipient.id or subscriber.status != SubscriberStatus.SUBSCRIBED:
                skipped.append(
                    Resolution(recipient.id, recipient.email, DeliveryStatus.SKIPPED, error="no longer subscribed")
                )
            else:
                eligible.append(recipient.model_copy(update={"name": subscriber.name}))
        return skipped, eligible

    @staticmethod
    def _hand_back(task: CampaignTask, result: TaskResult, throttled: list[Recipient], stale: list[Recipient]) -> None:
        result.throttled = len(throttled)
        if result.handed_back and len(result.handed_back) == len(task.recipients):
            result.not_started = True  # nothing done: the whole message goes back (batch item failure)
            result.handed_back = []
            return
        if throttled:
            result.handed_back.extend(throttled)
            result.next_attempt = task.attempt + 1
            result.delay_seconds = throttle_delay(task.attempt)
        if stale:
            result.handed_back.extend(stale)
            result.delay_seconds = max(result.delay_seconds, MAX_DELAY_SECONDS)

    def _duplicate(
        self, outcome: _Result, resolutions: list[Resolution], stale_wait: list[Recipient], result: TaskResult
    ) -> None:
        record = outcome.record or {}
        if record.get("status") != DeliveryStatus.SENDING.value:
            result.outcomes[Outcome.DUPLICATE] += 1  # resolved by an earlier delivery
            return
        claimed_at = str(record.get("claimed_at", ""))
        age = (self.clock() - datetime.fromisoformat(claimed_at.replace("Z", "+00:00"))).total_seconds()
        claim = record.get("claim")
        if age >= STALE_CLAIM_SECONDS and isinstance(claim, str):
            resolutions.append(
                Resolution(
                    outcome.recipient.id,
                    outcome.recipient.email,
                    DeliveryStatus.UNCERTAIN,
                    claim=claim,
                    claimed_at=claimed_at,
                    error="the attempt that claimed it stopped before recording a result; it may have been sent",
                )
            )
        elif age < STALE_CLAIM_SECONDS:
            stale_wait.append(outcome.recipient)  # maybe still being sent by a live attempt: look again later
        else:
            result.outcomes[Outcome.DUPLICATE] += 1

    def _commit(self, campaign_id: str, resolutions: list[Resolution], result: TaskResult) -> None:
        if not resolutions:
            return
        self.results.resolve(campaign_id, resolutions, self.now())
        for resolution in resolutions:
            result.outcomes[_OUTCOME_OF[resolution.status]] += 1
        self.campaigns.complete_if_done(campaign_id, self.now())

    def _send_one(
        self, campaign: Campaign, renderer: CampaignRenderer, recipient: Recipient, budget: Budget, task_name: str
    ) -> _Result:
        if budget.expired():
            return _Result(_Kind.NOT_STARTED, recipient)
        tags = {"kind": "campaign", "campaign": campaign.id, "subscriber": recipient.id}
        try:
            raw = to_mime(renderer.render(recipient, tags), self.sender.address, self.sender.name)
        except ContentError as exc:
            return _Result(_Kind.FINAL, recipient, DeliveryStatus.FAILED, error=str(exc))
        # The slot comes first, then the claim: a record is never held `sending` while it
        # waits for its turn (a crash then would leave it unsent yet never sent again).
        if not self.pacer.acquire(budget.deadline):
            return _Result(_Kind.NOT_STARTED, recipient)
        token, claimed_at = uuid.uuid4().hex, self.now()
        claimed, record = self.results.claim(campaign.id, recipient, token, claimed_at)
        if not claimed:
            return _Result(_Kind.DUPLICATE, recipient, record=record)
        result = self._send_claimed(campaign.id, recipient, token, raw, tags, task_name)
        return replace(result, claimed_at=claimed_at)

    def _send_claimed(
        self, campaign_id: str, recipient: Recipient, token: str, raw: bytes, tags: dict[str, str], task_name: str
    ) -> _Result:
        context = {"campaign_id": campaign_id, "subscriber_id": recipient.id, "task": task_name}
        try:
            message_id = self.mailer.send(raw, self.sender.address, recipient.email, tags)
        except PermanentSendError as exc:
            logger.warning("mail failed permanently", extra={**context, "error": str(exc)})
            return _Result(_Kind.FINAL, recipient, DeliveryStatus.FAILED, claim=token, error=str(exc))
        except UncertainSendError as exc:
            logger.error("mail may or may not have been sent; not sending again", extra={**context, "error": str(exc)})
            return _Result(_Kind.FINAL, recipient, DeliveryStatus.UNCERTAIN, claim=token, error=str(exc))
        except RetryableSendError as exc:
            self.results.release(campaign_id, recipient.id, str(exc), self.now())
            if exc.throttled:
                self.pacer.penalize(THROTTLE_PENALTY_SECONDS)
            return _Result(_Kind.RETRY, recipient, error=str(exc), throttled=exc.throttled)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.results.release(campaign_id, recipient.id, error, self.now())
            logger.exception("unexpected error while sending", extra=context)
            return _Result(_Kind.RETRY, recipient, error=error)
        return _Result(_Kind.FINAL, recipient, DeliveryStatus.SENT, claim=token, message_id=message_id)


_OUTCOME_OF = {
    DeliveryStatus.SENT: Outcome.SENT,
    DeliveryStatus.FAILED: Outcome.FAILED,
    DeliveryStatus.SKIPPED: Outcome.SKIPPED,
    DeliveryStatus.UNCERTAIN: Outcome.UNCERTAIN,
}
