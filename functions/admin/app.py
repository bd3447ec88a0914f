"""Admin API: campaigns under /admin/campaigns, dead letters under /admin/dead-letters
(authentication arrives with the security work).

Thin handler: parse and validate (mailroom.api, mailroom.models), call the logic
(mailroom.logic.campaigns), answer JSON. Unknown ids are 404, a request that does not fit
the campaign's state is 409, bad input is 400/413/415 naming the field.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailroom.adapters.campaigns import CampaignRepository, InvalidCursor
from mailroom.adapters.deadletters import DeadLetterOffice, DeadLetterQueue
from mailroom.adapters.dynamodb import SubscriberRepository
from mailroom.adapters.results import CampaignResults
from mailroom.adapters.ses import Mailer
from mailroom.adapters.sqs import TaskQueue
from mailroom.api import ApiError, install_error_handlers, parse_json_body, query_int, respond
from mailroom.config import AdminSettings
from mailroom.content import ContentError
from mailroom.errors import Conflict, NotFound, PermanentSendError, RetryableSendError, SendError
from mailroom.logic.campaigns import CampaignAdmin, content_of
from mailroom.logic.delivery import Sender
from mailroom.models import (
    CampaignCreate,
    CampaignUpdate,
    DeliveryStatus,
    DraftPreviewRequest,
    PreviewRequest,
    RedriveRequest,
    TestSendRequest,
)
from mailroom.observability import MetricUnit, logger, metrics
from mailroom.worker import Budget

settings = AdminSettings.from_env(os.environ)
campaigns = CampaignRepository(settings.campaigns_table)
results = CampaignResults(settings.results_table, settings.campaigns_table)
admin = CampaignAdmin(
    campaigns=campaigns,
    fanout_queue=TaskQueue(settings.fanout_queue_url),
    subscribers=SubscriberRepository(settings.subscribers_table),
    mailer=Mailer(),
    sender=Sender(settings.sender_address, settings.sender_name),
    public_url=settings.public_url,
    segments=settings.fanout_segments,
)
dead_letters = DeadLetterOffice(
    [
        DeadLetterQueue("welcome", settings.welcome_dead_letter_queue_url, settings.welcome_queue_url),
        DeadLetterQueue("newsletter", settings.newsletter_dead_letter_queue_url, settings.newsletter_queue_url),
        DeadLetterQueue("fanout", settings.fanout_dead_letter_queue_url, settings.fanout_queue_url),
    ]
)
DEAD_LETTER_QUEUES = tuple(dead_letters.queues)
REDRIVE_MARGIN_MS = 5_000
RECIPIENT_STATUSES = tuple(status.value for status in DeliveryStatus)
# Room for a campaign's content (at most 100 KiB) escaped into JSON.
MAX_BODY_BYTES = 256 * 1024

app = APIGatewayRestResolver()


def _body(model: type[Any]) -> Any:
    return parse_json_body(app.current_event.raw_event, model, max_bytes=MAX_BODY_BYTES)


def _optional_body(model: type[Any]) -> Any:
    """Like _body, but an absent body means an empty object."""
    if not (app.current_event.body or "").strip():
        return model()
    return _body(model)


def _cursor() -> str | None:
    return (app.current_event.query_string_parameters or {}).get("cursor") or None


@app.post("/admin/campaigns")
def create_campaign() -> Response[Any]:
    campaign = admin.create(_body(CampaignCreate))
    metrics.add_metric(name="CampaignsCreated", unit=MetricUnit.Count, value=1)
    return respond(201, campaign.public())


@app.get("/admin/campaigns")
def list_campaigns() -> Response[Any]:
    limit = query_int(app.current_event.query_string_parameters, "limit", 25, 1, 100)
    items, cursor = campaigns.page(limit, _cursor())
    return respond(200, {"items": [campaign.public() for campaign in items], "next_cursor": cursor})


@app.post("/admin/campaigns/preview")
def preview_draft() -> Response[Any]:
    request = _body(DraftPreviewRequest)
    return respond(200, admin.preview(content_of(request), request))


@app.get("/admin/campaigns/<campaign_id>")
def get_campaign(campaign_id: str) -> Response[Any]:
    return respond(200, admin.get(campaign_id).public())


@app.patch("/admin/campaigns/<campaign_id>")
def update_campaign(campaign_id: str) -> Response[Any]:
    return respond(200, admin.update(campaign_id, _body(CampaignUpdate)).public())


@app.post("/admin/campaigns/<campaign_id>/send")
def send_campaign(campaign_id: str) -> Response[Any]:
    campaign = admin.send_now(campaign_id, correlation_id=logger.get_correlation_id())
    metrics.add_metric(name="CampaignsStarted", unit=MetricUnit.Count, value=1)
    return respond(202, campaign.public())


@app.post("/admin/campaigns/<campaign_id>/cancel")
def cancel_campaign(campaign_id: str) -> Response[Any]:
    return respond(200, admin.cancel(campaign_id).public())


@app.post("/admin/campaigns/<campaign_id>/preview")
def preview_campaign(campaign_id: str) -> Response[Any]:
    request = _optional_body(PreviewRequest)
    return respond(200, admin.preview(content_of(admin.get(campaign_id)), request))


@app.post("/admin/campaigns/<campaign_id>/test")
def test_send(campaign_id: str) -> Response[Any]:
    request = _body(TestSendRequest)
    try:
        sent = admin.test_send(campaign_id, request)
    except PermanentSendError as exc:
        raise ApiError(422, "rejected", f"SES refused the test mail: {exc.message}", field="email") from None
    except (RetryableSendError, SendError) as exc:
        logger.warning("test send failed", extra={"error": str(exc)})
        return respond(503, {"error": {"code": "unavailable", "message": f"SES did not send it: {exc.code}."}})
    return respond(202, sent)


@app.get("/admin/campaigns/<campaign_id>/recipients")
def recipients(campaign_id: str) -> Response[Any]:
    params = app.current_event.query_string_parameters or {}
    status = params.get("status") or None
    if status is not None and status not in RECIPIENT_STATUSES:
        raise ApiError(400, "invalid_query", f"status must be one of {', '.join(RECIPIENT_STATUSES)}.", field="status")
    limit = query_int(params, "limit", 50, 1, 500)
    admin.get(campaign_id)
    items, cursor = results.recipients(campaign_id, DeliveryStatus(status) if status else None, limit, _cursor())
    return respond(200, {"items": items, "next_cursor": cursor})


@app.get("/admin/dead-letters")
def list_dead_letters() -> Response[Any]:
    """How many tasks each dead-letter queue holds, and up to ``limit`` of them with their reasons."""
    params = app.current_event.query_string_parameters or {}
    queue = params.get("queue") or None
    if queue is not None and queue not in DEAD_LETTER_QUEUES:
        raise ApiError(400, "invalid_query", f"queue must be one of {', '.join(DEAD_LETTER_QUEUES)}.", field="queue")
    limit = query_int(params, "limit", 50, 1, 100)
    return respond(200, {"counts": dead_letters.counts(), "items": dead_letters.peek(queue, limit)})


@app.post("/admin/dead-letters/redrive")
def redrive_dead_letters() -> Response[Any]:
    """Move dead-lettered tasks back to their queues (after the cause is fixed); a redriven
    task mails nobody twice (the workers' claims)."""
    request = _optional_body(RedriveRequest)
    # stop in time to answer: what is left is reported as remaining (call again)
    deadline = Budget.of(app.lambda_context, REDRIVE_MARGIN_MS).deadline
    moved = dead_letters.redrive(request.queue, request.limit, deadline)
    logger.info("dead letters redriven", extra={"moved": moved})
    metrics.add_metric(name="TasksRedriven", unit=MetricUnit.Count, value=sum(moved.values()))
    return respond(200, {"redriven": moved, "remaining": dead_letters.counts()})


@app.exception_handler(NotFound)  # type: ignore[untyped-decorator]
def not_found(error: NotFound) -> Response[Any]:
    return respond(404, {"error": {"code": "not_found", "message": str(error)}})


@app.exception_handler(Conflict)  # type: ignore[untyped-decorator]
def conflict(error: Conflict) -> Response[Any]:
    return respond(409, {"error": {"code": "conflict", "message": str(error)}})


@app.exception_handler(ContentError)  # type: ignore[untyped-decorator]
def bad_content(error: ContentError) -> Response[Any]:
    return respond(400, ApiError(400, "invalid_field", str(error), field=error.field).body())


@app.exception_handler(InvalidCursor)  # type: ignore[untyped-decorator]
def bad_cursor(error: InvalidCursor) -> Response[Any]:
    return respond(400, ApiError(400, "invalid_query", f"cursor {error}.", field="cursor").body())


install_error_handlers(app)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="AdminRequests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)
