"""The HTTP front door: the API routes, the local-only routes and the web app.

Two layouts:

* **web app** (``web_dir`` set: Mailroom's ``web/``), the same origin as CloudFront in AWS
  (docs/hosting.md): ``/_local/...`` (local tooling, never deployed) -> ``/api/...`` to the
  template's API routes with the prefix stripped (``/api/subscriptions`` is the API's
  ``/subscriptions``, as CloudFront's ``/api/*`` behavior and its function do) -> for
  ``GET``/``HEAD`` a file of ``web_dir``, or ``index.html`` for a path whose last segment has
  no ``.`` (the SPA's client-side routes; CloudFront's viewer-request function) -> 403, what
  S3 answers CloudFront for a missing key (as for a method other than GET/HEAD).
  Web responses carry the headers of the template's response headers policy
  (``web_headers``, from ``Stack.response_headers``: HSTS, CSP, ...) and ``Cache-Control:
  no-cache``, with the content types of :mod:`.web` (as ``scripts/publish_web.py`` uploads the files).
* **API only** (no ``web_dir``: any other SAM template), like ``sam local start-api``:
  ``/_local/...`` -> the API routes at the root -> API Gateway's 403 ``Missing
  Authentication Token``.

Local routes:

* ``GET /_local/health`` -> ``{"status": "ok"}``, or 503 with the functions whose init failed
* ``GET /_local/outbox`` -> every sent mail, oldest first; ``DELETE /_local/outbox`` clears it
* ``GET /_local/schedules`` -> the schedules and their next fire times;
  ``POST /_local/schedules/<name>`` fires one now and answers with the function's result
  (a function error is a 502 with Lambda's error object; an unknown name a 404)
* ``GET /_local/queues`` -> each queue's approximate visible / in-flight message counts
* ``GET /_local/metrics`` -> the functions' metrics (from their EMF output, :mod:`.metrics`):
  each (namespace, metric, dimensions) with samples, sum, min, max, p50, p95;
  ``?minutes=N`` only those of the last N minutes
* ``GET /_local/logs`` -> the functions' JSON log records, oldest first (the last 1,000, or
  ``?limit=N``); ``?correlation_id=...`` only one task's trail, ``?function=...`` one function's
* ``GET /_local/ses-events`` -> SES event publishing (:mod:`mailroom_local.ses_events`): the
  mode (``simulator``, ``all``, ``off``), the EventBridge rules with their targets (a queue's
  messages waiting and in flight: what its function has yet to record), and how many sends
  published events, events were emitted, matched a rule, were delivered to the target,
  failed (each refused send or failed invocation), were dropped after the retries and are
  pending
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from .api import MAX_PAYLOAD_BYTES, ApiResponse, Router, build_event, error_response, proxy_response
from .console import Console
from .outbox import Outbox
from .sandbox import Invocation
from .scheduler import Scheduler
from .template import RouteSpec
from .web import content_type, published

__all__ = [
    "API_PREFIX",
    "HttpApp",
    "LocalHttpServer",
    "Request",
    "server_address",
]

_DRAIN_LIMIT = 64 * 1024 * 1024
API_PREFIX = "/api"  # CloudFront's behavior for the API (template.yaml, WebDistribution)


@dataclass(frozen=True)
class Request:
    """One HTTP request, read completely."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    host: str
    port: int


def json_response(status: int, data: Any) -> ApiResponse:
    body = json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    return ApiResponse(
        status, [("Content-Type", "application/json; charset=utf-8"), ("Cache-Control", "no-store")], body
    )


@dataclass
class HttpApp:
    """Dispatches requests; everything it needs is injected by the runtime."""

    router: Router
    invoke: Callable[[str, Any], Invocation]
    outbox: Outbox
    scheduler: Scheduler
    queues: Callable[[], list[dict[str, Any]]]
    health: Callable[[], dict[str, Any]]
    web_dir: Path | None
    web_headers: list[tuple[str, str]]
    account_id: str
    console: Console
    ses_events: Callable[[], dict[str, Any]] | None = None
    # the functions' metrics: summary(since epoch seconds or None)
    metrics: Callable[[float | None], list[dict[str, Any]]] | None = None
    # the routes' authorizers (API Gateway's Cognito authorizer): claims, or None = 401
    authorize: Callable[[RouteSpec, list[tuple[str, str]]], dict[str, str] | None] | None = None

    def handle(self, request: Request) -> ApiResponse:
        if request.path == "/_local" or request.path.startswith("/_local/"):
            return self._local(request)
        if self.web_dir is None:
            return self._api(request, request.path) or error_response(403, "Missing Authentication Token")
        if request.path.startswith(API_PREFIX + "/"):  # CloudFront's /api/* (so /api itself is the app's)
            path = request.path[len(API_PREFIX) :]
            return self._api(request, path) or error_response(403, "Missing Authentication Token")
        if request.method in ("GET", "HEAD"):
            return self._web(request.path)
        # the default behavior allows GET and HEAD only: CloudFront refuses other methods with a 403
        return _forbidden(self.web_headers)

    def _api(self, request: Request, path: str) -> ApiResponse | None:
        """The API route's answer, or None when no route matches (API Gateway's 403)."""
        found = self.router.find(request.method, path)
        if found is not None:
            route, parameters = found
            request_id = str(uuid.uuid4())
            claims = None
            if route.spec.authorizer is not None:
                claims = self.authorize(route.spec, request.headers) if self.authorize is not None else None
                if claims is None:  # API Gateway answers for the authorizer; no function runs
                    return error_response(401, "Unauthorized", request_id)
            event = build_event(
                route,
                parameters,
                method=request.method,
                path=path,
                query=request.query,
                headers=request.headers,
                body=request.body,
                source_ip=request.source_ip,
                host=request.host,
                port=request.port,
                account_id=self.account_id,
                request_id=request_id,
                claims=claims,
            )
            invocation = self.invoke(route.spec.function, event)
            if not invocation.ok:
                # API Gateway turns a Lambda error (exception, timeout, crash) into a 502.
                return error_response(502, "Internal server error", request_id)
            return proxy_response(invocation.payload, request_id)
        # An unknown resource or method on a REST API: API Gateway answers 403, not 404.
        return None

    # ------------------------------------------------------------------- web
    def _web(self, path: str) -> ApiResponse:
        """A file of the web app, or index.html for a client-side route (no '.' in the last
        segment, as CloudFront's viewer-request function rewrites it); else 403, as S3 answers
        CloudFront for a key that does not exist (OAC grants GetObject, not ListBucket)."""
        assert self.web_dir is not None
        last = path.rsplit("/", 1)[-1]
        relative = "index.html" if "." not in last else path.lstrip("/")
        root = self.web_dir.resolve()
        target = (root / relative).resolve()
        if not target.is_relative_to(root) or not target.is_file() or not published(target.relative_to(root)):
            return _forbidden(self.web_headers)
        headers = [("Content-Type", content_type(target.name)), ("Cache-Control", "no-cache"), *self.web_headers]
        return ApiResponse(200, headers, target.read_bytes())

    # ----------------------------------------------------------------- local
    def _health(self) -> ApiResponse:
        report = self.health()
        return json_response(200 if report["status"] == "ok" else 503, report)

    def _local(self, request: Request) -> ApiResponse:
        path, method = request.path.rstrip("/"), request.method
        match = re.fullmatch(r"/_local/schedules/([^/]+)", path)
        if match is not None:
            return self._fire(match.group(1)) if method == "POST" else _not_allowed()
        routes: dict[str, dict[str, Callable[[], ApiResponse]]] = {
            "/_local/health": {"GET": self._health},
            "/_local/outbox": {
                "GET": lambda: json_response(200, self.outbox.messages()),
                "DELETE": lambda: json_response(200, {"deleted": self.outbox.clear()}),
            },
            "/_local/schedules": {"GET": lambda: json_response(200, self.scheduler.listing())},
            "/_local/queues": {"GET": lambda: json_response(200, self.queues())},
        }
        if self.ses_events is not None:
            status = self.ses_events
            routes["/_local/ses-events"] = {"GET": lambda: json_response(200, status())}
        if self.metrics is not None:
            routes["/_local/metrics"] = {"GET": lambda: self._metrics(request.query)}
        routes["/_local/logs"] = {"GET": lambda: self._logs(request.query)}
        if path not in routes:
            return json_response(404, {"message": "Not Found"})
        methods = routes[path]
        if method == "HEAD" and "GET" in methods:
            method = "GET"
        return methods[method]() if method in methods else _not_allowed()

    def _metrics(self, query: str) -> ApiResponse:
        assert self.metrics is not None
        minutes = parse_qs(query).get("minutes", [""])[-1]
        if minutes and not (minutes.isdecimal() and minutes.isascii() and 0 < int(minutes) <= 100_000):
            return json_response(400, {"message": "minutes must be a whole number from 1 to 100000"})
        since = time.time() - int(minutes) * 60 if minutes else None
        return json_response(200, {"metrics": self.metrics(since)})

    def _logs(self, query: str) -> ApiResponse:
        params = {name: values[-1] for name, values in parse_qs(query).items()}
        limit = params.get("limit", "1000")
        if not (limit.isdecimal() and limit.isascii() and 0 < int(limit) <= 20_000):
            return json_response(400, {"message": "limit must be a whole number from 1 to 20000"})
        records = self.console.logs(params.get("correlation_id"), params.get("function"), int(limit))
        return json_response(200, {"logs": records})

    def _fire(self, name: str) -> ApiResponse:
        invocation = self.scheduler.fire_now(name)
        if invocation is None:
            known = sorted(self.scheduler.entries)
            return json_response(404, {"message": f"unknown schedule {name!r}", "schedules": known})
        if not invocation.ok:
            payload = invocation.payload if isinstance(invocation.payload, dict) else {}
            return json_response(502, {"message": "the function failed", **payload})
        return json_response(200, invocation.payload)


def _forbidden(headers: list[tuple[str, str]]) -> ApiResponse:
    return ApiResponse(403, [("Content-Type", "text/plain; charset=utf-8"), *headers], b"Forbidden\n")


def _not_allowed() -> ApiResponse:
    return json_response(405, {"message": "Method Not Allowed"})


class _Handler(BaseHTTPRequestHandler):
    """Reads a request (Content-Length or chunked, 10 MB max), lets the app answer it."""

    protocol_version = "HTTP/1.1"
    server: LocalHttpServer

    def _handle(self) -> None:
        started = time.monotonic()
        path, _, query = self.path.partition("?")
        body = self._read_body()
        if body is None:
            return
        host, port = server_address(self.server)
        request = Request(
            method=self.command.upper(),
            path=path or "/",
            query=query,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            host=str(self.headers.get("Host") or f"{host}:{port}"),
            port=port,
        )
        try:
            response = self.server.app.handle(request)
        except Exception as exc:
            self.server.app.console.error(f"{request.method} {request.path}: {type(exc).__name__}: {exc}", "http")
            response = json_response(500, {"message": "Internal error of the local runtime"})
        self._write(response)
        if not (path.startswith("/_local/") and request.method in ("GET", "HEAD")):  # tooling polls: stay quiet
            elapsed = (time.monotonic() - started) * 1000
            self.server.app.console.info(
                f"{request.method} {self.path} -> {response.status} ({elapsed:.0f} ms)", "http"
            )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = _handle

    def _read_body(self) -> bytes | None:
        """The request body; None when a response was already sent (413, 400)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._write(json_response(400, {"message": "Invalid Content-Length"}), close=True)
            return None
        if length > MAX_PAYLOAD_BYTES:
            self._discard(length)
            self._write(error_response(413, "Request Too Long"), close=True)
            return None
        return self.rfile.read(length)

    def _discard(self, length: int) -> None:
        """Read and drop a refused body (up to a bound), so the client sees the 413, not a reset."""
        remaining = min(length, _DRAIN_LIMIT)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                return
            remaining -= len(chunk)

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
            except ValueError:
                self._write(json_response(400, {"message": "Invalid chunked encoding"}), close=True)
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_PAYLOAD_BYTES:
                self._write(error_response(413, "Request Too Long"), close=True)
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _write(self, response: ApiResponse, *, close: bool = False) -> None:
        if close:
            self.close_connection = True
        try:
            self.send_response(response.status, _reason(response.status))
            for name, value in response.headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Access lines go through the console (see ``_handle``), not to stderr."""

    def log_error(self, format: str, *args: Any) -> None:
        self.server.app.console.warning(format % args, "http")


def server_address(server: ThreadingHTTPServer) -> tuple[str, int]:
    """The bound host and port (the port is the real one when 0 was asked for)."""
    host, port = server.server_address[:2]
    return (host.decode() if isinstance(host, bytes) else str(host)), int(port)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class LocalHttpServer(ThreadingHTTPServer):
    """A threading HTTP server for an :class:`HttpApp`; ``daemon_threads`` so stop never hangs.

    It binds when made, so that its port is known (e.g. for the ``PublicUrl`` parameter)
    before the runtime builds the app; set :attr:`app` before :meth:`serve_forever`.
    """

    daemon_threads = True
    allow_reuse_address = True
    app: HttpApp

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        if not hasattr(self, "app"):
            raise RuntimeError("LocalHttpServer.app is not set")
        super().serve_forever(poll_interval)
