"""FleetSessionStore on a real Redis: two stores with two links stand for two processes."""

from __future__ import annotations

import importlib
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Literal

import coredis
import pytest
import trio

from actors.fleet_sessions import FleetSessionStore
from actors.redis_link import KEY_PREFIX, RedisLink
from actors.session_store import UserState
from proxy.errors import UpstreamUnavailable
from tests.redis_server import RedisServer

live = importlib.import_module("web.api.live")

TTL_S = 3600.0
VIEWER_PASSWORD = "a-viewer-password-long-enough"


class Clock:
    """Wall-clock time that a test moves by hand (Redis's TTLs follow the real clock)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


Users = dict[str, UserState]


@asynccontextmanager
async def fleet(
    url: str,
    *,
    users: Users | None = None,
    clock: Clock | None = None,
    on_down: Literal["local", "refuse"] = "local",
    max_sessions: int = 10_000,
    max_sessions_per_user: int = 50,
) -> AsyncIterator[tuple[FleetSessionStore, FleetSessionStore]]:
    """Two processes' stores, each with its own link, on one Redis."""
    states = users if users is not None else {}

    async def load() -> Mapping[str, UserState]:
        return dict(states)

    async with trio.open_nursery() as nursery:
        stores = []
        links = []
        for name in ("a", "b"):
            link = RedisLink(url, instance=name, on_down=on_down, probe_s=0.05)
            await nursery.start(link.run)
            store = FleetSessionStore(
                link,
                TTL_S,
                load,
                clock=clock,
                users_refresh_s=3600,  # followed by hand, as the fleet's bus would
                max_sessions=max_sessions,
                max_sessions_per_user=max_sessions_per_user,
            )
            await nursery.start(store.run)
            stores.append(store)
            links.append(link)
        try:
            yield stores[0], stores[1]
        finally:
            for store in stores:
                store.close()
            for link in links:
                link.close()


async def until(predicate: object, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.02)


async def redis_dump(url: str) -> dict[str, str]:
    """Every key of the gateway and what it holds, as text."""
    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    async with client:
        dump = {}
        async for key in client.scan_iter(match=KEY_PREFIX + "*"):
            kind = await client.type(key)
            if kind == "hash":
                dump[key] = repr(await client.hgetall(key))
            elif kind == "zset":
                dump[key] = repr(await client.zrange(key, 0, -1))
            elif kind == "set":
                dump[key] = repr(await client.smembers(key))
        return dump


async def _pttl(url: str, key: str) -> int:
    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    async with client:
        return await client.pttl(key)


async def test_a_session_made_on_one_process_is_valid_on_another(redis: RedisServer) -> None:
    async with fleet(redis.url) as (a, b):
        token, made = await a.create("Ann", "admin", must_change_password=False, password_hash="h1")
        found = await b.lookup(token)
        assert found is not None
        assert (found.username, found.role, found.key) == ("Ann", "admin", made.key)
        assert not found.must_change_password
        assert await b.lookup(token + "x") is None
        assert await b.lookup("") is None
        dump = await redis_dump(redis.url)
        assert dump  # it is in Redis, under the prefix
        assert all(token not in key and token not in value for key, value in dump.items())
        assert "h1" not in repr(dump)  # not even the password hash: a digest of it
        assert a.statistics().created == 1


async def test_signing_out_on_one_ends_it_on_every_other_at_once(redis: RedisServer) -> None:
    async with fleet(redis.url) as (a, b):
        token, _ = await a.create("ann", "admin", must_change_password=False, password_hash="h")
        seen_on_b = await b.lookup(token)
        assert seen_on_b is not None
        await a.end(seen_on_b)
        assert await b.lookup(token) is None
        assert await b.peek(token) is None
        assert await a.lookup(token) is None
        other, _ = await a.create("ann", "admin", must_change_password=False, password_hash="h")
        assert await b.revoke(other)
        assert await a.lookup(other) is None
        assert not await b.revoke(other)


async def test_revoking_and_changing_a_user_is_seen_by_every_process(redis: RedisServer) -> None:
    async with fleet(redis.url) as (a, b):
        tokens = [
            (await a.create("Ann", "viewer", must_change_password=True, password_hash="h"))[0]
            for _ in range(3)
        ]
        bob, _ = await b.create("bob", "admin", must_change_password=False, password_hash="h")
        await b.update_user("ANN", role="admin", must_change_password=False)
        promoted = await a.peek(tokens[0])
        assert promoted is not None
        assert (promoted.role, promoted.must_change_password) == ("admin", False)
        keep = await b.lookup(tokens[0])
        assert await b.revoke_user("ann", keep=keep) == 2
        assert await a.lookup(tokens[0]) is not None
        assert await a.lookup(tokens[1]) is None
        assert await a.lookup(tokens[2]) is None
        assert await a.lookup(bob) is not None
        assert await a.revoke_user("ann") == 1
        assert await b.lookup(tokens[0]) is None


async def test_deleted_users_and_changed_passwords_end_sessions_everywhere(
    redis: RedisServer,
) -> None:
    users: Users = {
        "ann": UserState("admin", False, "hash-1"),
        "bob": UserState("admin", False, "hash-2"),
        "cid": UserState("viewer", False, "hash-3"),
    }
    async with fleet(redis.url, users=users) as (a, b):
        ann, _ = await a.create("ann", "admin", must_change_password=False, password_hash="hash-1")
        bob, _ = await a.create("bob", "admin", must_change_password=False, password_hash="hash-2")
        cid, _ = await a.create("cid", "viewer", must_change_password=False, password_hash="hash-3")
        users["ann"] = UserState("admin", True, "hash-reset")  # the CLI reset her password
        del users["bob"]  # deleted
        users["cid"] = UserState("admin", True, "hash-3")  # promoted, must change password
        await b.follow_users()  # as the fleet's bus calls it on a user change anywhere
        assert await a.lookup(ann) is None
        assert await a.lookup(bob) is None
        promoted = await a.lookup(cid)
        assert promoted is not None
        assert (promoted.role, promoted.must_change_password) == ("admin", True)
        assert b.statistics().revoked == 2
        assert b.statistics().active == 1


async def test_expiry_and_sliding_refresh_move_the_redis_ttl(redis: RedisServer) -> None:
    clock = Clock()
    start = clock.now
    async with fleet(redis.url, clock=clock) as (a, b):
        token, made = await a.create("ann", "viewer", must_change_password=False, password_hash="h")
        key = f"{KEY_PREFIX}{{sessions}}:s:{made.key}"
        assert 0 < await _pttl(redis.url, key) <= TTL_S * 1000
        clock.now += 1000  # under half the ttl: no refresh
        found = await b.lookup(token)
        assert found is not None
        assert found.expires_at == pytest.approx(start + TTL_S, abs=0.001)
        clock.now += 1000  # past half: a full ttl from now, on every process and in Redis
        found = await b.lookup(token)
        assert found is not None
        assert found.expires_at == pytest.approx(clock.now + TTL_S, abs=0.001)
        seen_on_a = await a.peek(token)
        assert seen_on_a is not None
        assert seen_on_a.expires_at == pytest.approx(clock.now + TTL_S, abs=0.001)
        # Redis keeps it until then: the real clock has not moved 2,000 s, so more than the ttl.
        assert await _pttl(redis.url, key) > (TTL_S + 1500) * 1000
        user_set = f"{KEY_PREFIX}{{sessions}}:u:ann"
        assert await _pttl(redis.url, user_set) > (TTL_S + 1500) * 1000
        clock.now += TTL_S
        assert await a.peek(token) is None
        assert await a.lookup(token) is None
        assert a.statistics().expired == 1
        assert await _pttl(redis.url, key) == -2  # gone


async def test_caps_end_the_oldest_sessions_across_the_fleet(redis: RedisServer) -> None:
    clock = Clock()
    async with fleet(redis.url, clock=clock, max_sessions=5, max_sessions_per_user=3) as (a, b):
        ann = []
        for store in (a, b, a, b):
            clock.now += 1
            ann.append(
                (await store.create("ann", "admin", must_change_password=False, password_hash="h"))[
                    0
                ]
            )
        assert await b.lookup(ann[0]) is None  # the oldest of four, with three allowed
        assert [await a.peek(token) is not None for token in ann[1:]] == [True] * 3
        others = []
        for name, store in (("bob", b), ("cid", a), ("dan", b)):
            clock.now += 1
            others.append(
                (await store.create(name, "viewer", must_change_password=False, password_hash="h"))[
                    0
                ]
            )
        # Five in all: the one that expires soonest (ann's oldest left) made room.
        live = [await b.peek(token) is not None for token in ann[1:] + others]
        assert live == [False, True, True, True, True, True]
        assert a.statistics().revoked + b.statistics().revoked == 2


async def test_redis_down_serves_from_the_local_copy_and_writes_back(redis: RedisServer) -> None:
    users = {name: UserState("admin", False, "h") for name in ("ann", "bob")}
    async with fleet(redis.url, users=users) as (a, b):
        first, _ = await a.create("ann", "admin", must_change_password=False, password_hash="h")
        assert await b.lookup(first) is not None  # B has seen it: B keeps a copy
        pauser: coredis.Redis[str] = coredis.Redis.from_url(redis.url, decode_responses=True)
        async with pauser:
            # Redis stops answering (its data kept) for a while: each link times out once.
            await pauser.client_pause(6000)
        seen = await a.lookup(first)
        assert seen is not None
        assert await b.lookup(first) is not None
        # Meanwhile: a sign-out on A is not seen on B (the outage's known limit) ...
        await a.end(seen)
        assert await a.lookup(first) is None
        assert await b.lookup(first) is not None
        # ... and a sign-in on A works on A only.
        during, _ = await a.create("bob", "viewer", must_change_password=False, password_hash="h")
        assert await a.lookup(during) is not None
        assert await b.lookup(during) is None
        # Back: A writes back what it did, and the fleet agrees again, without a restart.
        await until(lambda: a._link.up and b._link.up)
        await _until_found(b, during)
        assert await b.lookup(first) is None


async def _until_found(store: FleetSessionStore, token: str) -> None:
    with trio.fail_after(10):
        while await store.lookup(token) is None:
            await trio.sleep(0.05)


async def test_redis_down_refuses_with_503_then_serves_again(redis: RedisServer) -> None:
    async with fleet(redis.url, on_down="refuse") as (a, b):
        token, _ = await a.create("ann", "admin", must_change_password=False, password_hash="h")
        redis.stop(kill=True)
        with pytest.raises(UpstreamUnavailable) as refused:
            await b.lookup(token)
        assert refused.value.status == 503
        assert refused.value.headers == {"retry-after": "1"}
        assert refused.value.code == "redis_unavailable"
        with pytest.raises(UpstreamUnavailable):
            await a.create("ann", "admin", must_change_password=False, password_hash="h")
        assert redis.start()  # a new, empty Redis
        await until(lambda: a._link.up and b._link.up)
        again, _ = await a.create("ann", "admin", must_change_password=False, password_hash="h")
        assert await b.lookup(again) is not None


async def test_a_session_made_during_an_outage_survives_a_look_up_before_the_write_back(
    redis: RedisServer,
) -> None:
    async def no_users() -> Mapping[str, UserState]:
        return {}

    async with trio.open_nursery() as nursery:
        link = RedisLink(redis.url, instance="a", probe_s=0.05)
        await nursery.start(link.run)
        # Not run: nothing writes back but the look-up itself.
        store = FleetSessionStore(link, TTL_S, no_users)
        redis.stop(kill=True)
        token, _ = await store.create("ann", "admin", must_change_password=False, password_hash="h")
        assert await store.lookup(token) is not None
        assert redis.start()
        await until(lambda: link.up)
        assert await store.lookup(token) is not None
        assert await store.lookup(token) is not None  # and now in Redis
        assert len(await redis_dump(redis.url)) >= 3
        link.close()


async def test_a_redis_that_answers_with_errors_is_treated_as_down(redis: RedisServer) -> None:
    async with fleet(redis.url) as (a, _):
        admin: coredis.Redis[str] = coredis.Redis.from_url(redis.url, decode_responses=True)
        async with admin:
            # A replica now (as after a failover the old primary): every write is refused with
            # READONLY, though Redis answers.
            await admin.replicaof("127.0.0.1", 1)
            token, _ = await a.create("ann", "admin", must_change_password=False, password_hash="h")
            assert await a.lookup(token) is not None  # served from this process's copy
            await admin.replicaof("no", "one")
        assert await a.lookup(token) is not None  # written back by the look-up
