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

Informative, one run: the fill rate, and migrations 4's and 8's backfills of the histograms from
the log (what an upgrade of a database this size costs once, at startup).

Then the same dataset on PostgreSQL (Debian's server in a temporary cluster on loopback, default
durability, ``tests/postgres_server.py``), filled through the same ``write_batch`` (COPY there)
and followed by ``VACUUM ANALYZE`` (what autovacuum does after a bulk load; SQLite's counterpart
is the ``pragma optimize`` above); each query figure, timed the same way on fresh read-only
connections over TCP, beside SQLite's from this run, with the same < 50 ms targets, plus the
breakdown by model (the dashboard's by-dimension view).
Run: `.venv/bin/python -m tests.bench.bench_analytics`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from proxy.records import RequestRecord
from storage.analytics.aggregates import DAY_MS, breakdown, summary, timeseries
from storage.analytics.export import csv_lines, export_page
from storage.analytics.request_log import request_log
from storage.analytics.usage_filter import UsageFilter
from storage.batch import write_batch
from storage.connection import BusyWaits, open_connection
from storage.database import Database, PostgresDatabase, SqliteDatabase
from storage.migrations import MIGRATIONS
from storage.sql import Connection
from tests.bench.table import Figure, render
from tests.factories import T0, spread_records
from tests.postgres_server import postgres_server

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


def fill(database: Database, rows: int = ROWS) -> float:
    """Write the dataset (``rows`` of it) through ``write_batch``; return the seconds it took."""
    began = time.perf_counter()
    conn = database.open_writer(BusyWaits())
    try:
        batch: list[RequestRecord] = []
        for record in spread_records(rows, start_ms=START, span_ms=DAYS * DAY_MS, seed=1):
            batch.append(record)
            if len(batch) == BATCH:
                write_batch(conn, batch)
                batch = []
        if batch:
            write_batch(conn, batch)
        if isinstance(database, PostgresDatabase):
            conn.execute("VACUUM ANALYZE")
        else:
            database.checkpoint(conn, final=True)  # pragma optimize, WAL truncate
    finally:
        conn.close()
    return time.perf_counter() - began


def timed(database: Database, fn: Callable[[Connection], object], runs: int = RUNS) -> float:
    """Median milliseconds of ``fn`` over ``runs`` fresh read-only connections, after warm-up."""
    samples: list[float] = []
    for run in range(WARMUP + runs):
        conn = database.open_reader()
        try:
            began = time.perf_counter()
            fn(conn)
            elapsed = (time.perf_counter() - began) * 1000.0
        finally:
            conn.close()
        if run >= WARMUP:
            samples.append(elapsed)
    return statistics.median(samples)


def backfill_seconds(path: str, version: int) -> float:
    """Time the histogram backfill of migration ``version`` on this database, then roll it back:
    4's UPDATE, or 8's rebuild of the rollup from the log (all of its script but the first
    statement, the log's new column, which this database already has)."""
    script = MIGRATIONS[version - 1]
    backfill = script.split(";", 1)[1] if version == 8 else "UPDATE" + script.split("UPDATE", 1)[1]
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


def _deep_cursor(database: Database, at_ms: int) -> str:
    """A request log cursor pointing just past the newest call before ``at_ms``."""
    conn = database.open_reader()
    try:
        _, cursor = request_log(conn, START, at_ms, limit=1)
    finally:
        conn.close()
    assert cursor is not None
    return cursor


def _export_day(conn: Connection) -> int:
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


LAST30 = (END - 30 * DAY_MS, END)
LAST7 = (END - 7 * DAY_MS, END)
LAST12H = (END - DAY_MS // 2, END)  # ~8,300 calls: percentiles exact, read from the log

QUERIES = (
    ("summary, last 30 days", True),
    ("timeseries, 30 days by day x model", True),
    ("timeseries, 7 days by hour", False),
    ("breakdown by model, last 30 days", True),
    ("summary, last 12 hours (exact p95)", True),
    ("breakdown by model, last 12 hours (exact p95)", True),
    ("request_log, first page (50)", False),
    ("request_log, page 15 days deep (cursor)", False),
    ("request_log, one client, first page", False),
)
"""The dashboard's queries (whether the < 50 ms target applies), as :func:`latencies` names
them."""


def latencies(database: Database) -> dict[str, float]:
    """Median milliseconds of each of :data:`QUERIES` on ``database``."""
    cursor = _deep_cursor(database, END - 15 * DAY_MS)
    client = UsageFilter(client_id="analyst")
    runs: dict[str, Callable[[Connection], object]] = {
        "summary, last 30 days": lambda c: summary(c, *LAST30),
        "timeseries, 30 days by day x model": lambda c: timeseries(c, *LAST30, "day", "model"),
        "timeseries, 7 days by hour": lambda c: timeseries(c, *LAST7, "hour"),
        "breakdown by model, last 30 days": lambda c: breakdown(c, "model", *LAST30),
        "summary, last 12 hours (exact p95)": lambda c: summary(c, *LAST12H),
        "breakdown by model, last 12 hours (exact p95)": lambda c: breakdown(c, "model", *LAST12H),
        "request_log, first page (50)": lambda c: request_log(c, *LAST30, limit=50),
        "request_log, page 15 days deep (cursor)": lambda c: request_log(
            c, *LAST30, limit=50, cursor=cursor
        ),
        "request_log, one client, first page": lambda c: request_log(c, *LAST30, client, limit=50),
    }
    return {name: timed(database, runs[name]) for name, _ in QUERIES}


def measure() -> list[Figure]:
    """Fill a fresh SQLite database, time the analytics queries and the naive baseline; then
    the same on PostgreSQL, beside SQLite's figures."""
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as directory:
        path = str(Path(directory) / "analytics.db")
        sqlite = SqliteDatabase(path)
        fill_s = fill(sqlite)
        lite = latencies(sqlite)
        naive_ms = timed(sqlite, lambda c: c.execute(NAIVE_SUMMARY, LAST30).fetchall())
        conn = sqlite.open_reader()
        try:
            day_rows = _export_day(conn)
        finally:
            conn.close()
        export_ms = timed(sqlite, _export_day, runs=5)
        backfill_s = backfill_seconds(path, 4), backfill_seconds(path, 8)
    figures = sqlite_figures(lite, fill_s, naive_ms, day_rows, export_ms, backfill_s)
    with postgres_server(durable=True) as server:
        postgres = PostgresDatabase(server.url)
        pg_fill_s = fill(postgres)
        pg = latencies(postgres)
        pg_export_ms = timed(postgres, _export_day, runs=5)
    return figures + postgres_figures(pg, lite, pg_fill_s, fill_s, day_rows, pg_export_ms)


def sqlite_figures(
    lite: dict[str, float],
    fill_s: float,
    naive_ms: float,
    day_rows: int,
    export_ms: float,
    backfill_s: tuple[float, float],
) -> list[Figure]:
    """SQLite's part of the table."""
    summary_ms = lite["summary, last 30 days"]
    figures = [
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
    ]
    for name, targeted in QUERIES[1:]:
        if targeted:
            figures.append(
                Figure(SECTION, name, _ms(lite[name]), target="< 50 ms", met=lite[name] < 50)
            )
        else:
            figures.append(Figure(SECTION, name, _ms(lite[name])))
    return [
        *figures,
        Figure(
            SECTION,
            "export 1 day as CSV (median of 5)",
            f"{day_rows / export_ms * 1000:,.0f} rows/s",
            compare=f"{day_rows:,} rows in {_ms(export_ms)}",
        ),
        Figure(SECTION, "migration 4 histogram backfill (once)", f"{backfill_s[0]:.1f} s"),
        Figure(SECTION, "migration 8 rollup rebuild from the log (once)", f"{backfill_s[1]:.1f} s"),
    ]


def postgres_figures(
    pg: dict[str, float],
    lite: dict[str, float],
    fill_s: float,
    lite_fill_s: float,
    day_rows: int,
    export_ms: float,
) -> list[Figure]:
    """PostgreSQL's part of the table, each figure beside SQLite's from this run."""
    section = f"analytics on PostgreSQL ({ROWS:,} rows), beside SQLite"
    figures = [
        Figure(
            section,
            f"fill through write_batch ({BATCH}/batch, COPY)",
            f"{ROWS / fill_s:,.0f} rows/s",
            f"{ROWS / lite_fill_s:,.0f} rows/s SQLite",
            f"{lite_fill_s / fill_s:.2f}x SQLite",
        )
    ]
    for name, targeted in QUERIES:
        figures.append(
            Figure(
                section,
                name,
                _ms(pg[name]),
                f"{_ms(lite[name])} SQLite",
                f"{pg[name] / lite[name]:.1f}x SQLite's time",
                "< 50 ms" if targeted else "",
                pg[name] < 50 if targeted else None,
            )
        )
    figures.append(
        Figure(
            section,
            "export 1 day as CSV (median of 5)",
            f"{day_rows / export_ms * 1000:,.0f} rows/s",
            compare=f"{day_rows:,} rows in {_ms(export_ms)}",
        )
    )
    return figures


def main() -> None:
    """Measure and print this bench's part of the table."""
    began = time.monotonic()
    print(render(measure()))
    print(f"whole run {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
