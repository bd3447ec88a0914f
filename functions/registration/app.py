"""Public API: POST /subscriptions.

Thin handler: parse the request (mailroom.api), call the logic (mailroom.logic.registration),
answer JSON. Clients and settings are made once per execution environment.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailroom.adapters.dynamodb import SubscriberRepository
from mailroom.adapters.sqs import TaskQueue
from mailroom.api import install_error_handlers, parse_json_body, respond
from mailroom.config import RegistrationSettings
from mailroom.logic.registration import register
from mailroom.models import Registration
from mailroom.observability import MetricUnit, logger, metrics

settings = RegistrationSettings.from_env(os.environ)
subscribers = SubscriberRepository(settings.subscribers_table)
welcome_queue = TaskQueue(settings.welcome_queue_url)

app = APIGatewayRestResolver()


@app.post("/subscriptions")
def subscribe() -> Response[Any]:
    request = parse_json_body(app.current_event.raw_event, Registration)
    result = register(request, subscribers, welcome_queue, correlation_id=logger.get_correlation_id())
    metrics.add_metric(name="Registrations", unit=MetricUnit.Count, value=1)
    if result.created:
        metrics.add_metric(name="NewSubscribers", unit=MetricUnit.Count, value=1)
    return respond(202, {"id": result.subscriber_id, "status": result.status})


install_error_handlers(app)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
