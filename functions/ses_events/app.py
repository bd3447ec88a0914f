"""SES events: the configuration set's delivery, bounce and complaint events, from EventBridge.

One event per invocation. Each is recorded on its mail's result record (campaign counters
``delivered``, ``bounced``, ``complained`` counted once per record), a hard bounce or a
complaint suppresses the subscriber, a soft bounce counts towards its ``soft_bounces``
(see ``logic.feedback``). An event that is not an SES event Mailroom can read is logged
and ignored: retrying cannot fix it. AWS errors, and an event whose record is still being
sent, raise: the invocation is retried (Lambda's asynchronous retries).

Addresses are never logged: the event is not logged as a whole.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.metrics import single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailroom.adapters.feedback import FeedbackLedger, RecordNotReady
from mailroom.config import SesEventsSettings
from mailroom.logic.feedback import BOUNCE, COMPLAINT, DELIVERY, Feedback, InvalidFeedback, apply_feedback, parse_event
from mailroom.models import utcnow
from mailroom.observability import MetricUnit, log_metrics, logger, metrics, task_metrics, timed

settings = SesEventsSettings.from_env(os.environ)
store = FeedbackLedger(settings.results_table, settings.subscribers_table, settings.campaigns_table)
clock = utcnow  # when a subscriber is suppressed
TASK_TYPE = "ses_event"


def count(feedback: Feedback) -> None:
    """Metrics of an event seen for the first time (a repeated delivery counts nothing)."""
    task_metrics.add(TASK_TYPE, "TasksProcessed", 1)
    if feedback.suppressed:
        task_metrics.add(TASK_TYPE, "SubscribersSuppressed", feedback.suppressed)
    if not feedback.new:
        return
    if feedback.event_type == DELIVERY:
        task_metrics.add(TASK_TYPE, "SesDeliveries", 1)
    elif feedback.event_type == COMPLAINT:
        task_metrics.add(TASK_TYPE, "SesComplaints", 1)
    elif feedback.event_type == BOUNCE and feedback.bounce is not None:
        # one more dimension, the bounce type: its own EMF object
        dimensions = {"task_type": TASK_TYPE, "bounce": feedback.bounce}
        with single_metric(name="SesBounces", unit=MetricUnit.Count, value=1, default_dimensions=dimensions) as metric:
            metric.add_dimension(name="service", value=metrics.service or "ses-events")


@logger.inject_lambda_context
@log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        ses_event = parse_event(event)
    except InvalidFeedback as exc:
        logger.warning("not an SES event Mailroom can read: ignored", extra={"reason": str(exc)})
        metrics.add_metric(name="SesEventsIgnored", unit=MetricUnit.Count, value=1)
        return {"outcome": "malformed", "reason": str(exc)}
    logger.set_correlation_id(ses_event.id or context.aws_request_id)
    try:
        # a record still being sent is no error: the event comes again (Lambda's retry)
        with timed(TASK_TYPE, retry=(RecordNotReady,)):
            feedback = apply_feedback(ses_event, store, clock)
    except RecordNotReady as exc:
        logger.warning(
            "the mail's record is still being sent: failing, so that the event comes again", extra={"reason": str(exc)}
        )
        raise
    count(feedback)
    return feedback.summary()
