"""Public API: POST /subscriptions.

Thin handler: parse the request (mailroom.api), call the logic (mailroom.logic.registration),
answer JSON. Clients and settings are made once per execution environment.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailroom.adapters.dynamodb import SubscriberRepository
from mailroom.adapters.sqs import TaskQueue
from mailroom.api import ApiError, parse_json_body
from mailroom.config import RegistrationSettings
from mailroom.logic.registration import register
from mailroom.models import Registration
from mailroom.observability import MetricUnit, logger, metrics

settings = RegistrationSettings.from_env(os.environ)
subscribers = SubscriberRepository(settings.subscribers_table)
welcome_queue = TaskQueue(settings.welcome_queue_url)

app = APIGatewayRestResolver()


def _json(status: int, body: dict[str, Any]) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers={"Cache-Control": "no-store"},
    )


@app.post("/subscriptions")
def subscribe() -> Response[Any]:
    request = parse_json_body(app.current_event.raw_event, Registration)
    result = register(request, subscribers, welcome_queue, correlation_id=logger.get_correlation_id())
    metrics.add_metric(name="Registrations", unit=MetricUnit.Count, value=1)
    if result.created:
        metrics.add_metric(name="NewSubscribers", unit=MetricUnit.Count, value=1)
    return _json(202, {"id": result.subscriber_id, "status": result.status})


@app.exception_handler(ApiError)  # type: ignore[untyped-decorator]
def bad_request(error: ApiError) -> Response[Any]:
    metrics.add_metric(name="RejectedRequests", unit=MetricUnit.Count, value=1)
    logger.info("request rejected", extra={"status": error.status, "code": error.code, "field": error.field})
    return _json(error.status, error.body())


@app.not_found
def not_found(error: Exception) -> Response[Any]:
    path = app.current_event.path
    metrics.add_metric(name="RejectedRequests", unit=MetricUnit.Count, value=1)
    return _json(404, {"error": {"code": "not_found", "message": f"No route {app.current_event.http_method} {path}."}})


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def unavailable(error: Exception) -> Response[Any]:
    # A fault of ours or of AWS (after botocore's retries), never of the input: nothing was
    # half-written (registration undoes a subscriber whose welcome task was not queued).
    logger.exception("request failed")
    metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
    return _json(503, {"error": {"code": "unavailable", "message": "Temporarily unavailable; please try again."}})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
