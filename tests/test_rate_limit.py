"""Token-bucket arithmetic and the limit headers' formats, with explicit times."""

from __future__ import annotations

import math

import pytest

from proxy.rate_limit import TokenBucket, format_duration, retry_after_header


def test_a_full_bucket_gives_its_burst_then_refills_at_the_rate() -> None:
    bucket = TokenBucket.full(60, now=100.0)
    assert all(bucket.take(100.0) for _ in range(60))
    assert not bucket.take(100.0)
    assert bucket.take(101.0)  # 60 per minute = one per second
    assert not bucket.take(101.0)


def test_partial_refill_is_continuous_and_capped_at_capacity() -> None:
    bucket = TokenBucket.full(120, now=0.0)  # 2 per second
    bucket.charge(0.0, 120)
    assert bucket.available(0.25) == pytest.approx(0.5)
    assert bucket.available(30.0) == pytest.approx(60.0)
    assert bucket.available(3600.0) == 120.0


def test_available_does_not_change_the_bucket() -> None:
    bucket = TokenBucket.full(60, now=0.0)
    bucket.charge(0.0, 60)
    assert bucket.available(10.0) == pytest.approx(10.0)
    assert (bucket.tokens, bucket.updated) == (0.0, 0.0)


def test_take_is_all_or_nothing() -> None:
    bucket = TokenBucket.full(10, now=0.0)
    assert bucket.take(0.0, 7)
    assert not bucket.take(0.0, 4)
    assert bucket.available(0.0) == pytest.approx(3.0)
    assert bucket.take(0.0, 3)


def test_charge_goes_into_debt_and_the_debt_takes_time_to_repay() -> None:
    bucket = TokenBucket.full(600, now=0.0)  # 10 tokens per second
    bucket.charge(0.0, 900)
    assert bucket.available(0.0) == pytest.approx(-300.0)
    assert bucket.seconds_until(0.0, 1.0) == pytest.approx(30.1)
    assert bucket.seconds_until(0.0, 0.0) == pytest.approx(30.0)
    assert bucket.seconds_until_full(0.0) == pytest.approx(90.0)
    assert bucket.take(30.1)


def test_seconds_until_is_zero_when_available_and_infinite_above_capacity() -> None:
    bucket = TokenBucket.full(60, now=0.0)
    assert bucket.seconds_until(0.0, 60) == 0.0
    assert bucket.seconds_until_full(0.0) == 0.0
    assert bucket.seconds_until(0.0, 61) == math.inf
    bucket.take(0.0, 30)
    assert bucket.seconds_until(0.0, 31) == pytest.approx(1.0)
    assert bucket.seconds_until_full(0.0) == pytest.approx(30.0)


def test_waiting_the_computed_time_always_lets_a_take_through() -> None:
    # 100 per minute refills 1.666… per second: float sums must not leave 0.9999999 tokens.
    bucket = TokenBucket.full(100, now=0.0)
    bucket.charge(0.0, 100)
    now = 0.0
    for _ in range(1000):
        now += bucket.seconds_until(now)
        assert bucket.take(now)
        assert not bucket.take(now)


def test_resized_keeps_the_fraction_used() -> None:
    bucket = TokenBucket.full(60, now=0.0)
    bucket.take(0.0, 45)  # three quarters used
    bigger = bucket.resized(600, now=0.0)
    assert (bigger.capacity, bigger.rate_per_s) == (600.0, 10.0)
    assert bigger.available(0.0) == pytest.approx(150.0)
    smaller = bucket.resized(6, now=0.0)
    assert smaller.available(0.0) == pytest.approx(1.5)
    assert bucket.available(0.0) == pytest.approx(15.0)  # the original is unchanged


def test_resized_refills_first_and_carries_a_debt() -> None:
    bucket = TokenBucket.full(60, now=0.0)
    bucket.charge(0.0, 90)  # owes half a burst
    resized = bucket.resized(120, now=30.0)  # 30 s later it holds 0: used all of it
    assert resized.available(30.0) == pytest.approx(0.0)
    assert resized.updated == 30.0
    owing = TokenBucket.full(60, now=0.0)
    owing.charge(0.0, 90)
    assert owing.resized(120, now=0.0).available(0.0) == pytest.approx(-60.0)


@pytest.mark.parametrize("per_minute", [0, -5])
def test_a_bucket_needs_a_positive_limit(per_minute: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket.full(per_minute, now=0.0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-3, "0s"),
        (0.0004, "1ms"),
        (0.25, "250ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (8.64, "8.64s"),
        (59.9, "59.9s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723, "1h2m3s"),
    ],
)
def test_format_duration_writes_openais_style(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "1"), (0.01, "1"), (1, "1"), (1.0000000001, "1"), (1.2, "2"), (59.5, "60"), (61, "61")],
)
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(
    seconds: float, text: str
) -> None:
    assert retry_after_header(seconds) == text
