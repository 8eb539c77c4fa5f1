"""The endpoint and instance dimensions (schema version 8): every logged call names the instance
that served it, the rollup is keyed by endpoint and instance too, and analytics group by and
filter on both, their sums equal to the request log's; on each backend."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator

import pytest

import storage.migrations
from proxy.records import RequestRecord
from storage import MIGRATIONS, migrate, open_connection
from storage.analytics.aggregates import breakdown, summary, timeseries
from storage.analytics.export import csv_header, csv_lines, export_page
from storage.analytics.request_log import request_log
from storage.analytics.usage_filter import UsageFilter
from storage.batch import write_batch
from storage.postgres_migrations import migrate as migrate_postgres
from storage.postgres_schema import POSTGRES_MIGRATIONS
from storage.rollup import HOUR_MS
from storage.sql import Connection
from tests.factories import T0, make_record
from tests.storage_backends import connect

H = HOUR_MS
D = (T0 // (24 * H) + 1) * 24 * H
ENDPOINTS = ("chat", "responses", "messages", "embeddings")
INSTANCES = ("gw-a/1", "gw-a/2", "gw-b")


@pytest.fixture
def db(database_url: str) -> Iterator[Connection]:
    """An empty migrated read-write database, on each backend."""
    conn = connect(database_url)
    try:
        yield conn
    finally:
        conn.close()


def fleet_calls(count: int = 240) -> list[RequestRecord]:
    """Calls spread over three hours, four endpoints, three instances and two models."""
    return [
        make_record(
            i,
            ts_ms=D + (i * 45_000) % (3 * H),
            endpoint=ENDPOINTS[i % 4],
            instance=INSTANCES[i % 3],
            model=("gpt-4o", "gpt-4o-mini")[i % 2],
            latency_ms=1.0 + i,
            status="error" if i % 7 == 0 else "ok",
            prompt_tokens=i,
        )
        for i in range(count)
    ]


def test_each_call_stores_its_instance_and_the_rollup_keys_by_it(db: Connection) -> None:
    records = fleet_calls()
    write_batch(db, records[:100])
    write_batch(db, [*records[100:], make_record(999, ts_ms=D, instance=None)])
    stored = Counter(
        (str(endpoint), instance)
        for endpoint, instance in db.execute("SELECT endpoint, instance FROM llm_requests")
    )
    expected = Counter((r.endpoint, r.instance) for r in records)
    expected[("chat", None)] += 1
    assert stored == expected
    rolled = {
        (str(endpoint), str(instance)): int(str(requests))
        for endpoint, instance, requests in db.execute(
            "SELECT endpoint, instance, sum(requests) FROM usage_hourly GROUP BY 1, 2"
        )
    }
    assert rolled == {(e, i or ""): n for (e, i), n in expected.items()}


@pytest.mark.parametrize("dimension", ["endpoint", "instance"])
def test_breakdown_and_timeseries_by_endpoint_and_instance_sum_as_the_log(
    db: Connection, dimension: str
) -> None:
    records = fleet_calls()
    write_batch(db, records)
    by_key = Counter(getattr(r, dimension) for r in records)
    errors = Counter(getattr(r, dimension) for r in records if r.status != "ok")
    prompt = Counter[str]()
    for r in records:
        prompt[getattr(r, dimension)] += r.prompt_tokens or 0
    rows = breakdown(db, dimension, D, D + 3 * H)  # type: ignore[arg-type]
    assert {row.key: row.requests for row in rows} == dict(by_key)
    assert {row.key: row.errors for row in rows} == dict(errors)
    assert {row.key: row.prompt_tokens for row in rows} == dict(prompt)
    for row in rows:
        mine = sorted(r.latency_ms for r in records if getattr(r, dimension) == row.key)
        assert row.p95_latency_ms is not None
        assert mine[0] <= row.p95_latency_ms <= mine[-1]
    points = timeseries(db, D, D + 3 * H, "hour", dimension)  # type: ignore[arg-type]
    per_hour = Counter((r.ts_ms // H * H, getattr(r, dimension)) for r in records)
    assert {(p.t_ms, p.group): p.requests for p in points} == dict(per_hour)


def test_filters_on_endpoint_and_instance_count_as_the_log(db: Connection) -> None:
    records = fleet_calls()
    write_batch(db, records)
    for endpoint in ENDPOINTS:
        for instance in INSTANCES:
            flt = UsageFilter(endpoint=endpoint, instance=instance)
            mine = [r for r in records if r.endpoint == endpoint and r.instance == instance]
            got = summary(db, D, D + 3 * H, flt)
            assert got.requests == len(mine), (endpoint, instance)
            assert got.p95_latency_exact  # read from the log, under the same filter
            page, _ = request_log(db, D, D + 3 * H, flt, limit=500)
            assert sorted(row.request_id for row in page) == sorted(r.request_id for r in mine)
            assert {(row.endpoint, row.instance) for row in page} == {(endpoint, instance)}
    models = {row.key for row in breakdown(db, "model", D, D + 3 * H, UsageFilter(instance="gw-b"))}
    assert models == {"gpt-4o", "gpt-4o-mini"}
    with pytest.raises(ValueError, match="endpoint"):
        summary(db, D, D + H, UsageFilter(endpoint="completions"))


def test_the_export_carries_endpoint_and_instance(db: Connection) -> None:
    write_batch(db, fleet_calls(12))
    rows, _ = export_page(db, D, D + 3 * H, UsageFilter(instance="gw-b"))
    lines = (csv_header() + csv_lines(rows)).splitlines()
    header = lines[0].split(",")
    assert {"endpoint", "instance"} <= set(header)
    column = header.index("instance")
    assert {line.split(",")[column] for line in lines[1:]} == {"gw-b"}
    assert len(lines) == 1 + 4


# --- the upgrade of a populated version-7 database ------------------------------------------

BEFORE_V8 = 7


def version_7_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[object, str]:
    """A raw connection to a database migrated to version 7, and its parameter mark."""
    if database_url.startswith("postgresql"):
        import psycopg

        pg = psycopg.connect(database_url, autocommit=True)
        assert migrate_postgres(pg, POSTGRES_MIGRATIONS[:BEFORE_V8]) == BEFORE_V8
        return pg, "%s"
    conn = open_connection(database_url)
    monkeypatch.setattr(storage.migrations, "MIGRATIONS", MIGRATIONS[:BEFORE_V8])
    assert migrate(conn) == BEFORE_V8
    monkeypatch.undo()
    return conn, "?"


def test_a_version_7_rollup_is_split_by_endpoint_where_the_log_holds_every_call(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, mark = version_7_database(database_url, monkeypatch)
    marks = ", ".join([mark] * 4)
    log_insert = (
        "INSERT INTO llm_requests (request_id, ts_ms, client_id, provider, model, stream, status,"
        " http_status, latency_ms, endpoint, prompt_tokens, cost_usd)"
        f" VALUES ({mark}, {mark}, 'c', 'openai', 'm', 0, {mark}, 200, {marks})"
    )
    rollup_insert = (
        "INSERT INTO usage_hourly (hour_ms, client_id, provider, model, requests, errors,"
        " prompt_tokens, cost_usd, latency_ms_sum, latency_under_50ms)"
        f" VALUES ({mark}, 'c', 'openai', 'm', {marks}, {mark}, {mark})"
    )
    # Hour D: all three calls logged (two through /v1/responses); D+1h: the log lost one.
    logged = [
        ("r0", D, "ok", 2.0, "responses", 10, 0.5),
        ("r1", D + 1, "error", 4.0, "responses", 20, None),
        ("r2", D + 2, "ok", 30.0, "chat", 5, 0.25),
        ("r3", D + H, "ok", 7.0, "messages", 1, None),
    ]
    for row in logged:
        raw.execute(log_insert, row)  # type: ignore[attr-defined]
    for totals in [(D, 3, 1, 35, 0.75, 36.0, 3), (D + H, 2, 0, 2, None, 9.0, 2)]:
        raw.execute(rollup_insert, totals)  # type: ignore[attr-defined]
    if mark == "%s":
        raw.close()  # type: ignore[attr-defined]
        conn = connect(database_url)  # migrates
    else:
        migrate(raw)  # type: ignore[arg-type]
        conn = raw  # type: ignore[assignment]
    try:
        rows = conn.execute(
            "SELECT hour_ms, endpoint, instance, requests, errors, prompt_tokens, cost_usd,"
            " latency_ms_sum, latency_ms_min, latency_ms_max FROM usage_hourly ORDER BY 1, 2"
        ).fetchall()
        assert [tuple(row) for row in rows] == [
            (D, "chat", "", 1, 0, 5, 0.25, 30.0, 30.0, 30.0),
            (D, "responses", "", 2, 1, 30, 0.5, 6.0, 2.0, 4.0),
            (D + H, "chat", "", 2, 0, 2, None, 9.0, None, None),  # kept as it was
        ]
        (instance,) = conn.execute("SELECT instance FROM llm_requests WHERE request_id = 'r0'")
        assert tuple(instance) == (None,)
        whole = {row.key: row.requests for row in breakdown(conn, "endpoint", D, D + 2 * H)}
        assert whole == {"chat": 3, "responses": 2}
        # New calls land in their own endpoint's and instance's rows.
        new = make_record(
            9, ts_ms=D + H, client_id="c", provider="openai", model="m", instance="gw-a"
        )
        write_batch(conn, [dataclasses.replace(new, endpoint="embeddings")])
        assert {(row.key, row.requests) for row in breakdown(conn, "instance", D, D + 2 * H)} == {
            (None, 5),
            ("gw-a", 1),
        }
    finally:
        conn.close()
