"""The dashboard's queries at 1,000,000 logged calls on PostgreSQL, with the plan of each.

A PostgreSQL of its own (Debian's, as the tests start it: ``tests.postgres_server``) in a temp
directory; one fresh database filled with the dataset of ``bench_analytics`` (1,000,000 rows over
60 days from ``tests.factories.spread_records``), written through ``storage.batch.write_batch`` in
batches of 5,000 (COPY plus the rollup upsert, the writer's own path), then ``ANALYZE`` (what
autovacuum does soon after a bulk load). Each figure is the median of 20 runs after 2 warm-up
runs on one read-only session (``PgConnection(readonly=True)``, as the read pool keeps them).
``--plans`` also prints ``EXPLAIN (ANALYZE, BUFFERS)`` of every statement each query runs.

Run: `.venv/bin/python -m tests.bench.bench_postgres_queries [--plans]`.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from proxy.records import RequestRecord
from storage.analytics.aggregates import DAY_MS, breakdown, summary, timeseries
from storage.analytics.export import export_page
from storage.analytics.request_log import request_log
from storage.analytics.usage_filter import UsageFilter
from storage.batch import write_batch
from storage.connection import BusyWaits
from storage.database import PostgresDatabase
from storage.postgres_connection import PgConnection
from storage.sql import Connection
from tests.bench.table import Figure, render
from tests.factories import T0, spread_records
from tests.postgres_databases import fresh_database
from tests.postgres_server import postgres_server

ROWS = 1_000_000
DAYS = 60
BATCH = 5_000
RUNS = 20
WARMUP = 2
END = (T0 // DAY_MS + DAYS) * DAY_MS  # a UTC midnight; the data covers the 60 days before it
START = END - DAYS * DAY_MS
SECTION = f"PostgreSQL queries ({ROWS:,} rows over {DAYS} days)"
TARGET_MS = 50.0


def fill(url: str) -> float:
    """Write the dataset through ``write_batch``, then ANALYZE; return the seconds it took."""
    began = time.perf_counter()
    conn = PostgresDatabase(url).open_writer(BusyWaits())
    try:
        batch: list[RequestRecord] = []
        for record in spread_records(ROWS, start_ms=START, span_ms=DAYS * DAY_MS, seed=1):
            batch.append(record)
            if len(batch) == BATCH:
                write_batch(conn, batch)
                batch = []
        if batch:
            write_batch(conn, batch)
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return time.perf_counter() - began


def timed(conn: Connection, fn: Callable[[Connection], object]) -> float:
    """Median milliseconds of ``fn`` on ``conn`` over ``RUNS`` runs, after warm-up."""
    samples: list[float] = []
    for run in range(WARMUP + RUNS):
        began = time.perf_counter()
        fn(conn)
        if run >= WARMUP:
            samples.append((time.perf_counter() - began) * 1000.0)
    return statistics.median(samples)


class _Recorder:
    """A connection that notes each statement it runs (to explain them afterwards)."""

    def __init__(self, conn: PgConnection) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Any]] = []
        self.dialect = conn.dialect

    def execute(self, statements: str, bindings: Any = None, /) -> Any:
        self.statements.append((statements, bindings))
        return self.conn.execute(statements, bindings)


def plans(conn: PgConnection, fn: Callable[[Connection], object]) -> list[str]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of each statement ``fn`` runs."""
    recorder = _Recorder(conn)
    fn(recorder)  # type: ignore[arg-type]
    return [
        "\n".join(
            str(row[0])
            for row in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, bindings).fetchall()
        )
        for sql, bindings in recorder.statements
    ]


@contextmanager
def filled_database() -> Iterator[tuple[str, float]]:
    """A PostgreSQL holding the dataset: its URL and the seconds the fill took."""
    with postgres_server() as server:
        url = fresh_database(server, prefix="bench")
        yield url, fill(url)


def measure(show_plans: bool = False) -> list[Figure]:
    """Fill a fresh database, time the rollup analytics and the request log pages."""
    last30 = (END - 30 * DAY_MS, END)
    last7 = (END - 7 * DAY_MS, END)
    with filled_database() as (url, fill_s):
        conn = PgConnection(url, readonly=True)
        try:
            _, deep = request_log(conn, START, END - 15 * DAY_MS, limit=1)
            client = UsageFilter(client_id="analyst")
            queries: list[tuple[str, Callable[[Connection], object], bool]] = [
                ("summary, last 30 days", lambda c: summary(c, *last30), True),
                (
                    "timeseries, 30 days by day x model",
                    lambda c: timeseries(c, *last30, "day", "model"),
                    True,
                ),
                ("timeseries, 7 days by hour", lambda c: timeseries(c, *last7, "hour"), True),
                ("breakdown by client, 30 days", lambda c: breakdown(c, "client", *last30), True),
                (
                    "breakdown by provider, 30 days",
                    lambda c: breakdown(c, "provider", *last30),
                    True,
                ),
                ("breakdown by model, 30 days", lambda c: breakdown(c, "model", *last30), True),
                (
                    "request_log, first page (50)",
                    lambda c: request_log(c, *last30, limit=50),
                    False,
                ),
                (
                    "request_log, page 15 days deep (cursor)",
                    lambda c: request_log(c, *last30, limit=50, cursor=deep),
                    False,
                ),
                (
                    "request_log, one client, first page",
                    lambda c: request_log(c, *last30, client, limit=50),
                    False,
                ),
                (
                    "export page, 1,000 rows one day deep",
                    lambda c: export_page(c, END - DAY_MS, END, batch=1000),
                    False,
                ),
            ]
            figures = [
                Figure(
                    SECTION,
                    f"fill, write_batch ({BATCH:,}/batch)",
                    f"{ROWS / fill_s:,.0f} rows/s",
                    compare=f"{fill_s:.0f} s",
                )
            ]
            for name, fn, judged in queries:
                ms = timed(conn, fn)
                figures.append(
                    Figure(
                        SECTION,
                        name,
                        f"{ms:.1f} ms",
                        target=f"< {TARGET_MS:.0f} ms" if judged else "",
                        met=ms < TARGET_MS if judged else None,
                    )
                )
                if show_plans:
                    print(f"--- {name}")
                    for plan in plans(conn, fn):
                        print(plan)
        finally:
            conn.close()
    return figures


def main() -> None:
    """Print the figures (and the plans with ``--plans``)."""
    print(render(measure(show_plans="--plans" in sys.argv)))


if __name__ == "__main__":
    main()
