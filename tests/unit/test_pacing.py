"""Pacing: the account's send rate (SES v2 GetAccount, cached), each worker's share, even spacing."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mailroom.pacing import FALLBACK_RATE, SHARE_OF_RATE, AccountRate, Pacer, share_of
from mailroom_local.moto_ext import install as install_moto_extensions
from mailroom_local.template import Stack
from tests.support import REGION


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_slots_are_evenly_spaced_at_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=4.0, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(5):
        assert pacer.acquire()
        starts.append(clock.now)
    assert [round(b - a, 6) for a, b in itertools.pairwise(starts)] == [0.25] * 4


def test_a_slot_past_the_deadline_is_refused_and_not_taken() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=1.0, clock=clock, sleep=clock.sleep)
    assert pacer.acquire(deadline=101.0)  # now
    assert pacer.acquire(deadline=101.0)  # at 101.0
    assert not pacer.acquire(deadline=101.5)  # next slot at 102.0: refused
    assert pacer.acquire()  # and it is still free
    assert clock.now == 102.0


def test_a_throttle_penalty_holds_every_slot_back() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=10.0, clock=clock, sleep=clock.sleep)
    pacer.acquire()
    pacer.penalize(1.0)
    pacer.acquire()
    assert clock.now == pytest.approx(101.0)


def test_many_threads_share_the_slots_without_bursts() -> None:
    pacer = Pacer(rate=200.0)
    starts: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            pacer.acquire()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    starts.sort()
    # 80 slots at 200/s take about 0.4 s; no second holds more than 200 + 1
    assert starts[-1] - starts[0] >= 79 / 200 * 0.95
    assert all(sum(1 for s in starts if t <= s < t + 1.0) <= 201 for t in starts)


def test_each_worker_takes_its_share_of_the_rate() -> None:
    assert share_of(14.0, 2) == pytest.approx(14.0 * SHARE_OF_RATE / 2)
    assert share_of(200.0, 1) == pytest.approx(200.0 * SHARE_OF_RATE)


@pytest.mark.usefixtures("stack")
def test_the_rate_is_read_from_ses_get_account_and_cached() -> None:
    install_moto_extensions(max_send_rate=42.0)
    try:
        client = boto3.client("sesv2", region_name=REGION)
        calls = {"n": 0}
        real = client.get_account

        def counting(**kwargs: Any) -> Any:
            calls["n"] += 1
            return real(**kwargs)

        client.get_account = counting  # type: ignore[method-assign]
        clock = FakeClock()
        rate = AccountRate(client, clock=clock, ttl=300)
        assert rate() == 42.0 and rate() == 42.0
        assert calls["n"] == 1
        clock.now += 301
        assert rate() == 42.0 and calls["n"] == 2
        assert AccountRate(client, limit=10.0)() == 10.0  # a configured cap below the account's rate
        assert AccountRate(client, limit=100.0)() == 42.0  # never above the account's rate
    finally:
        install_moto_extensions(max_send_rate=1000.0)


def test_an_unreadable_rate_falls_back_to_the_cap_or_the_sandbox_rate(stack: Stack) -> None:
    class Broken:
        def get_account(self) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetAccount")

    assert AccountRate(Broken())() == FALLBACK_RATE  # type: ignore[arg-type]
    assert AccountRate(Broken(), limit=25.0)() == 25.0  # type: ignore[arg-type]


def test_a_thread_that_wakes_too_late_takes_a_new_slot_instead_of_bunching() -> None:
    clock = FakeClock()
    oversleeps = [0.05]  # the first sleep ends 50 ms late (a busy CPU)

    def sleep(seconds: float) -> None:
        clock.sleep(seconds + (oversleeps.pop() if oversleeps else 0.0))

    pacer = Pacer(rate=10.0, clock=clock, sleep=sleep, tolerance=0.01)
    assert pacer.acquire()  # slot 100.0, no sleep
    assert pacer.acquire()  # slot 100.1, woke at 100.15: too late, takes the next slot 100.2
    assert clock.now == pytest.approx(100.2)


def test_a_throttle_slows_the_rest_of_the_invocation_by_a_tenth() -> None:
    pacer = Pacer(rate=100.0)
    pacer.penalize(0.0)
    assert pacer.rate == pytest.approx(100.0 / 1.1)
    pacer.set_rate(100.0)  # the next invocation starts from the account's rate again
    assert pacer.rate == pytest.approx(100.0)
