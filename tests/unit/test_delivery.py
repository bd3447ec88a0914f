"""deliver_once: claim before the send, record after it; every failure path."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from mailroom.errors import PermanentSendError, RetryableSendError, UncertainSendError
from mailroom.logic.delivery import Sender, deliver_once
from mailroom.models import DeliveryStatus, Mail, Outcome

SENDER = Sender("news@example.com", "News")
MAIL = Mail(to="ada@example.com", subject="Hi", text="hi", html="<p>hi</p>")


class FakeLedger:
    """The ledger's conditions, in memory: claims under tokens, completions conditioned on them."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail_record_sent = False
        self.fail_claim = False
        self.fail_release = False

    def claim(
        self,
        pk: str,
        sk: str,
        token: str,
        now: str,
        email: str | None = None,
        held: str | None = None,
        expires_at: int | None = None,
    ) -> tuple[bool, dict[str, Any] | None]:
        if self.fail_claim:
            self.records[(pk, sk)] = {"status": DeliveryStatus.SENDING, "claim": token, "claimed_at": now}
            raise RuntimeError("the answer was lost (the claim went through)")
        record = self.records.get((pk, sk))
        takeover = record and record["status"] == DeliveryStatus.SENDING and held and record["claim"] == held
        if record and record["status"] != DeliveryStatus.RELEASED and not takeover:
            return False, dict(record)
        self.records[(pk, sk)] = {"status": DeliveryStatus.SENDING, "claim": token, "claimed_at": now}
        return True, None

    def _set(self, pk: str, sk: str, token: str, status: DeliveryStatus, **values: str) -> bool:
        record = self.records[(pk, sk)]
        if record["status"] != DeliveryStatus.SENDING or record["claim"] != token:
            return False
        self.records[(pk, sk)] = {**record, "status": status, **values}
        return True

    def record_sent(self, pk: str, sk: str, token: str, message_id: str, now: str) -> None:
        if self.fail_record_sent:
            raise RuntimeError("DynamoDB is down")
        self._set(pk, sk, token, DeliveryStatus.SENT, message_id=message_id)

    def record_failed(self, pk: str, sk: str, token: str, error: str, now: str) -> None:
        self._set(pk, sk, token, DeliveryStatus.FAILED, error=error)

    def release(self, pk: str, sk: str, token: str, error: str, now: str) -> None:
        if self.fail_release:
            raise RuntimeError("DynamoDB is down")
        self._set(pk, sk, token, DeliveryStatus.RELEASED, error=error)

    def record_uncertain(self, pk: str, sk: str, token: str, error: str, now: str) -> bool:
        return self._set(pk, sk, token, DeliveryStatus.UNCERTAIN, error=error)


class FakeMailer:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.sent: list[tuple[str, bytes]] = []

    def send(self, raw: bytes, from_address: str, to: str, tags: dict[str, str] | None = None) -> str:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((to, raw))
        return f"msg-{len(self.sent)}"


def test_sends_once_and_records_the_message_id() -> None:
    ledger, mailer = FakeLedger(), FakeMailer()
    delivery = deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL)
    assert delivery.outcome is Outcome.SENT
    assert ledger.records[("run", "sub-1")]["status"] == DeliveryStatus.SENT
    assert ledger.records[("run", "sub-1")]["message_id"] == "msg-1"
    again = deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL)
    assert again.outcome is Outcome.DUPLICATE
    assert len(mailer.sent) == 1


def test_a_claim_left_by_a_crashed_worker_is_waited_for_then_recorded_uncertain_never_resent() -> None:
    ledger, mailer = FakeLedger(), FakeMailer()
    ledger.records[("run", "sub-1")] = {
        "status": DeliveryStatus.SENDING,
        "claim": "dead-worker",
        "claimed_at": "2026-11-28T10:00:00.000Z",
    }
    # within 15 minutes of the claim its worker may still be sending: wait, do not send
    soon = deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL, clock=lambda: at("10:14:59"))
    assert soon.outcome is Outcome.RETRY and soon.wait
    # later the claim belongs to no live attempt: uncertain (it may have been sent), never resent
    late = deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL, clock=lambda: at("10:15:00"))
    assert late.outcome is Outcome.UNCERTAIN
    assert ledger.records[("run", "sub-1")]["status"] == DeliveryStatus.UNCERTAIN
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL).outcome is Outcome.DUPLICATE
    assert mailer.sent == []


def at(clock_time: str) -> datetime:
    return datetime.fromisoformat(f"2026-11-28T{clock_time}+00:00")


def test_an_unconfirmed_claim_travels_with_the_retry_and_is_taken_over_once() -> None:
    ledger, mailer = FakeLedger(), FakeMailer()
    ledger.fail_claim = True
    first = deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL)
    assert first.outcome is Outcome.RETRY and first.held
    ledger.fail_claim = False
    # without the token the record looks claimed by someone else; with it, it is ours
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL).wait
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL, held=first.held).outcome is Outcome.SENT
    # a duplicate of the retry (same held token) finds the record sent
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL, held=first.held).outcome is Outcome.DUPLICATE
    assert len(mailer.sent) == 1


def test_a_release_that_fails_hands_the_claim_on() -> None:
    throttled = RetryableSendError("TooManyRequestsException", "Maximum sending rate exceeded", throttled=True)
    ledger, mailer = FakeLedger(), FakeMailer(throttled)
    ledger.fail_release = True
    first = deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL)
    assert first.outcome is Outcome.RETRY and first.throttled and first.held
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL, held=first.held).outcome is Outcome.SENT
    assert len(mailer.sent) == 1


def test_permanent_error_is_recorded_and_never_retried() -> None:
    ledger, mailer = FakeLedger(), FakeMailer(PermanentSendError("MessageRejected", "bad address"))
    delivery = deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL)
    assert delivery.outcome is Outcome.FAILED
    assert ledger.records[("run", "sub-1")]["status"] == DeliveryStatus.FAILED
    assert "MessageRejected" in ledger.records[("run", "sub-1")]["error"]
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL).outcome is Outcome.DUPLICATE
    assert mailer.sent == []


def test_retryable_error_releases_the_claim_for_the_next_delivery() -> None:
    throttled = RetryableSendError("TooManyRequestsException", "Maximum sending rate exceeded", throttled=True)
    ledger, mailer = FakeLedger(), FakeMailer(throttled)
    delivery = deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL)
    assert delivery.outcome is Outcome.RETRY
    assert delivery.throttled
    assert ledger.records[("run", "sub-1")]["status"] == DeliveryStatus.RELEASED
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL).outcome is Outcome.SENT
    assert len(mailer.sent) == 1


def test_an_unclassified_error_from_the_send_is_uncertain_and_never_resent() -> None:
    # the mailer classifies every SES error; anything else may come after SES accepted it
    ledger, mailer = FakeLedger(), FakeMailer(RuntimeError("boom"))
    delivery = deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL)
    assert delivery.outcome is Outcome.UNCERTAIN and delivery.error == "RuntimeError: boom"
    assert ledger.records[("run", "sub-1")]["status"] == DeliveryStatus.UNCERTAIN
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL).outcome is Outcome.DUPLICATE


def test_a_failed_result_write_after_the_send_still_counts_as_sent_and_blocks_resend() -> None:
    ledger, mailer = FakeLedger(), FakeMailer()
    ledger.fail_record_sent = True
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL).outcome is Outcome.SENT
    # the record stays claimed: a redelivery waits for it, and never sends again
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL).wait
    assert len(mailer.sent) == 1


def test_a_lost_answer_is_recorded_uncertain_and_never_sent_again() -> None:
    ledger, mailer = FakeLedger(), FakeMailer(UncertainSendError("ReadTimeoutError", "Read timeout"))
    delivery = deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL)
    assert delivery.outcome is Outcome.UNCERTAIN
    assert ledger.records[("run", "sub-1")]["status"] == DeliveryStatus.UNCERTAIN
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL).outcome is Outcome.DUPLICATE
    assert mailer.sent == []


def test_a_mail_that_cannot_be_built_is_never_claimed() -> None:
    ledger, mailer = FakeLedger(), FakeMailer()
    with pytest.raises(ValueError):
        deliver_once(ledger, mailer, Sender("news@example.com", "Bad\r\nName"), "run", "sub-1", MAIL)
    assert ledger.records == {}
