"""Dashboard analytics: hand-computed totals, buckets, pagination, export, CSV, p95, migration."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import math
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import apsw
import pytest
import trio

import storage.migrations
from proxy.records import RequestRecord
from storage import MIGRATIONS, ReadPool, StorageWriter, migrate, open_connection
from storage.analytics.aggregates import (
    BreakdownRow,
    TimeseriesPoint,
    breakdown,
    summary,
    timeseries,
)
from storage.analytics.export import csv_header, csv_lines, export_batches, export_page, json_lines
from storage.analytics.latency_percentile import estimate_percentile
from storage.analytics.request_log import request_detail, request_log
from storage.analytics.request_rows import REQUEST_COLUMNS, RequestRow
from storage.analytics.usage_filter import UsageFilter
from storage.batch import write_batch
from storage.latency_histogram import LOG_BUCKET_COLUMNS
from storage.rollup import (
    HOUR_MS,
    LATENCY_BUCKET_COLUMNS,
    LATENCY_BUCKET_EDGES_MS,
    UsageRollup,
    latency_bucket,
)
from storage.sql import Connection
from tests.factories import T0, make_record, spread_records
from tests.storage_backends import connect, is_postgres
from tests.storage_backends import reader as open_reader

DAY_MS = 24 * HOUR_MS
D = (T0 // DAY_MS + 1) * DAY_MS  # a UTC midnight: the small dataset straddles it
H = HOUR_MS

# The small dataset: six calls over four hours, two on each side of midnight.
SMALL = [
    # D-2h: client-a, openai
    make_record(
        1,
        ts_ms=D - 2 * H + 10_000,
        cached_tokens=40,
        prompt_tokens=100,
        completion_tokens=20,
        total_tokens=120,
        cost_usd=0.01,
        latency_ms=40.0,
    ),
    make_record(
        2,
        ts_ms=D - 2 * H + 20_000,
        status="error",
        http_status=502,
        error_type="upstream_error",
        error_message="bad gateway",
        prompt_tokens=None,
        completion_tokens=None,
        total_tokens=None,
        cost_usd=None,
        latency_ms=300.0,
    ),
    # D-1h: client-b on gemini, an anonymous call on openai
    make_record(
        3,
        ts_ms=D - H + 5_000,
        client_id="client-b",
        provider="gemini",
        model="gemini-2.5-flash",
        prompt_tokens=200,
        completion_tokens=50,
        reasoning_tokens=10,
        cached_tokens=0,
        total_tokens=250,
        cost_usd=0.02,
        latency_ms=700.0,
        request_body='{"messages": []}',
        response_body='{"id": "x"}',
        attempts=2,
        failed_attempts='[{"provider": "openai", "model": "gpt-4o", "status": 503, "error": "x"}]',
    ),
    make_record(
        4,
        ts_ms=D - H + 6_000,
        client_id=None,
        prompt_tokens=10,
        completion_tokens=5,
        cost_usd=0.001,
        latency_ms=120.0,
    ),
    # D: an unpriced local model
    make_record(
        5,
        ts_ms=D + 1_000,
        provider="ollama",
        model="llama3",
        prompt_tokens=30,
        completion_tokens=30,
        total_tokens=60,
        cost_usd=None,
        latency_ms=2000.0,
    ),
    # D+1h: a cancelled slow call
    make_record(
        6,
        ts_ms=D + H,
        client_id="client-b",
        provider="gemini",
        model="gemini-2.5-flash",
        status="cancelled",
        http_status=499,
        prompt_tokens=5,
        completion_tokens=0,
        total_tokens=5,
        cost_usd=None,
        latency_ms=65_000.0,
    ),
]
ALL = (D - 2 * H, D + 2 * H)


async def _write_with_writer(where: str, records: list[RequestRecord]) -> None:
    writer = StorageWriter(where)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await writer.write_requests(records)
        writer.close()


@pytest.fixture
def small(database_url: str) -> Iterator[Connection]:
    """A read-only connection to the small dataset, written by the real StorageWriter."""
    trio.run(_write_with_writer, database_url, SMALL)
    conn = open_reader(database_url)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def db(database_url: str) -> Iterator[Connection]:
    """An empty migrated read-write database."""
    conn = connect(database_url)
    try:
        yield conn
    finally:
        conn.close()


def write(conn: Connection, records: list[RequestRecord]) -> None:
    for start in range(0, len(records), 500):
        write_batch(conn, records[start : start + 500])


# --- summary --------------------------------------------------------------------------------------


def test_summary_of_everything(small: Connection) -> None:
    got = summary(small, *ALL)
    assert (got.since_ms, got.until_ms) == ALL
    assert (got.requests, got.errors) == (6, 2)
    assert (got.prompt_tokens, got.completion_tokens) == (345, 105)
    assert (got.reasoning_tokens, got.cached_tokens, got.total_tokens) == (10, 40, 450)
    assert got.cost_usd == pytest.approx(0.031)
    assert got.avg_latency_ms == pytest.approx(68160 / 6)
    # ranks: 40 | 120 | 300 | 700 | 2000 | 65000; six calls, all in the log: exact, the 6th
    assert got.p95_latency_ms == 65_000.0
    assert got.p50_latency_ms == 300.0
    assert got.p95_latency_calls == 6
    assert got.p95_latency_exact
    assert got.cached_token_share == pytest.approx(40 / 345)
    json.dumps(got.to_json())


def test_summary_widens_to_whole_hours(small: Connection) -> None:
    got = summary(small, D - 2 * H + 15_000, D - H + 5_500)  # cuts r1/r2's hour and r3/r4's
    assert (got.since_ms, got.until_ms) == (D - 2 * H, D)
    assert (got.requests, got.errors, got.prompt_tokens, got.completion_tokens) == (4, 1, 310, 75)
    assert got.cost_usd == pytest.approx(0.031)
    assert got.avg_latency_ms == pytest.approx(290.0)
    # 40 | 120 | 300 | 700: the exact nearest rank, from the log of these whole hours
    assert got.p95_latency_ms == 700.0


def test_summary_filters(small: Connection) -> None:
    a = summary(small, *ALL, UsageFilter(client_id="client-a"))
    assert (a.requests, a.errors, a.prompt_tokens) == (3, 1, 130)
    assert a.cost_usd == pytest.approx(0.01)
    anonymous = summary(small, *ALL, UsageFilter(client_id=""))
    assert (anonymous.requests, anonymous.prompt_tokens) == (1, 10)
    gemini = summary(small, *ALL, UsageFilter(provider="gemini"))
    assert (gemini.requests, gemini.errors, gemini.reasoning_tokens) == (2, 1, 10)
    both = summary(small, *ALL, UsageFilter(client_id="client-a", model="gpt-4o-mini"))
    assert both.requests == 2


def test_summary_of_unpriced_model_has_no_cost(small: Connection) -> None:
    got = summary(small, *ALL, UsageFilter(model="llama3"))
    assert got.requests == 1
    assert (got.prompt_tokens, got.completion_tokens) == (30, 30)
    assert got.cost_usd is None
    assert got.cached_token_share == 0.0


def test_summary_of_nothing(small: Connection) -> None:
    got = summary(small, D + 5 * H, D + 6 * H)
    assert (got.requests, got.errors, got.total_tokens) == (0, 0, 0)
    assert got.cost_usd is None
    assert got.avg_latency_ms is None
    assert got.p95_latency_ms is None
    assert got.p95_latency_calls == 0
    assert got.cached_token_share is None


# --- time series and breakdowns -------------------------------------------------------------------


def test_timeseries_by_hour(small: Connection) -> None:
    points = timeseries(small, *ALL, "hour")
    assert [(p.t_ms, p.group, p.requests, p.errors, p.tokens) for p in points] == [
        (D - 2 * H, None, 2, 1, 120),
        (D - H, None, 2, 0, 265),
        (D, None, 1, 0, 60),
        (D + H, None, 1, 1, 5),
    ]
    assert [p.cost_usd for p in points] == [
        pytest.approx(0.01),
        pytest.approx(0.021),
        None,
        None,
    ]


def test_timeseries_by_utc_day_across_midnight(small: Connection) -> None:
    points = timeseries(small, *ALL, "day")
    assert [(p.t_ms, p.requests, p.errors, p.tokens) for p in points] == [
        (D - DAY_MS, 4, 1, 385),
        (D, 2, 1, 65),
    ]
    assert points[0].cost_usd == pytest.approx(0.031)
    assert points[1].cost_usd is None


def test_timeseries_grouped(small: Connection) -> None:
    by_provider = timeseries(small, *ALL, "day", "provider")
    assert [(p.t_ms, p.group, p.requests, p.tokens) for p in by_provider] == [
        (D - DAY_MS, "gemini", 1, 250),
        (D - DAY_MS, "openai", 3, 135),
        (D, "gemini", 1, 5),
        (D, "ollama", 1, 60),
    ]
    by_client = timeseries(small, *ALL, "day", "client")
    assert [(p.group, p.requests) for p in by_client if p.t_ms == D - DAY_MS] == [
        (None, 1),  # anonymous sorts first
        ("client-a", 2),
        ("client-b", 1),
    ]
    filtered = timeseries(small, *ALL, "hour", "model", UsageFilter(client_id="client-b"))
    assert filtered == [
        TimeseriesPoint(D - H, "gemini-2.5-flash", 1, 0, 250, 0.02),
        TimeseriesPoint(D + H, "gemini-2.5-flash", 1, 1, 5, None),
    ]


def test_breakdown_by_client(small: Connection) -> None:
    rows = breakdown(small, "client", *ALL)
    assert [(r.key, r.requests, r.errors, r.prompt_tokens, r.completion_tokens) for r in rows] == [
        ("client-a", 3, 1, 130, 50),
        ("client-b", 2, 1, 205, 50),
        (None, 1, 0, 10, 5),
    ]
    a, b, anonymous = rows
    assert (a.tokens, a.avg_latency_ms, a.share) == (180, pytest.approx(780.0), 0.5)
    assert a.cost_usd == pytest.approx(0.01)
    # 40 | 300 | 2000: exact from the log
    assert (a.p50_latency_ms, a.p95_latency_ms) == (300.0, 2000.0)
    assert b.share == pytest.approx(1 / 3)
    assert anonymous.share == pytest.approx(1 / 6)
    limited = breakdown(small, "client", *ALL, limit=2)
    assert limited == rows[:2]  # shares still relative to every call
    json.dumps([row.to_json() for row in rows])


def test_breakdown_by_model_and_provider_with_filter(small: Connection) -> None:
    models = breakdown(small, "model", *ALL, UsageFilter(client_id="client-a"))
    assert [(r.key, r.requests, r.cost_usd) for r in models] == [
        ("gpt-4o-mini", 2, pytest.approx(0.01)),
        ("llama3", 1, None),
    ]
    providers = breakdown(small, "provider", D - H, D + H)
    assert [(r.key, r.requests) for r in providers] == [
        ("gemini", 1),
        ("ollama", 1),
        ("openai", 1),
    ]
    assert all(isinstance(r, BreakdownRow) for r in providers)


def test_aggregates_agree_with_each_other(db: Connection) -> None:
    write(db, list(spread_records(3000, start_ms=D - 30 * H, span_ms=50 * H, seed=3)))
    since, until = D - 20 * H + 123, D + 7 * H - 456
    total = summary(db, since, until)
    days = timeseries(db, since, until, "day", "model")
    hours = timeseries(db, since, until, "hour", "client")
    models = breakdown(db, "model", since, until)
    for parts in (days, hours, models):
        assert sum(p.requests for p in parts) == total.requests
        assert sum(p.errors for p in parts) == total.errors
        assert sum(p.tokens for p in parts) == total.total_tokens
        assert sum(p.cost_usd or 0.0 for p in parts) == pytest.approx(total.cost_usd)
    assert [p.t_ms for p in days] == sorted(p.t_ms for p in days)
    assert {p.t_ms % DAY_MS for p in days} == {0}


# --- p95 ------------------------------------------------------------------------------------------


def _bucket_width(latency_ms: float) -> float:
    index = latency_bucket(latency_ms)
    lower = 0 if index == 0 else LATENCY_BUCKET_EDGES_MS[index - 1]
    return LATENCY_BUCKET_EDGES_MS[index] - lower


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_p95_estimate_within_bound_of_exact(db: Connection, seed: int) -> None:
    records = list(spread_records(4000, start_ms=D, span_ms=6 * H, seed=seed))
    write(db, records)

    def exact_p95(latencies: list[float]) -> float:
        ordered = sorted(latencies)
        return ordered[math.ceil(0.95 * len(ordered)) - 1]  # nearest rank

    got = summary(db, D, D + 6 * H)
    exact = exact_p95([r.latency_ms for r in records])
    assert got.p95_latency_ms is not None
    assert abs(got.p95_latency_ms - exact) < _bucket_width(exact)
    assert latency_bucket(got.p95_latency_ms - 1e-9) == latency_bucket(exact)
    for row in breakdown(db, "model", D, D + 6 * H):
        exact = exact_p95([r.latency_ms for r in records if r.model == row.key])
        assert row.p95_latency_ms is not None
        assert abs(row.p95_latency_ms - exact) < _bucket_width(exact), row.key


def test_estimate_percentile_edges() -> None:
    zeros = [0] * len(LATENCY_BUCKET_COLUMNS)
    assert estimate_percentile(zeros) is None
    one = list(zeros)
    one[0] = 20
    assert estimate_percentile(one) == pytest.approx(47.5)  # 19 of 20 through [0, 50)
    two = list(zeros)
    two[0], two[1] = 95, 5  # rank 95 is exactly the end of the first bucket
    assert estimate_percentile(two) == 50.0
    with pytest.raises(ValueError, match="bucket counts"):
        estimate_percentile([1, 2])


def test_a_bad_record_changes_no_rollup() -> None:
    rollup = UsageRollup([make_record(1)])
    before = rollup.rows()
    with pytest.raises(TypeError):
        rollup.add(make_record(2, latency_ms=None))
    with pytest.raises(TypeError):
        rollup.add(make_record(3, prompt_tokens="many"))
    assert rollup.rows() == before


# --- request log ----------------------------------------------------------------------------------


def test_request_log_newest_first_with_filters(small: Connection) -> None:
    rows, cursor = request_log(small, *ALL)
    assert [r.request_id for r in rows] == [f"req-{i}" for i in (6, 5, 4, 3, 2, 1)]
    assert cursor is None
    assert isinstance(rows[0], RequestRow)
    assert rows[0].stream is False
    assert rows[0].has_images is False
    assert rows[0].to_json().keys() == set(REQUEST_COLUMNS)
    assert "request_body" not in rows[0].to_json()

    def ids(**options: object) -> list[str]:
        found, _ = request_log(small, *ALL, **options)  # type: ignore[arg-type]
        return [r.request_id for r in found]

    assert ids(status="error") == ["req-2"]
    assert ids(status="cancelled") == ["req-6"]
    assert ids(flt=UsageFilter(client_id="")) == ["req-4"]
    assert ids(flt=UsageFilter(provider="gemini"), status="ok") == ["req-3"]
    assert ids(flt=UsageFilter(model="gpt-4o-mini", client_id="client-a")) == ["req-2", "req-1"]
    # exact, half-open range: r3 is at D-H+5000, r4 at D-H+6000
    found, _ = request_log(small, D - H + 5_000, D - H + 6_000)
    assert [r.request_id for r in found] == ["req-3"]


def test_request_detail_has_bodies_and_parsed_attempts(small: Connection) -> None:
    rows, _ = request_log(small, *ALL, flt=UsageFilter(provider="gemini"), status="ok")
    detail = request_detail(small, rows[0].id)
    assert detail is not None
    assert detail.request == rows[0]
    assert detail.request_body == '{"messages": []}'
    assert detail.response_body == '{"id": "x"}'
    assert detail.failed_attempts == [
        {"provider": "openai", "model": "gpt-4o", "status": 503, "error": "x"}
    ]
    as_json = detail.to_json()
    assert as_json["attempts"] == 2
    assert as_json["failed_attempts"] == detail.failed_attempts
    assert as_json["request_body"] == '{"messages": []}'
    json.dumps(as_json)
    assert request_detail(small, 10_000) is None


def _tied_records(count: int) -> list[RequestRecord]:
    """Records on only 7 distinct timestamps, written out of time order."""
    return [
        make_record(
            i,
            ts_ms=D + (i * 5 % 7) * 1000,
            client_id="client-a" if i % 3 else "client-b",
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 10, 500])
def test_cursor_walks_every_row_once_despite_ties(db: Connection, limit: int) -> None:
    write(db, _tied_records(60))
    for flt in (UsageFilter(), UsageFilter(client_id="client-a")):
        seen: list[RequestRow] = []
        cursor = None
        pages = 0
        while True:
            rows, cursor = request_log(db, D, D + 7000, flt, limit=limit, cursor=cursor)
            assert 1 <= len(rows) <= limit
            seen += rows
            pages += 1
            if cursor is None:
                break
        expected = db.execute(
            "SELECT id FROM llm_requests WHERE (CAST(? AS text) IS NULL OR client_id = ?)"
            " ORDER BY ts_ms DESC, id DESC",
            (flt.client_id, flt.client_id),
        ).fetchall()
        assert [r.id for r in seen] == [row[0] for row in expected]
        assert pages == math.ceil(len(expected) / limit)


def test_cursor_is_stable_while_rows_are_added(db: Connection) -> None:
    write(db, _tied_records(20))
    first, cursor = request_log(db, D, D + 7000, limit=5)
    write(db, [make_record(100 + i, ts_ms=D + 6000) for i in range(5)])  # newer than page 1
    second, _ = request_log(db, D, D + 7000, limit=5, cursor=cursor)
    assert (second[0].ts_ms, second[0].id) < (first[-1].ts_ms, first[-1].id)
    assert not {r.id for r in first} & {r.id for r in second}


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor!",
        "====",
        base64.urlsafe_b64encode(b"hello").decode(),
        base64.urlsafe_b64encode(b"1:2:3").decode(),
        base64.urlsafe_b64encode(b"1:-2").decode(),
        base64.urlsafe_b64encode(b"99999999999999999999:1").decode(),
        base64.urlsafe_b64encode("1:\u0662".encode()).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 200,
    ],
)
def test_malformed_cursor_is_a_value_error(small: Connection, cursor: str) -> None:
    with pytest.raises(ValueError, match="malformed cursor"):
        request_log(small, *ALL, cursor=cursor)
    with pytest.raises(ValueError, match="malformed cursor"):
        export_page(small, *ALL, after=cursor)


def test_bad_arguments_are_value_errors(small: Connection) -> None:
    with pytest.raises(ValueError, match="range"):
        summary(small, D, D)
    with pytest.raises(ValueError, match="range"):
        request_log(small, D + 1, D)
    with pytest.raises(ValueError, match="bucket"):
        timeseries(small, *ALL, "week")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dimension"):
        timeseries(small, *ALL, "hour", "user")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dimension"):
        breakdown(small, "status", *ALL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        breakdown(small, "model", *ALL, limit=0)
    for limit in (0, 501):
        with pytest.raises(ValueError, match="limit"):
            request_log(small, *ALL, limit=limit)
    with pytest.raises(ValueError, match="status"):
        request_log(small, *ALL, status="ko")  # type: ignore[arg-type]


def _plans(conn: Connection, call: partial[object]) -> list[str]:
    """The query plan lines of every statement ``call`` runs on ``conn`` (SQLite's planner;
    PostgreSQL's plans are checked at scale in tests/test_postgres_plans.py)."""
    if is_postgres(conn):
        pytest.skip("SQLite's query plan")
    assert isinstance(conn, apsw.Connection)
    statements: list[tuple[str, object]] = []

    def trace(cursor: apsw.Cursor, sql: str, bindings: object) -> bool:
        statements.append((sql, bindings))
        return True

    conn.exec_trace = trace
    try:
        call(conn)
    finally:
        conn.exec_trace = None
    details = []
    for sql, bindings in statements:
        plan = conn.execute("EXPLAIN QUERY PLAN " + sql, bindings).fetchall()  # type: ignore[arg-type]
        details += [str(row[3]) for row in plan]
    return details


@pytest.mark.parametrize(
    ("flt", "index"),
    [
        (UsageFilter(), "llm_requests_ts_ms"),
        (UsageFilter(client_id="client-a"), "llm_requests_client_ts_ms"),
        (UsageFilter(client_id=""), "llm_requests_client_ts_ms"),
        (UsageFilter(provider="gemini"), "llm_requests_provider_ts_ms"),
        (UsageFilter(model="gpt-4o"), "llm_requests_model_ts_ms"),
    ],
)
def test_request_log_and_export_search_an_index(
    db: Connection, flt: UsageFilter, index: str
) -> None:
    write(db, _tied_records(30))
    _, cursor = request_log(db, D, D + 7000, limit=2)
    for call in (
        partial(request_log, since_ms=D, until_ms=D + 7000, flt=flt, limit=5),
        partial(request_log, since_ms=D, until_ms=D + 7000, flt=flt, cursor=cursor),
        partial(export_page, since_ms=D, until_ms=D + 7000, flt=flt, after=cursor),
    ):
        (plan,) = _plans(db, call)  # type: ignore[arg-type]
        prefixes = (
            f"SEARCH llm_requests USING {kind} {index} (" for kind in ("INDEX", "COVERING INDEX")
        )
        assert plan.startswith(tuple(prefixes)), plan
        assert "ts_ms>?" in plan
        assert "ts_ms<?" in plan  # bounded on both sides: never a scan to the end of the log


def test_rollup_queries_search_the_primary_key(small: Connection) -> None:
    for call in (
        partial(summary, since_ms=ALL[0], until_ms=ALL[1]),
        partial(timeseries, since_ms=ALL[0], until_ms=ALL[1], bucket="day", group_by="model"),
        partial(breakdown, dimension="client", since_ms=ALL[0], until_ms=ALL[1]),
    ):
        plans = _plans(small, call)  # type: ignore[arg-type]
        searches = [p for p in plans if "usage_hourly" in p]
        assert searches
        by_hour = "SEARCH usage_hourly USING PRIMARY KEY (hour_ms>? AND hour_ms<?)"
        assert all(p.startswith(by_hour) for p in searches), searches


async def test_runs_on_the_read_pool(database_url: str) -> None:
    await _write_with_writer(database_url, SMALL)
    pool = ReadPool(database_url, size=2)
    try:
        got = await pool.run(partial(summary, since_ms=ALL[0], until_ms=ALL[1]))
        rows, _ = await pool.run(partial(request_log, since_ms=ALL[0], until_ms=ALL[1], limit=2))
    finally:
        pool.close()
    assert got.requests == 6
    assert len(rows) == 2


# --- export ---------------------------------------------------------------------------------------


def test_export_covers_the_range_once_in_order(db: Connection) -> None:
    write(db, _tied_records(50))
    write(db, [make_record(500, ts_ms=D - 1), make_record(501, ts_ms=D + 6000 + 1)])
    since, until = D, D + 6001  # includes ts == since, excludes ts == until
    batches = list(export_batches(db, since, until, batch=7))
    assert all(1 <= len(b) <= 7 for b in batches)
    rows = [row for b in batches for row in b]
    expected = db.execute(
        "SELECT id FROM llm_requests WHERE ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms, id",
        (since, until),
    ).fetchall()
    assert [r.id for r in rows] == [row[0] for row in expected]
    assert len(rows) == 50
    exact_fit = list(export_batches(db, since, until, batch=10))  # a last batch that is full
    assert [r.id for b in exact_fit for r in b] == [r.id for r in rows]
    only_b = export_batches(db, since, until, UsageFilter(client_id="client-b"))
    filtered = [r for b in only_b for r in b]
    assert filtered == [r for r in rows if r.client_id == "client-b"]


def test_export_holds_no_read_transaction_between_batches(tmp_path: Path) -> None:
    path = str(tmp_path / "wal.db")
    writer = open_connection(path, busy_timeout_ms=50)
    reader = open_connection(path, readonly=True)
    try:
        migrate(writer)
        write(writer, _tied_records(40))
        batches = export_batches(reader, D, D + 7000, batch=5)
        assert len(next(batches)) == 5
        write(writer, [make_record(999, ts_ms=D)])
        # TRUNCATE needs every reader out of the WAL: BusyError if the export pinned it.
        writer.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        assert Path(f"{path}-wal").stat().st_size == 0
        # The rest, and the late row: it sorts after the position reached (same ts, larger id).
        assert sum(len(b) for b in batches) == 36
    finally:
        reader.close()
        writer.close()


def test_csv_quotes_and_defuses_formulas(db: Connection) -> None:
    nasty = {
        "=1+1": "'=1+1",
        "+cmd": "'+cmd",
        "-2": "'-2",
        "@SUM(A1)": "'@SUM(A1)",
        "\tx": "'\tx",
        'say "hi", then\r\nleave': 'say "hi", then\r\nleave',
        "plain": "plain",
        "nul\x00byte": "nul\x00byte",
    }
    records = [
        make_record(i, ts_ms=D + i, error_message=text, client_id='=HYPERLINK("http://x")')
        for i, text in enumerate(nasty)
    ]
    write(db, records)
    if is_postgres(db):  # PostgreSQL's text cannot hold NUL: it is stored as U+FFFD
        nasty["nul\x00byte"] = "nul\ufffdbyte"
    (batch,) = export_batches(db, D, D + 100)
    text = csv_header() + csv_lines(batch)
    assert csv_header() == ",".join(REQUEST_COLUMNS) + "\r\n"
    assert text.endswith("\r\n")
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[0] == list(REQUEST_COLUMNS)
    body = [dict(zip(REQUEST_COLUMNS, row, strict=True)) for row in parsed[1:]]
    assert [row["error_message"] for row in body] == list(nasty.values())
    assert {row["client_id"] for row in body} == {'\'=HYPERLINK("http://x")'}
    first = body[0]
    assert (first["stream"], first["has_images"], first["cost_usd"]) == ("false", "false", "0.001")
    assert (first["ttft_ms"], first["reasoning_tokens"]) == ("", "")
    assert first["ts_ms"] == str(D)
    assert '"say ""hi"", then\r\nleave"' in text  # RFC 4180: quoted, quotes doubled


async def test_a_nul_in_a_logged_text_is_stored_not_retried_forever(database_url: str) -> None:
    record = make_record(
        1,
        ts_ms=D,
        error_message="up\x00stream",
        request_body='{"a": "b\x00"}',
        response_body="\x00",
    )
    with trio.fail_after(20):
        await _write_with_writer(database_url, [record])
    conn = open_reader(database_url)
    try:
        (row,), _ = request_log(conn, D, D + 1)
        detail = request_detail(conn, row.id)
    finally:
        conn.close()
    # SQLite keeps the character; PostgreSQL's text cannot hold it and keeps U+FFFD instead.
    nul = "\ufffd" if is_postgres(conn) else "\x00"
    assert row.error_message == f"up{nul}stream"
    assert detail is not None
    assert (detail.request_body, detail.response_body) == ('{"a": "b' + nul + '"}', nul)


def test_json_lines_match_to_json(small: Connection) -> None:
    rows, _ = request_log(small, *ALL)
    text = json_lines(rows)
    lines = text.split("\n")
    assert lines[-1] == ""
    assert [json.loads(line) for line in lines[:-1]] == [row.to_json() for row in rows]


# --- migration ------------------------------------------------------------------------------------


def test_version_3_database_upgrades_with_backfill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = open_connection(str(tmp_path / "old.db"))
    try:
        monkeypatch.setattr(storage.migrations, "MIGRATIONS", MIGRATIONS[:3])
        assert migrate(conn) == 3
        # Written as version 3 did: every call of hour D in the log; hour D+1h pruned to one
        # of its three calls; hour D+2h only in the rollup (request rows were not recorded).
        old_insert = (
            "INSERT INTO llm_requests (request_id, ts_ms, client_id, provider, model, stream,"
            " status, http_status, latency_ms) VALUES (?, ?, 'c', 'openai', 'm', 0, 'ok', 200, ?)"
        )
        for i, (ts, latency) in enumerate([(D, 10.0), (D + 1, 75.0), (D + 2, 80_000.0)]):
            conn.execute(old_insert, (f"r{i}", ts, latency))
        conn.execute(old_insert, ("r3", D + H, 700.0))
        rollup_rows = [(D, 3, 80_085.0), (D + H, 3, 2000.0), (D + 2 * H, 5, 50.0)]
        for hour, requests, latency_sum in rollup_rows:
            conn.execute(
                "INSERT INTO usage_hourly (hour_ms, client_id, provider, model, requests,"
                " latency_ms_sum) VALUES (?, 'c', 'openai', 'm', ?, ?)",
                (hour, requests, latency_sum),
            )
        monkeypatch.undo()
        assert migrate(conn) == len(MIGRATIONS)
        columns = [row[1] for row in conn.execute("PRAGMA table_info(usage_hourly)").fetchall()]
        # Version 8 rebuilt the table with the coarse histogram last (the dashboard sums the
        # columns before it), still in order.
        coarse = columns[-len(LATENCY_BUCKET_COLUMNS) :]
        assert coarse == list(LATENCY_BUCKET_COLUMNS)
        histograms = conn.execute(
            f"SELECT hour_ms, {', '.join(LATENCY_BUCKET_COLUMNS)} FROM usage_hourly ORDER BY 1"
        ).fetchall()
        assert histograms == [
            (D, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1),  # backfilled from its three calls
            (D + H, *[0] * 11),  # the log lost calls: no histogram rather than a wrong one
            (D + 2 * H, *[0] * 11),
        ]
        got = summary(conn, D, D + 3 * H)
        assert got.requests == 11
        assert got.p95_latency_calls == 3  # p95 only over the calls that have buckets
        # Version 8 refined hour D from the same three calls: its log histogram and slowest call
        # (80 s) bound the p95, which the coarse histogram put at its top bucket's 60 s.
        assert got.p95_latency_ms is not None
        assert 68_000.0 <= got.p95_latency_ms <= 80_000.0
        assert summary(conn, D + H, D + 3 * H).p95_latency_ms is None
        # New calls count into the histogram of an upgraded row.
        write_batch(conn, [make_record(1, ts_ms=D + H, client_id="c", model="m", latency_ms=30.0)])
        assert summary(conn, D + H, D + 2 * H).p95_latency_calls == 1
        assert summary(conn, D + H, D + 2 * H).requests == 4
    finally:
        conn.close()


def test_rollup_constants_match_the_schema(db: Connection) -> None:
    assert len(LATENCY_BUCKET_COLUMNS) == len(LATENCY_BUCKET_EDGES_MS) + 1
    assert list(LATENCY_BUCKET_EDGES_MS) == sorted(LATENCY_BUCKET_EDGES_MS)
    columns = _columns(db, "usage_hourly")
    coarse = columns.index(LATENCY_BUCKET_COLUMNS[0])
    assert columns[coarse : coarse + len(LATENCY_BUCKET_COLUMNS)] == list(LATENCY_BUCKET_COLUMNS)
    bounds = columns.index("latency_ms_min")
    assert columns[bounds : bounds + len(LOG_BUCKET_COLUMNS) + 2] == [
        "latency_ms_min",
        "latency_ms_max",
        *LOG_BUCKET_COLUMNS,
    ]
    assert [f.name for f in dataclasses.fields(RequestRow)] == list(REQUEST_COLUMNS)
    log_columns = _columns(db, "llm_requests")
    assert set(log_columns) - set(REQUEST_COLUMNS) == {"request_body", "response_body"}


def _columns(conn: Connection, table: str) -> list[str]:
    """The columns of ``table`` in their order, in either backend's catalogue."""
    if is_postgres(conn):
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        return [str(row[0]) for row in rows]
    return [str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})").fetchall()]
