"""Newsletter dispatcher: triggered by the EventBridge Scheduler schedule.

Works out the edition from the scheduled time (in the schedule's time zone) and fans it
out onto the newsletter queue, many recipients per task.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailroom.adapters.dynamodb import SubscriberRepository
from mailroom.adapters.sqs import TaskQueue
from mailroom.config import DispatcherSettings
from mailroom.logic.newsletter import edition_for, fan_out
from mailroom.models import ScheduleInvocation
from mailroom.observability import MetricUnit, logger, metrics, timed

settings = DispatcherSettings.from_env(os.environ)
subscribers = SubscriberRepository(settings.subscribers_table)
newsletter_queue = TaskQueue(settings.newsletter_queue_url)
metrics.set_default_dimensions(task_type="newsletter_fanout")


@logger.inject_lambda_context(log_event=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    invocation = ScheduleInvocation.model_validate(event)
    edition = edition_for(invocation, settings.timezone)
    logger.set_correlation_id(invocation.execution_id or edition)
    with timed():
        result = fan_out(
            edition,
            subscribers,
            newsletter_queue,
            recipients_per_task=settings.recipients_per_task,
            correlation_id=logger.get_correlation_id(),
        )
    metrics.add_metric(name="TasksProcessed", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="TasksQueued", unit=MetricUnit.Count, value=result.tasks)
    metrics.add_metric(name="RecipientsQueued", unit=MetricUnit.Count, value=result.recipients)
    return {"edition": result.edition, "recipients": result.recipients, "tasks": result.tasks}
