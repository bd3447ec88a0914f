"""Newsletter dispatcher: triggered by the EventBridge Scheduler schedules (time zone aware).

At a newsletter firing (``DailyNewsletter``) it starts every scheduled campaign that is due
(a conditional write each, so a schedule that fires twice or two overlapping dispatchers
start a campaign once) and re-queues the fan-out of any campaign whose fan-out has stalled.
At a ``Recovery`` firing (every few minutes) it only re-queues stalled fan-outs - e.g. of a
campaign sent now whose fan-out step was lost - and starts nothing: scheduled campaigns
start at the newsletter schedule.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailroom.adapters.campaigns import CampaignRepository
from mailroom.adapters.sqs import TaskQueue
from mailroom.config import DispatcherSettings
from mailroom.logic.campaigns import dispatch_due
from mailroom.logic.fanout import resume_stalled
from mailroom.models import ScheduleInvocation, iso, utcnow
from mailroom.observability import log_metrics, logger, task_metrics, timed

settings = DispatcherSettings.from_env(os.environ)
clock = utcnow  # what "due" and "stalled" are judged by
campaigns = CampaignRepository(settings.campaigns_table)
fanout_queue = TaskQueue(settings.fanout_queue_url)
RECOVERY = "Recovery"  # the template's Recovery schedule


@logger.inject_lambda_context(log_event=True)
@log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    invocation = ScheduleInvocation.model_validate(event)
    # Due is judged at the time it runs: a retried firing an hour late also sends what
    # became due in that hour.
    now = clock()
    logger.set_correlation_id(invocation.execution_id or context.aws_request_id)
    with timed("newsletter_dispatch"):
        if invocation.schedule == RECOVERY:
            ran = ["resume_stalled"]
            result = {"started": [], "resumed": resume_stalled(campaigns, fanout_queue, now)}
        else:
            ran = ["start_due", "resume_stalled"]
            result = dispatch_due(campaigns, fanout_queue, settings.fanout_segments, now, logger.get_correlation_id())
    task_metrics.add("newsletter_dispatch", "TasksProcessed", 1)
    task_metrics.add("newsletter_dispatch", "CampaignsStarted", len(result["started"]))
    return {
        "at": iso(now),
        "schedule": invocation.schedule,
        "scheduled_time": invocation.scheduled_time and iso(invocation.scheduled_time),
        "ran": ran,
        **result,
    }
