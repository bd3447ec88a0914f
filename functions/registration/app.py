"""Public API: the subscriber lifecycle.

- ``POST /subscriptions``: register (double opt-in). 202 with the same answer whatever the
  address's state, so the API never reveals who is subscribed. Rate limited per source IP
  and per address (429 with Retry-After); a filled honeypot field gets the same 202 and
  nothing is done (docs/abuse.md).
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
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailroom.adapters.dynamodb import SubscriberRepository
from mailroom.adapters.ratelimit import FixedWindowCounter, RateLimited, RateLimitUnavailable, SignupLimits
from mailroom.adapters.secrets import LinkKeys
from mailroom.adapters.sqs import TaskQueue
from mailroom.api import install_error_handlers, parse_json_body, raw_body, respond, wants_json
from mailroom.config import RegistrationSettings
from mailroom.links import CONFIRM, UNSUBSCRIBE
from mailroom.logic.registration import Lifecycle, Registered
from mailroom.models import Registration, SubscriberStatus
from mailroom.observability import MetricUnit, log_metrics, logger, metrics
from mailroom.pages import page
from mailroom.tokens import TokenError

settings = RegistrationSettings.from_env(os.environ)
lifecycle = Lifecycle(
    subscribers=SubscriberRepository(settings.subscribers_table),
    welcome_queue=TaskQueue(settings.welcome_queue_url),
    confirmation_days=settings.confirmation_days,
)
link_keys = LinkKeys(settings.token_secret_arn)
signup_limits = SignupLimits(
    counter=FixedWindowCounter(settings.rate_limits_table),
    per_address=settings.signups_per_address_per_hour,
    per_source_ip=settings.signups_per_source_ip_per_hour,
)
MAX_FORM_BYTES = 4096

app = APIGatewayRestResolver()

ACCEPTED = {
    "status": "accepted",
    "message": "Thank you. If this address can subscribe, a mail with a confirmation link is on its way.",
}


def _source_ip(event: Mapping[str, Any]) -> str | None:
    """The client's IP as API Gateway saw it (requestContext.identity.sourceIp), never a
    header the client wrote (X-Forwarded-For)."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    source_ip = identity.get("sourceIp")
    return source_ip if isinstance(source_ip, str) else None


@app.post("/subscriptions")
def subscribe() -> Response[Any]:
    event = app.current_event.raw_event
    request = parse_json_body(event, Registration)
    if request.website and request.website.strip():
        # A bot filled the field people never see: the same answer, and nothing done.
        metrics.add_metric(name="HoneypotHits", unit=MetricUnit.Count, value=1)
        logger.info("honeypot filled: nothing done")
        return respond(202, ACCEPTED)
    charge = signup_limits.charge(_source_ip(event), request.email)
    try:
        result = lifecycle.register(request, correlation_id=logger.get_correlation_id())
    except Exception:
        signup_limits.refund(charge)  # answered 503: the client's retry must not cost twice
        raise
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


def _retry_later(status: int, code: str, message: str, retry_after: int) -> Response[Any]:
    answer = respond(status, {"error": {"code": code, "message": message}})
    answer.headers["Retry-After"] = str(retry_after)
    return answer


@app.exception_handler(RateLimited)  # type: ignore[untyped-decorator]
def rate_limited(error: RateLimited) -> Response[Any]:
    # The same answer for both budgets (and both end with the hour), and for every
    # address's state: it tells nobody whether an address is subscribed.
    metrics.add_metric(name="RejectedRequests", unit=MetricUnit.Count, value=1)
    with single_metric(
        name="RateLimited",
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions={**metrics.default_dimensions, "service": metrics.service or "registration"},
    ) as metric:
        metric.add_dimension(name="kind", value=error.kind.value)
    logger.info("sign-up rate limited", extra={"kind": error.kind.value, "retry_after": error.retry_after})
    minutes = max(1, round(error.retry_after / 60))
    return _retry_later(
        429,
        "rate_limited",
        f"Too many sign-ups. Please try again in {minutes} minute{'s' if minutes != 1 else ''}.",
        error.retry_after,
    )


@app.exception_handler(RateLimitUnavailable)  # type: ignore[untyped-decorator]
def rate_limits_unavailable(error: RateLimitUnavailable) -> Response[Any]:
    # Fail closed, and say so: the table is throttled when a flood is on (docs/abuse.md).
    logger.warning("rate limits table unavailable: sign-up refused", extra={"reason": error.reason})
    metrics.add_metric(name="RateLimitErrors", unit=MetricUnit.Count, value=1)
    return _retry_later(
        503, "unavailable", "Temporarily unavailable; please try again in a few seconds.", error.retry_after
    )


@app.exception_handler(InvalidLink)  # type: ignore[untyped-decorator]
def invalid_link(error: InvalidLink) -> Response[Any]:
    metrics.add_metric(name="InvalidLinks", unit=MetricUnit.Count, value=1)
    return _answer(400, "invalid_link", "Invalid link", "This link is invalid or has expired.")


install_error_handlers(app)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
