"""On PostgreSQL the request log's pages and the export search an index bounded on both sides
of the range (SQLite's plans: tests/test_analytics.py), and the rollup queries stay on the rollup.

20,000 calls over 10 days, ANALYZEd as autovacuum would, with a few calls of a rare client,
provider and model among them: PostgreSQL's planner picks by statistics, so a filter that keeps
few rows must use its own (column, ts_ms) index rather than walk the time index.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from storage.analytics.aggregates import DAY_MS, breakdown, summary, timeseries
from storage.analytics.export import export_page
from storage.analytics.request_log import request_log
from storage.analytics.usage_filter import UsageFilter
from storage.batch import write_batch
from storage.sql import Connection
from tests.factories import T0, make_record, spread_records
from tests.postgres_databases import fresh_database
from tests.postgres_server import PostgresServer
from tests.storage_backends import connect

DAYS = 10
START = T0 // DAY_MS * DAY_MS
END = START + DAYS * DAY_MS
RARE = {"client_id": "rare-client", "provider": "rare-provider", "model": "rare-model"}


@pytest.fixture(scope="module")
def log_url(postgres: PostgresServer) -> str:
    """A PostgreSQL database holding the calls, analysed (shared: the tests only read)."""
    url = fresh_database(postgres, prefix="plans")
    conn = connect(url)
    try:
        records = list(spread_records(20_000, start_ms=START, span_ms=DAYS * DAY_MS, seed=3))
        records += [
            make_record(100_000 + i, ts_ms=START + i * DAY_MS // 2, **RARE) for i in range(20)
        ]
        for first in range(0, len(records), 5_000):
            write_batch(conn, records[first : first + 5_000])
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return url


@pytest.fixture
def conn(log_url: str) -> Iterator[Connection]:
    connection = connect(log_url)
    try:
        yield connection
    finally:
        connection.close()


class _Recorder:
    """A connection that notes each statement it runs, to explain them afterwards."""

    dialect = "postgresql"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Any]] = []

    def execute(self, statements: str, bindings: Any = None, /) -> Any:
        self.statements.append((statements, bindings))
        return self.conn.execute(statements, bindings)


def _plans(conn: Connection, call: Callable[[Connection], object]) -> list[str]:
    """The plan of each statement ``call`` runs, one text per statement."""
    recorder = _Recorder(conn)
    call(recorder)  # type: ignore[arg-type]
    return [
        "\n".join(str(row[0]) for row in conn.execute("EXPLAIN " + sql, bindings).fetchall())
        for sql, bindings in recorder.statements
    ]


@pytest.mark.parametrize(
    ("flt", "index"),
    [
        (UsageFilter(), "llm_requests_ts_ms"),
        (UsageFilter(client_id=RARE["client_id"]), "llm_requests_client_ts_ms"),
        (UsageFilter(provider=RARE["provider"]), "llm_requests_provider_ts_ms"),
        (UsageFilter(model=RARE["model"]), "llm_requests_model_ts_ms"),
    ],
)
def test_request_log_and_export_search_an_index(
    conn: Connection, flt: UsageFilter, index: str
) -> None:
    _, cursor = request_log(conn, START, END, limit=2)
    for call in (
        partial(request_log, since_ms=START, until_ms=END, flt=flt, limit=50),
        partial(request_log, since_ms=START, until_ms=END, flt=flt, cursor=cursor),
        partial(export_page, since_ms=START, until_ms=END, flt=flt, batch=1000),
        partial(export_page, since_ms=START, until_ms=END, flt=flt, after=cursor),
    ):
        (plan,) = _plans(conn, call)
        assert "Seq Scan" not in plan, plan
        # An index scan in order, or a bitmap of the few rows a rare value has.
        assert re.search(rf"(Index Scan( Backward)? using|Bitmap Index Scan on) {index} ", plan), (
            plan
        )
        # Bounded on both sides: never a walk to the end of the log.
        assert "ts_ms >=" in plan or "ts_ms >" in plan, plan
        assert "ts_ms <" in plan, plan


def test_anonymous_calls_search_an_index(conn: Connection) -> None:
    (plan,) = _plans(
        conn, partial(request_log, since_ms=START, until_ms=END, flt=UsageFilter(client_id=""))
    )
    assert "Seq Scan" not in plan, plan
    assert "Index" in plan, plan


def test_the_rollup_queries_read_only_the_rollup(conn: Connection) -> None:
    for call in (
        partial(summary, since_ms=START, until_ms=START + DAY_MS),
        partial(
            timeseries, since_ms=START, until_ms=START + DAY_MS, bucket="hour", group_by="model"
        ),
        partial(breakdown, dimension="client", since_ms=START, until_ms=START + DAY_MS),
    ):
        plan, *exact = _plans(conn, call)
        assert "llm_requests" not in plan, plan
        # A day of ten: the primary key's range, not the whole rollup.
        assert "usage_hourly_pkey" in plan, plan
        # A day holds 2,000 calls, few enough for exact percentiles from the log (summary and
        # breakdown): that read searches the time index, bounded on both sides.
        for log_plan in exact:
            assert "Seq Scan" not in log_plan, log_plan
            assert "llm_requests_ts_ms" in log_plan, log_plan
            assert "ts_ms >=" in log_plan, log_plan
            assert "ts_ms <" in log_plan, log_plan


def test_exact_percentiles_of_a_rare_client_search_its_index(conn: Connection) -> None:
    rare = UsageFilter(client_id=RARE["client_id"])
    _, log_plan = _plans(conn, partial(summary, since_ms=START, until_ms=END, flt=rare))
    assert "Seq Scan" not in log_plan, log_plan
    assert "llm_requests_client_ts_ms" in log_plan, log_plan
