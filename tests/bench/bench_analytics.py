"""The dashboard analytics at 1,000,000 logged calls, against a naive scan of the request log.

The database: 1,000,000 ``llm_requests`` rows over 60 days (``tests.factories.spread_records``:
six clients including anonymous, five providers, six models, log-normal latencies, 3% errors
and cancellations, no bodies), written **through ``storage.batch.write_batch`` in batches of 500**,
the writer's own path, so ``usage_hourly`` and its latency histograms are the real rollup; then
``pragma optimize`` and a WAL truncate, as the writer does at shutdown. The file lives in a temp
directory removed at the end.

Each query figure is the median of 20 runs after 2 warm-up runs, each run on a fresh read-only
connection (opening it is not timed):

- ``summary`` over the last 30 days; baseline: the same totals (without p95, which would need a
  sort) from a naive ``SELECT count(*), sum(...) FROM llm_requests WHERE ts_ms ...`` aggregate;
- ``timeseries`` over 30 days by day grouped by model, and over 7 days by hour;
- ``request_log``: the first page, a page 15 days deep (reached with a cursor), and the first
  page of one client's calls; 50 rows each;
- ``export_page`` + ``csv_lines`` for one day (~17,000 rows) in batches of 1,000, as rows/s.

Informative, one run: the fill rate, and migration 4's backfill of the histograms from the log
(what an upgrade of a database this size costs once, at startup).
Run: `.venv/bin/python -m tests.bench.bench_analytics`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import apsw

from proxy.records import RequestRecord
from storage.analytics.aggregates import DAY_MS, summary, timeseries
from storage.analytics.export import csv_lines, export_page
from storage.analytics.request_log import request_log
from storage.analytics.usage_filter import UsageFilter
from storage.batch import write_batch
from storage.connection import open_connection
from storage.migrations import MIGRATIONS, migrate
from tests.bench.table import Figure, render
from tests.factories import T0, spread_records

ROWS = 1_000_000
DAYS = 60
BATCH = 500
RUNS = 20
WARMUP = 2
END = (T0 // DAY_MS + DAYS) * DAY_MS  # a UTC midnight; the data covers the 60 days before it
START = END - DAYS * DAY_MS
SECTION = f"analytics ({ROWS:,} rows over {DAYS} days)"

NAIVE_SUMMARY = """
SELECT count(*), sum(status != 'ok'), sum(prompt_tokens), sum(completion_tokens),
       sum(reasoning_tokens), sum(cached_tokens), sum(cost_usd), avg(latency_ms)
FROM llm_requests WHERE ts_ms >= ? AND ts_ms < ?
"""


def fill(path: str) -> float:
    """Write the dataset through ``write_batch``; return the seconds it took."""
    began = time.perf_counter()
    conn = open_connection(path)
    try:
        migrate(conn)
        batch: list[RequestRecord] = []
        for record in spread_records(ROWS, start_ms=START, span_ms=DAYS * DAY_MS, seed=1):
            batch.append(record)
            if len(batch) == BATCH:
                write_batch(conn, batch)
                batch = []
        if batch:
            write_batch(conn, batch)
        conn.pragma("optimize")
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
    finally:
        conn.close()
    return time.perf_counter() - began


def timed(path: str, fn: Callable[[apsw.Connection], object], runs: int = RUNS) -> float:
    """Median milliseconds of ``fn`` over ``runs`` fresh read-only connections, after warm-up."""
    samples: list[float] = []
    for run in range(WARMUP + runs):
        conn = open_connection(path, readonly=True)
        try:
            began = time.perf_counter()
            fn(conn)
            elapsed = (time.perf_counter() - began) * 1000.0
        finally:
            conn.close()
        if run >= WARMUP:
            samples.append(elapsed)
    return statistics.median(samples)


def backfill_seconds(path: str) -> float:
    """Time migration 4's histogram backfill on this database, then roll it back."""
    backfill = "UPDATE" + MIGRATIONS[3].split("UPDATE", 1)[1]
    conn = open_connection(path)
    try:
        began = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(backfill)
            return time.perf_counter() - began
        finally:
            conn.execute("ROLLBACK")
    finally:
        conn.close()


def _deep_cursor(path: str, at_ms: int) -> str:
    """A request log cursor pointing just past the newest call before ``at_ms``."""
    conn = open_connection(path, readonly=True)
    try:
        _, cursor = request_log(conn, START, at_ms, limit=1)
    finally:
        conn.close()
    assert cursor is not None
    return cursor


def _export_day(conn: apsw.Connection) -> int:
    """Export one day as CSV the way the web layer does (a query per batch); return the rows."""
    rows = 0
    after: str | None = None
    while True:
        page, after = export_page(conn, END - DAY_MS, END, batch=1000, after=after)
        csv_lines(page)
        rows += len(page)
        if after is None:
            return rows


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def measure() -> list[Figure]:
    """Fill a fresh database, time the analytics queries and the naive baseline."""
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as directory:
        path = str(Path(directory) / "analytics.db")
        fill_s = fill(path)
        last30 = (END - 30 * DAY_MS, END)
        last7 = (END - 7 * DAY_MS, END)

        summary_ms = timed(path, lambda c: summary(c, *last30))
        naive_ms = timed(path, lambda c: c.execute(NAIVE_SUMMARY, last30).fetchall())
        by_day_ms = timed(path, lambda c: timeseries(c, *last30, "day", "model"))
        by_hour_ms = timed(path, lambda c: timeseries(c, *last7, "hour"))
        first_ms = timed(path, lambda c: request_log(c, *last30, limit=50))
        cursor = _deep_cursor(path, END - 15 * DAY_MS)
        deep_ms = timed(path, lambda c: request_log(c, *last30, limit=50, cursor=cursor))
        client = UsageFilter(client_id="analyst")
        client_ms = timed(path, lambda c: request_log(c, *last30, client, limit=50))
        conn = open_connection(path, readonly=True)
        try:
            day_rows = _export_day(conn)
        finally:
            conn.close()
        export_ms = timed(path, _export_day, runs=5)
        backfill_s = backfill_seconds(path)

    return [
        Figure(
            SECTION,
            f"fill through write_batch ({BATCH}/batch)",
            f"{ROWS / fill_s:,.0f} rows/s",
            compare=f"{fill_s:.0f} s",
        ),
        Figure(
            SECTION,
            "summary, last 30 days",
            _ms(summary_ms),
            f"{_ms(naive_ms)} naive scan",
            f"{naive_ms / summary_ms:.0f}x faster",
            "< 50 ms",
            summary_ms < 50,
        ),
        Figure(
            SECTION,
            "timeseries, 30 days by day x model",
            _ms(by_day_ms),
            target="< 50 ms",
            met=by_day_ms < 50,
        ),
        Figure(SECTION, "timeseries, 7 days by hour", _ms(by_hour_ms)),
        Figure(SECTION, "request_log, first page (50)", _ms(first_ms)),
        Figure(SECTION, "request_log, page 15 days deep (cursor)", _ms(deep_ms)),
        Figure(SECTION, "request_log, one client, first page", _ms(client_ms)),
        Figure(
            SECTION,
            "export 1 day as CSV (median of 5)",
            f"{day_rows / export_ms * 1000:,.0f} rows/s",
            compare=f"{day_rows:,} rows in {_ms(export_ms)}",
        ),
        Figure(SECTION, "migration 4 histogram backfill (once)", f"{backfill_s:.1f} s"),
    ]


def main() -> None:
    """Measure and print this bench's part of the table."""
    began = time.monotonic()
    print(render(measure()))
    print(f"whole run {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
