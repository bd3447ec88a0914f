"""Public API: the subscriber lifecycle.

- ``POST /subscriptions``: register (double opt-in). 202 with the same answer whatever the
  address's state, so the API never reveals who is subscribed.
- ``GET /subscriptions/confirm?token=``: confirm; a page, or JSON for ``Accept: application/json``.
- ``GET /unsubscribe?token=``: a page with one button (GET never unsubscribes: mail scanners
  follow links); ``POST /unsubscribe?token=`` (RFC 8058 one-click: body
  ``List-Unsubscribe=One-Click``) unsubscribes at once and answers 200.

A malformed, forged, altered or expired token is 400 ``invalid_link``, the same message for
every reason (the reason goes to the log). Thin handler: parsing in mailroom.api, the
lifecycle in mailroom.logic.registration, links in mailroom.links.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailroom.adapters.dynamodb import SubscriberRepository
from mailroom.adapters.secrets import LinkKeys
from mailroom.adapters.sqs import TaskQueue
from mailroom.api import install_error_handlers, parse_json_body, raw_body, respond, wants_json
from mailroom.config import RegistrationSettings
from mailroom.links import CONFIRM, UNSUBSCRIBE
from mailroom.logic.registration import Lifecycle, Registered
from mailroom.models import Registration, SubscriberStatus
from mailroom.observability import MetricUnit, logger, metrics
from mailroom.pages import page
from mailroom.tokens import TokenError

settings = RegistrationSettings.from_env(os.environ)
lifecycle = Lifecycle(
    subscribers=SubscriberRepository(settings.subscribers_table),
    welcome_queue=TaskQueue(settings.welcome_queue_url),
    confirmation_days=settings.confirmation_days,
)
link_keys = LinkKeys(settings.token_secret_arn)
MAX_FORM_BYTES = 4096

app = APIGatewayRestResolver()

ACCEPTED = {
    "status": "accepted",
    "message": "Thank you. If this address can subscribe, a mail with a confirmation link is on its way.",
}


@app.post("/subscriptions")
def subscribe() -> Response[Any]:
    request = parse_json_body(app.current_event.raw_event, Registration)
    result = lifecycle.register(request, correlation_id=logger.get_correlation_id())
    metrics.add_metric(name="Registrations", unit=MetricUnit.Count, value=1)
    if result is Registered.NEW:
        metrics.add_metric(name="NewSubscribers", unit=MetricUnit.Count, value=1)
    logger.info("registration", extra={"outcome": result.value})
    return respond(202, ACCEPTED)


class InvalidLink(Exception):
    """A link's token is missing, malformed, forged, altered, for another purpose or expired."""


def _subscriber_id(purpose: str) -> str:
    token = (app.current_event.query_string_parameters or {}).get("token") or ""
    if not token:
        raise InvalidLink("no token")
    try:
        return link_keys.tokens().verify(purpose, token).subscriber_id
    except TokenError as error:
        logger.info("invalid link", extra={"purpose": purpose, "reason": error.reason})
        raise InvalidLink(error.reason) from None


def _answer(status: int, code: str, title: str, message: str, button: str | None = None) -> Response[Any]:
    if wants_json(app.current_event.headers):
        body: dict[str, Any] = (
            {"status": code, "message": message} if status < 400 else {"error": {"code": code, "message": message}}
        )
        return respond(status, body)
    return page(status, title, message, settings.sender_name, button)


@app.get("/subscriptions/confirm")
def confirm() -> Response[Any]:
    subscriber = lifecycle.confirm(_subscriber_id(CONFIRM), correlation_id=logger.get_correlation_id())
    if subscriber is None:
        metrics.add_metric(name="InvalidLinks", unit=MetricUnit.Count, value=1)
        return _answer(404, "not_found", "Link expired", "This confirmation link has expired. Please sign up again.")
    if subscriber.status is SubscriberStatus.SUBSCRIBED:
        metrics.add_metric(name="Confirmations", unit=MetricUnit.Count, value=1)
        return _answer(200, "confirmed", "Subscription confirmed", "Thank you: your subscription is confirmed.")
    # unsubscribed or suppressed since: a confirmation link does not undo that
    return _answer(
        200, subscriber.status.value, "Not subscribed", "This address is not subscribed; nothing was changed."
    )


@app.get("/unsubscribe")
def unsubscribe_page() -> Response[Any]:
    _subscriber_id(UNSUBSCRIBE)  # an invalid link shows the error, not a button
    return _answer(
        200,
        "confirm_unsubscribe",
        "Unsubscribe",
        "Press the button to receive no more mails from this newsletter.",
        button="Unsubscribe",
    )


@app.post("/unsubscribe")
def unsubscribe() -> Response[Any]:
    # RFC 8058: the body is List-Unsubscribe=One-Click; nothing else is asked for, and a
    # body that says something else unsubscribes too (the signed link is the authority).
    raw_body(app.current_event.raw_event, max_bytes=MAX_FORM_BYTES)
    changed = lifecycle.unsubscribe(_subscriber_id(UNSUBSCRIBE))
    if changed:
        metrics.add_metric(name="Unsubscribes", unit=MetricUnit.Count, value=1)
    return _answer(200, "unsubscribed", "Unsubscribed", "You are unsubscribed and will receive no more newsletters.")


@app.exception_handler(InvalidLink)  # type: ignore[untyped-decorator]
def invalid_link(error: InvalidLink) -> Response[Any]:
    metrics.add_metric(name="InvalidLinks", unit=MetricUnit.Count, value=1)
    return _answer(400, "invalid_link", "Invalid link", "This link is invalid or has expired.")


install_error_handlers(app)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
