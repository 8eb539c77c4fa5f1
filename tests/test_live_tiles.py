"""The Overview's live tiles: the last minute counted exactly, sent as calls arrive and as they
age out, and "in flight" counting model calls only (never the dashboard's, the API's or a
scrape)."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Sequence

import httpx
import pytest
import trio
import trio.testing

from actors.recent_calls import RecentCalls
from actors.request_logger import RequestLogger
from proxy.monitor.feed_view import FeedView
from proxy.pricing import Pricer
from proxy.records import RequestRecord
from proxy.service import RunningService
from tests.conftest import StartGateway, sdk, signed_in
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI, Stall
from tests.redis_server import RedisServer
from tests.test_api_live import HELLO, bearer, feed, next_event
from tests.test_fleet_feed import fleet_config, until
from tests.test_monitor import REQUEST as MONITOR_REQUEST
from tests.test_request_logger import record

live = importlib.import_module("web.api.live")


# -- the trailing minute, exactly ----------------------------------------------------------------


def test_the_minute_counts_every_call_younger_than_sixty_seconds() -> None:
    recent = RecentCalls(window_s=60)
    recent.add(1000.9, error=True)
    recent.add(1030.0, error=False)
    # 59.6 s after the first call it still counts: the minute is not rounded to whole seconds.
    assert recent.totals(1060.5) == (2, 1)
    assert recent.totals(1060.899) == (2, 1)
    assert recent.totals(1060.9) == (1, 0)
    assert recent.totals(1090.0) == (0, 0)


def test_the_minute_says_when_its_count_next_drops() -> None:
    recent = RecentCalls(window_s=60)
    assert recent.next_drop(1000.0) is None
    recent.add(1000.25, error=False)
    recent.add(1000.25, error=False)
    recent.add(1010.5, error=False)
    assert recent.next_drop(1001.0) == pytest.approx(1060.25)
    assert recent.totals(1060.25) == (1, 0)
    assert recent.next_drop(1060.25) == pytest.approx(1070.5)
    assert recent.next_drop(1070.5) is None


def test_the_minute_holds_a_bounded_number_of_entries_at_any_rate() -> None:
    recent = RecentCalls(window_s=60)
    # 100 calls in each millisecond of a minute and a half: six million calls.
    for ms in range(0, 90_000, 7):
        for _ in range(100):
            recent.add(ms / 1000, error=False)
    assert recent.entries <= 60_000
    assert recent.totals(90.0)[0] == 100 * len(range(30_002, 90_000, 7))


class Sink:
    """A writer that stores nothing, at once."""

    async def write_requests(self, records: Sequence[RequestRecord]) -> None:
        await trio.lowlevel.checkpoint()


async def test_the_logger_counts_the_trailing_minute_as_time_passes(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    logger = RequestLogger(Sink(), Pricer())
    await nursery.start(logger.run)
    await trio.sleep(0.7)
    await logger.record(record(1))
    await trio.sleep(20)
    await logger.record(record(2, status="error"))
    await trio.sleep(0.1)
    assert logger.recent_calls() == (2, 1)
    await trio.sleep(39.5)  # the first call is 59.6 s old
    assert logger.recent_calls() == (2, 1)
    await trio.sleep(0.5)  # 60.1 s
    assert logger.recent_calls() == (1, 1)
    await trio.sleep(20)
    assert logger.recent_calls() == (0, 0)


# -- the live feed sends the figures when they change ------------------------------------------


@pytest.fixture
async def dashboard(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> RunningService:
    """The fake OpenAI answers "gpt-4o" (and can hold a call)."""
    return await start_gateway(
        {
            "limits": {"default_client_requests_per_minute": 0},
            "providers": {
                "ollama": {"enabled": False},
                "openai": {
                    "base_url": fake_openai.base_url,
                    "api_key": DEFAULT_API_KEY,
                    "timeout_s": 10,
                },
            },
        }
    )


@pytest.fixture
def slow_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A periodic tick too slow to explain any frame a test waits for."""
    monkeypatch.setattr(live, "METRICS_EVERY_S", 600.0)


@pytest.mark.usefixtures("slow_ticks")
async def test_a_burst_reaches_the_tiles_without_waiting_for_a_tick(
    dashboard: RunningService,
) -> None:
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        first = await next_event(socket, "metrics")
        assert (first["requests_per_min"], first["requests_total"]) == (0, 0)
        for _ in range(7):
            await sdk(dashboard).chat.completions.create(model="gpt-4o", messages=HELLO)
        with trio.fail_after(5):
            while (metrics := await next_event(socket, "metrics"))["requests_per_min"] < 7:
                pass
    assert metrics["requests_per_min"] == 7
    assert metrics["requests_total"] == 7
    assert metrics["in_flight"] == 0


@pytest.mark.usefixtures("slow_ticks")
async def test_the_minute_tile_drops_when_a_call_leaves_the_window(
    dashboard: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The logger's clock is trio's; a one-second window stands in for the minute.
    monkeypatch.setattr(dashboard.gateway.logger, "_recent", RecentCalls(window_s=1))
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        await next_event(socket, "metrics")
        await sdk(dashboard).chat.completions.create(model="gpt-4o", messages=HELLO)
        with trio.fail_after(5):
            while (await next_event(socket, "metrics"))["requests_per_min"] != 1:
                pass
            while (await next_event(socket, "metrics"))["requests_per_min"] != 0:
                pass


# -- in flight: model calls only -----------------------------------------------------------------


def scraped_in_flight(text: str) -> float:
    (value,) = re.findall(r"^llm_proxy_requests_in_flight(?:\{[^}]*\})? (\S+)$", text, re.M)
    return float(value)


async def test_in_flight_counts_model_calls_not_the_dashboard_or_a_scrape(
    dashboard: RunningService, fake_openai: FakeOpenAI
) -> None:
    async with (
        signed_in(dashboard) as admin,
        httpx.AsyncClient(base_url=dashboard.base_url, timeout=10) as plain,
    ):
        # Idle: the request asking is not a model call, so nothing is in flight.
        assert (await admin.get("/api/system/health")).json()["in_flight"] == 0
        assert scraped_in_flight((await plain.get("/metrics")).text) == 0
        fake_openai.enqueue(Stall(seconds=1.5))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: sdk(dashboard).chat.completions.create(model="gpt-4o", messages=HELLO)
            )
            with trio.fail_after(5):
                while dashboard.gateway.providers["openai"].statistics().in_flight < 1:
                    await trio.sleep(0.01)
            assert (await admin.get("/api/system/health")).json()["in_flight"] == 1
            assert scraped_in_flight((await plain.get("/metrics")).text) == 1
            async with feed(dashboard, bearer(admin)) as socket:
                assert (await next_event(socket, "metrics"))["in_flight"] == 1
        assert (await admin.get("/api/system/health")).json()["in_flight"] == 0
        async with feed(dashboard, bearer(admin)) as socket:
            assert (await next_event(socket, "metrics"))["in_flight"] == 0


async def test_a_call_waiting_for_its_body_is_in_flight(dashboard: RunningService) -> None:
    """A model call counts from its first byte, before any provider has it."""
    async with signed_in(dashboard) as admin, trio.open_nursery() as nursery:
        send, receive = trio.open_memory_channel[bytes](0)

        async def body():  # type: ignore[no-untyped-def]
            async for piece in receive:
                yield piece

        async def call() -> None:
            async with httpx.AsyncClient(base_url=dashboard.base_url, timeout=10) as client:
                await client.post(
                    "/v1/chat/completions",
                    content=body(),
                    headers={
                        "authorization": "Bearer " + "sk-none",
                        "content-type": "application/json",
                    },
                )

        nursery.start_soon(call)
        await send.send(b'{"model": "gpt-4o", ')
        with trio.fail_after(5):
            while (await admin.get("/api/system/health")).json()["in_flight"] < 1:
                await trio.sleep(0.01)
        await send.send(json.dumps({"messages": HELLO})[1:].encode())
        await send.aclose()
        with trio.fail_after(5):
            while (await admin.get("/api/system/health")).json()["in_flight"]:
                await trio.sleep(0.01)


# -- the terminal monitor, now that metrics frames follow the calls -----------------------------


def test_the_monitor_sums_up_on_metrics_at_most_every_few_seconds() -> None:
    """Metrics frames now follow each burst: the monitor still prints its totals every N calls,
    and on a metrics frame only when a few seconds have passed since it last did."""
    view = FeedView(100, totals_every=10)
    call = {**MONITOR_REQUEST, "status": "ok"}
    view.on_frame(call)
    assert view.on_frame({"type": "metrics", "dropped": 0, "ts_ms": 1_000}) == [
        "-- totals: 1 call, 0 errors, 1,290 tokens, $0.00022"
    ]
    view.on_frame(call)
    # 0.1 s later (the frame after the next call): nothing new printed.
    assert view.on_frame({"type": "metrics", "dropped": 0, "ts_ms": 1_100}) == []
    # The periodic frame, 5 s on: the call since is summed up.
    assert view.on_frame({"type": "metrics", "dropped": 0, "ts_ms": 6_000}) == [view.totals_line()]


# -- a fleet: the others' model calls in flight, through their heartbeats -----------------------


async def test_the_fleets_tile_counts_model_calls_in_flight_on_another_instance(
    start_gateway: StartGateway, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "METRICS_EVERY_S", 0.1)
    a = await start_gateway(fleet_config(redis, "a"))
    b = await start_gateway(fleet_config(redis, "b"))
    presence = a.gateway.presence
    assert presence is not None
    async with signed_in(a) as admin, signed_in(b) as admin_b, trio.open_nursery() as nursery:
        # B's dashboard is busy too: none of that is in flight.
        for _ in range(3):
            assert (await admin_b.get("/api/system/health")).json()["in_flight"] == 0
        send, receive = trio.open_memory_channel[bytes](0)

        async def body():  # type: ignore[no-untyped-def]
            async for piece in receive:
                yield piece

        async def call() -> None:
            async with httpx.AsyncClient(base_url=b.base_url, timeout=10) as client:
                await client.post(
                    "/v1/chat/completions",
                    content=body(),
                    headers={"authorization": "Bearer sk-none", "content-type": "application/json"},
                )

        nursery.start_soon(call)
        await send.send(b'{"model": "mock", ')
        await until(lambda: [o.calls_in_flight for o in presence.others()] == [1])
        async with feed(a, bearer(admin)) as socket:
            assert (await next_event(socket, "metrics"))["in_flight"] == 1
        await send.send(json.dumps({"messages": HELLO})[1:].encode())
        await send.aclose()
        await until(lambda: [o.calls_in_flight for o in presence.others()] == [0])
        async with feed(a, bearer(admin)) as socket:
            assert (await next_event(socket, "metrics"))["in_flight"] == 0


@pytest.mark.usefixtures("slow_ticks")
async def test_a_busy_minute_sends_a_bounded_number_of_frames(
    dashboard: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a busy second ends, a call leaves the minute every few milliseconds: the frames are
    still at most one per ``METRICS_COALESCE_S``."""
    monkeypatch.setattr(dashboard.gateway.logger, "_recent", RecentCalls(window_s=1.0))
    logger = dashboard.gateway.logger
    async with signed_in(dashboard) as admin, feed(dashboard, bearer(admin)) as socket:
        start_ms = (await next_event(socket, "metrics"))["ts_ms"]
        sent: list[int] = []  # when each metrics frame was made
        async with trio.open_nursery() as nursery:

            async def traffic() -> None:
                with trio.move_on_after(1.0):
                    for n in range(100_000):
                        await logger.record(record(n))
                        await trio.sleep(0.002)

            nursery.start_soon(traffic)
            with trio.move_on_after(2.5):
                while True:
                    frame = json.loads(await socket.get_message())
                    if frame["type"] == "metrics":
                        sent.append(frame["ts_ms"])
            nursery.cancel_scope.cancel()
    # The second second: no call logged, and the busy one leaving the window all the time.
    frames = sum(start_ms + 1200 <= ts < start_ms + 2200 for ts in sent)
    assert 1 <= frames <= 1.0 / live.METRICS_COALESCE_S + 2
