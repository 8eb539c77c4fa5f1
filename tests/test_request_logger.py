"""The RequestLogger: prices records, never drops one, and never waits on a slow subscriber."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pytest
import trio
import trio.testing

from actors.recent_calls import RecentCalls
from actors.request_logger import CreditCrossing, CreditLedger, RequestLogger
from proxy.pricing import PriceOverride, Pricer
from proxy.records import RequestRecord
from storage.sql import DatabaseUnavailable
from tests.factories import make_record


class SlowSink:
    """A writer that accepts one batch at a time, when the test lets it."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self.gate = trio.Semaphore(0)

    async def write_requests(self, records: Sequence[RequestRecord]) -> None:
        await self.gate.acquire()
        self.records.extend(records)


def record(n: int, **changes: object) -> RequestRecord:
    # Token counts a price table knows: 1,000 in, 500 out, no cost yet.
    priceable: dict[str, object] = {
        "request_id": f"req_{n}",
        "upstream_model": "gpt-4o-mini",
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "cached_tokens": 0,
        "cost_usd": None,
    }
    return make_record(n, **{**priceable, **changes})


async def test_full_inbox_makes_callers_wait_and_nothing_is_lost(
    nursery: trio.Nursery,
) -> None:
    sink = SlowSink()
    logger = RequestLogger(sink, Pricer(), inbox_size=4, max_batch=3)
    await nursery.start(logger.run)
    sent = 0

    async def produce() -> None:
        nonlocal sent
        for n in range(40):
            await logger.record(record(n))
            sent += 1

    nursery.start_soon(produce)
    await trio.testing.wait_all_tasks_blocked()
    assert sent < 40  # backpressure, not dropping
    for _ in range(40):
        sink.gate.release()
        await trio.testing.wait_all_tasks_blocked()
    logger.close()
    with trio.fail_after(5):
        while len(sink.records) < 40:
            sink.gate.release()
            await trio.sleep(0.01)
    assert [r.request_id for r in sink.records] == [f"req_{n}" for n in range(40)]


async def test_records_are_priced_with_alias_overrides(nursery: trio.Nursery) -> None:
    sink = SlowSink()
    logger = RequestLogger(sink, Pricer({"cheap": PriceOverride(1.0, 1.0)}))
    await nursery.start(logger.run)
    await logger.record(record(1), alias="cheap")
    await logger.record(record(2))
    await logger.record(record(3, prompt_tokens=None, completion_tokens=None))
    for _ in range(3):
        sink.gate.release()
    logger.close()
    with trio.fail_after(5):
        while len(sink.records) < 3:
            await trio.sleep(0.01)
    costs = [r.cost_usd for r in sink.records]
    assert costs[0] == 1500 / 1e6
    assert costs[1] is not None
    assert costs[1] > 0
    assert costs[2] is None
    assert logger.statistics().records == 3


async def test_each_record_is_stamped_with_the_instance_that_served_it(
    nursery: trio.Nursery,
) -> None:
    sink = SlowSink()
    logger = RequestLogger(sink, Pricer(), instance="gw-east/2")
    await nursery.start(logger.run)
    await logger.record(record(1))
    await logger.record(record(2, instance="gw-west"))  # relayed with its own: kept
    for _ in range(2):
        sink.gate.release()
    logger.close()
    with trio.fail_after(5):
        while len(sink.records) < 2:
            await trio.sleep(0.01)
    assert [r.instance for r in sink.records] == ["gw-east/2", "gw-west"]


async def test_slow_subscriber_loses_events_not_the_logger(nursery: trio.Nursery) -> None:
    sink = SlowSink()
    logger = RequestLogger(sink, Pricer(), subscriber_queue=2)
    await nursery.start(logger.run)
    with logger.subscribe() as feed:
        for n in range(10):
            sink.gate.release()
            await logger.record(record(n))
        with trio.fail_after(5):
            while len(sink.records) < 10:
                await trio.sleep(0.01)
        assert logger.statistics().events_dropped == 8
        assert (await feed.receive()).request_id == "req_0"
    logger.close()


def test_recent_calls_cover_the_last_minute_to_the_millisecond() -> None:
    recent = RecentCalls(window_s=60)
    assert recent.totals(1000.0) == (0, 0)
    recent.add(1000.2, error=False)
    recent.add(1000.9, error=True)
    recent.add(1030.0, error=False)
    assert recent.totals(1030.5) == (3, 1)
    assert recent.totals(1059.9) == (3, 1)
    assert recent.totals(1060.0) == (3, 1)  # 1000.2 is 59.8 s old: still in the minute
    assert recent.totals(1060.5) == (2, 1)
    assert recent.totals(1060.9) == (1, 0)  # both calls of second 1000 have left
    assert recent.totals(1090.0) == (0, 0)


async def test_calls_count_in_the_last_minute_when_logged_not_when_stored(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sink = SlowSink()  # stores nothing until the test lets it
    logger = RequestLogger(sink, Pricer())
    # Queued before the logger runs: it takes both in one batch, which the sink holds.
    await logger.record(record(1))
    await logger.record(record(2, status="error"))
    await nursery.start(logger.run)
    with trio.fail_after(5):
        while logger.statistics().records < 2:
            await trio.sleep(0.01)
    assert sink.records == []
    assert logger.recent_calls() == (2, 1)
    await trio.sleep(61)
    assert logger.recent_calls() == (0, 0)
    sink.gate.release()
    logger.close()


async def test_cache_writes_are_priced_at_the_cache_write_rate(nursery: trio.Nursery) -> None:
    sink = SlowSink()
    logger = RequestLogger(sink, Pricer())
    await nursery.start(logger.run)
    claude = {"provider": "anthropic", "upstream_model": "claude-haiku-4-5", "completion_tokens": 0}
    await logger.record(record(1, prompt_tokens=1000, **claude))
    await logger.record(record(2, prompt_tokens=1000, cache_write_tokens=1000, **claude))
    for _ in range(2):
        sink.gate.release()
    logger.close()
    with trio.fail_after(5):
        while len(sink.records) < 2:
            await trio.sleep(0.01)
    plain, written = (r.cost_usd for r in sink.records)
    # Haiku 4.5: $1 per million input tokens, $1.25 per million written to the cache.
    assert plain == 1000 * 1.0 / 1e6
    assert written == 1000 * 1.25 / 1e6
    assert sink.records[1].cache_write_tokens == 1000


class ListSink:
    """A writer that takes every batch at once."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    async def write_requests(self, records: Sequence[RequestRecord]) -> None:
        self.records.extend(records)


async def test_credit_waits_out_a_database_outage_saying_so_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llm_proxy.logger")
    failures = 5
    debited: list[float] = []

    async def debit(charges: Mapping[str, float]) -> Sequence[CreditCrossing]:
        nonlocal failures
        if failures:
            failures -= 1
            raise DatabaseUnavailable("connection refused")
        debited.append(charges["openai"])
        return []

    credit = CreditLedger(tracks=lambda name: True, debit=debit, on_low_credit=lambda *_: None)
    logger = RequestLogger(ListSink(), Pricer(), credit=credit)
    await nursery.start(logger.run)
    for n in range(3):
        await logger.record(record(n, provider="openai", cost_usd=0.5))
    with trio.fail_after(60):
        while not debited:
            await trio.sleep(0.1)
    # Nothing lost: the three charges, summed over the retries, debited once it answered.
    assert debited == [pytest.approx(1.5)]
    said = [r for r in caplog.records if r.name == "llm_proxy.logger"]
    assert [r.levelno for r in said if r.levelno >= logging.ERROR] == []
    assert [r.getMessage() for r in said] == [
        "provider credit: database unavailable; debited once it answers"
    ]
    logger.close()
