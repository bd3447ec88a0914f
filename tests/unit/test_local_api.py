"""API Gateway REST (v1 proxy) mapping: routing, events, responses."""

from __future__ import annotations

import base64
import json

from mailroom_local.api import Router, build_event, error_response, proxy_response
from mailroom_local.template import RouteSpec


def route(path: str, method: str = "get", function: str = "Fn") -> RouteSpec:
    return RouteSpec(function=function, event="E", path=path, method=method, stage="dev")


ROUTER = Router(
    [
        route("/items/{id}", "any", "ById"),
        route("/items/special", "get", "Special"),
        route("/files/{path+}", "get", "Files"),
        route("/subscriptions", "post", "Subscribe"),
        route("/", "get", "Root"),
    ]
)


def find(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    found = ROUTER.find(method, path)
    return None if found is None else (found[0].spec.function, found[1])


def test_routing_prefers_literal_segments_and_supports_greedy_and_any() -> None:
    assert find("GET", "/items/special") == ("Special", {})
    assert find("DELETE", "/items/special") == ("ById", {"id": "special"})
    assert find("patch", "/items/a%40b") == ("ById", {"id": "a@b"})
    assert find("GET", "/files/a/b/c") == ("Files", {"path": "a/b/c"})
    assert find("POST", "/subscriptions") == ("Subscribe", {})
    assert find("post", "/subscriptions/") == ("Subscribe", {})
    assert find("GET", "/") == ("Root", {})


def test_unknown_paths_and_methods_find_nothing() -> None:
    assert find("GET", "/subscriptions") is None
    assert find("GET", "/nothing") is None
    assert find("GET", "/files") is None  # a greedy parameter needs at least one segment


def test_the_event_is_the_v1_proxy_shape() -> None:
    found = ROUTER.find("POST", "/subscriptions")
    assert found is not None
    event = build_event(
        found[0],
        found[1],
        method="POST",
        path="/subscriptions",
        query="a=1&a=2&b=",
        headers=[("Content-Type", "application/json"), ("X-Multi", "1"), ("X-Multi", "2")],
        body=b'{"email": "a@example.org"}',
        source_ip="127.0.0.1",
        host="127.0.0.1:3000",
        port=3000,
        account_id="123456789012",
        request_id="req-1",
    )
    assert event["resource"] == "/subscriptions" and event["httpMethod"] == "POST"
    assert event["headers"]["X-Multi"] == "2" and event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["queryStringParameters"] == {"a": "2", "b": ""}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""]}
    assert event["pathParameters"] is None and event["stageVariables"] is None
    assert json.loads(event["body"]) == {"email": "a@example.org"} and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["stage"] == "dev" and context["path"] == "/dev/subscriptions"
    assert context["requestId"] == "req-1" and context["accountId"] == "123456789012"
    assert context["identity"]["sourceIp"] == "127.0.0.1"


def test_empty_and_binary_bodies() -> None:
    found = ROUTER.find("GET", "/")
    assert found is not None
    common = {
        "method": "GET",
        "path": "/",
        "query": "",
        "headers": [],
        "source_ip": "127.0.0.1",
        "host": "h",
        "port": 1,
        "account_id": "1",
    }
    empty = build_event(found[0], found[1], body=b"", **common)  # type: ignore[arg-type]
    assert empty["body"] is None and empty["queryStringParameters"] is None and empty["headers"] is not None
    binary = build_event(found[0], found[1], body=b"\xff\x00", **common)  # type: ignore[arg-type]
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\xff\x00"


def test_proxy_results_become_responses() -> None:
    response = proxy_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "Set-Cookie": "ignored=1", "X-Bad": "a\r\nInjected: 1"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": "hi",
        },
        "req",
    )
    assert response.status == 201 and response.body == b"hi"
    assert [v for k, v in response.headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert ("X-Bad", "a  Injected: 1") in response.headers
    assert ("x-amzn-RequestId", "req") in response.headers
    encoded = proxy_response(
        {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}, "r"
    )
    assert encoded.body == b"\x00\x01"
    assert ("Content-Type", "application/json") in encoded.headers  # API Gateway's default


def test_malformed_results_are_502() -> None:
    for result in [None, "text", {"body": "x"}, {"statusCode": "abc"}, {"statusCode": 99}, {"statusCode": True}]:
        response = proxy_response(result, "r")
        assert response.status == 502
        assert json.loads(response.body) == {"message": "Internal server error"}


def test_gateway_errors() -> None:
    missing = error_response(403, "Missing Authentication Token")
    assert missing.status == 403 and json.loads(missing.body) == {"message": "Missing Authentication Token"}
    assert ("x-amzn-ErrorType", "MissingAuthenticationTokenException") in missing.headers
