"""FleetLimiter on a real Redis shared by three limiters, each with its own RedisLink (three
processes of a fleet): exact limits across them, batching, settles fleet-wide, the headers of the
in-memory limiter, Redis going away and coming back, and cancelled callers. Real time: Redis is
another process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Literal

import coredis
import pytest
import trio

from actors.fleet_limiter import FleetLimiter
from actors.rate_limiter import ClientLimits, RateLimiter
from actors.redis_link import RedisLink
from proxy.errors import ServiceUnavailable
from proxy.rate_limit import RateDecision, TokenReservation
from tests.redis_server import RedisServer
from web.limits import rate_limit_headers

Fleet = Sequence[FleetLimiter]


@asynccontextmanager
async def fleet(
    url: str,
    size: int = 3,
    *,
    on_down: Literal["local", "refuse"] = "local",
    global_rpm: int = 0,
) -> AsyncIterator[Fleet]:
    """``size`` limiters, each with its own link to Redis at ``url``, running."""
    async with trio.open_nursery() as nursery:
        links = [
            RedisLink(url, instance=f"test:{n}", on_down=on_down, probe_s=0.05) for n in range(size)
        ]
        limiters = [FleetLimiter(link, global_requests_per_minute=global_rpm) for link in links]
        for link in links:
            await nursery.start(link.run)
        for limiter in limiters:
            await nursery.start(limiter.run)
        yield limiters
        for limiter in limiters:
            limiter.close()
        for link in links:
            link.close()


async def _until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def _settle(limiter: FleetLimiter, reservation: TokenReservation | None, used: int) -> None:
    """Settle, and wait for the round trip that carries the settle to Redis."""
    assert reservation is not None
    before = limiter.statistics().round_trips
    limiter.settle(reservation, used)
    await _until(lambda: limiter.statistics().round_trips > before)


async def _reserve_all(
    limiters: Fleet, client: str, limits: ClientLimits, per_limiter: int, tokens: int = 0
) -> list[RateDecision]:
    """``per_limiter`` concurrent admissions on each limiter at once."""
    decisions: list[RateDecision] = []

    async def one(limiter: FleetLimiter) -> None:
        decisions.append(await limiter.reserve(client, limits, tokens))

    async with trio.open_nursery() as nursery:
        for _ in range(per_limiter):
            for limiter in limiters:
                nursery.start_soon(one, limiter)
    return decisions


async def test_ninety_calls_over_three_processes_at_30_rpm_let_exactly_30_through(
    redis: RedisServer,
) -> None:
    async with fleet(redis.url) as limiters:
        decisions = await _reserve_all(limiters, "c", ClientLimits(30), per_limiter=30)
        assert sum(decision.allowed for decision in decisions) == 30
        denied = [decision for decision in decisions if not decision.allowed]
        assert {decision.reason for decision in denied} == {"client requests"}
        # Refilled at 30/60 per second: the next request in about 2 s.
        assert all(0 < decision.retry_after_s <= 2.0 for decision in denied)
        stats = [limiter.statistics() for limiter in limiters]
        assert sum(s.allowed for s in stats) == 30
        assert sum(s.denied for s in stats) == 60
        # Batched: 90 admissions in far fewer round trips than one each.
        assert sum(s.batched_admissions for s in stats) == 90
        assert sum(s.round_trips for s in stats) <= 12
        assert max(s.largest_batch for s in stats) >= 10


async def test_a_global_limit_is_shared_by_the_fleet(redis: RedisServer) -> None:
    async with fleet(redis.url, global_rpm=12) as limiters:
        decisions = await _reserve_all(limiters, "c", ClientLimits(0), per_limiter=8)
        assert sum(decision.allowed for decision in decisions) == 12
        assert {d.reason for d in decisions if not d.allowed} == {"global requests"}


async def test_token_budget_is_exact_and_settles_are_seen_fleet_wide(redis: RedisServer) -> None:
    limits = ClientLimits(0, tokens_per_minute=1000)
    async with fleet(redis.url) as (a, b, c):
        decisions = await _reserve_all((a, b, c), "t", limits, per_limiter=14, tokens=90)
        admitted = [decision for decision in decisions if decision.allowed]
        assert len(admitted) == 11  # 11 × 90 = 990 of 1000; a 12th would exceed the budget
        assert {d.reason for d in decisions if not d.allowed} == {"client tokens"}
        assert sum(limiter.statistics().tokens_reserved for limiter in (a, b, c)) == 990
        reservations = [decision.reservation for decision in admitted]
        assert all(r is not None and r.fleet for r in reservations)
        owned = {id(r) for d in admitted if (r := d.reservation) is not None}
        assert len(owned) == 11
        # A refund made on one process is there for the others.
        await _settle(a, admitted[0].reservation, 10)  # used 10 of 90: 80 back
        assert (await b.peek("t", limits)).token_remaining == 10 + 80
        # A charge beyond the reservation puts the budget in debt, on every process.
        await _settle(c, admitted[1].reservation, 590)  # 500 more than reserved
        seen = await a.peek("t", limits)
        assert seen.token_remaining == 0
        assert (seen.allowed, seen.reason) == (False, "client tokens")
        denied = await b.reserve("t", limits, 1)
        assert not denied.allowed
        # 410 owed at 1000/60 per second: about 24.6 s until one token is there.
        assert denied.retry_after_s == pytest.approx(411 / (1000 / 60), abs=1.0)


async def test_request_too_large_for_the_whole_budget(redis: RedisServer) -> None:
    async with fleet(redis.url, 1) as (limiter,):
        decision = await limiter.reserve("t", ClientLimits(10, tokens_per_minute=100), 101)
        assert (decision.allowed, decision.reason) == (False, "request too large")
        assert decision.retry_after_s == float("inf")


async def test_the_headers_are_the_in_memory_limiters_for_the_same_sequence(
    redis: RedisServer,
) -> None:
    local = RateLimiter(global_requests_per_minute=0)
    limits = ClientLimits(4, tokens_per_minute=600)
    async with fleet(redis.url, 2) as (a, b):
        for n, tokens in enumerate([100, 150, 50, 120, 10]):
            fleet_decision = await (a, b)[n % 2].reserve("h", limits, tokens)
            local_decision = await local.reserve("h", limits, tokens)
            _same(fleet_decision, local_decision)
            if fleet_decision.reservation is not None:
                assert local_decision.reservation is not None
                await _settle((a, b)[n % 2], fleet_decision.reservation, tokens // 2)
                local.settle(local_decision.reservation, tokens // 2)
        _same(await b.peek("h", limits), await local.peek("h", limits))
        # A limit lowered by an admin resizes the bucket the same way.
        lowered = ClientLimits(2, tokens_per_minute=300)
        _same(await a.peek("h", lowered), await local.peek("h", lowered))


def _same(fleet_decision: RateDecision, local_decision: RateDecision) -> None:
    """The same decision and the same headers, but for the reset times (the two limiters' clocks
    run apart by the time the round trips take)."""
    assert (fleet_decision.allowed, fleet_decision.reason) == (
        local_decision.allowed,
        local_decision.reason,
    )
    assert fleet_decision.retry_after_s == pytest.approx(local_decision.retry_after_s, abs=0.5)
    resets = {b"x-ratelimit-reset-requests", b"x-ratelimit-reset-tokens"}
    fleet_headers = [h for h in rate_limit_headers(fleet_decision) if h[0] not in resets]
    local_headers = [h for h in rate_limit_headers(local_decision) if h[0] not in resets]
    assert fleet_headers == local_headers
    assert fleet_decision.reset_s == pytest.approx(local_decision.reset_s, abs=0.5)
    assert fleet_decision.token_reset_s == pytest.approx(local_decision.token_reset_s, abs=0.5)


async def test_redis_down_decides_locally_then_exact_again_when_back(redis: RedisServer) -> None:
    limits = ClientLimits(5)
    async with fleet(redis.url, 2) as (a, b):
        assert sum(d.allowed for d in await _reserve_all((a, b), "c", limits, 4)) == 5
        redis.stop(kill=True)
        # Each process now decides with its own buckets: no call fails for the outage.
        decisions = await _reserve_all((a, b), "c", limits, 4)
        assert sum(d.allowed for d in decisions) == 8  # 4 of 5 on each, fresh local buckets
        assert sum(limiter.statistics().decided_locally for limiter in (a, b)) == 8
        local_one = decisions[0].reservation
        assert local_one is None  # no token limit here; a token budget below
        budget = ClientLimits(0, tokens_per_minute=100)
        local_decision = await a.reserve("t", budget, 60)
        assert local_decision.reservation is not None
        assert not local_decision.reservation.fleet
        assert redis.start()
        await _until(lambda: a._link.up and b._link.up)
        # Back: fleet-wide again, from Redis' (new, empty) buckets; the local ones not carried.
        assert sum(d.allowed for d in await _reserve_all((a, b), "c", limits, 4)) == 5
        a.settle(local_decision.reservation, 0)  # settles where it was taken: locally
        assert a.statistics().tokens_reserved == 0
        assert (await a.peek("t", budget)).token_remaining == 100


async def test_redis_down_refuses_with_503_under_refuse(redis: RedisServer) -> None:
    async with fleet(redis.url, 1, on_down="refuse") as (limiter,):
        assert (await limiter.reserve("c", ClientLimits(5))).allowed
        redis.stop(kill=True)
        for _ in range(2):  # the round trip that finds it down, then the link known down
            with pytest.raises(ServiceUnavailable) as refused:
                await limiter.reserve("c", ClientLimits(5))
            error = refused.value
            assert (error.status, error.code) == (503, "rate_limit_store_unavailable")
            assert error.headers["retry-after"] == "1"
            assert "rate limit store (Redis) is unreachable" in error.message
        assert limiter.statistics().refused_store_down == 2
        assert redis.start()
        await _until(lambda: limiter._link.up)
        assert (await limiter.reserve("c", ClientLimits(5))).allowed


async def test_a_cancelled_waiter_leaks_no_tokens(redis: RedisServer) -> None:
    limits = ClientLimits(0, tokens_per_minute=1000)
    async with fleet(redis.url, 1) as (limiter,):
        pauser: coredis.Redis[str] = coredis.Redis.from_url(redis.url, decode_responses=True)
        async with pauser:
            # Redis holds the script's round trip for 300 ms: the caller leaves meanwhile, and
            # its admission is granted after it left.
            await pauser.client_pause(300, coredis.PureToken.WRITE)
            with trio.move_on_after(0.1) as scope:
                await limiter.reserve("t", limits, 400)
            assert scope.cancelled_caught
        # Granted after it left (the first round trip), given back by the next.
        await _until(lambda: limiter.statistics().round_trips == 2)
        assert limiter.statistics().tokens_reserved == 0
        assert (await limiter.peek("t", limits)).token_remaining == 1000


async def test_an_unlimited_client_costs_no_round_trip(redis: RedisServer) -> None:
    async with fleet(redis.url, 1) as (limiter,):
        decision = await limiter.reserve("free", ClientLimits(0), 500)
        assert (decision.allowed, decision.limit, decision.reservation) == (True, None, None)
        assert (await limiter.peek("free", ClientLimits(0))).allowed
        stats = limiter.statistics()
        assert (stats.round_trips, stats.allowed, stats.decided_locally) == (0, 1, 0)
