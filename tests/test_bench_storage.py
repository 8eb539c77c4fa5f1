"""The storage benchmarks still run on each backend (at a small size): ``make bench`` runs them
at full size, these checks keep them from rotting unseen."""

from __future__ import annotations

from storage.database import database_at
from tests.bench.bench_analytics import QUERIES, fill, latencies
from tests.bench.bench_storage_writer import store_all
from tests.factories import spread_records


async def test_the_writer_bench_stores_every_record(database_url: str) -> None:
    records = list(spread_records(1_200, seed=3))
    assert await store_all(database_url, records) > 0


def test_the_analytics_bench_fills_and_times_every_query(database_url: str) -> None:
    database = database_at(database_url)
    assert fill(database, rows=2_000) > 0
    timings = latencies(database)
    assert list(timings) == [name for name, _ in QUERIES]
    assert all(ms >= 0 for ms in timings.values())
