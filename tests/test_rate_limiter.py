"""The RateLimiter actor: client and global buckets, token reservations and their settlement,
debt, resizing, sweeping, exactness."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from actors.rate_limiter import ClientLimits, RateLimiter, RateLimiterStatistics


async def test_a_burst_then_429_then_one_more_after_the_refill(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    limits = ClientLimits(60)
    decisions = [await limiter.reserve("c", limits) for _ in range(60)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == list(range(59, -1, -1))
    assert (decisions[0].limit, decisions[0].reset_s) == (60, pytest.approx(1.0))
    assert decisions[-1].reset_s == pytest.approx(60.0)

    denied = await limiter.reserve("c", limits)
    assert not denied.allowed
    assert denied.reason == "client requests"
    assert denied.retry_after_s == pytest.approx(1.0)
    assert (denied.limit, denied.remaining) == (60, 0)

    await trio.sleep(denied.retry_after_s)
    assert (await limiter.reserve("c", limits)).allowed
    assert not (await limiter.reserve("c", limits)).allowed
    assert limiter.statistics().allowed == 61
    assert limiter.statistics().denied == 2


async def test_an_allowed_decision_reports_no_retry(autojump_clock: trio.testing.MockClock) -> None:
    decision = await RateLimiter().reserve("c", ClientLimits(10))
    assert (decision.allowed, decision.retry_after_s, decision.reason) == (True, 0.0, None)
    assert (decision.limit, decision.remaining) == (10, 9)
    assert decision.reset_s == pytest.approx(6.0)


async def test_an_unlimited_client_is_never_denied_and_reports_no_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    decisions = [limiter.reserve_nowait("c", ClientLimits(0)) for _ in range(10_000)]
    assert all(d.allowed and d.limit is None for d in decisions)
    assert limiter.statistics().buckets == 0


async def test_the_global_bucket_is_shared_and_its_denial_spends_no_client_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(global_requests_per_minute=3)
    limits = ClientLimits(2)
    assert limiter.reserve_nowait("a", limits).allowed
    assert limiter.reserve_nowait("b", limits).allowed
    assert limiter.reserve_nowait("b", limits).allowed

    denied = limiter.reserve_nowait("a", limits)
    assert (denied.allowed, denied.reason, denied.limit) == (False, "global requests", 3)
    assert denied.retry_after_s == pytest.approx(20.0)

    await trio.sleep(20)
    # "a" still had its second request: had the global denial taken it, "a" would now hold
    # only the 2/3 of a request refilled in 20 s and be denied.
    assert limiter.reserve_nowait("a", limits).allowed
    assert limiter.peek_nowait("a", limits).remaining == 0


async def test_a_client_denial_spends_no_global_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(global_requests_per_minute=2)
    assert limiter.reserve_nowait("a", ClientLimits(1)).allowed
    for _ in range(5):
        assert limiter.reserve_nowait("a", ClientLimits(1)).reason == "client requests"
    allowed = limiter.reserve_nowait("b", ClientLimits(0))
    # An unlimited client reports the global bucket, which lost only "a"'s one request.
    assert (allowed.allowed, allowed.limit, allowed.remaining) == (True, 2, 0)


async def test_the_longest_wait_is_reported_when_several_buckets_deny(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Retrying after a shorter bucket's wait would only be denied again by the longer one.
    limits = ClientLimits(requests_per_minute=60, tokens_per_minute=600)  # 10 tokens per second
    limiter = RateLimiter(global_requests_per_minute=1)
    admitted = limiter.reserve_nowait("c", limits)  # the global bucket is empty for 60 s
    assert admitted.reservation is not None
    limiter.settle(admitted.reservation, 610)  # the client owes tokens for 1.1 s
    denied = limiter.reserve_nowait("c", limits)
    assert (denied.reason, denied.retry_after_s) == ("global requests", pytest.approx(60.0))

    limiter = RateLimiter(global_requests_per_minute=1)
    admitted = limiter.reserve_nowait("c", limits)
    assert admitted.reservation is not None
    limiter.settle(admitted.reservation, 1200)  # the client owes tokens for 60.1 s
    denied = limiter.reserve_nowait("c", limits)
    assert (denied.reason, denied.retry_after_s) == ("client tokens", pytest.approx(60.1))


async def test_token_debt_blocks_the_next_call_until_it_refills(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    limits = ClientLimits(requests_per_minute=60, tokens_per_minute=600)  # 10 tokens per second
    admitted = limiter.reserve_nowait("c", limits)
    assert admitted.reservation is not None
    limiter.settle(admitted.reservation, 900)  # a call that cost more than the minute's budget

    denied = limiter.reserve_nowait("c", limits)
    assert (denied.allowed, denied.reason) == (False, "client tokens")
    assert denied.retry_after_s == pytest.approx(30.1)
    # The headers stay about requests: the client's requests bucket, not spent by the denial.
    assert (denied.limit, denied.remaining) == (60, 59)

    await trio.sleep(30)
    assert not limiter.reserve_nowait("c", limits).allowed
    await trio.sleep(0.1)
    assert limiter.reserve_nowait("c", limits).allowed


async def test_tokens_are_not_reserved_for_a_client_without_a_token_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    decision = limiter.reserve_nowait("c", ClientLimits(60), 1_000_000)
    assert decision.allowed
    assert (decision.reservation, decision.token_limit) == (None, None)
    assert limiter.statistics().buckets == 1  # only the requests bucket


async def test_a_limit_change_resizes_the_bucket_keeping_the_fraction_used(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    for _ in range(30):
        assert limiter.reserve_nowait("c", ClientLimits(60)).allowed
    raised = limiter.reserve_nowait("c", ClientLimits(600))  # half used: 300 left, then one taken
    assert (raised.limit, raised.remaining) == (600, 299)
    lowered = limiter.peek_nowait("c", ClientLimits(6))
    assert (lowered.limit, lowered.remaining) == (6, 2)  # 299/600 of 6 = 2.99
    assert limiter.peek_nowait("c", ClientLimits(600)).remaining == 299  # a peek resizes nothing
    made_unlimited = limiter.reserve_nowait("c", ClientLimits(0))
    assert (made_unlimited.allowed, made_unlimited.limit) == (True, None)
    assert limiter.statistics().buckets == 0


async def test_peek_takes_nothing_and_allocates_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    first = limiter.peek_nowait("new", ClientLimits(5))
    assert (first.allowed, first.limit, first.remaining, first.reset_s) == (True, 5, 5, 0.0)
    assert limiter.statistics() == RateLimiterStatistics(
        buckets=0, allowed=0, denied=0, tokens_reserved=0
    )
    for _ in range(5):
        limiter.reserve_nowait("c", ClientLimits(5))
    peeked = limiter.peek_nowait("c", ClientLimits(5))
    assert (peeked.allowed, peeked.reason, peeked.remaining) == (False, "client requests", 0)
    assert peeked.retry_after_s == pytest.approx(12.0)
    assert limiter.statistics().denied == 0


async def test_the_sweep_drops_idle_buckets_and_run_exits_on_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(idle_s=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(limiter.run)
        for n in range(3000):  # more than one sweep batch
            limiter.reserve_nowait(f"idle-{n}", ClientLimits(10))
        debt = limiter.reserve_nowait("debtor", ClientLimits(10, 100)).reservation
        assert debt is not None
        limiter.settle(debt, 1000)  # 10 minutes to repay
        assert limiter.statistics().buckets == 3002
        for _ in range(9):  # one request every 10 s keeps a bucket alive
            await trio.sleep(10)
            limiter.reserve_nowait("busy", ClientLimits(10))
        # The sweep at 60 s dropped every bucket full by then and untouched since 0 s.
        assert limiter.statistics().buckets == 2  # busy's, and the debtor's token bucket
        await trio.sleep(600)
        assert limiter.statistics().buckets == 0
        limiter.close()
    assert limiter.reserve_nowait("c", ClientLimits(1)).allowed  # still answers after close


async def test_close_before_run_makes_run_return_at_once() -> None:
    limiter = RateLimiter()
    limiter.close()
    with trio.fail_after(1):
        await limiter.run()


async def test_exactly_the_budget_gets_through_under_concurrency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    allowed = 0

    async def request() -> None:
        nonlocal allowed
        if (await limiter.reserve("c", ClientLimits(100))).allowed:
            allowed += 1

    async with trio.open_nursery() as nursery:
        for _ in range(500):
            nursery.start_soon(request)
    assert allowed == 100
    assert limiter.statistics().denied == 400


async def test_a_cancelled_acquire_takes_no_budget(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter()
    with trio.CancelScope() as scope:
        scope.cancel()
        await limiter.reserve("c", ClientLimits(1))
    assert scope.cancelled_caught
    assert limiter.peek_nowait("c", ClientLimits(1)).remaining == 1


# ---------------------------------------------------------------------------------------------
# Tokens per minute: reserved at admission, settled after the call


TPM_600 = ClientLimits(requests_per_minute=0, tokens_per_minute=600)  # 10 tokens a second


async def test_a_call_reserves_its_estimate_at_admission_and_reports_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    decision = limiter.reserve_nowait("c", TPM_600, 250)
    assert decision.allowed
    assert decision.reservation is not None
    assert decision.reservation.tokens == 250
    assert (decision.token_limit, decision.token_remaining) == (600, 350)
    assert decision.token_reset_s == pytest.approx(25.0)
    assert limiter.statistics().tokens_reserved == 250
    # Only what is left is there for the next call, before the first one has ended.
    denied = limiter.reserve_nowait("c", TPM_600, 400)
    assert (denied.allowed, denied.reason) == (False, "client tokens")
    assert denied.retry_after_s == pytest.approx(5.0)
    assert (denied.token_limit, denied.token_remaining, denied.reservation) == (600, 350, None)


async def test_concurrent_calls_cannot_spend_the_same_tokens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    limits = ClientLimits(requests_per_minute=0, tokens_per_minute=20)
    decisions = []

    async def call() -> None:
        decisions.append(await limiter.reserve("c", limits, 5))

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(call)
    assert sum(d.allowed for d in decisions) == 4
    assert limiter.statistics().tokens_reserved == 20


async def test_settling_gives_back_the_unused_part_or_charges_the_excess(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    first = limiter.reserve_nowait("c", TPM_600, 500).reservation
    assert first is not None
    limiter.settle(first, 120)  # 380 given back
    assert limiter.peek_nowait("c", TPM_600).token_remaining == 480
    second = limiter.reserve_nowait("c", TPM_600, 400).reservation
    assert second is not None
    limiter.settle(second, 1000)  # 600 more than reserved: a debt of 520
    later = limiter.reserve_nowait("c", TPM_600, 10)
    assert (later.allowed, later.reason) == (False, "client tokens")
    assert later.retry_after_s == pytest.approx(53.0)  # (520 + 10) / 10 per second
    assert limiter.statistics().tokens_reserved == 0


async def test_an_unknown_usage_keeps_the_reservation_and_a_second_settlement_does_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    reservation = limiter.reserve_nowait("c", TPM_600, 300).reservation
    assert reservation is not None
    limiter.settle(reservation, None)
    limiter.settle(reservation, 0)
    assert limiter.peek_nowait("c", TPM_600).token_remaining == 300
    assert limiter.statistics().tokens_reserved == 0


async def test_a_failed_call_that_used_nothing_gets_everything_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    reservation = limiter.reserve_nowait("c", TPM_600, 600).reservation
    assert reservation is not None
    assert not limiter.reserve_nowait("c", TPM_600, 1).allowed
    limiter.settle(reservation, 0)
    assert limiter.peek_nowait("c", TPM_600).token_remaining == 600


async def test_a_call_larger_than_the_whole_budget_is_refused_for_good_and_takes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    limits = ClientLimits(requests_per_minute=10, tokens_per_minute=600)
    denied = limiter.reserve_nowait("c", limits, 601)
    assert (denied.allowed, denied.reason, denied.retry_after_s) == (
        False,
        "request too large",
        math.inf,
    )
    peeked = limiter.peek_nowait("c", limits)
    assert (peeked.remaining, peeked.token_remaining) == (10, 600)
    assert limiter.reserve_nowait("c", limits, 600).allowed


async def test_settling_after_the_limit_changed_or_the_bucket_was_swept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(idle_s=60)
    reservation = limiter.reserve_nowait("c", TPM_600, 100).reservation
    assert reservation is not None
    limiter.reserve_nowait("c", ClientLimits(0, 0))  # the limit was lifted: its bucket is gone
    limiter.settle(reservation, 50)
    assert limiter.statistics().buckets == 0

    async with trio.open_nursery() as nursery:
        await nursery.start(limiter.run)
        long_call = limiter.reserve_nowait("d", TPM_600, 100).reservation
        assert long_call is not None
        await trio.sleep(600)  # refilled, idle and swept while the call ran
        assert limiter.statistics().buckets == 0
        limiter.settle(long_call, 700)  # the excess is still owed
        assert limiter.peek_nowait("d", TPM_600).token_remaining == 0
        limiter.close()
