"""Monitoring: task metrics per task type, the admin's figures (logic and CloudWatch adapter),
and the local runtime's side of it (EMF -> metrics, percentiles in moto's CloudWatch, logs)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from moto import mock_aws

from mailroom.adapters.monitoring import CloudWatchMetrics
from mailroom.logic import reporting
from mailroom.logic.reporting import MetricQuery, campaign_progress, queries, report, task_figures, window_bounds
from mailroom.models import Campaign, iso
from mailroom.observability import TASK_METRICS, TASK_TYPES, TaskMetrics, log_metrics, metrics, task_metrics, timed
from mailroom_local.console import Console
from mailroom_local.metrics import MetricStore, datapoints_of
from mailroom_local.moto_ext import percentile
from tests.support import REGION

NOW = datetime(2026, 12, 6, 10, 30, 20, tzinfo=UTC)


def emf_objects(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{") and '"_aws"' in line]


def dimension_sets(blob: dict[str, Any]) -> list[dict[str, str]]:
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    return [{name: blob[name] for name in names} for names in directive["Dimensions"]]


# ------------------------------------------------------------------ task metrics (EMF)


def test_each_task_type_gets_its_own_emf_object_with_service_and_task_type(capsys: pytest.CaptureFixture[str]) -> None:
    recorder = TaskMetrics()
    recorder.add("confirmation", "MailsSent", 1)
    recorder.add("welcome", "MailsSent", 1)
    recorder.add("welcome", "MailsSent", 1)
    recorder.add("welcome", "ProcessingTime", 12.5)
    recorder.flush()
    blobs = emf_objects(capsys.readouterr().out)
    by_type = {blob["task_type"]: blob for blob in blobs}
    assert set(by_type) == {"confirmation", "welcome"} and len(blobs) == 2
    service = metrics.service
    assert dimension_sets(by_type["confirmation"]) == [{"service": service, "task_type": "confirmation"}]
    assert by_type["confirmation"]["MailsSent"] == [1.0]
    assert by_type["welcome"]["MailsSent"] == [1.0, 1.0]
    units = {m["Name"]: m["Unit"] for m in by_type["welcome"]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units == {"MailsSent": "Count", "ProcessingTime": "Milliseconds"}
    # flushed: nothing is printed twice
    recorder.flush()
    assert emf_objects(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    ("task_type", "name"),
    [("welcome", "Registrations"), ("signup", "MailsSent"), ("newsletter_fanout", "MailsSent")],
)
def test_a_task_metric_outside_the_contract_is_refused(task_type: str, name: str) -> None:
    with pytest.raises(ValueError, match="no task metric"):
        TaskMetrics().add(task_type, name, 1)


def test_every_task_metric_unit_is_one_cloudwatch_knows() -> None:
    assert {TASK_METRICS[name] for name in TASK_METRICS} <= {unit.value for unit in MetricUnit}
    assert set(TASK_TYPES.values()) == {
        "welcome-worker",
        "newsletter-dispatcher",
        "fanout",
        "newsletter-worker",
        "ses-events",
    }


def test_timed_records_the_processing_time_and_a_task_error_when_the_task_raises(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with timed("ses_event"):
        pass
    with pytest.raises(RuntimeError), timed("ses_event"):
        raise RuntimeError("boom")
    with pytest.raises(TimeoutError), timed("ses_event", retry=(TimeoutError,)):
        raise TimeoutError("not yet: again later")
    task_metrics.flush()
    (blob,) = emf_objects(capsys.readouterr().out)
    assert blob["task_type"] == "ses_event"
    assert blob["TaskErrors"] == [1.0] and blob["TasksRetried"] == [1.0]
    assert isinstance(blob["ProcessingTime"], list) and len(blob["ProcessingTime"]) == 3


def test_log_metrics_flushes_the_task_metrics_even_when_the_handler_fails(capsys: pytest.CaptureFixture[str]) -> None:
    @log_metrics
    def handler(event: Any, context: Any) -> None:
        task_metrics.add("welcome", "TasksDeadLettered", 1)
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        handler({}, None)
    blobs = emf_objects(capsys.readouterr().out)
    assert [blob.get("TasksDeadLettered") for blob in blobs if blob.get("task_type") == "welcome"] == [[1.0]]


# ------------------------------------------------------------------ the admin's figures


class FakeSource:
    """Answers each query from a table keyed by (window, task_type, metric, stat)."""

    def __init__(self, table: dict[tuple[str, str, str, str], float]) -> None:
        self.table = table
        self.asked: list[MetricQuery] = []
        self.bounds: tuple[dict[str, datetime], datetime] | None = None

    def statistics(self, asked: list[MetricQuery], start_of: Any, end: datetime) -> dict[str, float | None]:
        self.asked = asked
        self.bounds = (dict(start_of), end)
        return {q.id: self.table.get((q.window, q.task_type, q.metric, q.stat)) for q in asked}


class FailingSource:
    def statistics(self, asked: list[MetricQuery], start_of: Any, end: datetime) -> dict[str, float | None]:
        raise RuntimeError("Throttling: Rate exceeded")


class Campaigns:
    def __init__(self, *campaigns: Campaign) -> None:
        self.campaigns = list(campaigns)
        self.since: str | None = None

    def recent(self, since: str, limit: int) -> list[Campaign]:
        self.since = since
        return self.campaigns[:limit]


def campaign(**fields: Any) -> Campaign:
    base: dict[str, Any] = {
        "id": "c" * 32,
        "subject": "News",
        "content": "Hi",
        "format": "markdown",
        "status": "sending",
        "created_at": "2026-12-06T09:00:00.000Z",
        "updated_at": "2026-12-06T09:00:00.000Z",
    }
    return Campaign.model_validate(base | fields)


def test_the_queries_cover_every_task_type_and_window_with_unique_ids() -> None:
    asked = queries()
    assert len({q.id for q in asked}) == len(asked)
    assert {(q.window, q.task_type) for q in asked} == {(w, t) for w in reporting.WINDOWS for t in TASK_TYPES}
    assert all(q.metric in TASK_METRICS for q in asked)
    assert all(q.stat in ("Sum", "SampleCount", "p50", "p95") for q in asked)
    for window in reporting.WINDOWS:  # one GetMetricData request per window
        assert len([q for q in asked if q.window == window]) <= 500
    mails = {q.metric for q in asked if q.task_type == "newsletter"}
    assert {"MailsSent", "MailsFailed", "MailsThrottled", "TaskErrors", "TasksDeadLettered"} <= mails
    assert "MailsSent" not in {q.metric for q in asked if q.task_type == "newsletter_fanout"}


def test_the_windows_end_with_the_current_minute() -> None:
    starts, end = window_bounds(NOW)
    assert end == datetime(2026, 12, 6, 10, 31, tzinfo=UTC)
    assert starts == {"hour": end - timedelta(hours=1), "day": end - timedelta(days=1)}


def test_the_figures_are_the_sums_and_percentiles_per_task_type_and_window() -> None:
    source = FakeSource(
        {
            ("hour", "newsletter", "MailsSent", "Sum"): 480.0,
            ("hour", "newsletter", "MailsFailed", "Sum"): 3.0,
            ("hour", "newsletter", "MailsThrottled", "Sum"): 7.0,
            ("hour", "newsletter", "TasksProcessed", "Sum"): 10.0,
            ("hour", "newsletter", "ProcessingTime", "SampleCount"): 10.0,
            ("hour", "newsletter", "ProcessingTime", "p50"): 812.34,
            ("hour", "newsletter", "ProcessingTime", "p95"): 1530.0,
            ("day", "newsletter", "MailsSent", "Sum"): 5000.0,
            ("hour", "welcome", "MailsSent", "Sum"): 2.0,
            ("hour", "newsletter_fanout", "TaskErrors", "Sum"): 1.0,
        }
    )
    windows = task_figures(source, NOW)
    newsletter = windows["hour"]["task_types"]["newsletter"]
    assert newsletter["processed"] == 10
    assert newsletter["mails"] == {"sent": 480, "failed": 3, "skipped": 0, "uncertain": 0, "duplicates": 0}
    assert newsletter["errors"] == {
        "task_errors": 0,
        "dead_lettered": 0,
        "failed": 3,
        "retried": 0,
        "throttled": 7,
        "uncertain": 0,
    }
    assert newsletter["processing_ms"] == {"samples": 10, "p50": 812.3, "p95": 1530.0}
    assert windows["day"]["task_types"]["newsletter"]["mails"]["sent"] == 5000
    fanout = windows["hour"]["task_types"]["newsletter_fanout"]
    assert fanout["errors"] == {"task_errors": 1, "dead_lettered": 0} and "mails" not in fanout
    # the dispatcher and the SES events dead-letter nothing themselves (AWS keeps their failures)
    for task_type in ("newsletter_dispatch", "ses_event"):
        assert windows["hour"]["task_types"][task_type]["errors"] == {"task_errors": 0}
    assert windows["hour"]["task_types"]["ses_event"]["processing_ms"] == {"samples": 0, "p50": None, "p95": None}
    totals = windows["hour"]["totals"]
    assert totals["mails_sent"] == 482 and totals["processed"] == 10
    assert totals["errors"]["task_errors"] == 1 and totals["errors"]["throttled"] == 7
    assert windows["hour"]["end"] == "2026-12-06T10:31:00.000Z"
    assert windows["hour"]["start"] == "2026-12-06T09:31:00.000Z"


def test_a_sending_campaign_has_its_average_rate_and_an_eta() -> None:
    started = NOW - timedelta(seconds=100)
    sending = campaign(
        started_at=iso(started), segments=4, segments_left=0, recipients=3000, resolved=1000, sent=990, failed=10
    )
    progress = campaign_progress(sending, NOW)
    assert progress["rate_per_second"] == 10.0
    assert progress["remaining"] == 2000
    assert progress["eta"] == iso(NOW + timedelta(seconds=200))
    assert (progress["done"], progress["sent"], progress["failed"]) == (1000, 990, 10)


def test_no_eta_while_the_fan_out_is_still_counting_recipients() -> None:
    counting = campaign(started_at=iso(NOW - timedelta(seconds=10)), segments=4, segments_left=2, recipients=500)
    progress = campaign_progress(counting, NOW)
    assert progress["remaining"] is None and progress["eta"] is None and progress["fanout_done"] is False


def test_a_finished_campaign_has_its_rate_over_its_sending_time_and_no_eta() -> None:
    done = campaign(
        status="sent",
        started_at="2026-12-06T09:00:00.000Z",
        finished_at="2026-12-06T09:00:50.000Z",
        segments=1,
        segments_left=0,
        recipients=100,
        resolved=100,
        sent=100,
    )
    progress = campaign_progress(done, NOW)
    assert progress["rate_per_second"] == 2.0 and progress["eta"] is None and progress["remaining"] == 0


@pytest.mark.parametrize(
    ("started_at", "rate"),
    [
        ("2026-12-06T10:28:40", 1.0),  # no time zone: UTC, as Mailroom writes them
        ("yesterday", None),  # unreadable: no rate, and still an answer
    ],
)
def test_an_odd_timestamp_never_breaks_the_figures(started_at: str, rate: float | None) -> None:
    odd = campaign(started_at=started_at, segments=1, segments_left=0, recipients=100, resolved=100)
    progress = campaign_progress(odd, NOW)
    assert progress["rate_per_second"] == rate and progress["remaining"] == 0
    assert report(FakeSource({}), Campaigns(odd), NOW)["campaigns"][0]["id"] == odd.id


def test_more_done_than_counted_is_no_negative_remainder() -> None:
    ahead = campaign(started_at=iso(NOW - timedelta(seconds=10)), segments=1, segments_left=0, recipients=5, resolved=7)
    progress = campaign_progress(ahead, NOW)
    assert progress["remaining"] == 0 and progress["eta"] == iso(NOW)


def test_the_report_keeps_the_campaigns_when_cloudwatch_cannot_be_read() -> None:
    recent = Campaigns(campaign(started_at=iso(NOW - timedelta(seconds=5))))
    answer = report(FailingSource(), recent, NOW)
    assert answer["windows"] is None and "could not be read" in answer["unavailable"]
    assert [c["id"] for c in answer["campaigns"]] == ["c" * 32]
    assert recent.since == iso(NOW - timedelta(days=1))
    fine = report(FakeSource({}), recent, NOW)
    assert fine["unavailable"] is None and set(fine["windows"]) == {"hour", "day"}


# --------------------------------------------- CloudWatch: the adapter, moto, percentiles


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (50.0, 95.0, 100.0)
    assert percentile([7.0], 95) == 7.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def put(client: Any, name: str, values: list[float], task_type: str, at: datetime, service: str | None = None) -> None:
    client.put_metric_data(
        Namespace="Mailroom",
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [
                    {"Name": "service", "Value": service or TASK_TYPES[task_type]},
                    {"Name": "task_type", "Value": task_type},
                ],
                "Timestamp": at,
                "Values": values,
            }
        ],
    )


@mock_aws
def test_the_adapter_reads_sums_and_percentiles_of_the_task_metrics_per_window() -> None:
    client = boto3.client("cloudwatch", region_name=REGION)
    now = datetime.now(UTC)
    recent, earlier = now - timedelta(minutes=5), now - timedelta(hours=3)
    put(client, "MailsSent", [10.0, 20.0], "newsletter", recent)
    put(client, "MailsSent", [100.0], "newsletter", earlier)  # in the day only
    put(client, "MailsSent", [1000.0], "newsletter", now - timedelta(days=2))  # in neither
    put(client, "MailsSent", [5.0], "newsletter", recent, service="someone-else")  # another dimension set
    put(client, "ProcessingTime", [float(v) for v in range(1, 101)], "newsletter", recent)
    starts, end = window_bounds(now)
    asked = [q for q in queries() if q.task_type == "newsletter"]
    values = CloudWatchMetrics("Mailroom", client).statistics(asked, starts, end)
    got = {(q.window, q.metric, q.stat): values[q.id] for q in asked}
    assert got[("hour", "MailsSent", "Sum")] == 30.0
    assert got[("day", "MailsSent", "Sum")] == 130.0
    assert got[("hour", "ProcessingTime", "SampleCount")] == 100.0
    assert (got[("hour", "ProcessingTime", "p50")], got[("hour", "ProcessingTime", "p95")]) == (50.0, 95.0)
    assert got[("hour", "MailsFailed", "Sum")] is None  # never emitted


class SplitPeriods:
    """A GetMetricData that answers in two pages, each query with two values (a window split)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        results = [{"Id": q["Id"], "Values": [2.0, 3.0]} for q in kwargs["MetricDataQueries"]]
        return {"MetricDataResults": results, **({} if "NextToken" in kwargs else {"NextToken": "more"})}


def test_a_split_window_adds_its_sums_and_gives_no_percentile() -> None:
    client = SplitPeriods()
    asked = [q for q in queries() if q.task_type == "welcome" and q.window == "hour"]
    starts, end = window_bounds(NOW)
    values = CloudWatchMetrics("Mailroom", client).statistics(asked, starts, end)
    got = {(q.metric, q.stat): values[q.id] for q in asked}
    assert got[("MailsSent", "Sum")] == 10.0  # 2 + 3 on each of the two pages
    assert got[("ProcessingTime", "p95")] is None
    assert [call.get("NextToken") for call in client.calls] == [None, "more"]
    assert all(call["ScanBy"] == "TimestampAscending" for call in client.calls)


# -------------------------------------------------- the local runtime: EMF -> metrics


def powertools_emf(**values: float) -> dict[str, Any]:
    emf = EphemeralMetrics(namespace="Mailroom", service="newsletter-worker")
    emf.set_default_dimensions(task_type="newsletter")
    for name, value in values.items():
        emf.add_metric(name=name, unit=MetricUnit.Count, value=value)
    emf.add_metric(name="ProcessingTime", unit=MetricUnit.Milliseconds, value=12.0)
    emf.add_metric(name="ProcessingTime", unit=MetricUnit.Milliseconds, value=30.0)
    blob: dict[str, Any] = emf.serialize_metric_set()
    return blob


def test_an_emf_object_becomes_one_datapoint_per_metric_and_dimension_set() -> None:
    blob = powertools_emf(MailsSent=50)
    points = {point.name: point for point in datapoints_of(blob, "NewsletterWorkerFunction")}
    assert set(points) == {"MailsSent", "ProcessingTime"}
    sent = points["MailsSent"]
    assert sent.namespace == "Mailroom" and sent.unit == "Count" and sent.values == (50.0,)
    assert dict(sent.dimensions) == {"service": "newsletter-worker", "task_type": "newsletter"}
    assert sent.timestamp == blob["_aws"]["Timestamp"] / 1000 and sent.function == "NewsletterWorkerFunction"
    assert points["ProcessingTime"].values == (12.0, 30.0) and points["ProcessingTime"].unit == "Milliseconds"


def test_what_cloudwatch_would_drop_is_dropped() -> None:
    blob = powertools_emf(MailsSent=1)
    blob["task_type"] = 7  # a dimension value that is not a string: the set is rejected
    assert datapoints_of(blob) == []
    nan = powertools_emf(MailsSent=1) | {"MailsSent": float("nan")}
    assert {point.name for point in datapoints_of(nan)} == {"ProcessingTime"}
    assert datapoints_of({"_aws": "nonsense"}) == [] and datapoints_of({"level": "INFO"}) == []
    odd_sets = powertools_emf(MailsSent=1)
    odd_sets["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = [[5], [["a"]], "service"]
    assert datapoints_of(odd_sets) == []
    for stamp in (1e20, float("nan"), -1, True):
        late = powertools_emf(MailsSent=1)
        late["_aws"]["Timestamp"] = stamp
        assert {point.name for point in datapoints_of(late)} == {"MailsSent", "ProcessingTime"}


@mock_aws
def test_the_store_puts_every_value_into_cloudwatch_and_summarizes_them() -> None:
    client = boto3.client("cloudwatch", region_name=REGION)
    store = MetricStore(lambda: client)
    for _ in range(2):
        store.add(powertools_emf(MailsSent=50), "NewsletterWorkerFunction")
    many = EphemeralMetrics(namespace="Mailroom", service="welcome-worker")
    many.set_default_dimensions(task_type="welcome")
    for value in range(99):  # Powertools prints an object by itself at a metric's 100th value
        many.add_metric(name="ProcessingTime", unit=MetricUnit.Milliseconds, value=value)
    blob = many.serialize_metric_set()
    blob["ProcessingTime"] = blob["ProcessingTime"] * 2  # 198 values: two PutMetricData data (150 at most each)
    store.add(blob, "WelcomeWorkerFunction")
    summary = {(s["metric"], s["dimensions"]["task_type"]): s for s in store.summary()}
    sent = summary[("MailsSent", "newsletter")]
    assert (sent["samples"], sent["sum"], sent["functions"]) == (2, 100.0, ["NewsletterWorkerFunction"])
    welcome = summary[("ProcessingTime", "welcome")]
    assert (welcome["samples"], welcome["p50"], welcome["p95"], welcome["max"]) == (198, 49.0, 94.0, 98.0)
    starts, end = window_bounds(datetime.now(UTC))
    asked = [q for q in queries() if q.window == "hour" and q.metric in ("MailsSent", "ProcessingTime")]
    values = CloudWatchMetrics("Mailroom", client).statistics(asked, starts, end)
    got = {(q.task_type, q.metric, q.stat): values[q.id] for q in asked}
    assert got[("newsletter", "MailsSent", "Sum")] == 100.0
    assert got[("welcome", "ProcessingTime", "SampleCount")] == 198.0
    assert got[("welcome", "ProcessingTime", "p95")] == 94.0
    assert store.summary(since=datetime.now(UTC).timestamp() + 60) == []


def test_a_failing_cloudwatch_is_reported_once_and_the_figures_stay() -> None:
    warnings: list[str] = []

    def broken() -> Any:
        raise ConnectionError("no CloudWatch")

    store = MetricStore(broken, warn=warnings.append)
    store.add(powertools_emf(MailsSent=1))
    store.add(powertools_emf(MailsSent=1))
    assert len(warnings) == 1 and "no CloudWatch" in warnings[0]
    assert {s["metric"]: s["sum"] for s in store.summary()}["MailsSent"] == 2.0


def test_the_console_hands_emf_to_the_sink_and_keeps_log_records_by_correlation_id() -> None:
    console = Console(io.StringIO())
    seen: list[tuple[str, str]] = []
    console.metric_sink = lambda blob, function: seen.append((function, blob["task_type"]))
    console.function_line("NewsletterWorkerFunction", json.dumps(powertools_emf(MailsSent=1)))
    for function, correlation_id in [("RegistrationFunction", "req-1"), ("WelcomeWorkerFunction", "req-1")]:
        line = {"level": "INFO", "message": "step", "correlation_id": correlation_id}
        console.function_line(function, json.dumps(line))
    console.function_line("WelcomeWorkerFunction#2", json.dumps({"level": "INFO", "message": "other"}))
    console.function_line("WelcomeWorkerFunction", "not json")
    # a sink that fails costs the metric, never the function's output
    console.metric_sink = lambda blob, function: 1 / 0
    console.function_line("NewsletterWorkerFunction", json.dumps(powertools_emf(MailsSent=1)))
    assert seen == [("NewsletterWorkerFunction", "newsletter")]
    trail = console.logs(correlation_id="req-1")
    assert [(r["function"], r["message"]) for r in trail] == [
        ("RegistrationFunction", "step"),
        ("WelcomeWorkerFunction", "step"),
    ]
    assert len(console.logs(function="WelcomeWorkerFunction")) == 2
    # a pool's second environment is the same function
    assert [(r["message"], r["environment"]) for r in console.logs(limit=1)] == [("other", "2")]
