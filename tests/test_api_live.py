"""``GET /api/ws``: who may open the live feed, what it carries, and that it slows nothing."""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import apsw
import httpx
import pytest
import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

from proxy.service import RunningService
from tests.conftest import (
    ADMIN_PASSWORD,
    CLIENT_KEY,
    StartGateway,
    initial_admin_password,
    logged,
    sdk,
    signed_in,
)

# The module, not the blueprint of the same name that ``web.api`` re-exports.
live = importlib.import_module("web.api.live")

VIEWER_PASSWORD = "a-long-enough-viewer-password"
HELLO = [{"role": "user", "content": "hello there gateway"}]
Headers = list[tuple[bytes, bytes]]


@pytest.fixture
async def dashboard(start_gateway: StartGateway) -> RunningService:
    # No provider key: the in-process mock answers model "mock". Bodies are stored, so the test
    # can check that the feed leaves them out.
    return await start_gateway(
        {
            "logging": {"store_bodies": True},
            "limits": {"default_client_requests_per_minute": 0},
            "providers": {"ollama": {"enabled": False}},
            "models": {"quick": {"provider": "mock", "model": "mock"}},
        }
    )


@pytest.fixture
def fast_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "METRICS_EVERY_S", 0.1)


def ws_url(gateway: RunningService, query: str = "") -> str:
    return gateway.base_url.replace("http://", "ws://", 1) + "/api/ws" + query


def bearer(client: httpx.AsyncClient) -> Headers:
    return [(b"authorization", client.headers["authorization"].encode())]


def token_of(client: httpx.AsyncClient) -> str:
    return client.headers["authorization"].removeprefix("Bearer ")


@asynccontextmanager
async def feed(
    gateway: RunningService, headers: Headers, **options: Any
) -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(
        ws_url(gateway), extra_headers=headers, disconnect_timeout=2, **options
    ) as socket:
        yield socket


async def next_event(socket: WebSocketConnection, kind: str, timeout: float = 10) -> dict[str, Any]:
    """The next frame of type ``kind``, skipping the others."""
    with trio.fail_after(timeout):
        while True:
            frame = json.loads(await socket.get_message())
            if frame["type"] == kind:
                return frame  # type: ignore[no-any-return]


async def close_reason(socket: WebSocketConnection, timeout: float = 5) -> CloseReason:
    """How the server closed the socket (frames still queued are skipped)."""
    with trio.fail_after(timeout):
        while True:
            try:
                await socket.get_message()
            except ConnectionClosed as closed:
                return closed.reason


async def refusal(gateway: RunningService, headers: Headers, query: str = "") -> ConnectionRejected:
    with pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(ws_url(gateway, query), extra_headers=headers):
            pytest.fail("the handshake should have been refused")
    return info.value


def error_code(rejected: ConnectionRejected) -> str:
    assert rejected.body is not None
    return json.loads(rejected.body)["error"]["code"]  # type: ignore[no-any-return]


async def flood(gateway: RunningService) -> None:
    """Publish some 16 MB that a client not reading cannot take: the kernel buffers fill and the
    socket's sender blocks."""
    padding = "x" * 16_384
    for n in range(1000):
        gateway.gateway.events.publish({"type": "filler", "n": n, "padding": padding})
        await trio.sleep(0)  # the feed's pump takes each one before the next


async def add_viewer(admin: httpx.AsyncClient) -> None:
    made = await admin.post(
        "/api/users", json={"username": "vera", "role": "viewer", "password": VIEWER_PASSWORD}
    )
    assert made.status_code == 201, made.text


# -- who may connect -------------------------------------------------------------------------------


async def test_an_anonymous_socket_is_refused_before_the_upgrade(dashboard: RunningService) -> None:
    rejected = await refusal(dashboard, [])
    assert rejected.status_code == 401
    assert error_code(rejected) == "not_authenticated"
    rejected = await refusal(dashboard, [(b"authorization", b"Bearer not-a-session")])
    assert rejected.status_code == 401


async def test_a_token_in_the_url_is_never_accepted(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        rejected = await refusal(dashboard, [], query=f"?token={token_of(admin)}")
    assert rejected.status_code == 400
    assert error_code(rejected) == "token_in_url"


async def test_the_session_cookie_needs_this_dashboards_origin(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        cookie = (b"cookie", f"llm_proxy_session={token_of(admin)}".encode())
        for origin in [b"http://evil.example", b"null"]:
            rejected = await refusal(dashboard, [cookie, (b"origin", origin)])
            assert rejected.status_code == 403
            assert error_code(rejected) == "bad_origin"
        rejected = await refusal(dashboard, [cookie])  # no Origin at all
        assert rejected.status_code == 403
        own = (b"origin", dashboard.base_url.encode())
        async with feed(dashboard, [cookie, own]) as socket:
            hello = await next_event(socket, "hello")
    assert hello == {"type": "hello", "user": "admin", "role": "admin"}


async def test_bearer_and_viewers_are_welcome(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        async with feed(dashboard, bearer(admin)) as socket:
            first = json.loads(await socket.get_message())
            assert first == {"type": "hello", "user": "admin", "role": "admin"}
            assert (await next_event(socket, "metrics"))["requests_total"] == 0
        await add_viewer(admin)
    async with (
        signed_in(dashboard, "vera", VIEWER_PASSWORD) as viewer,
        feed(dashboard, bearer(viewer)) as socket,
    ):
        hello = await next_event(socket, "hello")
    assert hello == {"type": "hello", "user": "vera", "role": "viewer"}


async def test_a_pending_password_change_is_refused(dashboard: RunningService) -> None:
    async with httpx.AsyncClient(base_url=dashboard.base_url) as client:
        login = await client.post(
            "/api/auth/login",
            json={"username": "admin", "password": initial_admin_password(dashboard)},
        )
    token = login.json()["token"]
    rejected = await refusal(dashboard, [(b"authorization", f"Bearer {token}".encode())])
    assert rejected.status_code == 403
    assert error_code(rejected) == "password_change_required"


# -- how many -------------------------------------------------------------------------------------


async def wait_for_open_feeds(gateway: RunningService, count: int) -> None:
    with trio.fail_after(5):
        while gateway.gateway.live_feeds.statistics().open != count:
            await trio.sleep(0.01)


async def test_one_session_opens_a_bounded_number_of_feeds(dashboard: RunningService) -> None:
    cap = dashboard.gateway.config.dashboard.max_live_feeds_per_session
    async with signed_in(dashboard) as admin, AsyncExitStack() as sockets:
        for _ in range(cap):
            socket = await sockets.enter_async_context(feed(dashboard, bearer(admin)))
            await next_event(socket, "hello")
        rejected = await refusal(dashboard, bearer(admin))
        assert rejected.status_code == 429
        assert error_code(rejected) == "too_many_live_feeds"
        assert rejected.headers is not None
        assert int(dict(rejected.headers)[b"retry-after"]) > 0
        # Another session of the same user has its own share.
        async with signed_in(dashboard) as again, feed(dashboard, bearer(again)) as other:
            await next_event(other, "hello")
        # A closed socket frees its place.
        await socket.aclose()
        await wait_for_open_feeds(dashboard, cap - 1)
        async with feed(dashboard, bearer(admin)) as replacement:
            await next_event(replacement, "hello")


async def test_all_sessions_together_open_a_bounded_number_of_feeds(
    start_gateway: StartGateway,
) -> None:
    dashboard = await start_gateway(
        {
            "dashboard": {"max_live_feeds": 3, "max_live_feeds_per_session": 2},
            "providers": {"ollama": {"enabled": False}},
        }
    )
    async with (
        signed_in(dashboard) as first,
        signed_in(dashboard) as second,
        feed(dashboard, bearer(first)),
        feed(dashboard, bearer(first)),
        feed(dashboard, bearer(second)) as third,
    ):
        await next_event(third, "hello")
        rejected = await refusal(dashboard, bearer(second))
        assert rejected.status_code == 503
        assert error_code(rejected) == "live_feeds_full"
        assert dashboard.gateway.live_feeds.statistics().refused == 1
    await wait_for_open_feeds(dashboard, 0)
    async with signed_in(dashboard) as later, feed(dashboard, bearer(later)) as socket:
        await next_event(socket, "hello")


# -- what it carries -------------------------------------------------------------------------------


async def test_every_logged_call_arrives_without_bodies_or_keys(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        await next_event(socket, "hello")
        await sdk(dashboard).chat.completions.create(model="mock", messages=HELLO)
        frame = await socket.get_message()
        event = json.loads(frame)
        while event["type"] != "request":
            frame = await socket.get_message()
            event = json.loads(frame)
    assert event["model"] == "mock"
    assert event["provider"] == "mock"
    assert event["status"] == "ok"
    assert event["http_status"] == 200
    assert event["prompt_tokens"] > 0
    assert event["completion_tokens"] > 0
    assert event["total_tokens"] == event["prompt_tokens"] + event["completion_tokens"]
    assert event["alias"] is None
    assert event["endpoint"] == "chat"
    assert event["request_id"]
    assert event.keys() == {"type", *live.SHOWN_FIELDS, "failed_attempts", "alias", "client_name"}
    assert event["client_name"] is None  # the static key's client has no row, so no name
    assert event["failed_attempts"] is None
    # The stored row has the bodies (store_bodies is on); the feed has none of their text.
    (row,) = await logged(dashboard)
    assert row["request_body"]
    assert "hello there gateway" not in frame
    assert CLIENT_KEY not in frame
    assert ADMIN_PASSWORD not in frame


async def test_a_call_by_alias_names_it(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        await next_event(socket, "hello")
        await sdk(dashboard).chat.completions.create(model="quick", messages=HELLO)
        event = await next_event(socket, "request")
    assert event["alias"] == "quick"
    assert event["model"] == "quick"
    assert event["upstream_model"] == "mock"


async def test_hub_events_arrive_as_published(dashboard: RunningService) -> None:
    breaker = {"type": "provider", "name": "mock", "state": "open"}
    credit = {"type": "credit", "provider": "openai", "balance_usd": 1.5, "threshold_usd": 2.0}
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        await next_event(socket, "hello")
        dashboard.gateway.events.publish(breaker)
        dashboard.gateway.events.publish(credit)
        assert await next_event(socket, "provider") == breaker
        assert await next_event(socket, "credit") == credit


@pytest.mark.usefixtures("fast_ticks")
async def test_metrics_arrive_every_period(
    dashboard: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "PING_EVERY_S", 0.1)
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        await sdk(dashboard).chat.completions.create(model="mock", messages=HELLO)
        await next_event(socket, "request")
        metrics = await next_event(socket, "metrics")
        assert metrics.keys() == {
            "type",
            "ts_ms",
            "uptime_s",
            "requests_per_min",
            "errors_per_min",
            "in_flight",
            "requests_total",
            "errors_total",
            "cancelled_total",
            "prompt_tokens_total",
            "completion_tokens_total",
            "cost_usd_total",
            "providers",
            "dropped",
            "dropped_total",
        }
        assert metrics["requests_total"] == 1
        assert metrics["requests_per_min"] == 1
        assert metrics["errors_per_min"] == 0
        assert metrics["prompt_tokens_total"] > 0
        assert metrics["providers"] == {"mock": {"state": "closed", "in_flight": 0, "waiting": 0}}
        assert metrics["dropped"] == 0
        later = await next_event(socket, "metrics")
        assert later["ts_ms"] >= metrics["ts_ms"]
        ping = await next_event(socket, "ping")
        assert ping.keys() == {"type", "ts_ms"}


async def test_the_first_minute_counts_calls_made_before_the_socket_opened(
    dashboard: RunningService,
) -> None:
    for _ in range(3):
        await sdk(dashboard).chat.completions.create(model="mock", messages=HELLO)
    await logged(dashboard, 3)
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        metrics = await next_event(socket, "metrics")
    assert metrics["requests_per_min"] == 3


async def test_a_call_logged_but_not_yet_written_counts_in_the_first_minute(
    dashboard: RunningService,
) -> None:
    # The race behind a flaky test: a call the logger has counted but the writer has not stored
    # yet was counted neither in the database's last minute nor in the totals' growth.
    database = dashboard.gateway.config.server.database
    async with signed_in(dashboard) as admin:
        lock = await trio.to_thread.run_sync(apsw.Connection, database)
        try:
            # Another writer holds the database: the gateway's writer waits, the call is counted.
            await trio.to_thread.run_sync(lock.execute, "BEGIN IMMEDIATE")
            await sdk(dashboard).chat.completions.create(model="mock", messages=HELLO)
            with trio.fail_after(5):
                while dashboard.gateway.logger.statistics().records < 1:
                    await trio.sleep(0.01)
            assert dashboard.gateway.writer.statistics().rows_written == 0
            async with feed(dashboard, bearer(admin)) as socket:
                metrics = await next_event(socket, "metrics")
        finally:
            await trio.to_thread.run_sync(lock.execute, "ROLLBACK")
            await trio.to_thread.run_sync(lock.close)
    assert metrics["requests_total"] == 1
    assert metrics["requests_per_min"] == 1


async def test_plain_http_on_the_feed_is_a_clear_error(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        answer = await admin.get("/api/ws")
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"]


# -- when it ends ----------------------------------------------------------------------------------


async def test_a_client_leaving_ends_its_subscriptions(dashboard: RunningService) -> None:
    gateway = dashboard.gateway
    async with signed_in(dashboard) as admin:
        async with feed(dashboard, bearer(admin)) as socket:
            await next_event(socket, "metrics")
            assert gateway.logger.statistics().subscribers == 1
            assert gateway.events.statistics().subscribers == 1
        with trio.fail_after(5):
            while (
                gateway.logger.statistics().subscribers or gateway.events.statistics().subscribers
            ):
                await trio.sleep(0.01)


@pytest.mark.usefixtures("fast_ticks")
async def test_signing_out_closes_the_socket(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        await next_event(socket, "metrics")
        assert (await admin.post("/api/auth/logout")).status_code == 200
        reason = await close_reason(socket)
    assert reason.code == live.SESSION_ENDED
    assert reason.reason


@pytest.mark.usefixtures("fast_ticks")
async def test_a_password_change_elsewhere_closes_the_socket(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        await add_viewer(admin)
    async with (
        signed_in(dashboard, "vera", VIEWER_PASSWORD) as laptop,
        signed_in(dashboard, "vera", VIEWER_PASSWORD) as phone,
        feed(dashboard, bearer(laptop)) as socket,
    ):
        await next_event(socket, "metrics")
        changed = await phone.post(
            "/api/auth/change-password",
            json={"current_password": VIEWER_PASSWORD, "new_password": "another-long-password-1"},
        )
        assert changed.status_code == 200, changed.text
        reason = await close_reason(socket)
    assert reason.code == live.SESSION_ENDED


@pytest.mark.usefixtures("fast_ticks")
async def test_a_client_that_never_reads_slows_nothing(
    dashboard: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "OUTBOX_SIZE", 16)
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        await next_event(socket, "hello")
        await flood(dashboard)
        client = sdk(dashboard)
        started = trio.current_time()

        async def calls(count: int) -> None:
            for _ in range(count):
                await client.chat.completions.create(model="mock", messages=HELLO)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(calls, 20)
        elapsed = trio.current_time() - started
        await logged(dashboard, 200)
        # Reading again: what was lost is counted in this connection's metrics.
        with trio.fail_after(30):
            metrics = await next_event(socket, "metrics")
            while metrics["dropped"] == 0:
                metrics = await next_event(socket, "metrics")
    assert elapsed < 10  # about half a second on a laptop
    assert metrics["dropped"] > 0
    # The loss was this socket's alone: the gateway's own subscription queues never overflowed.
    assert dashboard.gateway.logger.statistics().events_dropped == 0


async def test_stopping_the_gateway_with_a_stalled_client_finishes(
    start_gateway: StartGateway,
) -> None:
    # hypercorn's writes cannot be cancelled: the kernel drops the stalled connection after
    # stalled_client_timeout_s (TCP_USER_TIMEOUT), and the shutdown goes on.
    dashboard = await start_gateway(
        {
            "server": {"stalled_client_timeout_s": 1.0},
            "limits": {"default_client_requests_per_minute": 0},
            "providers": {"ollama": {"enabled": False}},
        }
    )
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        await next_event(socket, "hello")
        await flood(dashboard)
        dashboard.stop()
        with trio.move_on_after(5):
            await dashboard.stopped.wait()
        stopped_in_time = dashboard.stopped.is_set()
    assert stopped_in_time


async def test_a_bug_in_the_feed_closes_the_socket_as_an_internal_error(
    dashboard: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object) -> dict[str, object]:
        raise ValueError("a bug")

    monkeypatch.setattr(live.LiveFeed, "_metrics", broken)
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        reason = await close_reason(socket)
    assert reason.code == 1011
    assert dashboard.gateway.logger.statistics().subscribers == 0


async def test_stopping_the_gateway_closes_an_open_socket_promptly(
    dashboard: RunningService,
) -> None:
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        await next_event(socket, "hello")
        dashboard.stop()
        with trio.fail_after(5):
            await dashboard.stopped.wait()
        reason = await close_reason(socket)
    assert reason.code == live.GOING_AWAY
