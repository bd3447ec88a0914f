"""Welcome worker: SQS batch -> render and send each confirmation or welcome mail at most once.

A mail that was throttled, failed transiently or is claimed by another attempt goes back
on the queue as a new, delayed message (``worker.plan_retry``); after ``MAX_SEND_FAILURES``
transient failures it goes to the dead-letter queue with its last error, and so does a
malformed task. Partial batch responses (ReportBatchItemFailures) report the records this
invocation could not get to (time budget) or could not hand back; SQS's redrive policy
(maxReceiveCount) catches a record whose worker never finishes.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter, ValidationError

from mailroom.adapters.dynamodb import ResultLedger, SubscriberRepository
from mailroom.adapters.parameters import PublicUrl
from mailroom.adapters.secrets import LinkKeys
from mailroom.adapters.ses import Mailer
from mailroom.adapters.sqs import TaskQueue
from mailroom.batch import PartialBatchResponse, SqsRecord, process_batch
from mailroom.config import WelcomeWorkerSettings
from mailroom.errors import TaskRetry
from mailroom.links import Links
from mailroom.logic.delivery import Sender
from mailroom.logic.welcome import send_confirmation, send_welcome
from mailroom.models import ConfirmationTask, Outcome, WelcomeQueueTask, utcnow
from mailroom.observability import log_metrics, logger, timed
from mailroom.worker import Budget, DeadLetters, count_outcomes, plan_retry

settings = WelcomeWorkerSettings.from_env(os.environ)
subscribers = SubscriberRepository(settings.subscribers_table)
ledger = ResultLedger(settings.results_table)
mailer = Mailer(configuration_set=settings.configuration_set)
sender = Sender(settings.sender_address, settings.sender_name)
links = Links(
    PublicUrl(settings.public_url, settings.public_url_parameter),
    LinkKeys(settings.token_secret_arn).tokens,
    settings.confirmation_days * 86400,
)
tasks: TypeAdapter[WelcomeQueueTask] = TypeAdapter(WelcomeQueueTask)
welcome_queue = TaskQueue(settings.welcome_queue_url)
clock = utcnow  # what the age of another attempt's claim is judged by
dead_letters = DeadLetters(TaskQueue(settings.dead_letter_queue_url), source="welcome", task_type="welcome")


def record_handler(record: SqsRecord, lambda_context: LambdaContext | None = None) -> str:
    if Budget.of(lambda_context).expired():
        raise TaskRetry("the worker's time budget ran out before this record")
    try:
        task = tasks.validate_json(record.body)
    except ValidationError as exc:
        # Retrying cannot fix a malformed task: straight to the dead-letter queue, with the reason.
        dead_letters.send(record.body, f"invalid welcome queue task: {exc.errors(include_url=False)[:3]}")
        return "dead-lettered"
    logger.set_correlation_id(task.correlation_id or record.message_id)
    task_type = task.kind  # "confirmation" or "welcome": each has its own metrics
    # timed: the whole task, its retry or dead letter included (an error there is a TaskErrors)
    with timed(task_type):
        return _handle(task, task_type)


def _handle(task: WelcomeQueueTask, task_type: str) -> str:
    if isinstance(task, ConfirmationTask):
        delivery = send_confirmation(task, subscribers, ledger, mailer, sender, links, clock=clock)
    else:
        delivery = send_welcome(task, subscribers, ledger, mailer, sender, links, clock=clock)
    count_outcomes(task_type, {delivery.outcome: 1}, int(delivery.throttled))
    done = {"task_type": task_type, "outcome": delivery.outcome.value, "subscriber_id": task.subscriber_id}
    logger.info("task done", extra=done)
    if delivery.outcome is not Outcome.RETRY:
        return delivery.outcome.value
    # Throttled, failed transiently, or claimed by another attempt: a new, delayed message
    # (never a redelivery, so retries do not count towards the queue's maxReceiveCount).
    retry = plan_retry(task.attempt, task.failures, throttled=delivery.throttled, wait=delivery.wait)
    again = task.model_copy(
        update={"attempt": retry.attempt, "failures": retry.failures, "held": delivery.held or task.held}
    )
    if retry.dead:
        dead_letters.send(again.model_dump_json(exclude_none=True), delivery.error or "unknown error", task_type)
        return "dead-lettered"
    welcome_queue.send(again.model_dump_json(exclude_none=True), delay_seconds=retry.delay_seconds)
    return "retry later"


@logger.inject_lambda_context
@log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse:
    return process_batch(event, record_handler, context)
