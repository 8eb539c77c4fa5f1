"""RedisWire, the fleet limiter's lean connection, against a real Redis: every reply type, error
replies, the URL's database and password, a Redis restarted, and a round trip cut short."""

from __future__ import annotations

import coredis
import coredis.exceptions
import pytest
import trio

from actors.redis_wire import RedisWire
from tests.redis_server import RedisServer


async def test_replies_of_every_kind(redis: RedisServer) -> None:
    wire = RedisWire(redis.url)
    assert await wire.execute(["SET", "k", "välue"], ["GET", "k"], ["GET", "none"]) == [
        "OK",
        "välue",
        None,
    ]
    assert await wire.execute(["INCRBY", "n", 41], ["RPUSH", "l", "a", "b"]) == [41, 2]
    script = "return {1, 'x', {2, 'y'}, redis.call('INCR', KEYS[1])}"
    assert await wire.execute(["EVAL", script, 1, "n"]) == [[1, "x", [2, "y"], 42]]
    big = "z" * 200_000  # more than one read
    assert await wire.execute(["SET", "big", big], ["GET", "big"]) == ["OK", big]
    with pytest.raises(coredis.exceptions.ResponseError, match="WRONGTYPE"):
        await wire.execute(["INCR", "l"])
    with pytest.raises(coredis.exceptions.NoScriptError):
        await wire.execute(["EVALSHA", "0" * 40, 0])
    assert await wire.execute(["PING"]) == ["PONG"]  # still in step after errors
    wire.drop()


async def test_the_urls_database_and_password(redis: RedisServer) -> None:
    admin: coredis.Redis[str] = coredis.Redis.from_url(redis.url, decode_responses=True)
    async with admin:
        await admin.config_set({"requirepass": "s3cret/pw"})
        url = f"redis://:s3cret%2Fpw@127.0.0.1:{redis.port}/3"
        wire = RedisWire(url)
        assert await wire.execute(["SET", "where", "db3"]) == ["OK"]
        wire.drop()
        with pytest.raises(coredis.exceptions.ResponseError):
            await RedisWire(f"redis://:wrong@127.0.0.1:{redis.port}/0").execute(["PING"])
    check: coredis.Redis[str] = coredis.Redis(
        port=redis.port, db=3, password="s3cret/pw", decode_responses=True
    )
    async with check:
        assert await check.get("where") == "db3"


async def test_a_restarted_redis_fails_one_round_trip_then_serves(redis: RedisServer) -> None:
    wire = RedisWire(redis.url)
    assert await wire.execute(["PING"]) == ["PONG"]
    redis.stop(kill=True)
    assert redis.start()
    with pytest.raises(ConnectionError):
        await wire.execute(["PING"])
    assert await wire.execute(["PING"]) == ["PONG"]
    redis.stop(kill=True)
    with pytest.raises(OSError, match="connect"):  # refused: to the link, Redis is unreachable
        await wire.execute(["PING"])


async def test_a_round_trip_cut_short_leaves_no_reply_behind(redis: RedisServer) -> None:
    wire = RedisWire(redis.url)
    admin: coredis.Redis[str] = coredis.Redis.from_url(redis.url, decode_responses=True)
    async with admin:
        await admin.client_pause(300, coredis.PureToken.WRITE)
        with trio.move_on_after(0.05):
            await wire.execute(["SET", "a", "1"])
        # Its "OK" would have come first on the same connection: dropped, so this read (allowed
        # during the pause) gets its own answer, at once.
        assert await wire.execute(["GET", "a"]) == [None]
    wire.drop()
