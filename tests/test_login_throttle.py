"""LoginThrottle on a hand-moved clock: counted before checking, one at a time, known addresses."""

from __future__ import annotations

import unicodedata

import pytest

from proxy.login_throttle import LoginRefused, LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock) -> LoginThrottle:
    return LoginThrottle(
        username_limit=3, address_limit=5, window_s=60, known_address_s=3600, clock=clock
    )


async def wrong(limits: LoginThrottle, username: str, address: str) -> None:
    await limits.attempt(username, address)
    await limits.fail(username, address)


async def refusal(limits: LoginThrottle, username: str, address: str) -> LoginRefused:
    with pytest.raises(LoginRefused) as refused:
        await limits.attempt(username, address)
    return refused.value


async def test_usernames_and_addresses_are_counted_and_forgotten_in_time() -> None:
    clock = Clock()
    limits = throttle(clock)
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


async def test_an_attempt_counts_before_it_is_checked_and_only_one_runs_at_a_time() -> None:
    limits = throttle(Clock())
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


async def test_a_right_password_forgives_that_address_only_and_makes_it_known() -> None:
    clock = Clock()
    limits = throttle(clock)
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


async def test_a_known_address_is_forgotten_after_a_while() -> None:
    clock = Clock()
    limits = LoginThrottle(
        username_limit=3, address_limit=5, window_s=7200, known_address_s=3600, clock=clock
    )
    await limits.attempt("ann", "10.0.0.1")
    await limits.succeed("ann", "10.0.0.1")
    for _ in range(3):
        await wrong(limits, "ann", "10.0.0.66")
    await limits.attempt("ann", "10.0.0.1")
    await limits.fail("ann", "10.0.0.1")
    clock.now += 3601
    assert (await refusal(limits, "ann", "10.0.0.1")).reason == "locked"


async def test_every_spelling_of_a_name_is_one_key() -> None:
    limits = throttle(Clock())
    for _ in range(3):
        await wrong(limits, "René", "10.0.0.1")
    refused = await refusal(limits, unicodedata.normalize("NFD", "RENÉ"), "10.0.0.2")
    assert refused.reason == "locked"
    await limits.attempt("Straße", "10.0.0.3")
    assert (await refusal(limits, "STRASSE", "10.0.0.4")).reason == "in_progress"


async def test_an_attempt_never_checked_is_not_held_against_anyone() -> None:
    limits = throttle(Clock())
    await wrong(limits, "ann", "10.0.0.1")
    await wrong(limits, "ann", "10.0.0.1")
    for _ in range(10):
        await limits.attempt("ann", "10.0.0.1")
        await limits.fail("ann", "10.0.0.1", checked=False)  # the gateway was too busy to check
    await wrong(limits, "ann", "10.0.0.1")  # the third real failure
    assert (await refusal(limits, "ann", "10.0.0.1")).reason == "locked"


async def test_a_known_address_does_not_wait_for_a_guess_at_the_same_user() -> None:
    limits = throttle(Clock())
    assert await limits.attempt("ann", "10.0.0.1") is False
    await limits.succeed("ann", "10.0.0.1")
    assert await limits.attempt("ann", "10.0.0.66") is False  # a guesser's attempt in progress
    assert await limits.attempt("ann", "10.0.0.1") is True
    assert (
        await refusal(limits, "ann", "10.0.0.1")
    ).reason == "in_progress"  # its own one at a time
    await limits.succeed("ann", "10.0.0.1")
    await limits.fail("ann", "10.0.0.66")
