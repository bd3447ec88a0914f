"""Reading API Gateway proxy requests: content type, size, JSON, the model; JSON errors.

Bad input never reaches the logic: it becomes an ApiError with a 4xx status and a JSON
body that names the problem (and the field), never a stack trace.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from pydantic import BaseModel, ValidationError

from mailroom.observability import MetricUnit, logger, metrics

MAX_BODY_BYTES = 10 * 1024
# No model is more than a few levels deep; a body nested deeper is refused before it is
# looked at (json.loads itself stops at the interpreter's recursion limit: also a 400).
MAX_JSON_DEPTH = 32

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        if self.details:
            error["details"] = self.details
        return {"error": error}


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header's value, case-insensitively (API Gateway keeps the client's case)."""
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def raw_body(event: Mapping[str, Any], max_bytes: int | None = None) -> bytes:
    """The request body as bytes (base64 decoded if API Gateway encoded it); ApiError 400 if
    the encoding is broken, 413 if it is longer than ``max_bytes``."""
    raw = _raw_body(event)
    if max_bytes is not None and len(raw) > max_bytes:
        raise ApiError(413, "body_too_large", f"The body is {len(raw)} bytes; at most {max_bytes} are accepted.")
    return raw


def wants_json(headers: Mapping[str, str] | None) -> bool:
    """Whether the client asked for JSON rather than a page (a browser asks for text/html)."""
    accept = (header(headers, "accept") or "").lower()
    return "application/json" in accept and "text/html" not in accept


def _raw_body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_body", "The body is not valid base64.") from None
    return body.encode("utf-8", errors="surrogatepass") if isinstance(body, str) else bytes(body)


def _field_of(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _message_of(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "is invalid"))
    return message.removeprefix("Value error, ")


def parse_json_body(event: Mapping[str, Any], model: type[M], max_bytes: int = MAX_BODY_BYTES) -> M:
    """Validate an API Gateway proxy event's JSON body into ``model`` or raise ApiError."""
    content_type = (header(event.get("headers"), "content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type", f"Content-Type must be application/json, not {content_type or 'missing'}."
        )
    raw = _raw_body(event)
    if len(raw) > max_bytes:
        raise ApiError(413, "body_too_large", f"The body is {len(raw)} bytes; at most {max_bytes} are accepted.")
    if not raw.strip():
        raise ApiError(400, "empty_body", "The body is empty; a JSON object is expected.")
    data = _json_object(raw)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        details = [{"field": _field_of(e["loc"]), "message": _message_of(e)} for e in errors]
        for detail, error in zip(details, errors, strict=True):
            if error["type"] == "extra_forbidden":
                detail["message"] = "is not a known field"
        first = details[0]
        raise ApiError(
            400, "invalid_field", f"{first['field']}: {first['message']}", field=first["field"], details=details
        ) from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ApiError 400: not UTF-8, not JSON (NaN and Infinity
    included: Python's json reads them, JSON has no such numbers), nested too deeply, not an
    object, or a string (value or key) with a lone UTF-16 surrogate such as ``"\\ud800"``,
    which JSON's escapes can spell but no UTF-8 mail, page or table can hold."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "The body is not valid UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc.msg} at position {exc.pos}.") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "The body is nested too deeply.") from None
    except ValueError as exc:  # NaN/Infinity, or an integer literal over Python's 4300-digit limit
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", f"A JSON object is expected, not {type(data).__name__}.")
    _check_strings(data)
    return data


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_strings(data: dict[str, Any]) -> None:
    """Walk the parsed body without recursion: ApiError 400 past MAX_JSON_DEPTH levels, or
    naming the first field (dotted path) whose key or value holds a lone surrogate."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            raise ApiError(400, "invalid_json", f"The body is nested more than {MAX_JSON_DEPTH} levels deep.")
        if isinstance(value, dict):
            for key, item in value.items():
                if _has_lone_surrogate(key):
                    field = _field_of(path) if path else "body"
                    raise ApiError(400, "invalid_field", f"{field}: a key is not valid Unicode text", field=field)
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in enumerate(value))
        elif isinstance(value, str) and _has_lone_surrogate(value):
            field = _field_of(path)
            raise ApiError(
                400,
                "invalid_field",
                f"{field}: is not valid Unicode text (a lone surrogate such as \\ud800)",
                field=field,
            )


def respond(status: int, body: Any) -> Response[Any]:
    """A JSON answer that no cache keeps."""
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers={"Cache-Control": "no-store"},
    )


def install_error_handlers(app: APIGatewayRestResolver) -> None:
    """The same JSON errors for every API function: 4xx naming the problem, 404 for unknown
    routes, 503 (never a stack trace) for our own or AWS's faults."""

    @app.exception_handler(ApiError)  # type: ignore[untyped-decorator]
    def bad_request(error: ApiError) -> Response[Any]:
        metrics.add_metric(name="RejectedRequests", unit=MetricUnit.Count, value=1)
        logger.info("request rejected", extra={"status": error.status, "code": error.code, "field": error.field})
        return respond(error.status, error.body())

    @app.not_found
    def not_found(error: Exception) -> Response[Any]:
        event = app.current_event
        metrics.add_metric(name="RejectedRequests", unit=MetricUnit.Count, value=1)
        return respond(404, {"error": {"code": "not_found", "message": f"No route {event.http_method} {event.path}."}})

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def unavailable(error: Exception) -> Response[Any]:
        logger.exception("request failed")
        metrics.add_metric(name="Errors", unit=MetricUnit.Count, value=1)
        return respond(503, {"error": {"code": "unavailable", "message": "Temporarily unavailable; please try again."}})


def query_int(params: Mapping[str, str] | None, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high], or ApiError 400 naming it."""
    raw = (params or {}).get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdecimal() or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_query", f"{name} must be a whole number from {low} to {high}.", field=name)
    return int(raw)
