"""API Gateway REST API (Lambda proxy integration, payload format 1.0), locally.

* Routing: the template's ``Api`` events. A path is a resource like ``/subscriptions`` or
  ``/items/{id}`` or ``/files/{proxy+}`` (greedy); literal segments win over parameters,
  like API Gateway's most-specific-match. Methods are case-insensitive; ``any`` matches all.
* Unknown resource or method: API Gateway REST APIs answer **403**
  ``{"message":"Missing Authentication Token"}`` (not 404), and so do we.
* The request becomes the v1 proxy event (``resource``, ``path``, ``httpMethod``,
  ``headers``/``multiValueHeaders``, ``queryStringParameters``/``multiValue...``,
  ``pathParameters``, ``stageVariables``, ``requestContext``, ``body``,
  ``isBase64Encoded``). Empty collections are ``null``, as in API Gateway. A body that is
  not UTF-8 is passed base64-encoded with ``isBase64Encoded: true``.
* The function's result (``statusCode``, ``headers``, ``multiValueHeaders``, ``body``,
  ``isBase64Encoded``) becomes the response; ``headers`` and ``multiValueHeaders`` are merged
  (``multiValueHeaders`` win for the same name). A function error, timeout or malformed
  result is a **502** ``{"message": "Internal server error"}``.
* Payloads over 10 MB are refused with **413** ``{"message":"Request Too Long"}``.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from .template import RouteSpec

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "ApiResponse",
    "Route",
    "Router",
    "build_event",
    "error_response",
    "proxy_response",
]

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


@dataclass(frozen=True)
class ApiResponse:
    """What to write back to the HTTP client."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Route:
    """A compiled route."""

    spec: RouteSpec
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    specificity: tuple[int, int]

    @classmethod
    def compile(cls, spec: RouteSpec) -> Route:
        segments = [s for s in spec.path.strip("/").split("/") if s]
        parts: list[str] = []
        names: list[str] = []
        literal = 0
        for segment in segments:
            match = re.fullmatch(r"\{([^}+]+)(\+?)\}", segment)
            if match is None:
                parts.append(re.escape(segment))
                literal += 1
            elif match.group(2):
                parts.append(f"(?P<p{len(names)}>.+)")
                names.append(match.group(1))
            else:
                parts.append(f"(?P<p{len(names)}>[^/]+)")
                names.append(match.group(1))
        pattern = re.compile("/" + "/".join(parts) + "/?" if parts else "/")
        greedy = any(s.endswith("+}") for s in segments)
        return cls(spec, pattern, tuple(names), (literal, 0 if greedy else 1))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {name: unquote(found.group(f"p{index}")) for index, name in enumerate(self.names)}


class Router:
    """Finds the route for a method and path, as API Gateway's resource tree would."""

    def __init__(self, routes: Iterable[RouteSpec]) -> None:
        compiled = [Route.compile(spec) for spec in routes]
        # Most literal segments first, then non-greedy before greedy: API Gateway's precedence.
        self.routes = sorted(compiled, key=lambda r: r.specificity, reverse=True)

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        method = method.lower()
        for route in self.routes:
            parameters = route.match(path)
            if parameters is not None and route.spec.method in (method, "any", "x-amazon-apigateway-any-method"):
                return route, parameters
        return None


def build_event(
    route: Route,
    path_parameters: Mapping[str, str],
    *,
    method: str,
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str,
    host: str,
    port: int,
    account_id: str,
    request_id: str | None = None,
    claims: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The API Gateway REST (v1) proxy event for one request; ``claims`` are a Cognito
    authorizer's (``requestContext.authorizer.claims``)."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        single[name] = value
        multi.setdefault(name, []).append(value)
    extra = {"X-Forwarded-For": source_ip, "X-Forwarded-Port": str(port), "X-Forwarded-Proto": "http"}
    for name, value in extra.items():
        if name.lower() not in {h.lower() for h in single}:
            single[name] = value
            multi[name] = [value]

    query_single: dict[str, str] = {}
    query_multi: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        query_single[name] = value
        query_multi.setdefault(name, []).append(value)

    if not body:
        event_body: str | None = None
        encoded = False
    else:
        try:
            event_body, encoded = body.decode("utf-8"), False
        except UnicodeDecodeError:
            event_body, encoded = base64.b64encode(body).decode("ascii"), True

    now = time.time()
    request_id = request_id or str(uuid.uuid4())
    stage = route.spec.stage
    event: dict[str, Any] = {
        "resource": route.spec.path,
        "path": path,
        "httpMethod": method.upper(),
        "headers": single or None,
        "multiValueHeaders": multi or None,
        "queryStringParameters": query_single or None,
        "multiValueQueryStringParameters": query_multi or None,
        "pathParameters": dict(path_parameters) or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": account_id,
            "apiId": "local",
            "resourceId": "local",
            "resourcePath": route.spec.path,
            "httpMethod": method.upper(),
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000),
            "path": f"/{stage}{path}",
            "stage": stage,
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "requestId": request_id,
            "protocol": "HTTP/1.1",
            "identity": {
                "sourceIp": source_ip,
                "userAgent": next((v for k, v in single.items() if k.lower() == "user-agent"), None),
                "accountId": None,
                "caller": None,
                "user": None,
                "userArn": None,
                "accessKey": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
            },
        },
        "body": event_body,
        "isBase64Encoded": encoded,
    }
    if claims is not None:
        event["requestContext"]["authorizer"] = {"claims": dict(claims)}
    return event


def error_response(status: int, message: str, request_id: str | None = None) -> ApiResponse:
    """An API Gateway-generated error (``{"message": ...}``, JSON)."""
    body = json.dumps({"message": message}).encode("utf-8")
    headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", _error_type(status))]
    if request_id:
        headers.append(("x-amzn-RequestId", request_id))
    return ApiResponse(status, headers, body)


def _error_type(status: int) -> str:
    return {
        401: "UnauthorizedException",
        403: "MissingAuthenticationTokenException",
        413: "RequestTooLongException",
        502: "InternalServerErrorException",
    }.get(status, "ApiGatewayException")


def proxy_response(result: Any, request_id: str) -> ApiResponse:
    """Turn a Lambda proxy result into the HTTP response; malformed -> 502."""
    if not isinstance(result, dict):
        return error_response(502, "Internal server error", request_id)
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return error_response(502, "Internal server error", request_id)
    merged: dict[str, list[str]] = {}
    for name, value in (result.get("headers") or {}).items():
        merged[str(name)] = [_header_value(value)]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        merged[str(name)] = [_header_value(v) for v in (values if isinstance(values, list) else [values])]
    body_value = result.get("body")
    body_text = "" if body_value is None else str(body_value)
    if result.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body_text, validate=True)
        except ValueError:
            return error_response(502, "Internal server error", request_id)
    else:
        body = body_text.encode("utf-8")
    headers = [(name, value) for name, values in merged.items() for value in values]
    if "content-type" not in {name.lower() for name in merged}:
        headers.append(("Content-Type", "application/json"))  # API Gateway's default
    headers.append(("x-amzn-RequestId", request_id))
    return ApiResponse(status, headers, body)


def _header_value(value: Any) -> str:
    text = "true" if value is True else "false" if value is False else str(value)
    return text.replace("\r", " ").replace("\n", " ")
