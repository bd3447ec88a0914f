"""Sending one campaign task: many recipients, concurrently, paced, each at most once.

Per task (one queue message):

1. the campaign is read: cancelled -> every recipient is resolved ``skipped``;
2. the recipients are re-checked against the subscribers table (one BatchGetItem): who
   unsubscribed or was erased since the fan-out is resolved ``skipped``;
3. the others are sent from a thread pool. Each send waits for a slot of the pacer, claims
   its record (conditional write), sends one attempt through SES, and yields an outcome;
4. final outcomes are committed with the campaign counters (``CampaignResults.resolve``)
   in transactions of up to 25 while the pool keeps sending;
5. what could not be finished is *handed back* as new, smaller tasks with a delay - fresh
   messages, so retries never push a task towards SQS's maxReceiveCount: throttled
   recipients (released; ``attempt`` + 1 sets the backoff; never given up), recipients that
   met a transient error (released; ``failures`` + 1; after ``MAX_SEND_FAILURES`` they go to
   the dead-letter queue with the last error), recipients claimed by another attempt (looked
   at again later) and those not started before the time budget ran out. A task that could
   not start at all fails as a batch item and SQS redelivers it. A claim that could not be
   confirmed, or not released, travels with its recipient (``held``): nothing was sent
   under it, and the next attempt may take it over.

A record found ``sending`` that was claimed by an earlier, vanished attempt (the worker
died between the send and the record) is resolved ``uncertain`` once the claim is older
than ``STALE_CLAIM_SECONDS``: the mail may have gone out, so it is never sent again, and
the campaign still completes. Until then those recipients are handed back to be looked at
again after the delay.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from mailroom.content import CampaignContent, CampaignRenderer
from mailroom.errors import ContentError, PermanentSendError, RetryableSendError, UncertainSendError
from mailroom.links import Links
from mailroom.logic.delivery import STALE_CLAIM_ERROR, ClaimedBy, Sender, claimed_by
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
from mailroom.worker import Budget, plan_retry

FLUSH_EVERY = 25
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
    held: str | None = None  # RETRY: our claim, known not sent, that the next attempt may take over

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
            held=self.recipient.held if self.claim is None else None,
        )


@dataclass
class TaskResult:
    """What became of one task in this attempt."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    throttled: list[Recipient] = field(default_factory=list)
    failed: list[Recipient] = field(default_factory=list)  # transient failures, claims released
    waiting: list[Recipient] = field(default_factory=list)  # claimed by another attempt
    not_started: list[Recipient] = field(default_factory=list)  # the time budget ran out first
    last_error: str | None = None
    started: bool = True  # False: nothing was done, the task must be redelivered as it is
    seconds: float = 0.0  # how long processing it took


@dataclass(frozen=True)
class FollowUps:
    """The messages a task leaves behind: hand-backs (task, delay) and at most one dead letter (task, reason)."""

    hand_backs: list[tuple[CampaignTask, int]]
    dead_letter: tuple[CampaignTask, str] | None = None


def follow_ups(task: CampaignTask, result: TaskResult) -> FollowUps:
    """Group the recipients handed back by why: each group its own task, delay and counters."""
    hand_backs: list[tuple[CampaignTask, int]] = []
    dead: tuple[CampaignTask, str] | None = None

    def rest(recipients: list[Recipient], **update: int) -> CampaignTask:
        return task.model_copy(update={"recipients": recipients, **update})

    if result.throttled:
        retry = plan_retry(task.attempt, task.failures, throttled=True)
        hand_backs.append((rest(result.throttled, attempt=retry.attempt), retry.delay_seconds))
    if result.failed:
        retry = plan_retry(task.attempt, task.failures)
        if retry.dead:
            dead = (rest(result.failed, failures=retry.failures), result.last_error or "unknown error")
        else:
            hand_backs.append((rest(result.failed, failures=retry.failures), retry.delay_seconds))
    if result.waiting:
        hand_backs.append((rest(result.waiting), plan_retry(task.attempt, task.failures, wait=True).delay_seconds))
    if result.not_started:
        hand_backs.append((rest(result.not_started), 0))
    return FollowUps(hand_backs, dead)


class CampaignSender:
    """Sends campaign tasks; one per worker process, reused across invocations."""

    def __init__(
        self,
        results: ResultStore,
        campaigns: CampaignStore,
        subscribers: SubscriberPages,
        mailer: MailSender,
        sender: Sender,
        links: Links,
        pacer: Pacer,
        executor: Executor,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.results = results
        self.campaigns = campaigns
        self.subscribers = subscribers
        self.mailer = mailer
        self.sender = sender
        self.links = links
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
            self._renderers[key] = CampaignRenderer(content, self.sender.name, self.links)
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
        started = time.perf_counter()
        try:
            result = self.process(task, budget)
            result.seconds = time.perf_counter() - started
            return result
        except Exception as exc:  # the caller fails that task's record only
            logger.exception("task failed", extra={"task": task.task, "campaign_id": task.campaign_id})
            return exc

    def process(self, task: CampaignTask, budget: Budget) -> TaskResult:
        result = TaskResult()
        if budget.expired():
            result.started = False
            return result
        campaign = self.campaigns.get(task.campaign_id)
        if campaign is None:
            logger.warning("task of an unknown campaign dropped", extra={"campaign_id": task.campaign_id})
            return result
        if campaign.status is CampaignStatus.CANCELLED:
            skipped = [
                Resolution(r.id, r.email, DeliveryStatus.SKIPPED, error="campaign cancelled", held=r.held)
                for r in task.recipients
            ]
            self._commit(campaign.id, skipped, result)
            return result

        resolutions, eligible = self._check_eligibility(task.recipients)
        renderer = self.renderer(campaign)
        futures = {
            self.executor.submit(self._send_one, campaign, renderer, recipient, budget, task.task): recipient
            for recipient in eligible
        }
        try:
            self._collect(futures, campaign.id, task.task, resolutions, result)
        finally:
            # Whatever else happens, what was sent gets recorded (the buffer holds exactly
            # what is not committed yet).
            self._commit(campaign.id, resolutions, result)
        if len(result.not_started) == len(task.recipients):
            result.started, result.not_started = False, []  # nothing done: the message goes back as it is
        return result

    def _collect(
        self,
        futures: dict[Future[_Result], Recipient],
        campaign_id: str,
        task_name: str,
        resolutions: list[Resolution],
        result: TaskResult,
    ) -> None:
        """Gather the sends' outcomes as they finish into ``resolutions``, committing (and
        emptying) it every FLUSH_EVERY."""
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except Exception as exc:  # _send_one handles its errors; this is a last resort
                logger.exception("a send failed unexpectedly", extra={"task": task_name})
                outcome = _Result(_Kind.RETRY, futures[future], error=f"{type(exc).__name__}: {exc}")
            if outcome.kind is _Kind.FINAL:
                resolutions.append(outcome.resolution())
            elif outcome.kind is _Kind.DUPLICATE:
                self._duplicate(outcome, resolutions, result)
            elif outcome.kind is _Kind.RETRY:
                result.outcomes[Outcome.RETRY] += 1
                recipient = outcome.recipient.model_copy(update={"held": outcome.held})
                if outcome.throttled:
                    result.throttled.append(recipient)
                else:
                    result.failed.append(recipient)
                    result.last_error = outcome.error
            else:
                result.not_started.append(outcome.recipient)
            if len(resolutions) >= FLUSH_EVERY:
                self._commit(campaign_id, resolutions, result)

    def _check_eligibility(self, recipients: list[Recipient]) -> tuple[list[Resolution], list[Recipient]]:
        """Skip who unsubscribed or was erased since the fan-out; the rest, with their current name."""
        current = self.subscribers.get_many([r.email for r in recipients])
        skipped: list[Resolution] = []
        eligible: list[Recipient] = []
        for recipient in recipients:
            subscriber = current.get(recipient.email)
            gone = subscriber is None or subscriber.id != recipient.id
            if gone or subscriber is None or subscriber.status != SubscriberStatus.SUBSCRIBED:
                skipped.append(
                    Resolution(
                        recipient.id,
                        recipient.email,
                        DeliveryStatus.SKIPPED,
                        error="no longer subscribed",
                        held=recipient.held,
                        keep_address=not gone,
                    )
                )
            else:
                eligible.append(recipient.model_copy(update={"name": subscriber.name}))
        return skipped, eligible

    def _duplicate(self, outcome: _Result, resolutions: list[Resolution], result: TaskResult) -> None:
        self._claimed_elsewhere(outcome.recipient, outcome.record or {}, resolutions, result)

    def _claimed_elsewhere(
        self, recipient: Recipient, record: dict[str, object], resolutions: list[Resolution], result: TaskResult
    ) -> None:
        """A record another attempt got to first: done (a duplicate), in flight (look again
        later), or claimed by an attempt that is gone (``uncertain``: it may have been sent)."""
        holder = claimed_by(record, self.clock())
        if holder is ClaimedBy.NOBODY:
            result.outcomes[Outcome.DUPLICATE] += 1  # resolved by an earlier delivery
        elif holder is ClaimedBy.LIVE:
            result.waiting.append(recipient)  # maybe still being sent by a live attempt: look again later
        else:
            resolutions.append(
                Resolution(
                    recipient.id,
                    recipient.email,
                    DeliveryStatus.UNCERTAIN,
                    claim=str(record.get("claim")),
                    claimed_at=str(record.get("claimed_at", "")),
                    error=STALE_CLAIM_ERROR,
                )
            )

    def _commit(self, campaign_id: str, resolutions: list[Resolution], result: TaskResult, depth: int = 0) -> None:
        """Commit the buffer (and empty it). A resolution without a claim (a skip, a content
        error) that is refused because another attempt holds the record is looked at like a
        duplicate: waited for, or resolved ``uncertain`` once that claim is stale."""
        if not resolutions:
            return
        pending = list(resolutions)
        resolutions.clear()
        refused = self.results.resolve(campaign_id, pending, self.now())
        refused_ids = {id(resolution) for resolution in refused}
        for resolution in pending:
            if id(resolution) not in refused_ids:
                result.outcomes[_OUTCOME_OF[resolution.status]] += 1
        again: list[Resolution] = []
        for resolution in refused:
            if resolution.claim is not None:
                result.outcomes[Outcome.DUPLICATE] += 1  # our claim was resolved by another attempt
                continue
            recipient = Recipient(id=resolution.subscriber_id, email=resolution.email, held=resolution.held)
            record = self.results.record(campaign_id, resolution.subscriber_id) or {}
            if record.get("status") in (None, DeliveryStatus.RELEASED.value) or depth:
                result.waiting.append(recipient)  # it changed meanwhile: look again later
            else:
                self._claimed_elsewhere(recipient, record, again, result)
        if again:
            self._commit(campaign_id, again, result, depth + 1)
        self.campaigns.complete_if_done(campaign_id, self.now())

    def _send_one(
        self, campaign: Campaign, renderer: CampaignRenderer, recipient: Recipient, budget: Budget, task_name: str
    ) -> _Result:
        tokens: list[str] = []  # the claim this attempt made and has not sent under, if any
        try:
            return self._attempt(campaign, renderer, recipient, budget, task_name, tokens)
        except Exception as exc:
            # Anything unforeseen before the send (rendering, the pacer, a release): nothing
            # was sent; the recipient goes back, with our claim if we made one.
            logger.exception("unexpected error before the send", extra={"task": task_name})
            return _Result(_Kind.RETRY, recipient, error=f"{type(exc).__name__}: {exc}", held=next(iter(tokens), None))

    def _attempt(  # noqa: PLR0911 - one return per way a send can end, in the order they happen
        self,
        campaign: Campaign,
        renderer: CampaignRenderer,
        recipient: Recipient,
        budget: Budget,
        task_name: str,
        tokens: list[str],
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
        tokens.append(token)
        try:
            claimed, record = self.results.claim(campaign.id, recipient, token, claimed_at)
        except Exception as exc:
            # Whether the claim was written is unknown; nothing was sent under it: hand it on.
            error = f"claim not confirmed: {type(exc).__name__}: {exc}"
            return _Result(_Kind.RETRY, recipient, error=error, held=token)
        if not claimed:
            tokens.clear()
            return _Result(_Kind.DUPLICATE, recipient, record=record)
        if budget.expired():
            # the claim took the rest of the budget (its retries): give it back, send later
            self.results.release(campaign.id, recipient.id, token, "time budget used up", self.now())
            return _Result(_Kind.NOT_STARTED, recipient)
        tokens.clear()  # from here on _send_claimed accounts for the claim
        sent = self._send_claimed(campaign.id, recipient, token, raw, tags, task_name)
        return replace(sent, claimed_at=claimed_at)

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
            if exc.throttled:
                self.pacer.penalize(THROTTLE_PENALTY_SECONDS)
            try:
                self.results.release(campaign_id, recipient.id, token, str(exc), self.now())
            except Exception:
                logger.exception("claim not released; the retry takes it over", extra=context)
                return _Result(_Kind.RETRY, recipient, error=str(exc), throttled=exc.throttled, held=token)
            return _Result(_Kind.RETRY, recipient, error=str(exc), throttled=exc.throttled)
        except Exception as exc:
            # Not an error the mailer classified: whether SES got the mail is unknown.
            error = f"{type(exc).__name__}: {exc}"
            logger.exception("unexpected error while sending; not sending again", extra=context)
            return _Result(_Kind.FINAL, recipient, DeliveryStatus.UNCERTAIN, claim=token, error=error)
        return _Result(_Kind.FINAL, recipient, DeliveryStatus.SENT, claim=token, message_id=message_id)


_OUTCOME_OF = {
    DeliveryStatus.SENT: Outcome.SENT,
    DeliveryStatus.FAILED: Outcome.FAILED,
    DeliveryStatus.SKIPPED: Outcome.SKIPPED,
    DeliveryStatus.UNCERTAIN: Outcome.UNCERTAIN,
}
