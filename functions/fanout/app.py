"""Fan-out worker: one resumable step of a campaign's fan-out per fan-out queue message.

A step reads a scan segment's position from the campaign, queues tasks page by page
(each page checkpointed first), and queues its own continuation when its time budget is
spent - so a campaign to millions never depends on one invocation finishing.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from mailroom.adapters.campaigns import CampaignRepository
from mailroom.adapters.dynamodb import SubscriberRepository
from mailroom.adapters.results import CampaignResults
from mailroom.adapters.sqs import TaskQueue
from mailroom.batch import PartialBatchResponse, SqsRecord, process_batch
from mailroom.config import FanoutSettingsEnv
from mailroom.logic.fanout import FanoutSettings, run_step
from mailroom.models import FanoutStep
from mailroom.observability import log_metrics, logger, task_metrics, timed
from mailroom.worker import Budget, DeadLetters

# A step stops starting pages this long before its timeout (one page takes well under a second).
STEP_MARGIN_MS = 30_000

settings = FanoutSettingsEnv.from_env(os.environ)
campaigns = CampaignRepository(settings.campaigns_table)
subscribers = SubscriberRepository(settings.subscribers_table)
results = CampaignResults(settings.results_table, settings.campaigns_table)
task_queue = TaskQueue(settings.newsletter_queue_url)
fanout_queue = TaskQueue(settings.fanout_queue_url)
dead_letters = DeadLetters(TaskQueue(settings.dead_letter_queue_url), source="fanout", task_type="newsletter_fanout")
fanout = FanoutSettings(
    page_size=settings.page_size,
    recipients_per_task=settings.recipients_per_task,
)


def record_handler(record: SqsRecord, lambda_context: LambdaContext | None = None) -> str:
    try:
        step = FanoutStep.model_validate_json(record.body)
    except ValidationError as exc:
        dead_letters.send(record.body, f"invalid fan-out step: {exc.errors(include_url=False)[:3]}")
        return "dead-lettered"
    logger.set_correlation_id(step.correlation_id or record.message_id)
    logger.append_keys(campaign_id=step.campaign_id, segment=step.segment)
    with timed("newsletter_fanout"):
        result = run_step(
            step,
            campaigns,
            subscribers,
            results,
            task_queue,
            fanout_queue,
            fanout,
            Budget.of(lambda_context, STEP_MARGIN_MS),
        )
    task_metrics.add("newsletter_fanout", "TasksProcessed", 1)
    task_metrics.add("newsletter_fanout", "TasksQueued", result.tasks)
    task_metrics.add("newsletter_fanout", "RecipientsQueued", result.recipients)
    logger.info("fan-out step", extra={"state": result.state, "pages": result.pages, "recipients": result.recipients})
    return result.state


@logger.inject_lambda_context
@log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse:
    return process_batch(event, record_handler, context)
