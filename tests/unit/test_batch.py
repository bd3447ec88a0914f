"""mailroom.batch: SQS batches with partial failures (what the workers' event source mappings read)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from mailroom.batch import SqsRecord, process_batch
from mailroom.errors import TaskRetry


def _record(message_id: str, body: str = "{}", receive_count: str | None = "1") -> dict[str, Any]:
    attributes = {} if receive_count is None else {"ApproximateReceiveCount": receive_count}
    return {"messageId": message_id, "body": body, "attributes": attributes, "eventSource": "aws:sqs"}


def test_only_the_records_that_raise_are_reported_for_redelivery() -> None:
    seen: list[tuple[str, Any]] = []

    def handler(record: SqsRecord, context: Any) -> str:
        seen.append((record.message_id, context))
        if record.body == "bad":
            raise ValueError("cannot")
        if record.body == "later":
            raise TaskRetry("not yet")
        return "done"

    event = {"Records": [_record("a"), _record("b", "bad"), _record("c"), _record("d", "later")]}
    response = process_batch(event, handler, context="ctx")

    assert response == {"batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "d"}]}
    assert seen == [("a", "ctx"), ("b", "ctx"), ("c", "ctx"), ("d", "ctx")]  # one failure stops nothing


def test_every_record_failing_is_reported_item_by_item_not_raised() -> None:
    def handler(record: SqsRecord, context: Any) -> None:
        raise RuntimeError("down")

    response = process_batch({"Records": [_record("a"), _record("b")]}, handler)
    assert response == {"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]}


def test_an_empty_event_reports_nothing() -> None:
    assert process_batch({}, lambda record, context: None) == {"batchItemFailures": []}
    assert process_batch({"Records": []}, lambda record, context: None) == {"batchItemFailures": []}


@pytest.mark.parametrize(("count", "expected"), [("3", 3), (None, 1), ("", 1), ("x", 1), ("0", 1)])
def test_the_receive_count_is_read_with_a_safe_default(count: str | None, expected: int) -> None:
    record = SqsRecord.of(_record("m", json.dumps({"a": 1}), count))
    assert record == SqsRecord(message_id="m", body='{"a": 1}', receive_count=expected)


def test_a_failure_is_logged_without_the_body_a_retry_below_warning(caplog: pytest.LogCaptureFixture) -> None:
    def handler(record: SqsRecord, context: Any) -> None:
        raise (TaskRetry("budget") if record.message_id == "r" else KeyError("k"))

    secret_body = '{"email": "someone@example.com"}'
    with caplog.at_level(logging.INFO):
        process_batch({"Records": [_record("r", secret_body), _record("e", secret_body)]}, handler)
    lines = [json.loads(line) for line in caplog.text.splitlines() if line.startswith("{")] or [
        {"level": r.levelname, "message_id": getattr(r, "message_id", None), "error": getattr(r, "error", None)}
        for r in caplog.records
    ]
    levels = {line["message_id"]: (line["level"], line["error"]) for line in lines if line.get("message_id")}
    assert levels == {"r": ("INFO", "TaskRetry"), "e": ("WARNING", "KeyError")}
    assert "someone@example.com" not in caplog.text
