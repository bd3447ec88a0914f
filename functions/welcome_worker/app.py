"""Welcome worker: SQS batch -> render and send each welcome mail at most once.

Partial batch responses (ReportBatchItemFailures): a record whose mail hit a transient
error goes back to the queue; after maxReceiveCount it lands in the dead-letter queue.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailroom.adapters.dynamodb import ResultLedger, SubscriberRepository
from mailroom.adapters.ses import Mailer
from mailroom.config import WelcomeWorkerSettings
from mailroom.errors import TaskRetry
from mailroom.logic.delivery import Sender
from mailroom.logic.welcome import send_welcome
from mailroom.models import WelcomeTask
from mailroom.observability import logger, metrics, timed
from mailroom.worker import Budget, count_outcomes, raise_if_retry

settings = WelcomeWorkerSettings.from_env(os.environ)
subscribers = SubscriberRepository(settings.subscribers_table)
ledger = ResultLedger(settings.results_table)
mailer = Mailer()
sender = Sender(settings.sender_address, settings.sender_name)
# Report every failed record, even when all failed: no Lambda error, no blanket retry.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
metrics.set_default_dimensions(task_type="welcome")


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> str:
    if Budget.of(lambda_context).expired():
        raise TaskRetry("the worker's time budget ran out before this record")
    task = WelcomeTask.model_validate_json(record.body)
    logger.set_correlation_id(task.correlation_id or record.message_id)
    with timed():
        delivery = send_welcome(task, subscribers, ledger, mailer, sender)
    count_outcomes({delivery.outcome: 1}, int(delivery.throttled))
    raise_if_retry([delivery])
    return delivery.outcome.value


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
