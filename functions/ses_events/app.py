"""SES events: the configuration set's delivery, bounce and complaint events, a batch at a time.

EventBridge's rule puts every event on SesEventsQueue (SQS); its event source mapping hands
the function batches of up to 100, each message's body one EventBridge event. Each event is
recorded on its mail's result record (campaign counters ``delivered``, ``bounced``,
``complained`` counted once per record), a hard bounce or a complaint suppresses the
subscriber, a soft bounce counts towards its ``soft_bounces`` (see ``logic.feedback``).

* A message that is not an SES event Mailroom can read is logged and dropped: retrying
  cannot fix it.
* An event whose record is still being sent, or that failed on an AWS error, is that
  message's failure alone (``batchItemFailures``): SQS brings it again after the visibility
  timeout, and after 5 receives moves it to the dead-letter queue. A record still being sent
  is usually a moment from ready: its message comes again sooner (``NOT_READY_DELAYS``, by
  receive), and the delays add up to more than a stale claim's 15 minutes.

Addresses are never logged: no event is logged as a whole, and there is one summary line
per batch, no line per event.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

from aws_lambda_powertools.metrics import single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailroom.adapters.aws import sqs_client
from mailroom.adapters.feedback import FeedbackLedger, RecordNotReady
from mailroom.adapters.sqs import come_again
from mailroom.batch import SqsRecord
from mailroom.config import SesEventsSettings
from mailroom.logic.feedback import (
    BOUNCE,
    COMPLAINT,
    DELIVERY,
    Feedback,
    InvalidFeedback,
    SesEvent,
    apply_batch,
    parse_event,
)
from mailroom.models import utcnow
from mailroom.observability import MetricUnit, log_metrics, logger, metrics, task_metrics

settings = SesEventsSettings.from_env(os.environ)
store = FeedbackLedger(settings.results_table, settings.subscribers_table, settings.campaigns_table)
clock = utcnow  # when a subscriber is suppressed
TASK_TYPE = "ses_event"
# Seconds until a not-ready event's message comes again, by its receive (1st, 2nd, ...); the
# 5th failure moves it to the dead-letter queue. 15 + 60 + 240 + 900 s outlast a stale claim
# (logic.delivery.STALE_CLAIM_SECONDS: 900), after which another attempt resolves the record.
NOT_READY_DELAYS = (15, 60, 240, 900)


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


def read(record: Any) -> SesEvent:
    """The SES event in one SQS message (its body: the EventBridge event, as JSON)."""
    if not isinstance(record, dict) or not isinstance(record.get("body"), str):
        raise InvalidFeedback("not an SQS message with a body")
    try:
        body = json.loads(record["body"])
    except ValueError:
        raise InvalidFeedback("the message body is not JSON") from None
    return parse_event(body)


@logger.inject_lambda_context
@log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records") if isinstance(event, dict) else None
    messages: list[tuple[str, SesEvent]] = []
    receipts: dict[str, tuple[str, int]] = {}  # message id: its receipt handle and receive count
    ignored = 0
    for record in records if isinstance(records, list) else []:
        try:
            messages.append((str(record["messageId"]), read(record)))
            receipts[str(record["messageId"])] = (
                str(record.get("receiptHandle", "")),
                SqsRecord.of(record).receive_count,
            )
        except (InvalidFeedback, KeyError, TypeError) as exc:
            # retrying cannot fix it: dropped (the reason names a field, never a value)
            reason = str(exc) if isinstance(exc, InvalidFeedback) else "an SQS message without its messageId"
            logger.warning("not an SES event Mailroom can read: ignored", extra={"reason": reason})
            metrics.add_metric(name="SesEventsIgnored", unit=MetricUnit.Count, value=1)
            ignored += 1

    started = time.perf_counter()
    results = apply_batch([ses_event for _, ses_event in messages], store, clock) if messages else []
    # ProcessingTime per event: the batch's time shared among its events (they are recorded together)
    per_event_ms = (time.perf_counter() - started) * 1000 / max(1, len(messages))

    failures: list[str] = []
    not_ready: list[tuple[str, int]] = []
    outcomes: Counter[str] = Counter()
    for (message_id, ses_event), result in zip(messages, results, strict=True):
        task_metrics.add(TASK_TYPE, "ProcessingTime", per_event_ms)
        if isinstance(result, RecordNotReady):
            # no error: the record is still being sent; the message comes again after the visibility timeout
            task_metrics.add(TASK_TYPE, "TasksRetried", 1)
            outcomes["not ready"] += 1
            failures.append(message_id)
            handle, receives = receipts[message_id]
            if handle:
                not_ready.append((handle, NOT_READY_DELAYS[min(receives, len(NOT_READY_DELAYS)) - 1]))
        elif isinstance(result, Exception):
            task_metrics.add(TASK_TYPE, "TaskErrors", 1)
            outcomes["error"] += 1
            failures.append(message_id)
            logger.error(
                "an SES event could not be recorded: its message comes again",
                extra={"event_id": ses_event.id, "error": type(result).__name__, "reason": str(result)},
            )
        else:
            count(result)
            outcomes[result.outcome] += 1
    if not_ready and come_again(sqs_client(), settings.ses_events_queue_url, not_ready):
        logger.warning("some not-ready events come again after the visibility timeout, not sooner")
    logger.info(
        "task done",
        extra={
            "task_type": TASK_TYPE,
            "events": len(messages),
            "ignored": ignored,
            "outcomes": dict(outcomes),
            "retried": len(failures),
        },
    )
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}
