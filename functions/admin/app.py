"""Admin API: campaigns under /admin/campaigns, subscribers under /admin/subscribers, dead
letters under /admin/dead-letters. Only admins: API Gateway's Cognito authorizer verifies
the ID token, and every route first checks that its user is in the admins group
(mailroom.authz: 401 without a verified identity, 403 outside the group).

Thin handler: parse and validate (mailroom.api, mailroom.models), call the logic
(mailroom.logic.campaigns), answer JSON. Unknown ids are 404, a request that does not fit
the campaign's state is 409, bad input is 400/413/415 naming the field.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from typing import Any
from urllib.parse import urlencode

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailroom.adapters.audience import PersonalRecords, SubscriberDirectory
from mailroom.adapters.campaigns import CampaignRepository, InvalidCursor, decode_cursor, encode_cursor
from mailroom.adapters.deadletters import DeadLetterOffice, DeadLetterQueue
from mailroom.adapters.dynamodb import SubscriberRepository
from mailroom.adapters.monitoring import CloudWatchMetrics
from mailroom.adapters.parameters import PublicUrl
from mailroom.adapters.results import CampaignResults
from mailroom.adapters.secrets import LinkKeys
from mailroom.adapters.ses import Mailer
from mailroom.adapters.sqs import TaskQueue
from mailroom.api import ApiError, header, install_error_handlers, parse_json_body, query_int, respond
from mailroom.authz import admin_of
from mailroom.config import AdminSettings
from mailroom.errors import Conflict, ContentError, NotFound, PermanentSendError, RetryableSendError, SendError
from mailroom.links import Links
from mailroom.logic.audience import ImportRejected, erase, find, import_rows, parse_csv, to_csv
from mailroom.logic.campaigns import CampaignAdmin, content_of
from mailroom.logic.delivery import Sender
from mailroom.logic.reporting import report
from mailroom.models import (
    CampaignCreate,
    CampaignUpdate,
    DeliveryStatus,
    DraftPreviewRequest,
    PreviewRequest,
    RedriveRequest,
    SubscriberStatus,
    TestSendRequest,
    utcnow,
)
from mailroom.observability import MetricUnit, log_metrics, logger, metrics
from mailroom.worker import Budget

settings = AdminSettings.from_env(os.environ)
campaigns = CampaignRepository(settings.campaigns_table)
results = CampaignResults(settings.results_table, settings.campaigns_table)
admin = CampaignAdmin(
    campaigns=campaigns,
    fanout_queue=TaskQueue(settings.fanout_queue_url),
    subscribers=SubscriberRepository(settings.subscribers_table),
    mailer=Mailer(configuration_set=settings.configuration_set),
    sender=Sender(settings.sender_address, settings.sender_name),
    links=Links(
        PublicUrl(settings.public_url, settings.public_url_parameter), LinkKeys(settings.token_secret_arn).tokens
    ),
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
# An import starts no row with less than this left: room to queue the confirmations of what
# was written (in parallel: about a second for 5,000 rows on AWS) and to answer.
IMPORT_MARGIN_MS = 5_000
RECIPIENT_STATUSES = tuple(status.value for status in DeliveryStatus)
# Room for a campaign's content (at most 100 KiB) escaped into JSON.
MAX_BODY_BYTES = 256 * 1024
directory = SubscriberDirectory(settings.subscribers_table)
personal_records = PersonalRecords(settings.results_table)
welcome_queue = TaskQueue(settings.welcome_queue_url)
SUBSCRIBER_STATUSES = tuple(status.value for status in SubscriberStatus)
task_metrics_source = CloudWatchMetrics(metrics.namespace or "Mailroom")
SUBSCRIBER_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
CAMPAIGN_ID = re.compile(r"[0-9a-f]{32}")
MAX_IMPORT_BYTES = 1024 * 1024
MAX_QUERY_LENGTH = 254
# An export page: 5,000 rows of at most ~1 KB stay far below Lambda's 6 MB response limit.
EXPORT_ROWS = 5_000

app = APIGatewayRestResolver()


def admins_only(resolver: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """Every route: the caller must be a signed-in admin (before any input is read)."""
    admin_of(resolver.current_event.raw_event, settings.admin_group)
    # a campaign id is 32 hex digits: anything else names no campaign, and never reaches
    # DynamoDB (a key over 2,048 bytes would be its ValidationException, a 503 here)
    campaign_id = (resolver.current_event.path_parameters or {}).get("id")
    on_a_campaign = resolver.current_event.resource.startswith("/admin/campaigns/") and campaign_id is not None
    if on_a_campaign and not CAMPAIGN_ID.fullmatch(campaign_id or ""):
        raise NotFound("No such campaign.")
    return next_middleware(resolver)


app.use(middlewares=[admins_only])


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


def _subscriber_status(params: dict[str, str]) -> SubscriberStatus | None:
    status = params.get("status") or None
    if status is not None and status not in SUBSCRIBER_STATUSES:
        raise ApiError(400, "invalid_query", f"status must be one of {', '.join(SUBSCRIBER_STATUSES)}.", field="status")
    return SubscriberStatus(status) if status else None


def _start_after() -> str | None:
    """The address a subscribers cursor goes on after."""
    key = decode_cursor(_cursor(), ("email",))
    return str(key["email"]["S"]) if key else None


def _subscribers_cursor(email: str | None) -> str | None:
    return encode_cursor({"email": {"S": email}}) if email else None


def _subscriber_id(subscriber_id: str) -> str:
    if not SUBSCRIBER_ID.fullmatch(subscriber_id):
        raise ApiError(400, "invalid_path", "A subscriber id is 1 to 64 letters, digits or '-'.", field="id")
    return subscriber_id


def _csv_body() -> str:
    """The request's CSV (UTF-8, a BOM tolerated), or ApiError 415/413/400."""
    event = app.current_event.raw_event
    content_type, _, parameters = (header(event.get("headers"), "content-type") or "").partition(";")
    if content_type.strip().lower() != "text/csv":
        raise ApiError(
            415, "unsupported_media_type", f"Content-Type must be text/csv, not {content_type.strip() or 'missing'}."
        )
    charset = re.search(r"charset\s*=\s*\"?([\w-]+)", parameters, re.IGNORECASE)
    if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", "The CSV must be UTF-8 (charset=utf-8).")
    body = event.get("body") or ""
    try:
        raw = (
            base64.b64decode(body, validate=True)
            if event.get("isBase64Encoded")
            else body.encode("utf-8", "surrogatepass")
        )
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ApiError(400, "invalid_body", "The body could not be read.") from None
    if len(raw) > MAX_IMPORT_BYTES:
        raise ApiError(413, "body_too_large", f"The file is {len(raw)} bytes; at most {MAX_IMPORT_BYTES} are accepted.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_encoding", "The file is not valid UTF-8.") from None


@app.get("/admin/subscribers")
def list_subscribers() -> Response[Any]:
    """Subscribers in table order (a scan), filtered by status and by ``q`` (part of the
    address or the name, any case)."""
    params = app.current_event.query_string_parameters or {}
    status = _subscriber_status(params)
    q = (params.get("q") or "").strip() or None
    if q is not None and len(q) > MAX_QUERY_LENGTH:
        raise ApiError(400, "invalid_query", f"q must be at most {MAX_QUERY_LENGTH} characters.", field="q")
    limit = query_int(params, "limit", 50, 1, 200)
    items, last = find(directory, status, q, limit, _start_after())
    return respond(200, {"items": [s.public() for s in items], "next_cursor": _subscribers_cursor(last)})


@app.post("/admin/subscribers/import")
def import_subscribers() -> Response[Any]:
    params = app.current_event.query_string_parameters or {}
    flag = (params.get("confirmed") or "false").lower()
    if flag not in ("true", "false"):
        raise ApiError(400, "invalid_query", "confirmed must be true or false.", field="confirmed")
    text = _csv_body()
    try:
        parsed = parse_csv(text)
    except ImportRejected as exc:
        raise ApiError(400, exc.code, exc.message, field="body") from None
    report = import_rows(
        parsed,
        flag == "true",
        directory,
        welcome_queue,
        utcnow(),
        settings.confirmation_days,
        correlation_id=logger.get_correlation_id(),
        # stop in time to answer: the rows not started are reported (import the file again)
        budget=Budget.of(app.lambda_context, IMPORT_MARGIN_MS),
    )
    logger.info(
        "subscribers imported",
        extra={
            "imported": len(report.imported),
            "rejected": len(report.rejected),
            "resumed": len(report.resumed),
            "failed": len(report.failed),
            "not_attempted": len(report.not_attempted),
        },
    )
    metrics.add_metric(name="SubscribersImported", unit=MetricUnit.Count, value=len(report.imported))
    return respond(200, report.public())


@app.get("/admin/subscribers/export")
def export_subscribers() -> Response[Any]:
    """A page of CSV (at most EXPORT_ROWS rows); the next page's cursor in ``X-Next-Cursor``
    and a ``Link: <?...>; rel="next"`` header."""
    params = app.current_event.query_string_parameters or {}
    status = _subscriber_status(params)
    items, last = find(directory, status, None, EXPORT_ROWS, _start_after(), max_reads=20, read_size=1000)
    headers = {"Cache-Control": "no-store", "Content-Disposition": 'attachment; filename="subscribers.csv"'}
    cursor = _subscribers_cursor(last)
    if cursor:
        query = ({"status": status.value} if status else {}) | {"cursor": cursor}
        headers |= {"X-Next-Cursor": cursor, "Link": f'<?{urlencode(query)}>; rel="next"'}
    return Response(status_code=200, content_type="text/csv; charset=utf-8", body=to_csv(items), headers=headers)


@app.get("/admin/subscribers/<subscriber_id>")
def get_subscriber(subscriber_id: str) -> Response[Any]:
    subscriber = directory.find_by_id(_subscriber_id(subscriber_id))
    if subscriber is None:
        raise NotFound(f"No subscriber {subscriber_id}.")
    return respond(200, subscriber.public())


@app.delete("/admin/subscribers/<subscriber_id>")
def erase_subscriber(subscriber_id: str) -> Response[Any]:
    """Erase a subscriber's personal data (GDPR). Repeatable: a call that finds neither the
    subscriber nor anything of theirs left is a 404."""
    erasure = erase(_subscriber_id(subscriber_id), directory, personal_records, campaigns, results, utcnow())
    if not erasure.anything:
        raise NotFound(f"No subscriber {subscriber_id}, and no personal data of theirs left.")
    metrics.add_metric(name="SubscribersErased", unit=MetricUnit.Count, value=1)
    return respond(200, erasure.public())


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


@app.get("/admin/metrics")
def get_metrics() -> Response[Any]:
    """The monitoring figures: tasks, mails, processing times and errors by type for the last
    hour and day (from the functions' metrics in CloudWatch), and recent campaigns' progress."""
    return respond(200, report(task_metrics_source, campaigns, utcnow()))


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
@log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="AdminRequests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)
