"""Newsletter worker: SQS batch of campaign tasks, many recipients each, sent concurrently and paced.

The batch's tasks are sent at the same time (one pool of send threads, one pacer); then
each record is reported: done, handed back, or failed.

Each recipient is sent at most once (a claim before the send); results and counters commit
together. Recipients that were throttled, met a transient error, are claimed by another
attempt or were not started before the time budget ran out go back on the queue as new,
delayed tasks (``logic.sending.follow_ups``); those whose transient failures are used up go
to the dead-letter queue with the last error, and so does a malformed task. A task with
nothing done is a batch item failure and SQS redelivers it.
"""

from __future__ import annotations

import gc
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from mailroom.adapters.campaigns import CampaignRepository
from mailroom.adapters.dynamodb import SubscriberRepository
from mailroom.adapters.parameters import PublicUrl
from mailroom.adapters.results import CampaignResults
from mailroom.adapters.secrets import LinkKeys
from mailroom.adapters.ses import Mailer
from mailroom.adapters.sqs import TaskQueue
from mailroom.batch import PartialBatchResponse, SqsRecord, process_batch
from mailroom.config import NewsletterWorkerSettings
from mailroom.errors import TaskRetry
from mailroom.links import Links
from mailroom.logic.delivery import Sender
from mailroom.logic.sending import CampaignSender, TaskResult, follow_ups
from mailroom.models import CampaignTask
from mailroom.observability import log_metrics, logger, task_metrics
from mailroom.pacing import AccountRate, Pacer, share_of
from mailroom.worker import Budget, DeadLetters, count_outcomes

settings = NewsletterWorkerSettings.from_env(os.environ)
newsletter_queue = TaskQueue(settings.newsletter_queue_url)
dead_letters = DeadLetters(TaskQueue(settings.dead_letter_queue_url), source="newsletter", task_type="newsletter")
account_rate = AccountRate(limit=settings.max_send_rate)
pacer = Pacer(rate=1.0)  # set from the account's rate at each invocation (cached for minutes)
campaign_sender = CampaignSender(
    results=CampaignResults(settings.results_table, settings.campaigns_table),
    campaigns=CampaignRepository(settings.campaigns_table),
    subscribers=SubscriberRepository(settings.subscribers_table),
    mailer=Mailer(configuration_set=settings.configuration_set),
    sender=Sender(settings.sender_address, settings.sender_name),
    links=Links(
        PublicUrl(settings.public_url, settings.public_url_parameter), LinkKeys(settings.token_secret_arn).tokens
    ),
    pacer=pacer,
    executor=ThreadPoolExecutor(max_workers=settings.send_threads, thread_name_prefix="send"),
)
# The queue's maxReceiveCount is 5: a task never started is handed back as a new message
# from its third receive on, instead of as a batch item failure.
FRESH_COPY_AFTER_RECEIVES = 3
# Everything loaded so far lives as long as the process: keep the garbage collector from
# walking it (its pauses made the pacer's threads send in bursts after them).
gc.freeze()


# The results of this invocation's tasks, sent together before the records are reported.
_done: dict[str, TaskResult | Exception] = {}


def _send_batch(event: dict[str, Any], context: LambdaContext | None) -> None:
    """Parse every record and process the valid tasks at the same time."""
    _done.clear()
    tasks: dict[str, CampaignTask] = {}
    for raw in event.get("Records", []):
        try:
            tasks[raw["messageId"]] = CampaignTask.model_validate_json(raw["body"])
        except ValidationError:
            continue  # record_handler parses it again and dead-letters it
    results = campaign_sender.process_many(list(tasks.values()), Budget.of(context))
    _done.update(zip(tasks, results, strict=True))


def record_handler(record: SqsRecord, lambda_context: LambdaContext | None = None) -> str:
    try:
        task = CampaignTask.model_validate_json(record.body)
    except ValidationError as exc:
        # Retrying cannot fix a malformed task: straight to the dead-letter queue, with the reason.
        dead_letters.send(record.body, f"invalid campaign task: {exc.errors(include_url=False)[:3]}")
        return "dead-lettered"
    logger.set_correlation_id(task.correlation_id or record.message_id)
    result = _done.pop(record.message_id)  # sent with the batch by _send_batch
    if isinstance(result, Exception):
        task_metrics.add("newsletter", "TaskErrors", 1)
        raise result
    if not result.started:  # not started in time: it comes again (no error)
        task_metrics.add("newsletter", "TasksRetried", 1)
        if int(record.receive_count) < FRESH_COPY_AFTER_RECEIVES:
            raise TaskRetry("the worker's time budget ran out before this task started")
        # Received often and never started (a slow send rate, big batches): a fresh copy, so
        # that time budgets alone never push a task into the dead-letter queue.
        newsletter_queue.send(record.body)
        logger.info("task handed back as a fresh message", extra={"task": task.task})
        return "handed back"
    task_metrics.add("newsletter", "ProcessingTime", result.seconds * 1000)
    count_outcomes("newsletter", result.outcomes, len(result.throttled))
    outcomes = {outcome.value: count for outcome, count in sorted(result.outcomes.items())}
    logger.info("task done", extra={"task": task.task, "campaign_id": task.campaign_id, "outcomes": outcomes})
    try:
        _follow_up(task, result)
    except Exception:  # the record comes again (its sent mails are then duplicates, not resent)
        task_metrics.add("newsletter", "TaskErrors", 1)
        raise
    return ",".join(f"{outcome}={count}" for outcome, count in outcomes.items())


def _follow_up(task: CampaignTask, result: TaskResult) -> None:
    """The recipients handed back, and at most one dead letter."""
    after = follow_ups(task, result)
    for rest, delay in after.hand_backs:
        newsletter_queue.send(rest.model_dump_json(exclude_none=True), delay_seconds=delay)
        logger.info(
            "recipients handed back",
            extra={"count": len(rest.recipients), "delay_seconds": delay, "task": task.task},
        )
    if after.dead_letter:
        rest, reason = after.dead_letter
        dead_letters.send(rest.model_dump_json(exclude_none=True), reason)


@logger.inject_lambda_context
@log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse:
    pacer.set_rate(share_of(account_rate(), settings.max_concurrency))
    _send_batch(event, context)
    return process_batch(event, record_handler, context)
