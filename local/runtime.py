"""The embedded runtime: the whole application on one machine, no AWS account, no Docker.

:class:`Runtime` wires the parts together, all read from ``template.yaml``:

1. the HTTP server's socket, bound first: its URL is the ``PublicUrl`` parameter's value
   when the template declares one and no override sets it (links in mails lead here);
2. moto in server mode, in this process, on 127.0.0.1 and a free port (:mod:`.aws`), with
   what moto lacks added (:mod:`.moto_ext`: SES v2 ``GetAccount``);
3. the stack's tables, queues and SES identities, created in it (:mod:`.provision`);
4. a pool of warm execution environments per function (:mod:`.sandbox`), one environment
   unless its SQS event sources run concurrently (:mod:`.pollers`);
5. the HTTP server: API routes, local routes, the sign-up page (:mod:`.server`);
6. one poller per SQS event source mapping (:mod:`.pollers`);
7. the scheduler for the ``ScheduleV2``/``Schedule`` events (:mod:`.scheduler`);
8. SES event publishing to the rules' targets: the ``AWS::Events::Rule`` queues (an SQS
   message each, recorded by the queue's poller) and the ``EventBridgeRule`` events
   (:mod:`.ses_events`).

It seeds nothing: tables and queues start empty. Use it from tests as::

    with Runtime(Path("template.yaml"), port=0) as runtime:
        urllib.request.urlopen(runtime.url + "/_local/health")

moto's state is process-global, so one runtime runs per process at a time.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from . import aws, moto_ext
from .admins import DEFAULT_ADMIN_EMAIL, LocalAdmin, create_local_admin, random_password
from .api import Router
from .auth import CognitoAuthorizers
from .console import Console
from .metrics import MetricStore
from .outbox import Outbox
from .parameters import TemplateError
from .pollers import SqsPoller, plan_concurrency
from .provision import Provisioned
from .sandbox import Invocation, SandboxPool
from .scheduler import Scheduler
from .server import API_PREFIX, HttpApp, LocalHttpServer, server_address
from .ses_events import SesEventBus
from .template import SqsSourceSpec, Stack

__all__ = ["DEFAULT_PORT", "EVENTBRIDGE_AGENT", "PUBLIC_URL_PARAMETER", "Runtime"]

DEFAULT_PORT = 3000
PUBLIC_URL_PARAMETER = "PublicUrl"
_QUEUE_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
EVENTBRIDGE_AGENT = "mailroom-local-eventbridge"  # the user agent of the emulated EventBridge's SQS requests
_WILDCARD_HOST = "0.0.0.0"  # noqa: S104 - compared with, never bound to  # nosec B104
_ACTIVE = threading.Lock()  # moto's backends are per process: one runtime at a time


class Runtime:
    """Start/stop the embedded runtime; also a context manager."""

    def __init__(
        self,
        template_path: Path | str = "template.yaml",
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        overrides: Mapping[str, str] | None = None,
        region: str | None = None,
        stream: TextIO | None = None,
        quiet: bool = False,
        web_dir: Path | bool | None = True,
        init_timeout: float = 60.0,
        ses_max_send_rate: float | None = None,
        ses_events: str | None = None,
        admin_email: str | None = None,
        admin_password: str | None = None,
    ) -> None:
        """Load and validate the template; :meth:`start` runs it.

        ``ses_max_send_rate`` is what SES v2 ``GetAccount`` reports as ``MaxSendRate``
        (default: ``$MAILROOM_LOCAL_SES_MAX_SEND_RATE``, else 100; see :mod:`.moto_ext`).
        ``ses_events`` says which sends publish SES events: ``simulator`` (mails to the
        mailbox simulator), ``all`` or ``off`` (default: ``$MAILROOM_LOCAL_SES_EVENTS``,
        else ``simulator``; see :mod:`.ses_events`).
        ``web_dir`` is the single-page app served at ``/`` with the API under ``/api`` (as
        CloudFront serves them in AWS): True (default) = ``web/`` next to the template if it
        has an ``index.html``; a path; or False/None = no web app, the API at the root.
        ``admin_email``/``admin_password``: the local first admin of the stack's user pool
        (default ``$MAILROOM_LOCAL_ADMIN_EMAIL`` else admin@example.com, and
        ``$MAILROOM_LOCAL_ADMIN_PASSWORD`` else a random one; see :mod:`.admins`).
        """
        self.template_path = Path(template_path)
        self.host = host
        self.port = port
        self.console = Console(stream, quiet=quiet)
        # the functions' EMF output, made CloudWatch metrics in the local CloudWatch (moto's)
        self.metrics = MetricStore(lambda: self.client("cloudwatch"), warn=self.console.warning)
        self.console.metric_sink = self.metrics.add
        # Replaced in start() when the runtime fills in PublicUrl (the port is known then).
        self.stack = Stack.load(self.template_path, overrides=overrides, region=region)
        if web_dir is True:
            candidate = self.template_path.resolve().parent / "web"
            web_dir = candidate if (candidate / "index.html").is_file() else None
        self.web_dir: Path | None = web_dir or None
        self.init_timeout = init_timeout
        self.ses_max_send_rate = moto_ext.resolve_max_send_rate(ses_max_send_rate)
        self.moto: aws.MotoServer | None = None
        self.provisioned: Provisioned | None = None
        self.sandboxes: dict[str, SandboxPool] = {}
        self.pollers: list[SqsPoller] = []
        self.scheduler: Scheduler | None = None
        self.ses_events_mode = ses_events
        self.ses_events: SesEventBus | None = None
        self._events_sqs: Any = None  # the emulated EventBridge's SQS client (made on its first send)
        self.outbox = Outbox(self.stack.account_id, self.stack.region)
        self._http: LocalHttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self._sqs: Any = None
        self._holds_lock = False
        self._stopped = False
        self._previous_ses_max_send_rate: float | None = None  # restored by stop()
        self.admin_email = admin_email or os.environ.get("MAILROOM_LOCAL_ADMIN_EMAIL") or DEFAULT_ADMIN_EMAIL
        self.admin_password = admin_password or os.environ.get("MAILROOM_LOCAL_ADMIN_PASSWORD") or random_password()
        self.admin: LocalAdmin | None = None
        self.authorizers: CognitoAuthorizers | None = None

    # ------------------------------------------------------------- properties
    @property
    def url(self) -> str:
        """Base URL of the HTTP server (after :meth:`start`)."""
        if self._http is None:
            raise RuntimeError("the runtime is not started")
        host, port = server_address(self._http)
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        """Base URL of the API: :attr:`url` + ``/api`` when the web app is served, else :attr:`url`."""
        return self.url + (API_PREFIX if self.web_dir is not None else "")

    @property
    def public_url(self) -> str:
        """:attr:`url` as a browser reaches it: 127.0.0.1 instead of a wildcard address (0.0.0.0)."""
        if self._http is None:
            raise RuntimeError("the runtime is not started")
        host, port = server_address(self._http)
        return f"http://{'127.0.0.1' if host == _WILDCARD_HOST else host}:{port}"

    @property
    def endpoint_url(self) -> str:
        """The moto server's URL (what the functions get as AWS_ENDPOINT_URL)."""
        if self.moto is None:
            raise RuntimeError("the runtime is not started")
        return self.moto.url

    def client(self, service: str) -> Any:
        """A boto3 client for the local AWS (fake credentials)."""
        return aws.client(service, self.endpoint_url, self.stack.region)

    def admin_token(self) -> str:
        """A valid Cognito ID token of the local first admin (for ``Authorization``)."""
        if self.admin is None:
            raise RuntimeError("the stack has no user pool with an app client (or the runtime is not started)")
        return self.admin.token()

    def admin_headers(self) -> dict[str, str]:
        """``{"Authorization": <the local admin's ID token>}``."""
        return {"Authorization": self.admin_token()}

    # -------------------------------------------------------------- lifecycle
    def start(self) -> Runtime:
        """Start everything; returns once every function is initialized and the server listens."""
        if self._stopped or self._holds_lock:
            raise RuntimeError("a Runtime starts once; make a new one")
        if not _ACTIVE.acquire(blocking=False):
            raise RuntimeError("another Runtime is running in this process (moto's state is process-global)")
        self._holds_lock = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        # Everything that can fail on the template or the port fails before anything runs.
        try:
            self._http = LocalHttpServer((self.host, self.port))
        except OSError as exc:
            raise RuntimeError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        self.stack = stack = self._with_local_parameters(self.stack)
        self.scheduler = Scheduler(
            stack.schedules,
            invoke=self.invoke,
            region=stack.region,
            account_id=stack.account_id,
            console=self.console,
        )
        self.ses_events = SesEventBus(
            stack.event_rules,
            invoke=self.invoke,
            account_id=stack.account_id,
            region=stack.region,
            console=self.console,
            mode=self.ses_events_mode,
            send=self._eventbridge_send,
            queue_depth=self._queue_depth,
        )
        _ = stack.functions  # validated now; read again after provisioning (queue URLs are moto's)
        self.authorizers = CognitoAuthorizers(stack, lambda: self.endpoint_url)
        self._http.app = HttpApp(
            router=Router(stack.routes),
            invoke=self.invoke,
            outbox=self.outbox,
            scheduler=self.scheduler,
            queues=self.queue_status,
            health=self.health,
            ses_events=self.ses_events.status,
            web_dir=self.web_dir,
            web_headers=list(stack.response_headers().items()),
            account_id=stack.account_id,
            console=self.console,
            authorize=self.authorizers.claims,
            metrics=self.metrics.summary,
        )

        self._previous_ses_max_send_rate = moto_ext.reported_max_send_rate()
        moto_ext.install(self.ses_max_send_rate)
        self.moto = aws.MotoServer(self.host)
        endpoint = self.moto.start()
        self.console.info(
            f"AWS (moto {_moto_version()}) on {endpoint}, account {stack.account_id}, region {stack.region}"
        )
        self.provisioned = stack.provision(client_for=self.client)
        self.admin = create_local_admin(
            stack, self.provisioned, lambda: self.client("cognito-idp"), self.admin_email, self.admin_password
        )
        self.outbox.install()
        self._sqs = self.client("sqs")

        functions, sources = stack.functions, stack.sqs_sources
        plan = plan_concurrency(functions, sources)
        for note in plan.notes:
            self.console.warning(note)
        for logical_id, spec in functions.items():
            self.sandboxes[logical_id] = SandboxPool(
                spec,
                size=plan.environments[logical_id],
                endpoint_url=endpoint,
                region=stack.region,
                account_id=stack.account_id,
                console=self.console,
            )
        for pool in self.sandboxes.values():
            pool.start()
        self._wait_for_functions()

        self._http_thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True
        )
        self._http_thread.start()
        for source in sources:
            concurrency = plan.sources.get((source.function, source.event), 0)
            if concurrency:
                self.pollers.append(self._poller(source, concurrency))
        for poller in self.pollers:
            poller.start()
        self.scheduler.start()
        moto_ext.add_send_listener(self.ses_events.publish)
        self.ses_events.start()
        self._banner()

    def _with_local_parameters(self, stack: Stack) -> Stack:
        """``stack`` with ``PublicUrl`` set to this runtime's URL, if declared and not overridden."""
        try:
            return stack.with_defaults({PUBLIC_URL_PARAMETER: self.public_url})
        except TemplateError as exc:
            raise TemplateError(
                f"{exc} (the local runtime sets {PUBLIC_URL_PARAMETER} to its own URL; "
                f"choose another with --parameter-overrides {PUBLIC_URL_PARAMETER}=...)"
            ) from exc

    def _poller(self, source: SqsSourceSpec, concurrency: int) -> SqsPoller:
        assert self.provisioned is not None
        queue_id = self.stack.queue_logical_id_by_arn(source.queue_arn)
        if queue_id is None or queue_id not in self.provisioned.queues:
            raise RuntimeError(f"{source.function}.{source.event}: no queue with ARN {source.queue_arn}")
        queue = self.provisioned.queues[queue_id]
        return SqsPoller(
            source,
            queue_url=queue.url,
            queue_name=queue.name,
            sqs=self._sqs,
            invoke=functools.partial(self.invoke, source.function),
            region=self.stack.region,
            console=self.console,
            concurrency=concurrency,
        )

    def _wait_for_functions(self) -> None:
        """Let every environment finish its init (in parallel) before serving."""
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, len(self.sandboxes))) as pool:
            results = dict(
                zip(
                    self.sandboxes,
                    pool.map(lambda s: s.wait_ready(self.init_timeout), self.sandboxes.values()),
                    strict=True,
                )
            )
        failed = [name for name, error in results.items() if error is not None]
        elapsed = time.monotonic() - started
        ready = len(results) - len(failed)
        self.console.info(
            f"{ready} of {len(results)} functions initialized in {elapsed:.1f} s"
            + (f"; init failed: {', '.join(failed)}" if failed else "")
        )

    def stop(self) -> None:
        """Stop everything (idempotent): pollers and scheduler, functions, HTTP, AWS."""
        if self._stopped:
            return
        self._stopped = True
        for poller in self.pollers:
            poller.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.ses_events is not None:
            moto_ext.remove_send_listener(self.ses_events.publish)
            self.ses_events.stop()
        with ThreadPoolExecutor(max_workers=max(1, len(self.sandboxes))) as pool:
            list(pool.map(lambda s: s.stop(), self.sandboxes.values()))
        for poller in self.pollers:
            poller.join(timeout=5.0)
        if self.scheduler is not None:
            self.scheduler.join(timeout=5.0)
        if self.ses_events is not None:
            self.ses_events.join(timeout=5.0)
        if self._http is not None:
            if self._http_thread is not None:
                self._http.shutdown()
                self._http_thread.join(timeout=5.0)
            self._http.server_close()
        if self.moto is not None and self.moto.url:
            self.moto.stop()
        if self._previous_ses_max_send_rate is not None:  # moto is process-global: leave it as found
            moto_ext.install(self._previous_ses_max_send_rate)
        if self._holds_lock:
            self._holds_lock = False
            _ACTIVE.release()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ use
    def invoke(self, function: str, event: Any) -> Invocation:
        """Invoke a function (by logical id) synchronously, like ``aws lambda invoke``."""
        try:
            sandbox = self.sandboxes[function]
        except KeyError:
            raise KeyError(f"unknown function {function}") from None
        return sandbox.invoke(event)

    def health(self) -> dict[str, Any]:
        """``ok`` when every function initialised; otherwise which ones failed, and why."""
        failed = {
            name: f"{error.get('errorType')}: {error.get('errorMessage')}"
            for name, sandbox in self.sandboxes.items()
            if (error := sandbox.init_error) is not None
        }
        return {"status": "failing", "functions": failed} if failed else {"status": "ok"}

    def _eventbridge_send(self, queue_id: str, body: str) -> None:
        """EventBridge's ``SendMessage`` to a rule's target queue (its own client: its requests
        are EventBridge's, told apart by their user agent, ``EVENTBRIDGE_AGENT``)."""
        assert self.provisioned is not None
        if self._events_sqs is None:
            self._events_sqs = aws.client("sqs", self.endpoint_url, self.stack.region, EVENTBRIDGE_AGENT)
        self._events_sqs.send_message(QueueUrl=self.provisioned.queues[queue_id].url, MessageBody=body)

    def _queue_depth(self, queue_id: str) -> dict[str, int]:
        assert self.provisioned is not None
        counts = self._queue_counts(self.provisioned.queues[queue_id].url)
        return {
            "visible": counts["ApproximateNumberOfMessages"],
            "in_flight": counts["ApproximateNumberOfMessagesNotVisible"],
        }

    def _queue_counts(self, url: str) -> dict[str, int]:
        """A queue's approximate counts (``GetQueueAttributes``): visible, in flight, delayed."""
        attributes = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(_QUEUE_COUNTS))["Attributes"]
        return {name: int(attributes.get(name, 0)) for name in _QUEUE_COUNTS}

    def queue_status(self) -> list[dict[str, Any]]:
        """Approximate message counts of every queue (``GetQueueAttributes``)."""
        assert self.provisioned is not None
        dead_letter_of: dict[str, str] = {}
        for spec in self.stack.queues.values():
            for dependency in spec.depends_on:
                if "RedrivePolicy" in spec.attributes:
                    dead_letter_of[dependency] = spec.name
        status = []
        for logical_id, queue in self.provisioned.queues.items():
            status.append(
                {
                    "name": queue.name,
                    "url": queue.url,
                    "arn": queue.arn,
                    "dead_letter_queue_of": dead_letter_of.get(logical_id),
                    **self._queue_counts(queue.url),
                }
            )
        return status

    # ---------------------------------------------------------------- banner
    def _banner(self) -> None:
        stack, provisioned, console = self.stack, self.provisioned, self.console
        assert provisioned is not None and self.scheduler is not None
        console.plain()
        console.plain(f"  Mailroom is running at {self.url}/   (stack {stack.stack_name}, Ctrl-C stops)")
        if self.web_dir is not None:
            console.plain(f"  Web app: {self.url}/ (sign-up), {self.url}/admin (admin console), from {self.web_dir}")
        if self.admin is not None:
            console.plain(
                f"  Admin sign-in: {self.admin.email} / {self.admin.password}  (local only; docs/security.md)"
            )
        console.plain()
        console.plain("  API routes (API Gateway REST, stage ignored in the URL):")
        for route in stack.routes:
            console.plain(f"    {route.method.upper():<7} {self.api_url}{route.path}  ->  {route.function}")
        console.plain("  Local routes:")
        for line in (
            "GET     /_local/outbox             sent mails (DELETE clears)",
            "GET     /_local/schedules          schedules; POST /_local/schedules/<name> fires one now",
            "GET     /_local/queues             queue depths, dead-letter queues included",
            "GET     /_local/metrics            the functions' metrics (EMF): sums, p50, p95",
            "GET     /_local/logs               the functions' log records (?correlation_id=...)",
            "GET     /_local/ses-events         SES events published (mailbox simulator) and delivered",
            'GET     /_local/health             {"status": "ok"}',
        ):
            console.plain(f"    {line}")
        console.plain("  Schedules:")
        for item in self.scheduler.listing():
            state = f"next {item['next_fire_time']}" if item["next_fire_time"] else "disabled"
            console.plain(f"    {item['name']}: {item['expression']} ({item['timezone']}) -> {item['target']}, {state}")
        if not self.scheduler.entries:
            console.plain("    (none)")
        console.plain("  Queues:")
        for queue in provisioned.queues.values():
            console.plain(f"    {queue.name:<28} {queue.url}")
        console.plain("  SQS event sources:")
        for poller in self.pollers:
            console.plain(
                f"    {poller.queue_name:<28} -> {poller.source.function}, batches of up to "
                f"{poller.source.batch_size}, {poller.concurrency} at a time"
            )
        if not self.pollers:
            console.plain("    (none)")
        console.plain("  Tables: " + (", ".join(provisioned.tables.values()) or "(none)"))
        console.plain("  SES identities: " + (", ".join(provisioned.identities) or "(none)"))
        console.plain()


def _moto_version() -> str:
    from importlib.metadata import version

    return version("moto")
