"""Two gateways on one Redis and one database, through the real dashboard API: a sign-in on one
is valid on the other, a sign-out or a deleted user is refused on both, wrong passwords count
across both, and the on_redis_down policies as the dashboard shows them."""

from __future__ import annotations

import importlib
import json

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.conftest import ADMIN_PASSWORD, StartGateway, signed_in
from tests.redis_server import RedisServer
from tests.test_fleet_sessions import redis_dump, until
from web.api.guard import SESSION_COOKIE

live = importlib.import_module("web.api.live")

VIEWER_PASSWORD = "a-viewer-password-long-enough"


async def test_two_gateways_share_sign_ins_sign_outs_and_the_throttle(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    a = await start_gateway({"cluster": {"redis_url": redis.url, "instance_name": "a"}})
    b = await start_gateway({"cluster": {"redis_url": redis.url, "instance_name": "b"}})
    async with (
        signed_in(a) as on_a,
        httpx.AsyncClient(base_url=b.base_url, timeout=10) as on_b,
    ):
        bearer = {"authorization": on_a.headers["authorization"]}
        status = await on_b.get("/api/auth/status", headers=bearer)
        assert status.status_code == 200, status.text
        assert status.json()["session"]["username"] == "admin"
        # A sign-in on B, its cookie used on A.
        login = await on_b.post(
            "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        cookie = {SESSION_COOKIE: login.cookies[SESSION_COOKIE]}
        on_b.cookies.clear()
        async with httpx.AsyncClient(base_url=a.base_url, timeout=10, cookies=cookie) as by_cookie:
            assert (await by_cookie.get("/api/auth/status")).status_code == 200
            # Signed out on B with A's session: refused on both at once.
            out = await on_b.post("/api/auth/logout", headers=bearer)
            assert out.status_code == 200, out.text
            for gateway in (on_a, on_b):
                refused = await gateway.get("/api/auth/status", headers=bearer)
                assert refused.status_code == 401
                assert refused.json()["error"]["code"] == "not_authenticated"
            # The cookie's session lives on, on both.
            assert (await by_cookie.get("/api/auth/status")).status_code == 200
            async with httpx.AsyncClient(base_url=b.base_url, cookies=cookie) as cookie_on_b:
                assert (await cookie_on_b.get("/api/auth/status")).status_code == 200
        # A user deleted on A cannot go on on B.
        async with signed_in(a) as admin_on_a:
            made = await admin_on_a.post(
                "/api/users",
                json={"username": "vic", "role": "viewer", "password": VIEWER_PASSWORD},
            )
            assert made.status_code == 201, made.text
            vic = await on_b.post(
                "/api/auth/login", json={"username": "vic", "password": VIEWER_PASSWORD}
            )
            assert vic.status_code == 200, vic.text
            vic_bearer = {"authorization": f"Bearer {vic.json()['token']}"}
            assert (await on_a.get("/api/auth/status", headers=vic_bearer)).status_code == 200
            assert (await admin_on_a.delete("/api/users/vic")).status_code == 200
        for client in (on_a, on_b):
            assert (await client.get("/api/auth/status", headers=vic_bearer)).status_code == 401
        # Wrong passwords count across the fleet: five in all lock the name on both.
        guess = {"username": "ghost", "password": "not-the-password"}
        for client in (on_a, on_b, on_a, on_b, on_a):
            assert (await client.post("/api/auth/login", json=guess)).status_code == 401
        for client in (on_a, on_b):
            locked = await client.post("/api/auth/login", json=guess)
            assert locked.status_code == 429
            assert locked.json()["error"]["code"] == "login_throttled"


async def test_the_dashboard_answers_503_while_redis_is_down_under_refuse(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    gateway = await start_gateway({"cluster": {"redis_url": redis.url, "on_redis_down": "refuse"}})
    async with signed_in(gateway) as client:
        redis.stop(kill=True)
        for answer in (
            await client.get("/api/auth/status"),
            await client.post(
                "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            ),
        ):
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1"
            error = answer.json()["error"]
            assert (error["type"], error["code"]) == ("service_unavailable", "redis_unavailable")
            assert set(error) == {"message", "type", "param", "code"}
        assert redis.start()
        link = gateway.gateway.redis
        assert link is not None
        await until(lambda: link.up)
        # A new, empty Redis: the session is gone, a sign-in works again.
        assert (await client.get("/api/auth/status")).status_code == 401
        again = await client.post(
            "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert again.status_code == 200, again.text


async def test_the_dashboard_serves_on_from_memory_while_redis_is_down_under_local(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    gateway = await start_gateway({"cluster": {"redis_url": redis.url}})
    link = gateway.gateway.redis
    assert link is not None
    async with signed_in(gateway) as client:
        redis.stop(kill=True)
        assert (await client.get("/api/auth/status")).status_code == 200  # this process's copy
        during = await client.post(
            "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert during.status_code == 200, during.text
        bearer = {"authorization": f"Bearer {during.json()['token']}"}
        assert (await client.get("/api/auth/status", headers=bearer)).status_code == 200
        assert redis.start()  # a new, empty Redis
        await until(lambda: link.up)
        # The session made during the outage is written back: valid fleet-wide again.
        with trio.fail_after(10):
            while (await client.get("/api/auth/status", headers=bearer)).status_code != 200:
                await trio.sleep(0.05)
        assert await redis_dump(redis.url)


async def test_a_sign_out_on_one_gateway_closes_the_live_feed_on_another(
    start_gateway: StartGateway, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "METRICS_EVERY_S", 0.1)
    a = await start_gateway({"cluster": {"redis_url": redis.url, "instance_name": "a"}})
    b = await start_gateway({"cluster": {"redis_url": redis.url, "instance_name": "b"}})
    async with signed_in(a) as admin:
        headers = [(b"authorization", admin.headers["authorization"].encode())]
        url = b.base_url.replace("http://", "ws://", 1) + "/api/ws"
        async with open_websocket_url(url, extra_headers=headers, disconnect_timeout=2) as socket:
            with trio.fail_after(10):
                while json.loads(await socket.get_message())["type"] != "metrics":
                    pass
            assert (await admin.post("/api/auth/logout")).status_code == 200
            code = None
            with trio.fail_after(5):
                while code is None:
                    try:
                        await socket.get_message()
                    except ConnectionClosed as closed:
                        code = closed.reason.code
    assert code == live.SESSION_ENDED


async def test_a_live_feed_stays_open_while_redis_is_down_under_refuse(
    start_gateway: StartGateway, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "METRICS_EVERY_S", 0.05)
    gateway = await start_gateway({"cluster": {"redis_url": redis.url, "on_redis_down": "refuse"}})
    link = gateway.gateway.redis
    assert link is not None
    async with signed_in(gateway) as admin:
        headers = [(b"authorization", admin.headers["authorization"].encode())]
        url = gateway.base_url.replace("http://", "ws://", 1) + "/api/ws"
        async with open_websocket_url(url, extra_headers=headers, disconnect_timeout=2) as socket:
            redis.stop(kill=True)
            await until(lambda: not link.up)
            # Whether the session ended cannot be told: the feed goes on meanwhile.
            ticks = 0
            with trio.fail_after(10):
                while ticks < 5:
                    ticks += json.loads(await socket.get_message())["type"] == "metrics"
            assert redis.start()  # a new, empty Redis: the session is gone with it
            code = None
            with trio.fail_after(10):
                while code is None:
                    try:
                        await socket.get_message()
                    except ConnectionClosed as closed:
                        code = closed.reason.code
    assert code == live.SESSION_ENDED
