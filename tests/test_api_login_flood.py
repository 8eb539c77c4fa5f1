"""Sign-in under a flood of guesses: each guess counted before it is checked, one at a time per
user and per address, and a bounded hashing queue, so a real sign-in is neither raced nor starved.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Literal

import argon2
import httpx
import pytest
import trio

from proxy.passwords import SIGN_IN_SLOTS, Passwords
from proxy.service import RunningService
from tests.conftest import ADMIN_PASSWORD, StartGateway, signed_in

ATTACKER = {"x-forwarded-for": "203.0.113.7"}
ADMINS_DESK = {"x-forwarded-for": "198.51.100.2"}
NEW_LAPTOP = {"x-forwarded-for": "198.51.100.99"}


@pytest.fixture
async def dashboard(start_gateway: StartGateway) -> RunningService:
    # One trusted proxy hop: each test names the client's address in X-Forwarded-For.
    return await start_gateway({"server": {"trusted_proxy_hops": 1}})


async def login(
    client: httpx.AsyncClient, username: str, password: str, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(
        "/api/auth/login", json={"username": username, "password": password}, headers=headers
    )


async def burst(
    client: httpx.AsyncClient, guesses: list[str], username: str, headers: dict[str, str]
) -> list[httpx.Response]:
    """Send every guess at once; the answers in the order of ``guesses``."""
    answers: list[httpx.Response | None] = [None] * len(guesses)

    async def one(index: int, password: str) -> None:
        answers[index] = await login(client, username, password, headers)

    async with trio.open_nursery() as nursery:
        for index, password in enumerate(guesses):
            nursery.start_soon(one, index, password)
    return [answer for answer in answers if answer is not None]


async def test_a_concurrent_burst_of_guesses_is_checked_at_most_five_times(
    dashboard: RunningService,
) -> None:
    async with signed_in(dashboard):  # the admin's password becomes ADMIN_PASSWORD
        pass
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=dashboard.base_url, timeout=30, limits=limits) as client:
        assert (await login(client, "admin", ADMIN_PASSWORD, ADMINS_DESK)).status_code == 200
        passwords = dashboard.gateway.passwords
        before = passwords.statistics().verifies
        guesses = [f"guess number {n}" for n in range(200)]
        answers = await burst(client, guesses, "admin", ATTACKER)
        verified = passwords.statistics().verifies - before
        statuses = collections.Counter(answer.status_code for answer in answers)
        # The right password as the next guess: never checked, the user is locked for this
        # address (before, all 200 were checked, and a right one among them signed in).
        late = await login(client, "admin", ADMIN_PASSWORD, ATTACKER)
        # The admin at the desk they signed in from before is not locked out by the flood; from
        # an address never used before, the lock holds (a distributed guess would use one).
        desk = await login(client, "admin", ADMIN_PASSWORD, ADMINS_DESK)
        laptop = await login(client, "admin", ADMIN_PASSWORD, NEW_LAPTOP)
    assert len(answers) == 200
    assert verified <= 5, (verified, statuses)
    assert statuses[401] == verified, statuses
    assert statuses[429] == 200 - verified, statuses
    refused = [answer for answer in answers if answer.status_code == 429]
    assert all(int(answer.headers["retry-after"]) >= 1 for answer in refused)
    assert {answer.json()["error"]["code"] for answer in refused} <= {
        "login_throttled",
        "login_in_progress",
    }
    assert late.status_code == 429
    assert late.json()["error"]["code"] == "login_throttled"
    assert passwords.statistics().verifies - before == verified + 1  # the desk's sign-in only
    assert desk.status_code == 200, desk.text
    assert laptop.status_code == 429


class GatedHasher(argon2.PasswordHasher):
    """argon2 with cheap parameters whose verifies wait for the test to open the gate, so the
    hashing queue can be filled on purpose, whatever the machine's speed."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.gate = threading.Event()
        self.gate.set()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.gate.wait(timeout=30)
        return super().verify(hash, password)


async def test_sign_ins_beyond_the_hashing_queue_are_refused_but_a_known_address_gets_in(
    start_gateway: StartGateway,
) -> None:
    hasher = GatedHasher()
    passwords = Passwords(hasher)
    dashboard = await start_gateway({"server": {"trusted_proxy_hops": 1}}, passwords=passwords)
    async with signed_in(dashboard):
        pass
    unknown: list[httpx.Response] = []
    desk: list[httpx.Response] = []
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=dashboard.base_url, timeout=30, limits=limits) as client:
        assert (await login(client, "admin", ADMIN_PASSWORD, ADMINS_DESK)).status_code == 200

        async def guess(n: int) -> None:
            address = {"x-forwarded-for": f"203.0.113.{n}"}
            unknown.append(await login(client, f"user{n}", "a wrong password", address))

        async def admin_at_the_desk() -> None:
            desk.append(await login(client, "admin", ADMIN_PASSWORD, ADMINS_DESK))

        async def until(condition: Callable[[], bool]) -> None:
            with trio.fail_after(10):
                while not condition():
                    await trio.sleep(0.01)

        hasher.gate.clear()  # every verify now waits: the places fill and stay full
        try:
            async with trio.open_nursery() as nursery:
                for n in range(SIGN_IN_SLOTS + 3):
                    nursery.start_soon(guess, n)
                # Six places are taken; the three sign-ins beyond are answered at once.
                await until(lambda: len(unknown) == 3)
                assert passwords.statistics().signing_in == SIGN_IN_SLOTS
                # The admin, at an address known for them, takes a place kept for that.
                nursery.start_soon(admin_at_the_desk)
                await until(lambda: passwords.statistics().signing_in == SIGN_IN_SLOTS + 1)
                nursery.start_soon(guess, 99)
                await until(lambda: len(unknown) == 4)
                hasher.gate.set()
        finally:
            hasher.gate.set()
    statuses = collections.Counter(answer.status_code for answer in unknown)
    assert statuses == {401: SIGN_IN_SLOTS, 503: 4}, statuses
    busy = [answer for answer in unknown if answer.status_code == 503]
    assert all(answer.headers["retry-after"] == "1" for answer in busy)
    assert {answer.json()["error"]["code"] for answer in busy} == {"login_busy"}
    assert [answer.status_code for answer in desk] == [200]
    assert passwords.statistics().busy_refusals == 4


async def test_guessing_through_change_password_is_throttled_like_a_sign_in(
    dashboard: RunningService,
) -> None:
    # A stolen session must not turn change-password into an unthrottled password oracle.
    async with signed_in(dashboard) as admin:
        verifies = dashboard.gateway.passwords.statistics().verifies
        answers = [
            await admin.post(
                "/api/auth/change-password",
                json={"current_password": f"guess {n}", "new_password": "x" * 20},
                headers=ATTACKER,  # the token, used from elsewhere
            )
            for n in range(8)
        ]
        verified = dashboard.gateway.passwords.statistics().verifies - verifies
        # The lock is the user's: their sign-in from a new address waits too.
        laptop = await login(admin, "admin", ADMIN_PASSWORD, NEW_LAPTOP)
    assert laptop.status_code == 429
    assert [answer.status_code for answer in answers] == [400] * 5 + [429] * 3
    assert answers[-1].json()["error"]["code"] == "login_throttled"
    assert verified == 5
