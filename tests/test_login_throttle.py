"""The sign-in throttle on a hand-moved clock: counted before checking, one at a time, known
addresses. Every test runs twice: on one process's LoginThrottle, and on a fleet of two
processes' FleetLoginThrottles on one Redis, taking turns call by call (an attempt admitted by
one may end on the other), so the fleet gives no more attempts than one process."""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Callable
from typing import Any

import coredis
import pytest
import trio

from actors.fleet_login_throttle import FleetLoginThrottle
from actors.redis_link import RedisLink
from proxy.errors import UpstreamUnavailable
from proxy.login_throttle import LoginRefused, LoginThrottle, SignInThrottle
from tests.redis_server import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


LIMITS: dict[str, float] = {
    "username_limit": 3,
    "address_limit": 5,
    "window_s": 60,
    "known_address_s": 3600,
}
Make = Callable[..., SignInThrottle]


class TakingTurns:
    """Several processes' throttles, each call made on the next one."""

    def __init__(self, throttles: list[FleetLoginThrottle]) -> None:
        self._next = itertools.cycle(throttles)

    async def attempt(self, username: str, address: str) -> bool:
        return await next(self._next).attempt(username, address)

    async def succeed(self, username: str, address: str) -> None:
        await next(self._next).succeed(username, address)

    async def fail(self, username: str, address: str, *, checked: bool = True) -> None:
        await next(self._next).fail(username, address, checked=checked)


@pytest.fixture(params=["one process", "fleet"])
def redis_url(request: pytest.FixtureRequest) -> str | None:
    """None for one process; the URL of a Redis of the test's own for a fleet."""
    if request.param == "one process":
        return None
    server: RedisServer = request.getfixturevalue("redis")
    return server.url


@pytest.fixture
async def make(redis_url: str | None, nursery: trio.Nursery) -> Make:
    """Makes the throttle under test: ``make(clock, **limits)``."""
    if redis_url is None:
        return lambda clock, **limits: LoginThrottle(clock=clock, **{**LIMITS, **limits})
    links = [RedisLink(redis_url, instance=name, probe_s=0.05) for name in ("a", "b")]
    for link in links:
        await nursery.start(link.run)

    def fleet(clock: Clock, **limits: Any) -> SignInThrottle:
        merged: dict[str, Any] = {**LIMITS, **limits}
        return TakingTurns([FleetLoginThrottle(link, clock=clock, **merged) for link in links])

    return fleet


async def wrong(limits: SignInThrottle, username: str, address: str) -> None:
    await limits.attempt(username, address)
    await limits.fail(username, address)


async def refusal(limits: SignInThrottle, username: str, address: str) -> LoginRefused:
    with pytest.raises(LoginRefused) as refused:
        await limits.attempt(username, address)
    return refused.value


async def test_usernames_and_addresses_are_counted_and_forgotten_in_time(make: Make) -> None:
    clock = Clock()
    limits = make(clock)
    for _ in range(3):
        await wrong(limits, "ann", "10.0.0.1")
    locked = await refusal(limits, "ANN", "10.0.0.9")  # per username, any address
    assert (locked.reason, locked.retry_after) == ("locked", 60)
    await wrong(limits, "bob", "10.0.0.1")  # the address has 4 of 5
    await wrong(limits, "cid", "10.0.0.1")
    assert (await refusal(limits, "dan", "10.0.0.1")).retry_after == 60  # per address, any username
    clock.now += 30
    assert (await refusal(limits, "dan", "10.0.0.1")).retry_after == 30
    clock.now += 31
    await wrong(limits, "ann", "10.0.0.1")


async def test_an_attempt_counts_before_it_is_checked_and_only_one_runs_at_a_time(
    make: Make,
) -> None:
    limits = make(Clock())
    await limits.attempt("ann", "10.0.0.1")
    # While it is checked, a second one for the same user or from the same address waits.
    for username, address in [("ann", "10.0.0.2"), ("bob", "10.0.0.1")]:
        busy = await refusal(limits, username, address)
        assert (busy.reason, busy.retry_after) == ("in_progress", 1)
    await limits.attempt("bob", "10.0.0.2")  # others go on
    await limits.fail("bob", "10.0.0.2")
    await limits.fail("ann", "10.0.0.1")
    await wrong(limits, "ann", "10.0.0.1")
    await limits.attempt("ann", "10.0.0.1")
    # The third is counted while it is still being checked: the lock holds already.
    assert (await refusal(limits, "ann", "10.0.0.3")).reason == "locked"
    await limits.fail("ann", "10.0.0.1")
    assert (await refusal(limits, "ann", "10.0.0.3")).reason == "locked"


async def test_a_right_password_forgives_that_address_only_and_makes_it_known(make: Make) -> None:
    clock = Clock()
    limits = make(clock)
    await wrong(limits, "ann", "10.0.0.1")
    await wrong(limits, "ann", "10.0.0.1")
    await limits.attempt("ann", "10.0.0.1")
    await limits.succeed("ann", "10.0.0.1")  # two typos and the right one: nothing held against her
    for _ in range(3):
        await wrong(limits, "ann", "10.0.0.66")  # a guesser elsewhere
    assert (await refusal(limits, "ann", "10.0.0.7")).reason == "locked"
    # Ann at her known address is not locked out by the guesser, and her sign-in does not
    # forgive the guesser's failures.
    await limits.attempt("ann", "10.0.0.1")
    await limits.succeed("ann", "10.0.0.1")
    assert (await refusal(limits, "ann", "10.0.0.66")).reason == "locked"
    assert (await refusal(limits, "ann", "10.0.0.7")).reason == "locked"
    # A known address still has its own limit.
    for name in ("b", "c", "d", "e", "f"):
        await wrong(limits, name, "10.0.0.1")
    assert (await refusal(limits, "ann", "10.0.0.1")).reason == "locked"


async def test_a_known_address_is_forgotten_after_a_while(make: Make) -> None:
    clock = Clock()
    limits = make(clock, window_s=7200)
    await limits.attempt("ann", "10.0.0.1")
    await limits.succeed("ann", "10.0.0.1")
    for _ in range(3):
        await wrong(limits, "ann", "10.0.0.66")
    await limits.attempt("ann", "10.0.0.1")
    await limits.fail("ann", "10.0.0.1")
    clock.now += 3601
    assert (await refusal(limits, "ann", "10.0.0.1")).reason == "locked"


async def test_every_spelling_of_a_name_is_one_key(make: Make) -> None:
    limits = make(Clock())
    for _ in range(3):
        await wrong(limits, "René", "10.0.0.1")
    refused = await refusal(limits, unicodedata.normalize("NFD", "RENÉ"), "10.0.0.2")
    assert refused.reason == "locked"
    await limits.attempt("Straße", "10.0.0.3")
    assert (await refusal(limits, "STRASSE", "10.0.0.4")).reason == "in_progress"


async def test_an_attempt_never_checked_is_not_held_against_anyone(make: Make) -> None:
    limits = make(Clock())
    await wrong(limits, "ann", "10.0.0.1")
    await wrong(limits, "ann", "10.0.0.1")
    for _ in range(10):
        await limits.attempt("ann", "10.0.0.1")
        await limits.fail("ann", "10.0.0.1", checked=False)  # the gateway was too busy to check
    await wrong(limits, "ann", "10.0.0.1")  # the third real failure
    assert (await refusal(limits, "ann", "10.0.0.1")).reason == "locked"


async def test_a_known_address_does_not_wait_for_a_guess_at_the_same_user(make: Make) -> None:
    limits = make(Clock())
    assert await limits.attempt("ann", "10.0.0.1") is False
    await limits.succeed("ann", "10.0.0.1")
    assert await limits.attempt("ann", "10.0.0.66") is False  # a guesser's attempt in progress
    assert await limits.attempt("ann", "10.0.0.1") is True
    assert (
        await refusal(limits, "ann", "10.0.0.1")
    ).reason == "in_progress"  # its own one at a time
    await limits.succeed("ann", "10.0.0.1")
    await limits.fail("ann", "10.0.0.66")


async def _two_processes(
    nursery: trio.Nursery, url: str, *, on_down: str = "local"
) -> tuple[FleetLoginThrottle, FleetLoginThrottle, list[RedisLink]]:
    links = [
        RedisLink(url, instance=name, on_down=on_down, probe_s=0.05)  # type: ignore[arg-type]
        for name in ("a", "b")
    ]
    for link in links:
        await nursery.start(link.run)
    clock = Clock()
    a, b = (FleetLoginThrottle(link, clock=clock, **LIMITS) for link in links)  # type: ignore[arg-type]
    return a, b, links


async def _until_up(links: list[RedisLink]) -> None:
    with trio.fail_after(10):
        while not all(link.up for link in links):
            await trio.sleep(0.02)


async def test_failures_on_any_process_count_for_all_and_name_no_one(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    a, b, _ = await _two_processes(nursery, redis.url)
    await wrong(a, "ann", "10.0.0.1")
    await wrong(b, "ann", "10.0.0.2")
    await wrong(a, "ann", "10.0.0.3")
    for process in (a, b):  # three in all, though each process saw fewer
        assert (await refusal(process, "ann", "10.0.0.4")).reason == "locked"
    await a.attempt("bob", "10.0.0.9")
    assert (await refusal(b, "bob", "10.0.0.8")).reason == "in_progress"
    await a.fail("bob", "10.0.0.9")
    keys = await a_redis_keys(redis.url)
    assert keys
    assert not [key for key in keys if "ann" in key or "10.0.0" in key]


async def a_redis_keys(url: str) -> list[str]:
    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    async with client:
        return [key async for key in client.scan_iter(match="llm-proxy:*")]


async def test_redis_down_counts_per_process_then_fleet_wide_again(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    a, b, links = await _two_processes(nursery, redis.url)
    redis.stop(kill=True)
    for _ in range(3):
        await wrong(a, "ann", "10.0.0.1")
    assert (await refusal(a, "ann", "10.0.0.2")).reason == "locked"  # A's own count
    await wrong(b, "ann", "10.0.0.2")  # B knows nothing of A's: the outage's price
    assert redis.start()  # a new, empty Redis
    await _until_up(links)
    await wrong(a, "ann", "10.0.0.1")
    await wrong(b, "ann", "10.0.0.2")
    await wrong(a, "ann", "10.0.0.3")
    assert (await refusal(b, "ann", "10.0.0.4")).reason == "locked"


async def test_redis_down_refuses_sign_ins_under_refuse(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    a, _, links = await _two_processes(nursery, redis.url, on_down="refuse")
    redis.stop(kill=True)
    with pytest.raises(UpstreamUnavailable) as refused:
        await a.attempt("ann", "10.0.0.1")
    assert (refused.value.status, refused.value.headers) == (503, {"retry-after": "1"})
    assert redis.start()
    await _until_up(links)
    assert await a.attempt("ann", "10.0.0.1") is False


async def test_a_redis_that_refuses_writes_counts_in_this_process(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    a, b, _ = await _two_processes(nursery, redis.url)
    admin: coredis.Redis[str] = coredis.Redis.from_url(redis.url, decode_responses=True)
    async with admin:
        await admin.replicaof("127.0.0.1", 1)  # READONLY to every write, though it answers
        for _ in range(3):
            await wrong(a, "ann", "10.0.0.1")
        assert (await refusal(a, "ann", "10.0.0.2")).reason == "locked"
        await admin.replicaof("no", "one")
    await wrong(b, "ann", "10.0.0.2")  # fleet-wide again (A's local count stays A's)
