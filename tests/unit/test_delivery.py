"""deliver_once: claim before the send, record after it; every failure path."""

from __future__ import annotations

import pytest

from mailroom.errors import PermanentSendError, RetryableSendError, UncertainSendError
from mailroom.logic.delivery import Sender, deliver_once
from mailroom.models import DeliveryStatus, Mail, Outcome

SENDER = Sender("news@example.com", "News")
MAIL = Mail(to="ada@example.com", subject="Hi", text="hi", html="<p>hi</p>")


class FakeLedger:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], dict[str, str]] = {}
        self.fail_record_sent = False

    def claim(self, pk: str, sk: str, now: str) -> bool:
        record = self.records.get((pk, sk))
        if record and record["status"] != DeliveryStatus.RELEASED:
            return False
        self.records[(pk, sk)] = {"status": DeliveryStatus.SENDING}
        return True

    def _set(self, pk: str, sk: str, status: DeliveryStatus, **values: str) -> None:
        assert self.records[(pk, sk)]["status"] == DeliveryStatus.SENDING
        self.records[(pk, sk)] = {"status": status, **values}

    def record_sent(self, pk: str, sk: str, message_id: str, now: str) -> None:
        if self.fail_record_sent:
            raise RuntimeError("DynamoDB is down")
        self._set(pk, sk, DeliveryStatus.SENT, message_id=message_id)

    def record_failed(self, pk: str, sk: str, error: str, now: str) -> None:
        self._set(pk, sk, DeliveryStatus.FAILED, error=error)

    def release(self, pk: str, sk: str, error: str, now: str) -> None:
        self._set(pk, sk, DeliveryStatus.RELEASED, error=error)

    def record_uncertain(self, pk: str, sk: str, error: str, now: str) -> None:
        self._set(pk, sk, DeliveryStatus.UNCERTAIN, error=error)


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
    assert ledger.records[("run", "sub-1")] == {"status": DeliveryStatus.SENT, "message_id": "msg-1"}
    again = deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL)
    assert again.outcome is Outcome.DUPLICATE
    assert len(mailer.sent) == 1


def test_a_claim_left_by_a_crashed_worker_blocks_a_second_send() -> None:
    ledger, mailer = FakeLedger(), FakeMailer()
    ledger.records[("run", "sub-1")] = {"status": DeliveryStatus.SENDING}
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL).outcome is Outcome.DUPLICATE
    assert mailer.sent == []


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


def test_an_unexpected_error_releases_the_claim_and_propagates() -> None:
    ledger, mailer = FakeLedger(), FakeMailer(RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL)
    assert ledger.records[("run", "sub-1")]["status"] == DeliveryStatus.RELEASED


def test_a_failed_result_write_after_the_send_still_counts_as_sent_and_blocks_resend() -> None:
    ledger, mailer = FakeLedger(), FakeMailer()
    ledger.fail_record_sent = True
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL).outcome is Outcome.SENT
    assert deliver_once(ledger, mailer, SENDER, "run", "sub-1", MAIL).outcome is Outcome.DUPLICATE
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
