"""Newsletter worker: SQS batch of tasks, each carrying many recipients of one edition.

Every recipient is sent at most once (ledger claim before the send). A task with any
transient failure is reported as a batch item failure; its redelivery skips the
recipients already sent.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailroom.adapters.dynamodb import ResultLedger
from mailroom.adapters.ses import Mailer
from mailroom.config import NewsletterWorkerSettings
from mailroom.logic.delivery import Sender
from mailroom.logic.newsletter import send_newsletter
from mailroom.models import NewsletterTask
from mailroom.observability import logger, metrics, timed
from mailroom.worker import count_deliveries, raise_if_retry, time_budget

settings = NewsletterWorkerSettings.from_env(os.environ)
ledger = ResultLedger(settings.results_table)
mailer = Mailer()
sender = Sender(settings.sender_address, settings.sender_name)
# Report every failed record, even when all failed: no Lambda error, no blanket retry.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
metrics.set_default_dimensions(task_type="newsletter")


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> str:
    task = NewsletterTask.model_validate_json(record.body)
    logger.set_correlation_id(task.correlation_id or record.message_id)
    with timed():
        deliveries = send_newsletter(task, ledger, mailer, sender, should_stop=time_budget(lambda_context))
    summary = count_deliveries(deliveries)
    raise_if_retry(deliveries)
    return ",".join(f"{outcome}={count}" for outcome, count in sorted(summary.items()))


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
